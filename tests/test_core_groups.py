"""core/groups.py: per-group sums, counts and means, by hand."""

from __future__ import annotations

import torch

from grpo_lightning.core import group_counts, group_means, group_sums


def test_group_statistics_with_a_missing_group():
    """Groups (0, 2, 0) of K = 3: group 1 is absent. Losses (1, 5, 3):
    sums (4, 0, 5), counts (2, 0, 1), means (2, 0, 5) — the absent group's 0 is a placeholder
    read together with count 0, never a NaN."""
    g = torch.tensor([0, 2, 0])
    losses = torch.tensor([1.0, 5.0, 3.0])
    sums, counts = group_sums(losses, g, 3), group_counts(g, 3)
    torch.testing.assert_close(sums, torch.tensor([4.0, 0.0, 5.0]))
    torch.testing.assert_close(counts, torch.tensor([2.0, 0.0, 1.0]))
    torch.testing.assert_close(group_means(sums, counts), torch.tensor([2.0, 0.0, 5.0]))
