"""Vectorised reproduction of the synthetic experiments of Ramesh et al. (2024), §5.1.

Every (method, χ, seed) combination is one *run*; all runs of a scenario that share a loss
family are trained at once, with a leading run dimension ``R`` on θ, α and the data. The per-pair
losses come from :func:`grpo_lightning.core.preference_loss`, the group statistics from
:mod:`grpo_lightning.core.groups`, and the group weights from the core's weighting functions, so
the sweep exercises the same code as the LLM trainer.

DPO family (``dpo``, ``is_dpo``, ``gr_dpo``): full-batch gradient descent on θ. Each step
(Algorithm 1): per-group mean losses L̂_g at θ_t; α ← exponentiated-gradient step with η_α
(robust runs only); w = (1 − χ)/K + χα; θ ← θ − η_θ ∇_θ Σ_g w_g L̂_g.

IPO family (``ipo``, ``is_ipo``, ``gr_ipo``): at each α step the same α update, then θ is the
closed-form minimiser of the weighted least-squares objective Σ_i p_i (θᵀΔφ_i − 1/(2β))², with
Δφ_i = φ(x_i, y_w) − φ(x_i, y_l) and per-pair weight p_i = ∂(Σ_g w_g L̂_g)/∂ℓ_i: w_g / N_g with
the ``objective`` weighting (the group-mean estimator), w_g with ``paper`` (the ``sum``
estimator, as in the paper's code), i.e. θ = (ΔΦᵀPΔΦ)⁻¹ ΔΦᵀP1 / (2β).
"""

from __future__ import annotations

import argparse
import csv
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from grpo_lightning.bandit.env import DTYPE, NUM_GROUPS, DataConfig, make_data, reward_error
from grpo_lightning.bandit.policy import LogLinearPolicy
from grpo_lightning.core import (
    WEIGHTINGS,
    exponentiated_gradient_step,
    group_counts,
    group_loss_estimate,
    group_means,
    group_sums,
    mix_with_uniform,
    preference_loss,
    weighted_objective,
)

log = logging.getLogger(__name__)

FIRST_SEED = 2021


@dataclass(frozen=True)
class Scenario:
    """A data setting and the paper's optimisation settings for it."""

    weight: float
    uneven: bool
    lr: float  # η_θ (DPO family)
    beta: float  # β (DPO family)
    alpha_step: float  # η_α (GR-DPO)
    steps: int  # full-batch gradient steps (DPO family)
    ipo_beta: float = 0.1
    ipo_alpha_step: float = 0.01
    ipo_steps: int = 100


SCENARIOS: dict[str, Scenario] = {
    "even_imbalanced": Scenario(weight=0.2, uneven=False, lr=0.5, beta=1.0, alpha_step=0.9, steps=10_000),
    "uneven_balanced": Scenario(weight=0.5, uneven=True, lr=5.0, beta=2.0, alpha_step=0.01, steps=5_000),
    "uneven_imbalanced": Scenario(weight=0.2, uneven=True, lr=0.9, beta=1.0, alpha_step=0.5, steps=20_000),
}

#: method name → (loss type, weighting strategy of :data:`grpo_lightning.core.WEIGHTINGS`)
METHODS: dict[str, tuple[str, str]] = {
    "dpo": ("dpo", "uniform"),
    "is_dpo": ("dpo", "importance"),
    "gr_dpo": ("dpo", "robust"),
    "ipo": ("ipo", "uniform"),
    "is_ipo": ("ipo", "importance"),
    "gr_ipo": ("ipo", "robust"),
}

#: θ-objective estimator of the robust closed-form IPO runs for each ``--ipo-weighting``.
IPO_WEIGHTING_ESTIMATOR = {"objective": "mean", "paper": "sum"}


@dataclass(frozen=True)
class RunSpec:
    """One run's method and χ (χ only matters for robust methods)."""

    method: str
    chi: float = 1.0


