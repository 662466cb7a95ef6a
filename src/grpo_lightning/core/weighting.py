"""Group weightings: how per-group losses are combined into the θ objective.

Notation (Ramesh et al. 2024, §3): K groups, N_g training pairs in group g, N = Σ_g N_g,
L_g(θ) the mean preference loss over group g's data. Every strategy keeps a point α of the
simplex Δ_K (stored by the caller as ``log α``) and turns it into group weights w ∈ Δ_K; the
θ objective is Σ_g w_g L̂_g with L̂_g an estimate of L_g from the optimizer step's pairs.

* ``uniform``: w_g = N_g / N with the ``scaled_sum`` estimate, which is exactly the pooled
  mean over the step's pairs (plain DPO/IPO).
* ``importance``: fixed weights. By default w_g = 1/K, i.e. every pair weighted ∝ 1/N_g
  (α_g ∝ 1/N_g per pair, the paper's IS baseline), or weights given by the user.
* ``robust``: GR-DPO/GR-IPO, Algorithm 1: an exponentiated-gradient (mirror ascent) step on α
  with the detached group losses, α ← α ⊙ exp(η_α L̂) / Z, done in log space (with the ``mean``
  estimate over the groups present in the step only, see :func:`exponentiated_gradient_step`), then
  w = (1 − χ)/K + χ α (the trade-off of §4, χ = 1 is the pure worst-case objective).

Adding a strategy is one subclass decorated with :func:`register_weighting`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import ClassVar

import torch

ESTIMATORS = ("mean", "scaled_sum", "sum")


def group_loss_estimate(
    loss_sums: torch.Tensor,
    counts: torch.Tensor,
    *,
    estimator: str,
    train_counts: torch.Tensor,
    total: torch.Tensor | float,
) -> torch.Tensor:
    """Estimate L_g from sums of per-pair losses, ``(K,)`` → ``(K,)``. Linear in ``loss_sums``.

    Args:
        loss_sums: Σ of per-pair losses of each group (over a micro-batch or a whole step).
        counts: number of pairs of each group in the optimizer step (not the micro-batch),
            so that summing the estimate over micro-batches gives the step's estimate.
        estimator: ``mean``: S_g / n_g, the step's group mean (0 for an absent group);
            ``scaled_sum``: (N / N_g) · S_g / n, with n the step's pair count, an unbiased
            estimate of L_g when pairs are sampled uniformly. The paper's code uses
            (N / N_g) · S_g without the 1/n (its ``divide_by_totalcount``); we divide by n so
            the estimate does not depend on the batch size or on how a step is split into
            micro-batches. The α update here runs once per optimizer step, so the same α movement
            per step as the code's takes η_α = (the code's η_α) × n, the step's pair count (GOQA:
            5e-7 × 16 = 8e-6; the code steps α once per micro-batch of 8, twice per step of 16).
            ``sum``: S_g itself, so that Σ_g w_g L̂_g weights each pair of group g by w_g
            alone rather than by w_g / n_g. This is the per-pair weighting of the paper's
            bandit code for the closed-form GR-IPO regression; it is not an estimate of L_g
            (it grows with n_g) and is offered only to reproduce that code.
        train_counts: N_g of the training split, ``(K,)``.
        total: n, the number of pairs in the optimizer step.
    """
    if estimator == "mean":
        return torch.where(counts > 0, loss_sums / counts.clamp(min=1), torch.zeros_like(loss_sums))
    if estimator == "scaled_sum":
        train_counts = train_counts.to(loss_sums)
        return loss_sums * (train_counts.sum() / train_counts.clamp(min=1)) / total
    if estimator == "sum":
        return loss_sums
    raise ValueError(f"unknown group loss estimator {estimator!r}; choose one of {ESTIMATORS}")


def exponentiated_gradient_step(
    log_alpha: torch.Tensor,
    group_losses: torch.Tensor,
    step_size: float | torch.Tensor,
    present: torch.Tensor | None = None,
) -> torch.Tensor:
    """One mirror-ascent step on the simplex, in log space (Algorithm 1, α update).

    log α'_g = log α_g + η L_g − log Σ_h exp(log α_h + η L_h).

    ``log_softmax`` subtracts the max before exponentiating, so neither IPO-scale losses
    (thousands) nor large η overflow, and a weight that underflows to 0 keeps a finite log.
    Returns a new tensor; the inputs are not modified.

    Args:
        log_alpha: ``(..., K)`` log α.
        group_losses: ``(..., K)`` the (detached) group loss estimates L̂_g.
        step_size: η_α.
        present: optional ``(..., K)`` bool, the groups with pairs in the step. When given, only
            those groups move: they keep their total mass and share it out by the step above,
            while an absent group's α is unchanged (its loss was not observed). Without it an
            absent group enters with L̂_g = 0, which is right for the unbiased ``scaled_sum``
            estimate (and what the paper's code does) but makes the ``mean`` estimate drain the
            weight of small groups that miss many batches.
    """
    logits = log_alpha + step_size * group_losses.detach().to(log_alpha)
    if present is None:
        return torch.log_softmax(logits, dim=-1)
    present = present.to(torch.bool)
    neg_inf = torch.finfo(log_alpha.dtype).min
    mass = torch.logsumexp(log_alpha.masked_fill(~present, neg_inf), dim=-1, keepdim=True)
    moved = logits.masked_fill(~present, neg_inf)
    updated = torch.log_softmax(moved, dim=-1) + mass
    return torch.where(present, updated, log_alpha)


def mix_with_uniform(alpha: torch.Tensor, chi: float) -> torch.Tensor:
    """w = (1 − χ)/K + χ α: χ = 1 is the worst-case objective, χ = 0 the group average.
    ``alpha`` is ``(..., K)``; leading dimensions (several runs) are allowed."""
    return (1.0 - chi) / alpha.shape[-1] + chi * alpha


def weighted_objective(
    loss_sums: torch.Tensor,
    counts: torch.Tensor,
    weights: torch.Tensor,
    *,
    estimator: str,
    train_counts: torch.Tensor,
    total: torch.Tensor | float,
) -> torch.Tensor:
    """Σ_g w_g L̂_g: the θ objective for a micro-batch whose per-group loss sums are ``loss_sums``
    (differentiable), with ``counts``/``total`` of the whole optimizer step."""
    estimate = group_loss_estimate(loss_sums, counts, estimator=estimator, train_counts=train_counts, total=total)
    return (weights.detach().to(estimate) * estimate).sum()


WEIGHTINGS: dict[str, type[GroupWeighting]] = {}


def register_weighting(cls):
    if cls.name in WEIGHTINGS:
        raise ValueError(f"weighting {cls.name!r} is registered twice")
    WEIGHTINGS[cls.name] = cls
    return cls


class GroupWeighting:
    """Base strategy: fixed α, w = α. Subclasses set ``name`` and override what differs."""

    name: ClassVar[str] = ""
    adaptive: ClassVar[bool] = False
    forced_estimator: ClassVar[str | None] = None

    def __init__(
        self,
        *,
        step_size: float = 0.0,
        chi: float = 1.0,
        estimator: str = "mean",
        weights: Sequence[float] | None = None,
        chi_scaled_step: bool = False,
    ) -> None:
        if step_size < 0 or not math.isfinite(step_size):
            raise ValueError(f"weighting.step_size must be a finite number >= 0, got {step_size}")
        if not 0.0 <= chi <= 1.0:
            raise ValueError(f"weighting.chi must lie in [0, 1], got {chi}")
        if estimator not in ESTIMATORS:
            raise ValueError(f"weighting.estimator must be one of {ESTIMATORS}, got {estimator!r}")
        if weights is not None and (any(w < 0 for w in weights) or sum(weights) <= 0):
            raise ValueError(f"weighting.weights must be >= 0 with a positive sum, got {list(weights)}")
        self.step_size = step_size
        self.chi = chi
        self.estimator = self.forced_estimator or estimator
        self.user_weights = None if weights is None else list(weights)
        self.chi_scaled_step = chi_scaled_step

    def initial_log_alpha(self, train_counts: torch.Tensor) -> torch.Tensor:
        k = train_counts.numel()
        return torch.full((k,), -math.log(k), dtype=torch.float64)

    def update(
        self, log_alpha: torch.Tensor, group_losses: torch.Tensor, present: torch.Tensor | None = None
    ) -> torch.Tensor:
        return log_alpha

    def weights(self, log_alpha: torch.Tensor) -> torch.Tensor:
        return log_alpha.exp()


@register_weighting
class UniformWeighting(GroupWeighting):
    """Plain DPO/IPO: the pooled mean over pairs, i.e. w_g = N_g / N on unbiased group estimates."""

    name = "uniform"
    forced_estimator = "scaled_sum"

    def initial_log_alpha(self, train_counts: torch.Tensor) -> torch.Tensor:
        counts = train_counts.to(torch.float64)
        return torch.log(counts / counts.sum())


@register_weighting
class ImportanceWeighting(GroupWeighting):
    """Importance sampling: per-pair weights ∝ 1/N_g, i.e. w_g = 1/K; or the user's weights."""

    name = "importance"

    def initial_log_alpha(self, train_counts: torch.Tensor) -> torch.Tensor:
        if self.user_weights is None:
            return super().initial_log_alpha(train_counts)
        if len(self.user_weights) != train_counts.numel():
            raise ValueError(
                f"weighting.weights has {len(self.user_weights)} entries for {train_counts.numel()} groups"
            )
        w = torch.tensor(self.user_weights, dtype=torch.float64)
        return torch.log(w / w.sum())


@register_weighting
class RobustWeighting(GroupWeighting):
    """Group-robust (GR-DPO / GR-IPO): exponentiated-gradient ascent on α, χ-mixed weights."""

    name = "robust"
    adaptive = True

    def update(
        self, log_alpha: torch.Tensor, group_losses: torch.Tensor, present: torch.Tensor | None = None
    ) -> torch.Tensor:
        # The group mean of an absent group is unknown, not 0: only observed groups move.
        mask = present if self.estimator == "mean" else None
        return exponentiated_gradient_step(log_alpha, group_losses, self.effective_step_size, mask)

    @property
    def effective_step_size(self) -> float:
        """η_α, or η_α · χ with ``chi_scaled_step``: the authors' bandit code multiplies the exponent by χ,
        α ← α ⊙ exp(η_α χ L̂) / Z (rsshyam/GRPO-bandits, ``group_robust_dpo_vectorised_gradfix.py``), so in their χ
        ablation a smaller χ also slows α. Algorithm 1 and §4 of the paper have no χ in the α step (the default)."""
        return self.step_size * (self.chi if self.chi_scaled_step else 1.0)

    def weights(self, log_alpha: torch.Tensor) -> torch.Tensor:
        return mix_with_uniform(log_alpha.exp(), self.chi)
