"""core/weighting_functions.py: the α step, the loss estimates, the adjustment and the cvar/tilted weights by hand."""

from __future__ import annotations

import math

import pytest
import torch

from grpo_lightning.core import (
    WEIGHTINGS,
    cvar_log_weights,
    exponentiated_gradient_step,
    generalization_adjustment,
    group_counts,
    group_loss_estimate,
    group_sums,
    mix_with_uniform,
    tilted_log_weights,
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


def test_alpha_step_does_not_overflow_or_underflow():
    """IPO-scale losses (thousands) with a big step: α → (1, 0) with finite logs."""
    la = torch.log(torch.tensor([0.5, 0.5], dtype=torch.float64))
    for _ in range(100):
        la = exponentiated_gradient_step(la, torch.tensor([5000.0, 0.0]), 10.0)
    assert torch.isfinite(la).all()
    torch.testing.assert_close(la.exp(), torch.tensor([1.0, 0.0], dtype=torch.float64))
    la = exponentiated_gradient_step(la, torch.tensor([0.0, 0.0]), 1e-12)
    assert torch.isfinite(la).all()


@pytest.mark.parametrize("step_size", [1e-300, 1e-12, 1.0, 1e6])
@pytest.mark.parametrize("scale", [1e-6, 1.0, 5e3, 1e8])
def test_alpha_step_stays_on_the_simplex(step_size, scale):
    """IPO-scale (and larger) losses with tiny to huge step sizes: log α stays finite, α on the
    simplex, and the worst group never loses weight relative to another."""
    la0 = torch.log(torch.tensor([0.7, 0.2, 0.1], dtype=torch.float64))
    losses = torch.tensor([1.0, 3.0, 2.0], dtype=torch.float64) * scale
    la = la0
    for _ in range(50):
        la = exponentiated_gradient_step(la, losses, step_size)
        assert torch.isfinite(la).all() and (la <= 0).all()
        torch.testing.assert_close(la.exp().sum(), torch.tensor(1.0, dtype=torch.float64))
    assert la[1] - la[0] >= la0[1] - la0[0] - 1e-12 and la[1] - la[2] >= la0[1] - la0[2] - 1e-12


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


# ---------------------------------------------------------------------------------------------
# Beyond the paper: the Sagawa et al. (2020) adjustment, CVaR over groups, tilted ERM over groups
# ---------------------------------------------------------------------------------------------


D = torch.float64


def _w(log_w: torch.Tensor) -> torch.Tensor:
    assert torch.isfinite(log_w).all(), "log-weights must stay finite (log 0 is finfo.min)"
    return log_w.exp()


def test_generalization_adjustment_by_hand():
    """C/√N_g with C = 2, N = (4, 100): (2/2, 2/10) = (1, 0.2); C = 0 gives zeros."""
    torch.testing.assert_close(
        generalization_adjustment(torch.tensor([4, 100]), 2.0), torch.tensor([1.0, 0.2], dtype=D)
    )
    torch.testing.assert_close(generalization_adjustment(torch.tensor([4.0, 100.0]), 0.0), torch.zeros(2))


def test_cvar_two_and_three_groups_by_hand():
    """w uniform over the worst ⌈ρK⌉ groups.
    K = 2, L = (1, 3): ρ = 0.5 → ⌈1⌉ = 1 group → (0, 1); ρ = 0.51 → ⌈1.02⌉ = 2 → (½, ½); ρ = 1 → (½, ½).
    K = 3, L = (2, 5, 3): ρ = 0.5 → ⌈1.5⌉ = 2 → groups 1, 2 → (0, ½, ½); ρ = 1/3 → 1 → (0, 1, 0);
    ρ = 1 → (⅓, ⅓, ⅓), the group average."""
    two = torch.tensor([1.0, 3.0], dtype=D)
    torch.testing.assert_close(_w(cvar_log_weights(two, 0.5)), torch.tensor([0.0, 1.0], dtype=D))
    torch.testing.assert_close(_w(cvar_log_weights(two, 0.51)), torch.tensor([0.5, 0.5], dtype=D))
    torch.testing.assert_close(_w(cvar_log_weights(two, 1.0)), torch.tensor([0.5, 0.5], dtype=D))
    three = torch.tensor([2.0, 5.0, 3.0], dtype=D)
    torch.testing.assert_close(_w(cvar_log_weights(three, 0.5)), torch.tensor([0.0, 0.5, 0.5], dtype=D))
    torch.testing.assert_close(_w(cvar_log_weights(three, 1 / 3)), torch.tensor([0.0, 1.0, 0.0], dtype=D))
    torch.testing.assert_close(_w(cvar_log_weights(three, 1.0)), torch.full((3,), 1 / 3, dtype=D))
    # leading (run) dimensions: both rows at once
    both = cvar_log_weights(torch.stack([three, three.flip(0)]), 0.5)
    torch.testing.assert_close(_w(both), torch.tensor([[0.0, 0.5, 0.5], [0.5, 0.5, 0.0]], dtype=D))


def test_cvar_ties_go_to_the_lower_group_id_and_rho_k_is_rounded():
    """L = (4, 4, 1), ρ = 1/3: one group, the tie goes to group 0 → (1, 0, 0); L = (1, 4, 4) → group 1.
    ρ = 0.1·3 (= 0.30000000000000004 in floating point) with K = 10 equal losses: ρK = 3.0000000000000004,
    but ⌈ρK⌉ = 3 groups (ids 0, 1, 2, by the tie rule), not 4."""
    torch.testing.assert_close(
        _w(cvar_log_weights(torch.tensor([4.0, 4.0, 1.0]), 1 / 3)), torch.tensor([1.0, 0.0, 0.0])
    )
    torch.testing.assert_close(
        _w(cvar_log_weights(torch.tensor([1.0, 4.0, 4.0]), 1 / 3)), torch.tensor([0.0, 1.0, 0.0])
    )
    rho = 0.1 * 3
    assert rho * 10 > 3
    w = _w(cvar_log_weights(torch.ones(10, dtype=D), rho))
    torch.testing.assert_close(w, torch.tensor([1 / 3] * 3 + [0.0] * 7, dtype=D))


def test_cvar_absent_groups_get_zero_and_do_not_count():
    """L = (2, 9, 3) with group 1 absent (its 9 is a placeholder): K' = 2 present groups.
    ρ = 0.5 → ⌈1⌉ = 1 → the worst present group, 2 → (0, 0, 1); ρ = 1 → average over the present
    groups → (½, 0, ½). No group present → all weights 0 (finite logs)."""
    losses, present = torch.tensor([2.0, 9.0, 3.0], dtype=D), torch.tensor([True, False, True])
    torch.testing.assert_close(_w(cvar_log_weights(losses, 0.5, present)), torch.tensor([0.0, 0.0, 1.0], dtype=D))
    torch.testing.assert_close(_w(cvar_log_weights(losses, 1.0, present)), torch.tensor([0.5, 0.0, 0.5], dtype=D))
    torch.testing.assert_close(
        _w(cvar_log_weights(losses, 1.0, torch.zeros(3, dtype=torch.bool))), torch.zeros(3, dtype=D)
    )
    s = WEIGHTINGS["cvar"](rho=1.0)
    la = s.update(s.initial_log_alpha(torch.tensor([3, 3, 3])), losses, present)
    torch.testing.assert_close(s.weights(la), torch.tensor([0.5, 0.0, 0.5], dtype=D))


def test_cvar_huge_losses_stay_finite():
    """IPO-scale and absurd losses: (1e300, 5000, 0), ρ = 1/3 → (1, 0, 0) with finite logs; float32 too."""
    torch.testing.assert_close(_w(cvar_log_weights(torch.tensor([1e300, 5000.0, 0.0], dtype=D), 1 / 3)), torch.tensor([1.0, 0.0, 0.0], dtype=D))  # fmt: skip
    torch.testing.assert_close(_w(cvar_log_weights(torch.tensor([3e38, 1e38]), 0.5)), torch.tensor([1.0, 0.0]))


def test_tilted_two_and_three_groups_by_hand():
    """w_g ∝ exp(t L̂_g). K = 2, L = (1, 3), t = 0.5: ∝ (e^{0.5}, e^{1.5}) → (1, e)/(1 + e) = (0.268941, 0.731059).
    t = 0: (½, ½), the group average. K = 3, L = (0, log 2, log 3): t = 1 → (1, 2, 3)/6;
    t = 2 → (1, 4, 9)/14."""
    e = math.e
    torch.testing.assert_close(_w(tilted_log_weights(torch.tensor([1.0, 3.0], dtype=D), 0.5)), torch.tensor([1 / (1 + e), e / (1 + e)], dtype=D))  # fmt: skip
    torch.testing.assert_close(_w(tilted_log_weights(torch.tensor([1.0, 3.0], dtype=D), 0.0)), torch.tensor([0.5, 0.5], dtype=D))  # fmt: skip
    three = torch.tensor([0.0, math.log(2), math.log(3)], dtype=D)
    torch.testing.assert_close(_w(tilted_log_weights(three, 1.0)), torch.tensor([1, 2, 3], dtype=D) / 6)
    torch.testing.assert_close(_w(tilted_log_weights(three, 2.0)), torch.tensor([1, 4, 9], dtype=D) / 14)
    s = WEIGHTINGS["tilted"](tilt=2.0)
    la = s.update(s.initial_log_alpha(torch.tensor([1, 1, 1])), three)
    torch.testing.assert_close(s.weights(la), torch.tensor([1, 4, 9], dtype=D) / 14)


def test_tilted_absent_groups_and_huge_losses():
    """L = (0, 7, log 3) with group 1 absent, t = 1: ∝ (1, ·, 3) → (¼, 0, ¾).
    L = (5000, 0), t = 10: (1, 0) with finite logs. L = (1e300, 0, 1e300), t = 1: (½, 0, ½).
    t = 0 with L = (1e308, −1e308): (½, ½), no 0·∞. Large t approaches the worst group."""
    present = torch.tensor([True, False, True])
    torch.testing.assert_close(_w(tilted_log_weights(torch.tensor([0.0, 7.0, math.log(3)], dtype=D), 1.0, present)), torch.tensor([0.25, 0.0, 0.75], dtype=D))  # fmt: skip
    torch.testing.assert_close(_w(tilted_log_weights(torch.tensor([5000.0, 0.0], dtype=D), 10.0)), torch.tensor([1.0, 0.0], dtype=D))  # fmt: skip
    torch.testing.assert_close(_w(tilted_log_weights(torch.tensor([1e300, 0.0, 1e300], dtype=D), 1.0)), torch.tensor([0.5, 0.0, 0.5], dtype=D))  # fmt: skip
    torch.testing.assert_close(_w(tilted_log_weights(torch.tensor([1e308, -1e308], dtype=D), 0.0)), torch.tensor([0.5, 0.5], dtype=D))  # fmt: skip
    torch.testing.assert_close(_w(tilted_log_weights(torch.tensor([1.0, 1.001], dtype=D), 1e6)), torch.tensor([0.0, 1.0], dtype=D))  # fmt: skip
    torch.testing.assert_close(_w(tilted_log_weights(torch.tensor([3e38, 0.0]), 1e3)), torch.tensor([1.0, 0.0]))
