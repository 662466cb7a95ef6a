"""Group statistics and the group weightings against hand-worked numbers."""

from __future__ import annotations

import math

import pytest
import torch

from grpo_lightning.core import (
    WEIGHTINGS,
    exponentiated_gradient_step,
    group_counts,
    group_loss_estimate,
    group_means,
    group_stats,
    group_sums,
    mix_with_uniform,
    weighted_objective,
)


def test_alpha_step_two_groups_by_hand():
    """α = (½, ½), group losses L = (1, 3), η = 0.5:
    α' ∝ (½e^{0.5}, ½e^{1.5}) = (1, e)/(1+e) = (0.268941, 0.731059).
    χ = 0.6: w = 0.4/2 + 0.6α' = (0.361365, 0.638635)."""
    log_alpha = torch.log(torch.tensor([0.5, 0.5], dtype=torch.float64))
    new = exponentiated_gradient_step(log_alpha, torch.tensor([1.0, 3.0]), 0.5)
    e = math.e
    torch.testing.assert_close(new.exp(), torch.tensor([1 / (1 + e), e / (1 + e)], dtype=torch.float64))
    torch.testing.assert_close(
        mix_with_uniform(new.exp(), 0.6),
        torch.tensor([0.2 + 0.6 / (1 + e), 0.2 + 0.6 * e / (1 + e)], dtype=torch.float64),
    )
    assert torch.equal(log_alpha, torch.log(torch.tensor([0.5, 0.5], dtype=torch.float64))), "input not modified"


def test_robust_strategy_matches_the_functions():
    s = WEIGHTINGS["robust"](step_size=0.5, chi=0.6)
    la = s.initial_log_alpha(torch.tensor([10.0, 30.0]))
    torch.testing.assert_close(la.exp(), torch.tensor([0.5, 0.5], dtype=torch.float64))
    la = s.update(la, torch.tensor([1.0, 3.0]))
    e = math.e
    torch.testing.assert_close(
        s.weights(la), torch.tensor([0.2 + 0.6 / (1 + e), 0.2 + 0.6 * e / (1 + e)], dtype=torch.float64)
    )


def test_alpha_step_does_not_overflow_or_underflow():
    """IPO-scale losses (thousands) with a big step: α → (1, 0) with finite logs."""
    la = torch.log(torch.tensor([0.5, 0.5], dtype=torch.float64))
    for _ in range(100):
        la = exponentiated_gradient_step(la, torch.tensor([5000.0, 0.0]), 10.0)
    assert torch.isfinite(la).all()
    torch.testing.assert_close(la.exp(), torch.tensor([1.0, 0.0], dtype=torch.float64))
    la = exponentiated_gradient_step(la, torch.tensor([0.0, 0.0]), 1e-12)
    assert torch.isfinite(la).all()


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
    stats = group_stats(
        losses,
        torch.tensor([1.0, 0.0, 0.0]),
        torch.tensor([0.0, 1.0, 0.0]),
        torch.tensor([-1.0, -2.0, -3.0]),
        torch.tensor([-2.0, -1.0, -3.0]),
        g,
        3,
    )
    # reward accuracy: pair 0 correct (1 > 0), pair 1 wrong, pair 2 tie = wrong → (1, 0, 0)
    torch.testing.assert_close(stats.reward_correct, torch.tensor([1.0, 0.0, 0.0]))
    # log-prob accuracy: −1 > −2 yes, −2 > −1 no, −3 > −3 no → (1, 0, 0)
    torch.testing.assert_close(stats.logp_correct, torch.tensor([1.0, 0.0, 0.0]))


def test_absent_group_keeps_its_logit():
    """Group 1 absent: its loss enters as 0, so log α_1 − log α_0 drops by exactly η·L_0."""
    la = torch.log(torch.tensor([0.5, 0.5], dtype=torch.float64))
    est = group_loss_estimate(
        torch.tensor([4.0, 0.0]),
        torch.tensor([2.0, 0.0]),
        estimator="mean",
        train_counts=torch.tensor([1.0, 1.0]),
        total=2,
    )
    new = exponentiated_gradient_step(la, est, 0.5)
    assert (new[1] - new[0]).item() == pytest.approx(-0.5 * 2.0)


def test_estimators_by_hand():
    """Step sums S = (2, 9), counts n_g = (2, 3), n = 5, training counts N_g = (10, 30), N = 40.
    mean: (2/2, 9/3) = (1, 3).  scaled_sum: (N/N_g)·S_g/n = (4·2/5, (4/3)·9/5) = (1.6, 2.4).
    uniform = (N_g/N)·scaled_sum = 0.25·1.6 + 0.75·2.4 = 2.2 = (2+9)/5, the pooled mean."""
    sums, counts, train = torch.tensor([2.0, 9.0]), torch.tensor([2.0, 3.0]), torch.tensor([10.0, 30.0])
    mean = group_loss_estimate(sums, counts, estimator="mean", train_counts=train, total=5)
    scaled = group_loss_estimate(sums, counts, estimator="scaled_sum", train_counts=train, total=5)
    torch.testing.assert_close(mean, torch.tensor([1.0, 3.0]))
    torch.testing.assert_close(scaled, torch.tensor([1.6, 2.4]))
    uni = WEIGHTINGS["uniform"]()
    w = uni.weights(uni.initial_log_alpha(train))
    value = weighted_objective(sums, counts, w, estimator=uni.estimator, train_counts=train, total=5)
    assert value.item() == pytest.approx(2.2)


