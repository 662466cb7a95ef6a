"""Per-group statistics of per-pair values, safe when a group is absent from a batch."""

from __future__ import annotations

import torch


def group_sums(values: torch.Tensor, group_ids: torch.Tensor, num_groups: int) -> torch.Tensor:
    """Σ_{i: g_i = g} values_i for each group: ``(B,)`` values, ``(B,)`` int ids → ``(K,)``.

    Differentiable in ``values`` (index_add is linear), so the θ objective can be built on it.
    """
    out = torch.zeros(num_groups, dtype=values.dtype, device=values.device)
    return out.index_add(0, group_ids, values)


def group_counts(group_ids: torch.Tensor, num_groups: int) -> torch.Tensor:
    """Number of pairs of each group: ``(B,)`` → ``(K,)`` float (so it can be all-reduced with sums)."""
    return torch.bincount(group_ids, minlength=num_groups)[:num_groups].to(torch.float32)


def group_means(sums: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Per-group mean; 0 for a group with count 0 (read ``counts > 0`` for presence)."""
    return torch.where(counts > 0, sums / counts.clamp(min=1), torch.zeros_like(sums))
