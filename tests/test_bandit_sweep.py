"""Tests of the synthetic group linear bandit (``grpo_lightning.bandit``) and the ``sum`` estimator."""

from __future__ import annotations

import csv
import math

import pytest
import torch

from grpo_lightning.bandit.cli import main
from grpo_lightning.bandit.env import (
    NUM_ACTIONS,
    DataConfig,
    feature_map,
    make_data,
    make_seed_data,
    reward_error,
    true_rewards,
)
from grpo_lightning.bandit.methods import METHOD_SETTINGS, RunSpec
from grpo_lightning.bandit.policy import LogLinearPolicy
from grpo_lightning.bandit.report import CSV_COLUMNS
from grpo_lightning.bandit.trainer import run_family
from grpo_lightning.core import group_loss_estimate, group_sums, weighted_objective

D = torch.float64
SQ3 = math.sqrt(3.0)


def test_feature_map_hand_values():
    """x = (1/3, 1/2): cos πx₁ = 1/2, sin πx₁ = √3/2, cos πx₂ = 0, sin πx₂ = 1.

    a = 0 → u = 1; a = 4 → u = 4/8 + 1 = 3/2.
    group 0, a = 0: (1·½, (√3/2)/1, 1·0, 1/1)            = (½, √3/2, 0, 1)
    group 0, a = 4: (3/2·½, (√3/2)/(3/2), 0, 1/(3/2))    = (¾, √3/3, 0, ⅔)
    group 1 swapped, a = 4: pairs exchanged              = (√3/3, ¾, ⅔, 0)
    group 1 flipped, a = 4: (u sin, cos/u, u sin, cos/u) = (3√3/4, ⅓, 3/2, 0)
    group 1 same: equal to group 0.
    True reward of group 0, a = 0, θ*₀ = (1, 3, 1, 3): ½ + 3√3/2 + 0 + 3 = 3.5 + 3√3/2;
    of group 1 (swapped), a = 4, θ*₁ = (3, 1, 3, 1): √3 + ¾ + 2 + 0.
    """
    x = torch.tensor([1 / 3, 1 / 2], dtype=D)
    g0, g1 = torch.tensor(0), torch.tensor(1)
    phi0 = feature_map(x, g0, "swapped")
    assert phi0.shape == (NUM_ACTIONS, 4)
    torch.testing.assert_close(phi0[0], torch.tensor([0.5, SQ3 / 2, 0.0, 1.0], dtype=D))
    torch.testing.assert_close(phi0[4], torch.tensor([0.75, SQ3 / 3, 0.0, 2 / 3], dtype=D))
    torch.testing.assert_close(feature_map(x, g1, "swapped")[4], torch.tensor([SQ3 / 3, 0.75, 2 / 3, 0.0], dtype=D))
    torch.testing.assert_close(feature_map(x, g1, "flipped")[4], torch.tensor([3 * SQ3 / 4, 1 / 3, 1.5, 0.0], dtype=D))
    torch.testing.assert_close(feature_map(x, g1, "same"), phi0)
    torch.testing.assert_close(true_rewards(phi0, g0)[0], torch.tensor(3.5 + 1.5 * SQ3, dtype=D))
    torch.testing.assert_close(
        true_rewards(feature_map(x, g1, "swapped"), g1)[4], torch.tensor(SQ3 + 0.75 + 2.0, dtype=D)
    )
    # batched: (2, 2) states with per-element groups give the same rows
    xs = torch.stack([x, x]).unsqueeze(0)
    gs = torch.tensor([[0, 1]])
    batched = feature_map(xs, gs, "swapped")
    assert batched.shape == (1, 2, NUM_ACTIONS, 4)
    torch.testing.assert_close(batched[0, 1], feature_map(x, g1, "swapped"))


