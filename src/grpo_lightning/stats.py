"""Summary statistics over seeds, shared by the bandit report and ``grpo-compare``."""

from __future__ import annotations

import math

import torch


def mean_se(values: torch.Tensor, dim: int = -1) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and standard error (sample std with ddof = 1, over √n; 0 for a single value) along ``dim``."""
    n = values.shape[dim]
    se = values.std(dim=dim) / math.sqrt(n) if n > 1 else torch.zeros_like(values.mean(dim=dim))
    return values.mean(dim=dim), se
