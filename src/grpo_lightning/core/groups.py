"""Per-group statistics of per-pair values, safe when a group is absent from a batch."""

from __future__ import annotations

from typing import NamedTuple

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


class GroupStats(NamedTuple):
    """Sums and counts over pairs, per group: everything needed for means and accuracies.

    All fields are ``(K,)`` and add up across micro-batches and ranks.
    """

    count: torch.Tensor
    loss: torch.Tensor
    reward_correct: torch.Tensor
    logp_correct: torch.Tensor

    def __add__(self, other: GroupStats) -> GroupStats:  # type: ignore[override]
        return GroupStats(*(a + b for a, b in zip(self, other, strict=True)))


def group_stats(
    losses: torch.Tensor,
    chosen_rewards: torch.Tensor,
    rejected_rewards: torch.Tensor,
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    group_ids: torch.Tensor,
    num_groups: int,
) -> GroupStats:
    """Detached per-group sums of loss, reward accuracy (h > 0, i.e. chosen reward > rejected
    reward) and log-prob accuracy (log π(y_w|x) > log π(y_l|x))."""
    losses = losses.detach().float()
    reward_correct = (chosen_rewards > rejected_rewards).float()
    logp_correct = (policy_chosen_logps.detach() > policy_rejected_logps.detach()).float()
    return GroupStats(
        count=group_counts(group_ids, num_groups).to(losses.device),
        loss=group_sums(losses, group_ids, num_groups),
        reward_correct=group_sums(reward_correct, group_ids, num_groups),
        logp_correct=group_sums(logp_correct, group_ids, num_groups),
    )