def test_importance_weights():
    """Default: w = 1/K, i.e. each pair weighted N/(K N_g) under scaled_sum — per-pair ∝ 1/N_g.
    User weights (1, 3) normalise to (0.25, 0.75)."""
    train = torch.tensor([10.0, 30.0])
    imp = WEIGHTINGS["importance"](estimator="scaled_sum")
    torch.testing.assert_close(imp.weights(imp.initial_log_alpha(train)), torch.tensor([0.5, 0.5], dtype=torch.float64))
    user = WEIGHTINGS["importance"](weights=[1.0, 3.0])
    torch.testing.assert_close(
        user.weights(user.initial_log_alpha(train)), torch.tensor([0.25, 0.75], dtype=torch.float64)
    )
    with pytest.raises(ValueError, match="3 entries for 2 groups"):
        WEIGHTINGS["importance"](weights=[1.0, 1.0, 1.0]).initial_log_alpha(train)


def test_objective_is_additive_over_micro_batches():
    """The estimate is linear in the sums, so micro-batch objectives add up to the step's."""
    torch.manual_seed(0)
    losses, g = torch.rand(8), torch.tensor([0, 1, 1, 0, 2, 2, 1, 0])
    train, w = torch.tensor([5.0, 7.0, 9.0]), torch.tensor([0.2, 0.3, 0.5])
    counts = group_counts(g, 3)
    for est in ("mean", "scaled_sum"):
        whole = weighted_objective(group_sums(losses, g, 3), counts, w, estimator=est, train_counts=train, total=8)
        parts = sum(
            weighted_objective(
                group_sums(losses[i : i + 2], g[i : i + 2], 3), counts, w, estimator=est, train_counts=train, total=8
            )
            for i in range(0, 8, 2)
        )
        torch.testing.assert_close(whole, parts)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"chi": 1.5}, "chi"),
        ({"chi": -0.1}, "chi"),
        ({"step_size": -1.0}, "step_size"),
        ({"estimator": "x"}, "estimator"),
    ],
)
def test_bad_weighting_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        WEIGHTINGS["robust"](**kwargs)


def test_absent_group_is_left_alone_with_present_mask():
    """α = (0.5, 0.3, 0.2), L̂ = (1, ·, 3) with group 1 absent, η = 1: groups 0 and 2 keep their
    mass 0.7 and share it as 0.5e : 0.2e³, group 1 keeps 0.3:
    α'_0 = 0.7·0.5e/(0.5e + 0.2e³) = 0.7·1.35914/(1.35914 + 4.01711) = 0.176976,
    α'_2 = 0.7 − 0.176976 = 0.523024, α'_1 = 0.3."""
    la = torch.log(torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64))
    new = exponentiated_gradient_step(la, torch.tensor([1.0, 0.0, 3.0]), 1.0, torch.tensor([True, False, True]))
    e = math.e
    a0 = 0.7 * 0.5 * e / (0.5 * e + 0.2 * e**3)
    torch.testing.assert_close(new.exp(), torch.tensor([a0, 0.3, 0.7 - a0], dtype=torch.float64))
    every = exponentiated_gradient_step(la, torch.tensor([1.0, 2.0, 3.0]), 1.0, torch.ones(3, dtype=torch.bool))
    torch.testing.assert_close(every, exponentiated_gradient_step(la, torch.tensor([1.0, 2.0, 3.0]), 1.0))


def test_equal_losses_keep_small_groups_weight_despite_missing_batches():
    """Every group has the same loss 25 per pair; batches of 16 often miss the 5 % group. With the
    mean estimate and the present mask α stays uniform (nothing favours any group)."""
    g = torch.Generator().manual_seed(0)
    strategy = WEIGHTINGS["robust"](step_size=0.01, estimator="mean")
    counts = torch.tensor([45.0, 25.0, 15.0, 10.0, 5.0])
    la = strategy.initial_log_alpha(counts)
    for _ in range(60):
        ids = torch.multinomial(counts / counts.sum(), 16, replacement=True, generator=g)
        n = group_counts(ids, 5).double()
        est = group_loss_estimate(25.0 * n, n, estimator="mean", train_counts=counts, total=16)
        la = strategy.update(la, est, present=n > 0)
    torch.testing.assert_close(la.exp(), torch.full((5,), 0.2, dtype=torch.float64))


def test_chi_scaled_step_hand_numbers():
    """``chi_scaled_step`` (the authors' bandit code): η_α χ in the exponent. K = 2, α = (½, ½), L̂ = (1, 0), η_α = 1,
    χ = 0.5: α₀ = e^{0.5}/(e^{0.5} + 1) = 0.6224593 (without it: e/(e + 1) = 0.7310586); w = 0.25 + 0.5 α."""
    from grpo_lightning.config import WeightingConfig

    log_alpha = torch.log(torch.tensor([0.5, 0.5], dtype=torch.float64))
    losses = torch.tensor([1.0, 0.0], dtype=torch.float64)
    for scaled, a0 in ((True, 0.6224593312), (False, 0.7310585786)):
        w = WeightingConfig(name="robust", step_size=1.0, chi=0.5, estimator="scaled_sum", chi_scaled_step=scaled)
        weighting = w.build()
        new = weighting.update(log_alpha, losses)
        assert new.exp()[0].item() == pytest.approx(a0, abs=1e-9)
        assert weighting.weights(new)[0].item() == pytest.approx(0.25 + 0.5 * a0, abs=1e-9)
    assert math.isclose(0.6224593312, math.exp(0.5) / (math.exp(0.5) + 1), rel_tol=1e-9)