@dataclass
class FamilyResult:
    """Results of a batch of runs, ``R = len(specs) · S`` of them, spec-major."""

    specs: list[RunSpec]
    seeds: list[int]
    theta: torch.Tensor  # (R, d)
    log_alpha: torch.Tensor  # (R, K)
    weights: torch.Tensor  # (R, K)
    val_group_loss: torch.Tensor  # (R, K)
    reward_err: torch.Tensor  # (R, K)
    history_steps: list[int] = field(default_factory=list)
    history_max_val: torch.Tensor | None = None  # (T, R)

    def run_index(self, spec_idx: int, seed_idx: int) -> int:
        return spec_idx * len(self.seeds) + seed_idx


def _repeat_runs(t: torch.Tensor, m: int) -> torch.Tensor:
    """``(S, ...)`` → ``(m·S, ...)``, the seed block repeated for each of ``m`` specs."""
    return t.unsqueeze(0).expand(m, *t.shape).reshape(m * t.shape[0], *t.shape[1:])


def _flat_group_ids(groups: torch.Tensor) -> torch.Tensor:
    """``(R, B)`` group ids → ids into ``R·K`` (run r, group g) cells, flattened."""
    runs = torch.arange(groups.shape[0], device=groups.device).unsqueeze(-1)
    return (groups + NUM_GROUPS * runs).reshape(-1)


class _Pairs:
    """A split's pairs for ``R`` runs plus the flat ids used to take group sums per run."""

    def __init__(self, split: dict[str, torch.Tensor], m: int) -> None:
        self.batch = {k: _repeat_runs(split[k], m) for k in ("features", "chosen", "rejected", "group")}
        self.runs, self.size = self.batch["group"].shape
        feats, d = self.batch["features"], self.batch["features"].shape[-1]
        self.chosen_features, self.rejected_features = (
            feats.gather(-2, self.batch[k][..., None, None].expand(-1, -1, 1, d)).squeeze(-2)
            for k in ("chosen", "rejected")
        )
        self.flat_ids = _flat_group_ids(self.batch["group"])
        self.counts = group_counts(self.flat_ids, self.runs * NUM_GROUPS).to(DTYPE).view(self.runs, NUM_GROUPS)

    def group_loss_sums(self, policy: LogLinearPolicy, loss_type: str, beta: float) -> torch.Tensor:
        """Σ of per-pair losses of each (run, group), ``(R, K)``; differentiable in θ.

        Uses :meth:`LogLinearPolicy.pair_scores` (log-probs up to the pair's common normaliser)
        and no reference (the uniform reference is constant): h is the same as with
        ``pair_logps`` and ``reference_pair_logps``, at a fraction of the cost.
        """
        chosen, rejected = policy.pair_scores(self.chosen_features, self.rejected_features)
        losses, _, _ = preference_loss(chosen, rejected, None, None, loss_type=loss_type, beta=beta)
        sums = group_sums(losses.reshape(-1), self.flat_ids, self.runs * NUM_GROUPS)
        return sums.view(self.runs, NUM_GROUPS)

    def group_mean_losses(self, policy: LogLinearPolicy, loss_type: str, beta: float) -> torch.Tensor:
        return group_means(self.group_loss_sums(policy, loss_type, beta), self.counts)


def _run_setup(
    specs: list[RunSpec], num_seeds: int, train_counts: torch.Tensor, *, alpha_step: float, robust_estimator
):
    """Per-run initial log α, η_α, χ and θ-objective estimator, from the core's weightings."""
    log_alpha, steps, chis, estimators = [], [], [], []
    for spec in specs:
        _, strategy = METHODS[spec.method]
        kwargs = {"step_size": alpha_step, "chi": spec.chi} if strategy == "robust" else {}
        if strategy == "robust":
            kwargs["estimator"] = robust_estimator
        weighting = WEIGHTINGS[strategy](**kwargs)
        init = weighting.initial_log_alpha(train_counts)
        for _ in range(num_seeds):
            log_alpha.append(init)
            steps.append(weighting.step_size if weighting.adaptive else 0.0)
            chis.append(spec.chi if strategy == "robust" else 1.0)
            estimators.append(weighting.estimator)
    return (
        torch.stack(log_alpha).to(DTYPE),
        torch.tensor(steps, dtype=DTYPE).unsqueeze(-1),
        torch.tensor(chis, dtype=DTYPE),
        estimators,
    )