@pytest.mark.parametrize("uneven", [False, True])
def test_data_generation(uneven):
    cfg = DataConfig(weight=0.2, uneven=uneven, feature_type="swapped")
    data = make_data([2021, 2022, 2023], cfg)
    train, val = data["train"], data["val"]
    assert train["features"].shape == (3, 300, NUM_ACTIONS, 4)
    assert train["chosen"].shape == train["rejected"].shape == train["group"].shape == (3, 300)
    assert val["features"].shape == (3, 1000, NUM_ACTIONS, 4)
    assert data["test_states"].shape == (3, 1000, 2)
    assert data["theta0"].shape == (3, 4)
    assert ((data["theta0"] >= 0) & (data["theta0"] <= 5)).all()
    assert (train["group"] == 0).sum(-1).tolist() == [60, 60, 60]
    assert (val["group"] == 0).sum(-1).tolist() == [500, 500, 500]
    for split in (train, val):
        r = split["rewards"]
        r_w = r.gather(-1, split["chosen"].unsqueeze(-1)).squeeze(-1)
        r_l = r.gather(-1, split["rejected"].unsqueeze(-1)).squeeze(-1)
        assert (r_w > r_l).all()
        assert (split["chosen"] != split["rejected"]).all()
        torch.testing.assert_close(r, true_rewards(split["features"], split["group"]))
        gap = (split["chosen"] - split["rejected"]).abs()
        if uneven:
            assert (gap[split["group"] == 0] == 1).all()
            assert (gap[split["group"] == 1] == 4).all()
        else:
            assert gap.unique().numel() > 2  # every offset is possible
    # different seeds, different data; same seed, same data
    assert not torch.equal(train["states"][0], train["states"][1])
    again = make_seed_data(2022, cfg)
    assert torch.equal(again["train"]["states"], train["states"][1])


def test_reward_error_of_true_parameter_and_of_bad_one():
    """θ = θ*₀ is greedy-optimal for group 0 (error 0); θ = −θ*₀ picks bad actions (error > 0)."""
    states = torch.rand(1, 200, 2, generator=torch.Generator().manual_seed(0), dtype=D)
    good = reward_error(torch.tensor([[1.0, 3.0, 1.0, 3.0]], dtype=D), states, "same")
    assert good.shape == (1, 2)
    assert good[0, 0].abs() < 1e-12
    bad = reward_error(torch.tensor([[-1.0, -3.0, -1.0, -3.0]], dtype=D), states, "same")
    assert (bad > 0.05).all()


def test_policy_interface():
    torch.manual_seed(0)
    policy = LogLinearPolicy(torch.tensor([0.5, -1.0, 2.0, 0.0], dtype=D))
    feats = torch.randn(5, NUM_ACTIONS, 4, dtype=D)
    batch = {
        "features": feats,
        "chosen": torch.tensor([0, 1, 2, 3, 7]),
        "rejected": torch.tensor([1, 2, 3, 4, 0]),
        "group": torch.tensor([0, 1, 0, 1, 0]),
    }
    chosen, rejected = policy.pair_logps(batch)
    assert chosen.shape == rejected.shape == (5,)
    logits = feats @ policy.theta.detach()
    expected = torch.log_softmax(logits, -1)
    torch.testing.assert_close(chosen.detach(), expected[torch.arange(5), batch["chosen"]])
    torch.testing.assert_close(rejected.detach(), expected[torch.arange(5), batch["rejected"]])
    ref_c, ref_r = policy.reference_pair_logps(batch)
    torch.testing.assert_close(ref_c, torch.full((5,), -math.log(8), dtype=D))
    torch.testing.assert_close(ref_r, ref_c)
    # pair_scores differ from pair_logps by the same log Z for both actions: equal margins
    idx = torch.arange(5)
    sc, sr = policy.pair_scores(feats[idx, batch["chosen"]], feats[idx, batch["rejected"]])
    torch.testing.assert_close((sc - sr).detach(), (chosen - rejected).detach())
    # gradient flows to theta
    (chosen - rejected).sum().backward()
    assert policy.theta.grad is not None and policy.theta.grad.abs().sum() > 0


def _tiny_data():
    """3 pairs, chosen action 0, rejected action 1, φ(rejected) = 0 so Δφ = φ(chosen):
    pair 1 (group 0) Δφ = e₁, pair 2 (group 0) Δφ = e₂, pair 3 (group 1) Δφ = −e₁; θ⁰ = e₁."""
    feats = torch.zeros(1, 3, NUM_ACTIONS, 4, dtype=D)
    feats[0, 0, 0, 0] = 1.0
    feats[0, 1, 0, 1] = 1.0
    feats[0, 2, 0, 0] = -1.0
    split = {
        "features": feats,
        "chosen": torch.zeros(1, 3, dtype=torch.long),
        "rejected": torch.ones(1, 3, dtype=torch.long),
        "group": torch.tensor([[0, 0, 1]]),
    }
    return {
        "train": split,
        "val": split,
        "test_states": torch.full((1, 4, 2), 0.25, dtype=D),
        "theta0": torch.tensor([[1.0, 0.0, 0.0, 0.0]], dtype=D),
    }


