"""The vectorised trainer of the synthetic experiments (Ramesh et al., 2024, §5.1): every (method, χ, seed) run of
one loss family at once.

All runs of a family are trained together, with a leading run dimension ``R`` on θ, α and the data. The per-pair
losses come from the loss classes of :mod:`grpo_lightning.core.losses`, the group statistics from
:mod:`grpo_lightning.core.groups`, and the group weights from the core's weighting classes, so the sweep exercises
the same code as the LLM trainer. Which methods there are, and their settings: :mod:`grpo_lightning.bandit.methods`.

DPO family (``dpo``, ``is_dpo``, ``gr_dpo``): full-batch gradient descent on θ. Each step
(Algorithm 1): per-group mean losses L̂_g at θ_t; α ← exponentiated-gradient step with η_α
(robust runs only); w = (1 − χ)/K + χα; θ ← θ − η_θ ∇_θ Σ_g w_g L̂_g.

IPO family (``ipo``, ``is_ipo``, ``gr_ipo``): at each α step the same α update, then θ is the
closed-form minimiser of the weighted least-squares objective Σ_i p_i (θᵀΔφ_i − 1/(2β))², with
Δφ_i = φ(x_i, y_w) − φ(x_i, y_l) and per-pair weight p_i = ∂(Σ_g w_g L̂_g)/∂ℓ_i: w_g / N_g with
the ``objective`` weighting (the group-mean estimator), w_g with ``paper`` (the ``sum``
estimator, as in the paper's code), i.e. θ = (ΔΦᵀPΔΦ)⁻¹ ΔΦᵀP1 / (2β).

``code`` reproduces the authors' closed-form GR-IPO as written (rsshyam/GRPO-bandits,
``algos/linear_bandit/group_robust_dpo_vectorised_gradfix.py``): the θ weighting of ``paper``, and an α step whose
group loss is divided by the group's count twice (``group_loss /= cur_group_counts`` and, three lines later,
``group_loss = group_loss / cur_group_counts``), i.e. L̂_g = S_g / N_g² instead of the mean S_g / N_g. With N_g in
the hundreds this shrinks the α step by ~N_g and unevenly across groups (smaller groups move more). The paper
describes the mean; ``paper`` follows it, ``code`` is offered to reproduce the authors' numbers.

``chi_scaled_alpha_step`` multiplies η_α by χ in the α step, as the same file does
(``np.exp(exp_step_size * group_loss * self.chi)``): in the authors' χ ablation a smaller χ also slows α.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import torch

from grpo_lightning.bandit.env import DTYPE, NUM_GROUPS, reward_error
from grpo_lightning.bandit.methods import RunSpec, build_weighting
from grpo_lightning.bandit.policy import LogLinearPolicy
from grpo_lightning.core import (
    LOSSES,
    GroupWeighting,
    PreferenceLoss,
    group_counts,
    group_loss_estimate,
    group_means,
    group_sums,
    weighted_objective,
)

log = logging.getLogger(__name__)

#: θ-objective estimator of the robust closed-form IPO runs for each ``--ipo-weighting``.
IPO_WEIGHTING_ESTIMATOR = {"objective": "mean", "paper": "sum", "code": "sum"}


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

    def group_loss_sums(self, policy: LogLinearPolicy, loss: PreferenceLoss) -> torch.Tensor:
        """Σ of per-pair losses of each (run, group), ``(R, K)``; differentiable in θ.

        Uses :meth:`LogLinearPolicy.pair_scores` (log-probs up to the pair's common normaliser)
        and no reference (the uniform reference is constant): h is the same as with
        ``pair_logps`` and ``reference_pair_logps``, at a fraction of the cost.
        """
        chosen, rejected = policy.pair_scores(self.chosen_features, self.rejected_features)
        losses, _, _ = loss.pair_losses(chosen, rejected, None, None)
        sums = group_sums(losses.reshape(-1), self.flat_ids, self.runs * NUM_GROUPS)
        return sums.view(self.runs, NUM_GROUPS)

    def group_mean_losses(self, policy: LogLinearPolicy, loss: PreferenceLoss) -> torch.Tensor:
        return group_means(self.group_loss_sums(policy, loss), self.counts)


def _run_setup(
    specs: list[RunSpec],
    num_seeds: int,
    train_counts: torch.Tensor,
    *,
    alpha_step: float,
    robust_estimator,
    chi_scaled_step: bool = False,
) -> tuple[torch.Tensor, list[tuple[GroupWeighting, slice]], list[str]]:
    """Per-run initial log α and θ-objective estimator, and each spec's weighting with its block of
    runs (runs are spec-major, so a spec's ``num_seeds`` runs are contiguous)."""
    log_alpha, blocks, estimators = [], [], []
    for i, spec in enumerate(specs):
        weighting = build_weighting(
            spec, alpha_step=alpha_step, estimator=robust_estimator, chi_scaled_step=chi_scaled_step
        )
        blocks.append((weighting, slice(i * num_seeds, (i + 1) * num_seeds)))
        init = weighting.initial_log_alpha(train_counts)
        log_alpha.extend([init] * num_seeds)
        estimators.extend([weighting.estimator] * num_seeds)
    return torch.stack(log_alpha).to(DTYPE), blocks, estimators


def _update_weights(
    blocks: list[tuple[GroupWeighting, slice]],
    log_alpha: torch.Tensor,
    group_losses: torch.Tensor,
    train_counts: torch.Tensor,
) -> torch.Tensor:
    """Each block's ``weighting.update`` on its runs, ``(R, K)`` → new ``(R, K)`` log α. Full batch:
    every group is present in every step, so no ``present`` mask."""
    return torch.cat(
        [
            w.update(log_alpha[rows], group_losses[rows], None, train_counts=train_counts[rows])
            if w.adaptive
            else log_alpha[rows]
            for w, rows in blocks
        ]
    )


def _block_weights(blocks: list[tuple[GroupWeighting, slice]], log_alpha: torch.Tensor) -> torch.Tensor:
    """Each block's ``weighting.weights`` (e.g. w = (1 − χ)/K + χα for robust), ``(R, K)``."""
    return torch.cat([w.weights(log_alpha[rows]) for w, rows in blocks])


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
    chi_scaled_alpha_step: bool = False,
) -> FamilyResult:
    """Train ``len(specs) × S`` runs at once on ``data`` (from :func:`~.env.make_data`).

    Args:
        loss_type: ``dpo`` or ``ipo``, the short name of the per-pair loss (at ``beta``, also used for validation).
        closed_form: IPO's closed-form weighted least squares at each α step instead of a
            gradient step on θ (``lr`` is then unused).
        ipo_weighting: ``objective``, ``paper`` or ``code``, see the module docstring.
        chi_scaled_alpha_step: η_α · χ in the α step (the authors' code), see the module docstring.
        eval_every: record the worst-group validation loss every this many steps (and at the end).
        compile: ``torch.compile`` the step's forward (gradient runs only). It fuses the few
            dozen small element-wise kernels of a step, several times faster on CPU after a
            one-off compilation; falls back to eager if compilation fails.
    """
    m, num_seeds = len(specs), len(seeds)
    loss = LOSSES[loss_type](beta=beta)
    train, val = _Pairs(data["train"], m), _Pairs(data["val"], m)
    train_counts = train.counts[0]
    total = float(train.size)
    robust_estimator = IPO_WEIGHTING_ESTIMATOR[ipo_weighting] if closed_form else "mean"
    log_alpha, blocks, estimators = _run_setup(
        specs,
        num_seeds,
        train_counts,
        alpha_step=alpha_step,
        robust_estimator=robust_estimator,
        chi_scaled_step=chi_scaled_alpha_step,
    )
    masks = _estimator_masks(estimators)
    # The authors' closed-form GR-IPO divides the α step's group loss by N_g twice (see the module docstring).
    alpha_divisor = train.counts.clamp(min=1) if (closed_form and ipo_weighting == "code") else 1.0
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
            history.append(val.group_mean_losses(policy, loss).max(-1).values)
        history_steps.append(step)

    def forward(policy: LogLinearPolicy, log_alpha: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Algorithm 1 up to the θ objective: group losses at θ_t, α step, Σ_g w_g L̂_g."""
        sums = train.group_loss_sums(policy, loss)
        log_alpha = _update_weights(blocks, log_alpha, group_means(sums.detach(), train.counts), train.counts)
        weights = _block_weights(blocks, log_alpha)
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
                sums = train.group_loss_sums(policy, loss)
                alpha_losses = group_means(sums, train.counts) / alpha_divisor
                log_alpha = _update_weights(blocks, log_alpha, alpha_losses, train.counts)
                weights = _block_weights(blocks, log_alpha)
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
        val_loss = val.group_mean_losses(policy, loss)
        test_states = _repeat_runs(data["test_states"], m)
        err = reward_error(theta, test_states, feature_type)
    return FamilyResult(
        specs=specs,
        seeds=seeds,
        theta=theta,
        log_alpha=log_alpha.detach(),
        weights=_block_weights(blocks, log_alpha).detach(),
        val_group_loss=val_loss,
        reward_err=err,
        history_steps=history_steps,
        history_max_val=torch.stack(history),
    )