def _mixed_weights(log_alpha: torch.Tensor, chis: torch.Tensor) -> torch.Tensor:
    """w = (1 − χ)/K + χα per run, ``(R, K)``, via the core's :func:`mix_with_uniform`."""
    return torch.vmap(mix_with_uniform)(log_alpha.exp(), chis)


def _estimator_masks(estimators: list[str]) -> dict[str, torch.Tensor]:
    return {e: torch.tensor([x == e for x in estimators], dtype=DTYPE).unsqueeze(-1) for e in dict.fromkeys(estimators)}


def run_family(
    data: dict,
    seeds: list[int],
    specs: list[RunSpec],
    *,
    loss_type: str,
    beta: float,
    alpha_step: float,
    steps: int,
    feature_type: str,
    lr: float = 0.0,
    closed_form: bool = False,
    ipo_weighting: str = "objective",
    eval_every: int = 100,
    compile: bool = False,
) -> FamilyResult:
    """Train ``len(specs) × S`` runs at once on ``data`` (from :func:`~.env.make_data`).

    Args:
        loss_type: ``dpo`` or ``ipo`` (the per-pair loss, also used for validation).
        closed_form: IPO's closed-form weighted least squares at each α step instead of a
            gradient step on θ (``lr`` is then unused).
        ipo_weighting: ``objective`` or ``paper``, see the module docstring.
        eval_every: record the worst-group validation loss every this many steps (and at the end).
        compile: ``torch.compile`` the step's forward (gradient runs only). It fuses the few
            dozen small element-wise kernels of a step, several times faster on CPU after a
            one-off compilation; falls back to eager if compilation fails.
    """
    m, num_seeds = len(specs), len(seeds)
    train, val = _Pairs(data["train"], m), _Pairs(data["val"], m)
    train_counts = train.counts[0]
    total = float(train.size)
    robust_estimator = IPO_WEIGHTING_ESTIMATOR[ipo_weighting] if closed_form else "mean"
    log_alpha, step_sizes, chis, estimators = _run_setup(
        specs, num_seeds, train_counts, alpha_step=alpha_step, robust_estimator=robust_estimator
    )
    masks = _estimator_masks(estimators)
    policy = LogLinearPolicy(_repeat_runs(data["theta0"], m))
    est_kwargs = {"train_counts": train_counts, "total": total}
    if closed_form:
        delta = train.chosen_features - train.rejected_features  # (R, N, d)
        # per-(run, group) multiplier of a pair's loss in Σ_g w_g L̂_g: the estimate of unit sums
        unit = torch.ones_like(train.counts)
        factor = sum(
            mask * group_loss_estimate(unit, train.counts, estimator=e, **est_kwargs) for e, mask in masks.items()
        )

    history_steps: list[int] = []
    history: list[torch.Tensor] = []

    def record(step: int) -> None:
        with torch.no_grad():
            history.append(val.group_mean_losses(policy, loss_type, beta).max(-1).values)
        history_steps.append(step)

    def forward(policy: LogLinearPolicy, log_alpha: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Algorithm 1 up to the θ objective: group losses at θ_t, α step, Σ_g w_g L̂_g."""
        sums = train.group_loss_sums(policy, loss_type, beta)
        log_alpha = exponentiated_gradient_step(log_alpha, group_means(sums.detach(), train.counts), step_sizes)
        weights = _mixed_weights(log_alpha, chis)
        objective = sum(
            weighted_objective(sums, train.counts, weights * mask, estimator=e, **est_kwargs)
            for e, mask in masks.items()
        )
        return objective, log_alpha

    step_fn = forward
    if compile and not closed_form:
        step_fn = torch.compile(forward, dynamic=False)
        try:
            step_fn(policy, log_alpha)  # compile now, so that a failure falls back to eager
        except Exception as exc:  # noqa: BLE001 - any compiler failure: run eagerly instead
            log.warning("torch.compile failed (%s: %s); running eagerly", type(exc).__name__, exc)
            step_fn = forward

    record(0)
    started = time.perf_counter()
    for step in range(1, steps + 1):
        if closed_form:
            with torch.no_grad():
                sums = train.group_loss_sums(policy, loss_type, beta)
                log_alpha = exponentiated_gradient_step(log_alpha, group_means(sums, train.counts), step_sizes)
                weights = _mixed_weights(log_alpha, chis)
                pair_w = (weights * factor).gather(-1, train.batch["group"])  # (R, N)
                gram = torch.einsum("rn,rni,rnj->rij", pair_w, delta, delta)
                rhs = torch.einsum("rn,rni->ri", pair_w, delta) / (2.0 * beta)
                policy.theta.copy_(torch.linalg.solve(gram, rhs))
        else:
            objective, log_alpha = step_fn(policy, log_alpha)
            (grad,) = torch.autograd.grad(objective, policy.theta)
            with torch.no_grad():
                policy.theta.sub_(lr * grad)
        if step % eval_every == 0 or step == steps:
            record(step)
    log.info("%s: %d runs × %d steps in %.1fs", loss_type, train.runs, steps, time.perf_counter() - started)

    with torch.no_grad():
        theta = policy.theta.detach().clone()
        val_loss = val.group_mean_losses(policy, loss_type, beta)
        test_states = _repeat_runs(data["test_states"], m)
        err = reward_error(theta, test_states, feature_type)
    return FamilyResult(
        specs=specs,
        seeds=seeds,
        theta=theta,
        log_alpha=log_alpha.detach(),
        weights=_mixed_weights(log_alpha, chis).detach(),
        val_group_loss=val_loss,
        reward_err=err,
        history_steps=history_steps,
        history_max_val=torch.stack(history),
    )


def run_scenario(
    name: str,
    methods: list[str],
    seeds: list[int],
    *,
    feature_type: str = "swapped",
    ipo_weighting: str = "objective",
    max_steps: int | None = None,
    ipo_steps: int | None = None,
    eval_every: int = 100,
    compile: bool = False,
) -> dict[str, FamilyResult]:
    """All requested methods of one scenario; returns one :class:`FamilyResult` per loss family."""
    sc = SCENARIOS[name]
    data = make_data(seeds, DataConfig(weight=sc.weight, uneven=sc.uneven, feature_type=feature_type))
    out: dict[str, FamilyResult] = {}
    dpo_specs = [RunSpec(mth) for mth in methods if METHODS[mth][0] == "dpo"]
    ipo_specs = [RunSpec(mth) for mth in methods if METHODS[mth][0] == "ipo"]
    if dpo_specs:
        steps = sc.steps if max_steps is None else min(sc.steps, max_steps)
        out["dpo"] = run_family(
            data, seeds, dpo_specs, loss_type="dpo", beta=sc.beta, lr=sc.lr, alpha_step=sc.alpha_step,
            steps=steps, feature_type=feature_type, eval_every=eval_every, compile=compile,
        )  # fmt: skip
    if ipo_specs:
        steps = sc.ipo_steps if ipo_steps is None else ipo_steps
        out["ipo"] = run_family(
            data, seeds, ipo_specs, loss_type="ipo", beta=sc.ipo_beta, alpha_step=sc.ipo_alpha_step, steps=steps,
            feature_type=feature_type, closed_form=True, ipo_weighting=ipo_weighting, eval_every=1,
        )  # fmt: skip
    return out


def run_chi_sweep(
    chis: list[float],
    seeds: list[int],
    *,
    feature_type: str = "swapped",
    max_steps: int | None = None,
    eval_every: int = 100,
    compile: bool = False,
) -> FamilyResult:
    """GR-DPO on uneven-imbalanced data for each χ (w = (1 − χ)/K + χα), all χ and seeds batched."""
    sc = SCENARIOS["uneven_imbalanced"]
    data = make_data(seeds, DataConfig(weight=sc.weight, uneven=sc.uneven, feature_type=feature_type))
    steps = sc.steps if max_steps is None else min(sc.steps, max_steps)
    return run_family(
        data, seeds, [RunSpec("gr_dpo", chi=c) for c in chis], loss_type="dpo", beta=sc.beta, lr=sc.lr,
        alpha_step=sc.alpha_step, steps=steps, feature_type=feature_type, eval_every=eval_every, compile=compile,
    )  # fmt: skip


def _init_worker(threads: int) -> None:
    torch.set_num_threads(threads)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _task(kind: str, name: str, methods: list[str], seeds: list[int], kwargs: dict):
    """One unit of work for a worker process: a scenario's loss family, or the χ sweep."""
    if kind == "chi":
        return kind, name, run_chi_sweep(methods, seeds, **kwargs)
    return kind, name, run_scenario(name, methods, seeds, **kwargs)[kind]


def run_tasks(tasks: list[tuple], workers: int, threads: int) -> list[tuple]:
    """Run ``(kind, name, methods, seeds, kwargs)`` tasks, in ``workers`` processes if > 1.

    Each scenario's DPO and IPO families, and the χ sweep, are independent tasks; the longest
    go first. Torch's intra-op threads are set to ``threads`` in each process: with tensors this
    small, one process per core beats one process with several threads by far.
    """
    if workers <= 1:
        _init_worker(threads)
        return [_task(*t) for t in tasks]
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    ctx = mp.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker, initargs=(threads,)) as pool:
        futures = [pool.submit(_task, *t) for t in tasks]
        return [f.result() for f in futures]