def test_one_gr_dpo_step_by_hand():
    """One full-batch GR-DPO step, β = 1, η_α = 1, η_θ = 0.1, χ = 1.

    Margins h = θ⁰ᵀΔφ = (1, 0, −1); losses ℓ = log(1 + e^{−h}) = (log(1+e⁻¹), log 2, log(1+e)).
    Group means L₀ = (ℓ₁ + ℓ₂)/2, L₁ = ℓ₃. Mirror ascent from α⁰ = (½, ½):
    α¹₀ = e^{L₀}/(e^{L₀} + e^{L₁}) = 1/(1 + e^{L₁ − L₀}), α¹₁ = 1 − α¹₀.
    Objective α¹₀ L₀ + α¹₁ L₁, ∇ℓᵢ = −σ(−hᵢ) Δφᵢ, so
    ∇ = α¹₀/2 · (−σ(−1) e₁ − σ(0) e₂) + α¹₁ · (−σ(1) · (−e₁))
      = (−σ(−1) α¹₀/2 + σ(1) α¹₁, −α¹₀/4, 0, 0)  and  θ¹ = θ⁰ − 0.1 ∇.
    """
    res = run_family(
        _tiny_data(), [0], [RunSpec("gr_dpo")], loss_type="dpo", beta=1.0, lr=0.1, alpha_step=1.0, steps=1,
        feature_type="same",
    )  # fmt: skip

    def sig(z):
        return 1.0 / (1.0 + math.exp(-z))

    l1, l2, l3 = math.log1p(math.exp(-1)), math.log(2), math.log1p(math.e)
    big_l0, big_l1 = (l1 + l2) / 2, l3
    a0 = 1.0 / (1.0 + math.exp(big_l1 - big_l0))
    a1 = 1.0 - a0
    grad = [-sig(-1) * a0 / 2 + sig(1) * a1, -a0 / 4, 0.0, 0.0]
    theta1 = torch.tensor([1.0 - 0.1 * grad[0], -0.1 * grad[1], 0.0, 0.0], dtype=D)
    torch.testing.assert_close(res.weights[0], torch.tensor([a0, a1], dtype=D))
    torch.testing.assert_close(res.theta[0], theta1)
    assert abs(a0 - 0.3079) < 1e-3  # the numbers, for the reader: α¹ ≈ (0.308, 0.692)
    # the validation losses are the group-mean DPO losses at θ¹ (val = train here)
    h = torch.tensor([theta1[0], theta1[1], -theta1[0]])
    ell = torch.nn.functional.softplus(-h).to(D)
    torch.testing.assert_close(res.val_group_loss[0], torch.stack([(ell[0] + ell[1]) / 2, ell[2]]))


