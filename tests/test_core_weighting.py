"""core/weighting.py: the group weightings (GroupWeighting classes) against hand-worked numbers, and their settings."""

from __future__ import annotations

import math

import pytest
import torch

from grpo_lightning.core import (
    WEIGHTINGS,
    exponentiated_gradient_step,
    group_counts,
    group_loss_estimate,
)
from grpo_lightning.core.weighting import (
    CVaRWeighting,
    RobustWeighting,
    TiltedWeighting,
    UniformWeighting,
)


def test_robust_strategy_matches_the_functions():
    s = WEIGHTINGS["robust"](step_size=0.5, chi=0.6)
    la = s.initial_log_alpha(torch.tensor([10.0, 30.0]))
    torch.testing.assert_close(la.exp(), torch.tensor([0.5, 0.5], dtype=torch.float64))
    la = s.update(la, torch.tensor([1.0, 3.0]))
    e = math.e
    torch.testing.assert_close(
        s.weights(la), torch.tensor([0.2 + 0.6 / (1 + e), 0.2 + 0.6 * e / (1 + e)], dtype=torch.float64)
    )


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


def test_each_weighting_says_when_its_update_runs():
    """The training step reads the update's place in an optimizer step from the weighting: fixed weights never
    move; an adaptive weighting moves before the θ step (``alpha_order: paper``, Algorithm 1; a no-grad pre-pass
    only when the step has several micro-batches) or after it (``lagged``); a user's adaptive subclass without an
    ``alpha_order`` gets the paper's order."""
    from grpo_lightning.core.weighting import (
        CVaRWeighting,
        GroupWeighting,
        ImportanceWeighting,
        RobustWeighting,
        TiltedWeighting,
        UniformWeighting,
    )

    for fixed in (UniformWeighting(), ImportanceWeighting(), ImportanceWeighting(weights=[1.0, 2.0])):
        assert fixed.update_phase == "never" and not fixed.needs_prepass(8)
    for cls in (RobustWeighting, CVaRWeighting, TiltedWeighting):
        paper, lagged = cls(), cls(alpha_order="lagged")
        assert paper.update_phase == "before" and paper.needs_prepass(2) and not paper.needs_prepass(1)
        assert lagged.update_phase == "after" and not lagged.needs_prepass(8)

    class Custom(GroupWeighting):
        adaptive = True

    assert Custom().update_phase == "before" and Custom().needs_prepass(4)


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


# ---------------------------------------------------------------------------------------------
# Beyond the paper: the Sagawa et al. (2020) adjustment, CVaR over groups, tilted ERM over groups
# ---------------------------------------------------------------------------------------------

D = torch.float64


def test_robust_with_adjustment_two_groups_by_hand():
    """α = (½, ½), L̂ = (1, 3), N = (4, 100), C = 2, η = 0.5: the α step sees L̂ + C/√N = (2, 3.2),
    α' ∝ (e^{1}, e^{1.6}), α'_0 = 1/(1 + e^{0.6}) = 1/(1 + 1.822119) = 0.354344.
    The small group keeps more weight than without the adjustment, 1/(1 + e) = 0.268941."""
    counts = torch.tensor([4.0, 100.0])
    s = WEIGHTINGS["robust"](step_size=0.5, adjustment=2.0)
    la = s.update(s.initial_log_alpha(counts), torch.tensor([1.0, 3.0], dtype=D), train_counts=counts)
    a0 = 1.0 / (1.0 + math.exp(0.6))
    assert a0 == pytest.approx(0.354344, abs=1e-6)
    torch.testing.assert_close(s.weights(la), torch.tensor([a0, 1 - a0], dtype=D))
    with pytest.raises(ValueError, match="train_counts"):
        s.update(s.initial_log_alpha(counts), torch.tensor([1.0, 3.0], dtype=D))


def test_robust_with_zero_adjustment_is_the_paper_step():
    """C = 0 is Algorithm 1 unchanged, bit for bit (with and without the present mask)."""
    counts = torch.tensor([5.0, 7.0, 9.0])
    la = torch.log(torch.tensor([0.5, 0.3, 0.2], dtype=D))
    losses, present = torch.tensor([1.0, 0.0, 3.0], dtype=D), torch.tensor([True, False, True])
    plain = WEIGHTINGS["robust"](step_size=1.0).update(la, losses, present, train_counts=counts)
    assert torch.equal(plain, exponentiated_gradient_step(la, losses, 1.0, present))