def _cost(task: tuple) -> float:
    kind, name, methods, seeds, kwargs = task
    if kind == "chi":
        return SCENARIOS["uneven_imbalanced"].steps * len(methods)
    sc = SCENARIOS[name]
    return sc.steps * len(methods) if kind == "dpo" else sc.ipo_steps * len(methods)


# ----------------------------------------------------------------------------------------------
# Reporting
# ----------------------------------------------------------------------------------------------

CSV_COLUMNS = [
    "scenario",
    "method",
    "seed",
    "max_val_group_loss",
    "max_reward_err",
    "val_group_loss_0",
    "val_group_loss_1",
    "reward_err_0",
    "reward_err_1",
    "weight_0",
    "weight_1",
]


def result_rows(scenario: str, result: FamilyResult) -> list[dict]:
    rows = []
    for i, spec in enumerate(result.specs):
        for j, seed in enumerate(result.seeds):
            r = result.run_index(i, j)
            vl, re, w = result.val_group_loss[r], result.reward_err[r], result.weights[r]
            rows.append(
                {
                    "scenario": scenario,
                    "method": spec.method,
                    "seed": seed,
                    "max_val_group_loss": vl.max().item(),
                    "max_reward_err": re.max().item(),
                    "val_group_loss_0": vl[0].item(),
                    "val_group_loss_1": vl[1].item(),
                    "reward_err_0": re[0].item(),
                    "reward_err_1": re[1].item(),
                    "weight_0": w[0].item(),
                    "weight_1": w[1].item(),
                }
            )
    return rows