def test_one_step_of_the_objectives_beyond_the_paper_by_hand():
    """The same first step as above (β = 1, η_α = 1, η_θ = 0.1, L⁰ = ((ℓ₁ + ℓ₂)/2, ℓ₃) at θ⁰, N = (2, 1))
    for the other objectives, with their fixed settings (:data:`METHOD_SETTINGS`):

    * ``cvar_dpo`` (ρ = 0.5, K = 2: the worst group): L⁰₁ = 1.313 > L⁰₀ = 0.503, so w = (0, 1) and
      ∇ = ∇ℓ₃ = −σ(1)·(−e₁) = (σ(1), 0, 0, 0).
    * ``tilted_dpo`` (t = 10): w₀ = 1/(1 + e^{10(L⁰₁ − L⁰₀)}).
    * ``gr_dpo_adj`` (C = 1): the α step sees L⁰ + (1/√2, 1), so α¹₀ = 1/(1 + e^{L⁰₁ + 1 − L⁰₀ − 1/√2}).
    ∇ for given w is (−σ(−1) w₀/2 + σ(1) w₁, −w₀/4, 0, 0), as in the GR-DPO step."""
    specs = [RunSpec("cvar_dpo"), RunSpec("tilted_dpo"), RunSpec("gr_dpo_adj")]
    res = run_family(
        _tiny_data(), [0], specs, loss_type="dpo", beta=1.0, lr=0.1, alpha_step=1.0, steps=1, feature_type="same"
    )
    assert METHOD_SETTINGS["cvar_dpo"] == {"rho": 0.5} and METHOD_SETTINGS["tilted_dpo"] == {"tilt": 10.0}
    assert METHOD_SETTINGS["gr_dpo_adj"] == {"adjustment": 1.0}

    def sig(z):
        return 1.0 / (1.0 + math.exp(-z))

    l1, l2, l3 = math.log1p(math.exp(-1)), math.log(2), math.log1p(math.e)
    big_l0, big_l1 = (l1 + l2) / 2, l3
    expected_w0 = [0.0, 1.0 / (1.0 + math.exp(10 * (big_l1 - big_l0))), 1.0 / (1.0 + math.exp(big_l1 + 1 - big_l0 - 2**-0.5))]  # fmt: skip
    for i, w0 in enumerate(expected_w0):
        w1 = 1.0 - w0
        torch.testing.assert_close(res.weights[i], torch.tensor([w0, w1], dtype=D))
        grad = [-sig(-1) * w0 / 2 + sig(1) * w1, -w0 / 4]
        torch.testing.assert_close(res.theta[i], torch.tensor([1.0 - 0.1 * grad[0], -0.1 * grad[1], 0.0, 0.0], dtype=D))
    assert res.weights[1, 0] < 1e-3 and 0.24 < res.weights[2, 0] < 0.26  # ≈ 3.0e-4 and ≈ 0.249 (GR: 0.308)


def test_non_robust_methods_keep_their_weights():
    res = run_family(
        _tiny_data(), [0], [RunSpec("dpo"), RunSpec("is_dpo")], loss_type="dpo", beta=1.0, lr=0.1,
        alpha_step=1.0, steps=3, feature_type="same",
    )  # fmt: skip
    torch.testing.assert_close(res.weights[0], torch.tensor([2 / 3, 1 / 3], dtype=D))  # N_g / N
    torch.testing.assert_close(res.weights[1], torch.tensor([0.5, 0.5], dtype=D))


def test_closed_form_ipo_minimises_the_weighted_objective():
    """After one α step, θ solves min_θ Σ_g w_g L̂_g exactly: the core's objective has zero
    gradient there, for both the ``objective`` (mean) and the ``paper`` (sum) per-pair weights."""
    data = make_data([2021], DataConfig(weight=0.2, uneven=True))
    for mode, estimator in (("objective", "mean"), ("paper", "sum")):
        res = run_family(
            data, [2021], [RunSpec("gr_ipo")], loss_type="ipo", beta=0.1, alpha_step=0.01, steps=1,
            feature_type="swapped", closed_form=True, ipo_weighting=mode,
        )  # fmt: skip
        tr = data["train"]
        idx = torch.arange(300)
        delta = tr["features"][0, idx, tr["chosen"][0]] - tr["features"][0, idx, tr["rejected"][0]]
        theta = res.theta[0].clone().requires_grad_(True)
        losses = (delta @ theta - 5.0) ** 2
        counts = torch.bincount(tr["group"][0], minlength=2).to(D)
        sums = group_sums(losses, tr["group"][0], 2)
        obj = weighted_objective(sums, counts, res.weights[0], estimator=estimator, train_counts=counts, total=300.0)
        (g,) = torch.autograd.grad(obj, theta)
        assert g.abs().max() < 1e-8 * max(1.0, obj.item()), mode
    # the two weightings differ when the groups are imbalanced
    res_obj = run_family(data, [2021], [RunSpec("gr_ipo")], loss_type="ipo", beta=0.1, alpha_step=0.01, steps=1, feature_type="swapped", closed_form=True)  # fmt: skip
    assert not torch.allclose(res_obj.theta, res.theta)