def test_robust_adjustment_three_groups_with_an_absent_group():
    """α = (0.5, 0.3, 0.2), L̂ = (1, ·, 3), group 1 absent, N = (1, 4, 4), C = 1, η = 1:
    C/√N = (1, ½, ½), adjusted (2, ·, 3.5); groups 0 and 2 share their mass 0.7 as 0.5e² : 0.2e^{3.5},
    α'_0 = 0.7 · 0.5e²/(0.5e² + 0.2e^{3.5}) = 0.7 · 3.694528/(3.694528 + 6.623090) = 0.250656;
    group 1 keeps 0.3 (its loss was not observed)."""
    s = WEIGHTINGS["robust"](step_size=1.0, adjustment=1.0)
    la = torch.log(torch.tensor([0.5, 0.3, 0.2], dtype=D))
    new = s.update(
        la, torch.tensor([1.0, 0.0, 3.0], dtype=D), torch.tensor([True, False, True]), torch.tensor([1, 4, 4])
    )
    a0 = 0.7 * 0.5 * math.exp(2) / (0.5 * math.exp(2) + 0.2 * math.exp(3.5))
    assert a0 == pytest.approx(0.250656, abs=1e-6)
    torch.testing.assert_close(new.exp(), torch.tensor([a0, 0.3, 0.7 - a0], dtype=D))


def test_step_loss_weightings_ignore_the_previous_alpha():
    """cvar and tilted have no memory: the same losses give the same weights whatever log α was."""
    for s in (WEIGHTINGS["cvar"](rho=0.5), WEIGHTINGS["tilted"](tilt=1.0)):
        losses = torch.tensor([1.0, 2.0, 0.5], dtype=D)
        a = s.update(torch.log(torch.tensor([0.8, 0.1, 0.1], dtype=D)), losses)
        b = s.update(torch.log(torch.tensor([0.1, 0.1, 0.8], dtype=D)), losses)
        assert torch.equal(a, b) and s.adaptive


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: RobustWeighting(adjustment=-1.0), "adjustment"),
        (lambda: RobustWeighting(adjustment=float("nan")), "adjustment"),
        (lambda: RobustWeighting(adjustment=float("inf")), "adjustment"),
        (lambda: CVaRWeighting(rho=0.0), "rho"),
        (lambda: CVaRWeighting(rho=1.5), "rho"),
        (lambda: CVaRWeighting(rho=float("nan")), "rho"),
        (lambda: TiltedWeighting(tilt=-0.1), "tilt"),
        (lambda: TiltedWeighting(tilt=float("inf")), "tilt"),
        (lambda: TiltedWeighting(tilt=float("nan")), "tilt"),
    ],
)
def test_bad_new_weighting_settings(build, match):
    with pytest.raises(ValueError, match=match):
        build()


@pytest.mark.parametrize(
    ("build", "setting"),
    [
        (lambda: RobustWeighting(chi=1.5), "model.weighting.chi"),
        (lambda: RobustWeighting(step_size=-1.0), "model.weighting.step_size"),
        (lambda: RobustWeighting(alpha_order="later"), "model.weighting.alpha_order"),
        (lambda: CVaRWeighting(rho=0.0), "model.weighting.rho"),
        (lambda: TiltedWeighting(tilt=-1.0), "model.weighting.tilt"),
        (lambda: TiltedWeighting(estimator="median"), "model.weighting.estimator"),
    ],
)
def test_each_weighting_checks_its_own_settings_by_name(build, setting):
    with pytest.raises(ValueError, match=setting.replace(".", r"\.")):
        build()


@pytest.mark.parametrize(
    ("build", "setting"),
    [
        (lambda: CVaRWeighting(adjustment=1.0), "adjustment"),
        (lambda: RobustWeighting(rho=0.5), "rho"),
        (lambda: CVaRWeighting(tilt=1.0), "tilt"),
        (lambda: UniformWeighting(estimator="mean"), "estimator"),
    ],
)
def test_a_weighting_takes_only_its_own_settings(build, setting):
    """A setting of another weighting is refused, naming it (the parser does the same for a config)."""
    with pytest.raises(TypeError, match=setting):
        build()


def test_the_new_settings_are_kept():
    assert RobustWeighting(adjustment=2.0).adjustment == 2.0
    assert CVaRWeighting(rho=0.25).rho == 0.25
    assert TiltedWeighting(tilt=3.0).tilt == 3.0
    assert CVaRWeighting().rho == 0.5  # the class default


def test_chi_scaled_step_hand_numbers():
    """``chi_scaled_step`` (the authors' bandit code): η_α χ in the exponent. K = 2, α = (½, ½), L̂ = (1, 0), η_α = 1,
    χ = 0.5: α₀ = e^{0.5}/(e^{0.5} + 1) = 0.6224593 (without it: e/(e + 1) = 0.7310586); w = 0.25 + 0.5 α."""
    log_alpha = torch.log(torch.tensor([0.5, 0.5], dtype=torch.float64))
    losses = torch.tensor([1.0, 0.0], dtype=torch.float64)
    for scaled, a0 in ((True, 0.6224593312), (False, 0.7310585786)):
        weighting = RobustWeighting(step_size=1.0, chi=0.5, estimator="scaled_sum", chi_scaled_step=scaled)
        new = weighting.update(log_alpha, losses)
        assert new.exp()[0].item() == pytest.approx(a0, abs=1e-9)
        assert weighting.weights(new)[0].item() == pytest.approx(0.25 + 0.5 * a0, abs=1e-9)
    assert math.isclose(0.6224593312, math.exp(0.5) / (math.exp(0.5) + 1), rel_tol=1e-9)
