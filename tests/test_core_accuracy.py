"""Pairwise accuracy counts ties ½: hand numbers, the epoch metric, and a start model reading chance."""

from __future__ import annotations

import lightning as L
import torch

from grpo_lightning.core import pair_accuracy
from grpo_lightning.core.losses import IPO
from grpo_lightning.metrics import GroupPreferenceMetrics


def test_pair_accuracy_hand_numbers():
    """h = (1, 0, −2, 0) → credits (1, ½, 0, ½), accuracy 2/4 = 0.5 (a strict > would give 0.25)."""
    h = torch.tensor([1.0, 0.0, -2.0, 0.0])
    assert pair_accuracy(h).tolist() == [1.0, 0.5, 0.0, 0.5]
    assert pair_accuracy(h).mean().item() == 0.5
    assert (h > 0).float().mean().item() == 0.25  # TRL's rewards/accuracies on the same pairs


def test_pair_accuracy_all_ties_is_chance_and_nan_is_wrong():
    assert pair_accuracy(torch.zeros(3)).mean().item() == 0.5
    assert pair_accuracy(torch.tensor([float("nan"), float("inf"), -float("inf")])).tolist() == [0.0, 1.0, 0.0]
    assert pair_accuracy(torch.tensor([0, 2, -1])).tolist() == [0.5, 1.0, 0.0]  # integer input: float credits
    assert pair_accuracy(torch.zeros(2, dtype=torch.float64)).dtype == torch.float64


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


def test_start_model_equal_to_its_reference_reads_half(tiny_dm_factory, make_module):
    """Before any step the policy equals its frozen reference, so every pair has r_w = r_l = 0 (h = 0): each
    group's reward accuracy is chance, 0.5 (it read 0.0 while ties counted as wrong, as TRL counts them)."""
    dm = tiny_dm_factory(batch_size=8)
    module = make_module(dm, loss=IPO(beta=0.1))
    L.seed_everything(0)
    trainer = L.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.validate(module, dm, verbose=False)
    metrics = trainer.callback_metrics
    present = [g for g in dm.group_names if f"val/reward_acc/{g}" in metrics]
    assert present
    for g in present:
        assert metrics[f"val/reward_acc/{g}"].item() == 0.5
    assert metrics["val/min_group_reward_acc"].item() == 0.5
    assert metrics["val/rewards/margins"].item() == 0.0