def test_sum_estimator_by_hand():
    """``sum``: L̂_g = S_g. With losses (1, 2) in group 0 and (3, 4, 5) in group 1, S = (3, 12);
    Σ_g w_g S_g with w = (0.25, 0.75) is 0.75 + 9 = 9.75, and ∂/∂ℓᵢ = w_{gᵢ} (not w_g / n_g)."""
    losses = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0], dtype=D, requires_grad=True)
    groups = torch.tensor([0, 0, 1, 1, 1])
    counts = torch.tensor([2.0, 3.0], dtype=D)
    sums = group_sums(losses, groups, 2)
    est = group_loss_estimate(sums, counts, estimator="sum", train_counts=counts, total=5.0)
    torch.testing.assert_close(est, torch.tensor([3.0, 12.0], dtype=D))
    w = torch.tensor([0.25, 0.75], dtype=D)
    obj = weighted_objective(sums, counts, w, estimator="sum", train_counts=counts, total=5.0)
    assert obj.item() == pytest.approx(9.75)
    (g,) = torch.autograd.grad(obj, losses)
    torch.testing.assert_close(g, torch.tensor([0.25, 0.25, 0.75, 0.75, 0.75], dtype=D))


@pytest.mark.parametrize("family", ["dpo", "ipo"])
def test_vectorised_over_seeds_equals_per_seed_loop(family):
    seeds = [2021, 2022, 2023]
    data = make_data(seeds, DataConfig(weight=0.2, uneven=True))
    if family == "dpo":
        specs = [RunSpec("dpo"), RunSpec("is_dpo"), RunSpec("gr_dpo"), RunSpec("gr_dpo", chi=0.5)]
        kw = {"loss_type": "dpo", "beta": 1.0, "lr": 0.9, "alpha_step": 0.5, "steps": 30}
    else:
        specs = [RunSpec("ipo"), RunSpec("is_ipo"), RunSpec("gr_ipo")]
        kw = {"loss_type": "ipo", "beta": 0.1, "alpha_step": 0.01, "steps": 5, "closed_form": True}
    batched = run_family(data, seeds, specs, feature_type="swapped", **kw)
    for j, seed in enumerate(seeds):
        one = make_data([seed], DataConfig(weight=0.2, uneven=True))
        single = run_family(one, [seed], specs, feature_type="swapped", **kw)
        for i in range(len(specs)):
            r = batched.run_index(i, j)
            for name in ("theta", "weights", "val_group_loss", "reward_err"):
                torch.testing.assert_close(getattr(batched, name)[r], getattr(single, name)[i], rtol=1e-9, atol=1e-10)
    # the robust run moved its weights towards the worse group; the uniform one did not move
    assert not torch.allclose(batched.weights[batched.run_index(len(specs) - 1 if family == "ipo" else 2, 0)], batched.weights[batched.run_index(1, 0)])  # fmt: skip


def test_cli_writes_results(tmp_path):
    out = tmp_path / "out"
    main(
        ["--scenario", "uneven_imbalanced", "--seeds", "2", "--max-steps", "5", "--ipo-steps", "3",
         "--eval-every", "2", "--workers", "1", "--no-compile", "--chi", "0,0.5,1", "--out", str(out)]
    )  # fmt: skip
    with (out / "results.csv").open() as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == CSV_COLUMNS
        rows = list(reader)
    paper = {"dpo", "is_dpo", "gr_dpo", "ipo", "is_ipo", "gr_ipo"}
    beyond = {"gr_dpo_adj", "cvar_dpo", "tilted_dpo", "gr_ipo_adj", "cvar_ipo", "tilted_ipo"}
    assert len(rows) == 12 * 2
    assert {r["method"] for r in rows} == paper | beyond
    assert {r["seed"] for r in rows} == {"2021", "2022"}
    for r in rows:
        assert float(r["max_val_group_loss"]) == pytest.approx(max(float(r["val_group_loss_0"]), float(r["val_group_loss_1"])))  # fmt: skip
        assert float(r["weight_0"]) + float(r["weight_1"]) == pytest.approx(1.0)
        assert float(r["avg_val_group_loss"]) == pytest.approx((float(r["val_group_loss_0"]) + float(r["val_group_loss_1"])) / 2)  # fmt: skip
    with (out / "chi_results.csv").open() as f:
        chi_rows = list(csv.DictReader(f))
    assert [float(r["chi"]) for r in chi_rows] == [0.0, 0.5, 1.0]
    for r in chi_rows:
        assert float(r["worst_val_loss_mean"]) >= float(r["avg_val_loss_mean"])
    for png in ("val_loss_uneven_imbalanced.png", "final_metrics.png", "chi_tradeoff.png"):
        assert (out / png).stat().st_size > 1000


