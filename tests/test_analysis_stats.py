"""Tests of grpo_lightning.analysis.stats: the paired bootstrap over questions on hand-checkable numbers."""

from __future__ import annotations

import pytest
import torch

from grpo_lightning.analysis.stats import bootstrap_counts, percentile_interval, ratio_of_sums


def test_bootstrap_counts_draw_n_of_n_and_are_seeded() -> None:
    counts = bootstrap_counts(5, 100, seed=3)
    assert counts.shape == (100, 5) and (counts.sum(1) == 5).all() and (counts >= 0).all()
    assert torch.equal(counts, bootstrap_counts(5, 100, seed=3))
    assert not torch.equal(counts, bootstrap_counts(5, 100, seed=4))


def test_pairing_resamples_the_same_questions_for_every_method() -> None:
    """Two questions of one country, one pair each: method A's losses 1 and 3, B's 2 and 4. The three resamples
    {q1, q1}, {q2, q2}, {q1, q2} give A 1, 3, 2 and B 2, 4, 3: each method's value varies, but B − A is 1 in every
    resample, because both are computed on the same questions. Unpaired resamples (A on {q1, q1}, B on {q2, q2})
    would give B − A = 3."""
    counts = torch.tensor([[2, 0], [0, 2], [1, 1]])
    n = torch.ones(2, 1)
    a = ratio_of_sums(counts, torch.tensor([[1.0], [3.0]]), n)
    b = ratio_of_sums(counts, torch.tensor([[2.0], [4.0]]), n)
    assert a[:, 0].tolist() == [1.0, 3.0, 2.0] and b[:, 0].tolist() == [2.0, 4.0, 3.0]
    lo, hi = percentile_interval(b - a)
    assert lo.item() == hi.item() == 1.0
    lo, hi = percentile_interval(a)
    assert lo.item() == pytest.approx(1.05) and hi.item() == pytest.approx(2.95)  # linear interpolation over 1, 2, 3


def test_ratio_of_sums_pools_pairs_and_marks_a_missing_group() -> None:
    """A question with two pairs (sum 10) counts as two observations: the mean over {q1: 2, 8; q2: 5} is 15/3 = 5;
    a resample without any question of country 2 has no value there (NaN)."""
    sums = torch.tensor([[10.0, 0.0], [5.0, 7.0]])
    n = torch.tensor([[2.0, 0.0], [1.0, 1.0]])
    out = ratio_of_sums(torch.tensor([[1, 1], [2, 0]]), sums, n)
    assert out[0].tolist() == [5.0, 7.0]
    assert out[1, 0].item() == 5.0 and out[1, 1].isnan()