def mean_se(values: torch.Tensor, dim: int = -1) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and standard error (sample std / √n; 0 for a single value) along ``dim``."""
    n = values.shape[dim]
    se = values.std(dim=dim) / math.sqrt(n) if n > 1 else torch.zeros_like(values.mean(dim=dim))
    return values.mean(dim=dim), se


def summarise(rows: list[dict], key: str) -> dict[tuple[str, str], tuple[float, float]]:
    """(scenario, method) → (mean, s.e.) of ``key`` over seeds."""
    cells: dict[tuple[str, str], list[float]] = {}
    for row in rows:
        cells.setdefault((row["scenario"], row["method"]), []).append(row[key])
    return {k: tuple(t.item() for t in mean_se(torch.tensor(v, dtype=DTYPE))) for k, v in cells.items()}


def format_table(rows: list[dict]) -> str:
    loss, err = summarise(rows, "max_val_group_loss"), summarise(rows, "max_reward_err")
    lines = [f"{'scenario':<18} {'method':<7} {'max val group loss':>24} {'max reward err':>22}"]
    for key in loss:
        (lm, ls), (em, es) = loss[key], err[key]
        lines.append(f"{key[0]:<18} {key[1]:<7} {lm:>14.4f} ± {ls:<7.4f} {em:>12.4f} ± {es:<7.4f}")
    return "\n".join(lines)


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_history(path: Path, scenario: str, families: dict[str, FamilyResult]) -> None:
    """Worst-group validation loss over steps, mean ± s.e. over seeds, one panel per loss family."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(families), figsize=(5.5 * len(families), 4), squeeze=False)
    for ax, (family, res) in zip(axes[0], families.items(), strict=True):
        steps = torch.tensor(res.history_steps)
        hist = res.history_max_val.view(len(steps), len(res.specs), len(res.seeds))
        mean, se = mean_se(hist, dim=-1)
        for i, spec in enumerate(res.specs):
            ax.plot(steps, mean[:, i], label=spec.method)
            ax.fill_between(steps, mean[:, i] - se[:, i], mean[:, i] + se[:, i], alpha=0.25)
        ax.set_xlabel("α steps (closed-form θ)" if family == "ipo" else "gradient steps")
        ax.set_ylabel("max validation group loss")
        ax.set_title(f"{scenario}: {family.upper()} family")
        ax.set_yscale("log")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_bars(path: Path, rows: list[dict]) -> None:
    """Final max validation group loss and max reward error per scenario and method (mean ± s.e.)."""
    plt = _plt()
    scenarios = list(dict.fromkeys(r["scenario"] for r in rows))
    metrics = [("max_val_group_loss", "max validation group loss"), ("max_reward_err", "max reward error")]
    fig, axes = plt.subplots(len(metrics), len(scenarios), figsize=(4.5 * len(scenarios), 7), squeeze=False)
    for i, (key, label) in enumerate(metrics):
        stats = summarise(rows, key)
        for j, sc in enumerate(scenarios):
            methods = [m for (s, m) in stats if s == sc]
            means = [stats[(sc, m)][0] for m in methods]
            ses = [stats[(sc, m)][1] for m in methods]
            ax = axes[i][j]
            ax.bar(methods, means, yerr=ses, capsize=3, color=[f"C{k}" for k in range(len(methods))])
            ax.set_title(sc)
            ax.set_ylabel(label)
            if key == "max_val_group_loss":  # DPO (≈0.5) and IPO (≈20) losses on one axis
                ax.set_yscale("log")
            ax.tick_params(axis="x", rotation=45)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def chi_rows(res: FamilyResult) -> list[dict]:
    """Average and worst-group validation loss per χ, mean ± s.e. over seeds."""
    s = len(res.seeds)
    vl = res.val_group_loss.view(len(res.specs), s, NUM_GROUPS)
    avg_m, avg_s = mean_se(vl.mean(-1))
    worst_m, worst_s = mean_se(vl.max(-1).values)
    return [
        {
            "chi": spec.chi,
            "avg_val_loss_mean": avg_m[i].item(),
            "avg_val_loss_se": avg_s[i].item(),
            "worst_val_loss_mean": worst_m[i].item(),
            "worst_val_loss_se": worst_s[i].item(),
            "num_seeds": s,
        }
        for i, spec in enumerate(res.specs)
    ]


