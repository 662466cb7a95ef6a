"""Pairwise accuracy counts ties ½: hand numbers and a start model reading chance (the
per-group epoch metric: test_metrics_group_metrics.py)."""

from __future__ import annotations

import lightning as L
import torch

from grpo_lightning.core import pair_accuracy
from grpo_lightning.core.losses import IPO


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
