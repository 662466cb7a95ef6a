"""Tests of grpo_lightning.metrics.group_metrics: the per-group preference and opinion-alignment metrics."""

from __future__ import annotations

import pytest
import torch
from conftest import t

from grpo_lightning.metrics.group_metrics import GroupOpinionAlignment, GroupPreferenceMetrics


def test_group_metrics_count_ties_half():
    """Group A: reward h = (1, 0) → 0.75; group B: h = (−2, 0) → 0.25. Log-prob h = (0, 1, 0, −1) → A 0.75,
    B 0.25; reference log-probs all tied → 0.5 everywhere."""
    metric = GroupPreferenceMetrics(["A", "B"], "val")
    zeros = torch.zeros(4)
    metric.update(
        losses=torch.ones(4),
        chosen_rewards=torch.tensor([1.0, 0.0, -2.0, 0.0]),
        rejected_rewards=zeros,
        policy_chosen=torch.tensor([-1.0, -1.0, -3.0, -2.0]),
        policy_rejected=torch.tensor([-1.0, -2.0, -3.0, -1.0]),
        reference_chosen=zeros,
        reference_rejected=zeros,
        group=torch.tensor([0, 0, 1, 1]),
    )
    out = metric.compute()
    assert out["val/reward_acc/A"].item() == 0.75 and out["val/reward_acc/B"].item() == 0.25
    assert out["val/min_group_reward_acc"].item() == 0.25
    assert out["val/logp_acc/A"].item() == 0.75 and out["val/logp_acc/B"].item() == 0.25
    assert out["val/ref_logp_acc/A"].item() == 0.5 and out["val/min_group_ref_logp_acc"].item() == 0.5


def test_group_opinion_alignment_metric_averages_per_group():
    # Group 0: items 0.2 and 0.4 → 0.3; group 1: no item (no value, not 0); group 2: 0.9. Minimum over present: 0.3.
    m = GroupOpinionAlignment(["a", "b", "c"], "val")
    m.update(t(0.2, 0.9), torch.tensor([0, 2]))
    m.update(t(0.4), torch.tensor([0]))
    out = m.compute()
    assert set(out) == {"val/opinion_alignment/a", "val/opinion_alignment/c", "val/min_group_opinion_alignment"}
    assert out["val/opinion_alignment/a"].item() == pytest.approx(0.3)
    assert out["val/opinion_alignment/c"].item() == pytest.approx(0.9)
    assert out["val/min_group_opinion_alignment"].item() == pytest.approx(0.3)