def plot_chi(path: Path, rows: list[dict]) -> None:
    plt = _plt()
    chis = [r["chi"] for r in rows]
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for key, label in (("avg_val_loss", "average group loss"), ("worst_val_loss", "worst group loss")):
        ax.errorbar(chis, [r[f"{key}_mean"] for r in rows], yerr=[r[f"{key}_se"] for r in rows], marker="o", capsize=3, label=label)  # fmt: skip
    ax.set_xlabel("χ")
    ax.set_ylabel("validation loss")
    ax.set_title("GR-DPO trade-off, uneven-imbalanced")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_csv(path: Path, rows: list[dict], columns: list[str]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def _float_list(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="grpo-bandit",
        description="Synthetic group linear bandit experiments of group-robust preference optimization.",
    )
    p.add_argument("--scenario", default="all", choices=[*SCENARIOS, "all", "none"])
    p.add_argument("--methods", default=",".join(METHODS), help="comma-separated subset of " + ",".join(METHODS))
    p.add_argument("--seeds", type=int, default=20, help="number of seeds, starting at --first-seed")
    p.add_argument("--first-seed", type=int, default=FIRST_SEED)
    p.add_argument("--feature-type", default="swapped", choices=["same", "swapped", "flipped"])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--chi", type=_float_list, default=None, help="also run the χ ablation, e.g. 0,0.2,0.4,0.6,0.8,1")
    p.add_argument("--ipo-weighting", default="objective", choices=list(IPO_WEIGHTING_ESTIMATOR))
    p.add_argument("--ipo-steps", type=int, default=None, help="α steps of the IPO family (default 100)")
    p.add_argument("--max-steps", type=int, default=None, help="cap on gradient steps (for smoke tests)")
    p.add_argument("--eval-every", type=int, default=100)
    p.add_argument("--no-compile", dest="compile", action="store_false", help="run eagerly instead of torch.compile")
    p.add_argument("--workers", type=int, default=2, help="worker processes (1: run in this process)")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads per process")
    return p


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise SystemExit(f"unknown methods {unknown}; choose from {list(METHODS)}")
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    args.out.mkdir(parents=True, exist_ok=True)
    scenarios = list(SCENARIOS) if args.scenario == "all" else [] if args.scenario == "none" else [args.scenario]

    common = {
        "feature_type": args.feature_type,
        "max_steps": args.max_steps,
        "eval_every": args.eval_every,
        "compile": args.compile,
    }
    tasks = []
    for name in scenarios:
        for family in ("dpo", "ipo"):
            fam_methods = [m for m in methods if METHODS[m][0] == family]
            if fam_methods:
                kw = {**common, "ipo_weighting": args.ipo_weighting, "ipo_steps": args.ipo_steps}
                tasks.append((family, name, fam_methods, seeds, kw))
    if args.chi:  # split the χ values over the workers
        chunks = [args.chi[i :: max(args.workers, 1)] for i in range(max(args.workers, 1))]
        tasks.extend(("chi", f"chi_{i}", chunk, seeds, common) for i, chunk in enumerate(chunks) if chunk)
    tasks.sort(key=_cost, reverse=True)
    started = time.perf_counter()
    done = run_tasks(tasks, args.workers, args.threads)
    log.info("all runs finished in %.1fs", time.perf_counter() - started)

    rows: list[dict] = []
    for name in scenarios:
        families = {kind: res for kind, nm, res in done if nm == name and kind != "chi"}
        families = {k: families[k] for k in ("dpo", "ipo") if k in families}
        for res in families.values():
            rows.extend(result_rows(name, res))
        plot_history(args.out / f"val_loss_{name}.png", name, families)
    if rows:
        write_csv(args.out / "results.csv", rows, CSV_COLUMNS)
        plot_bars(args.out / "final_metrics.png", rows)
        print(format_table(rows))

    chi_done = [res for kind, _, res in done if kind == "chi"]
    if chi_done:
        crow = sorted((r for res in chi_done for r in chi_rows(res)), key=lambda r: r["chi"])
        write_csv(args.out / "chi_results.csv", crow, list(crow[0]))
        plot_chi(args.out / "chi_tradeoff.png", crow)
        print(f"\n{'chi':>5} {'avg val loss':>20} {'worst val loss':>20}")
        for r in crow:
            print(
                f"{r['chi']:>5.2f} {r['avg_val_loss_mean']:>11.4f} ± {r['avg_val_loss_se']:<6.4f}"
                f" {r['worst_val_loss_mean']:>11.4f} ± {r['worst_val_loss_se']:<6.4f}"
            )
    log.info("wrote results to %s", args.out)


if __name__ == "__main__":
    main()