@pytest.mark.slow
def test_compiled_step_equals_eager():
    """The CLI's default ``torch.compile`` path gives the eager results (up to rounding)."""
    seeds = [2021, 2022]
    data = make_data(seeds, DataConfig(weight=0.2, uneven=False))
    kw = {"loss_type": "dpo", "beta": 1.0, "lr": 0.5, "alpha_step": 0.9, "steps": 20, "feature_type": "swapped"}
    specs = [RunSpec("dpo"), RunSpec("is_dpo"), RunSpec("gr_dpo")]
    eager = run_family(data, seeds, specs, **kw)
    compiled = run_family(data, seeds, specs, compile=True, **kw)
    torch.testing.assert_close(compiled.theta, eager.theta, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(compiled.weights, eager.weights, rtol=1e-10, atol=1e-12)


def test_chi_scaled_alpha_step_as_the_authors_code():
    """``chi_scaled_alpha_step``: α ← α ⊙ exp(η_α χ L̂)/Z (rsshyam/GRPO-bandits). The data of the hand-worked GR-DPO
    step above, χ = 0.5, η_α = 1: α¹₀ = 1/(1 + e^{0.5 (L₁ − L₀)}) instead of 1/(1 + e^{L₁ − L₀}), and the weights
    w = (1 − χ)/2 + χ α¹."""
    l1, l2, l3 = math.log1p(math.exp(-1)), math.log(2), math.log1p(math.e)
    big_l0, big_l1 = (l1 + l2) / 2, l3
    for scaled, eta in ((False, 1.0), (True, 0.5)):
        res = run_family(
            _tiny_data(), [0], [RunSpec("gr_dpo", chi=0.5)], loss_type="dpo", beta=1.0, lr=0.1, alpha_step=1.0,
            steps=1, feature_type="same", chi_scaled_alpha_step=scaled,
        )  # fmt: skip
        a0 = 1.0 / (1.0 + math.exp(eta * (big_l1 - big_l0)))
        torch.testing.assert_close(res.log_alpha[0].exp(), torch.tensor([a0, 1 - a0], dtype=D))
        torch.testing.assert_close(res.weights[0], torch.tensor([0.25 + 0.5 * a0, 0.25 + 0.5 * (1 - a0)], dtype=D))


def test_code_ipo_weighting_divides_the_alpha_loss_by_the_count_twice():
    """``--ipo-weighting code``: the authors' closed-form GR-IPO steps α with S_g / N_g² (their code divides the
    group loss by the group count twice), ``paper`` with the mean S_g / N_g; both weight θ's pairs by w_g."""
    data = make_data([2021], DataConfig(weight=0.2, uneven=True))
    tr = data["train"]
    idx = torch.arange(tr["group"].shape[1])
    delta = tr["features"][0, idx, tr["chosen"][0]] - tr["features"][0, idx, tr["rejected"][0]]
    losses = (delta @ data["theta0"][0] - 5.0) ** 2  # IPO at θ⁰, β = 0.1: (h − 1/(2β))²
    counts = torch.bincount(tr["group"][0], minlength=2).to(D)
    sums = group_sums(losses, tr["group"][0], 2)
    for mode, divisor in (("paper", counts), ("code", counts**2)):
        res = run_family(
            data, [2021], [RunSpec("gr_ipo")], loss_type="ipo", beta=0.1, alpha_step=0.01, steps=1,
            feature_type="swapped", closed_form=True, ipo_weighting=mode,
        )  # fmt: skip
        expected = torch.log_softmax(torch.log(torch.tensor([0.5, 0.5], dtype=D)) + 0.01 * sums / divisor, dim=-1)
        torch.testing.assert_close(res.log_alpha[0], expected)
