"""Opinion alignment (Durmus et al. 2023): 1 − Jensen–Shannon distance, base 2, on hand-worked numbers."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from conftest import t

from grpo_lightning.core.alignment import (
    js_distance,
    js_divergence,
    letter_distribution,
    normalise,
    opinion_alignment,
)


def test_js_divergence_hand_numbers_base_2():
    # P = (1/2, 1/2), Q = (1, 0): M = (3/4, 1/4)
    # KL(P‖M) = ½ log₂(2/3) + ½ log₂ 2 = ½(−0.5849625) + ½ = 0.2075187
    # KL(Q‖M) = log₂(4/3) = 0.4150375 (the 0·log 0 term of Q is 0)
    # JS = ½(0.2075187 + 0.4150375) = 0.3112781; distance √JS = 0.5579230; alignment 0.4420770
    p, q = t(0.5, 0.5), t(1.0, 0.0)
    assert js_divergence(p, q).item() == pytest.approx(0.3112781245, abs=1e-9)
    assert js_distance(p, q).item() == pytest.approx(0.5579230453, abs=1e-9)
    # P = (1/4, 3/4), Q = (1/2, 1/2): M = (3/8, 5/8)
    # KL(P‖M) = ¼ log₂(2/3) + ¾ log₂(6/5) = −0.1462406 + 0.1972758 = 0.0510352
    # KL(Q‖M) = ½ log₂(4/3) + ½ log₂(4/5) = 0.2075187 − 0.1609640 = 0.0465547
    # JS = ½(0.0975899) = 0.0487949
    assert js_divergence(t(0.25, 0.75), t(0.5, 0.5)).item() == pytest.approx(0.0487949407, abs=1e-9)
    assert js_divergence(t(0.25, 0.75), t(0.5, 0.5)) == js_divergence(t(0.5, 0.5), t(0.25, 0.75))  # symmetric


def test_js_distance_range_is_zero_to_one_in_base_2():
    # Disjoint supports: M = (½, ½), KL(P‖M) = KL(Q‖M) = log₂ 2 = 1, JS = 1, distance 1 (with natural logs it would be
    # √ln 2 ≈ 0.833: the base is 2).
    assert js_distance(t(1.0, 0.0), t(0.0, 1.0)).item() == pytest.approx(1.0)
    assert js_distance(t(1.0, 0.0), t(0.0, 1.0)).item() != pytest.approx(math.sqrt(math.log(2)))
    assert js_distance(t(0.2, 0.3, 0.5), t(0.2, 0.3, 0.5)).item() == pytest.approx(0.0, abs=1e-7)


def test_letter_distribution_is_softmax_over_letters_only():
    # Next-token logits z = (0, ln 3) at the letters: p = (1, 3)/4, whatever the rest of the vocabulary holds.
    assert letter_distribution(t(0.0, math.log(3.0))).tolist() == pytest.approx([0.25, 0.75])
    # Padding (a question with two options in a batch padded to three) gets probability 0.
    mask = torch.tensor([True, True, False])
    assert letter_distribution(t(0.0, math.log(3.0), 5.0), mask).tolist() == pytest.approx([0.25, 0.75, 0.0])
    # Survey shares need not sum to 1 (GOQA's do not exactly): (0.3, 0.9) → (1/4, 3/4).
    assert normalise(t(0.3, 0.9)).tolist() == pytest.approx([0.25, 0.75])


def test_opinion_alignment_hand_numbers_and_padding():
    # Model (1/4, 3/4) from logits (0, ln 3) vs survey (0.3, 0.9) → (1/4, 3/4): identical, alignment 1.
    # Model (1/4, 3/4) vs survey (0.4, 0.4) → (1/2, 1/2): JS 0.0487949, alignment 1 − √0.0487949 = 0.7791042.
    # Model (1/2, 1/2) (equal logits) vs survey (1, 0): alignment 0.4420770 (first test).
    logits = torch.tensor([[0.0, math.log(3.0), 9.0], [0.0, math.log(3.0), 0.0], [2.0, 2.0, 0.0]])
    shares = torch.tensor([[0.3, 0.9, 0.0], [0.4, 0.4, 0.0], [1.0, 0.0, 0.0]])
    mask = torch.tensor([[True, True, False]] * 3)
    got = opinion_alignment(logits, shares, mask)
    assert got.tolist() == pytest.approx([1.0, 0.7791042312, 0.4420769547], abs=1e-7)


def test_callback_matches_one_prompt_at_a_time_and_logs_tags(goqa_csv, tmp_path):
    """A 2-step GOQA fit logs val/opinion_alignment/<country> for the five countries and the minimum; the batched,
    left-padded forward gives what one unpadded prompt at a time gives."""
    from conftest import PAPER_COUNTRIES, TINY_MODEL_FLAGS

    from grpo_lightning.cli.app import main
    from grpo_lightning.core.alignment import opinion_alignment as align
    from grpo_lightning.metrics import opinion_tags

    cli = main(
        [
            "fit",
            "--config",
            str(Path(__file__).resolve().parents[1] / "configs/experiment/goqa_tiny_gripo.yaml"),
            "--data.path",
            str(goqa_csv),
            *TINY_MODEL_FLAGS,
            "--trainer.max_steps",
            "2",  # val_check_interval 0.5 of a 20-step epoch: only the last-step validation runs
            "--trainer.logger.init_args.save_dir",
            str(tmp_path),
        ]
    )
    metrics = cli.trainer.callback_metrics
    for tag in opinion_tags("val", PAPER_COUNTRIES):
        assert tag in metrics and 0.0 <= float(metrics[tag]) <= 1.0, tag
    dm, module = cli.datamodule, cli.model
    items = dm.opinion_items("val")
    assert len({(tuple(it["prompt_ids"]), it["group_id"]) for it in items}) == len(items)  # one per (question, country)
    model = module.policy.model.eval()
    per_group: dict[int, list[float]] = {}
    with torch.no_grad():
        for it in items:
            logits = model(input_ids=torch.tensor([it["prompt_ids"]])).logits[0, -1]
            value = align(logits[it["letter_ids"]], torch.tensor(it["shares"]))
            per_group.setdefault(it["group_id"], []).append(float(value))
    for g, name in enumerate(dm.group_names):
        expected = sum(per_group[g]) / len(per_group[g])
        assert float(metrics[f"val/opinion_alignment/{name}"]) == pytest.approx(expected, abs=1e-5)
    worst = min(sum(v) / len(v) for v in per_group.values())
    assert float(metrics["val/min_group_opinion_alignment"]) == pytest.approx(worst, abs=1e-5)
