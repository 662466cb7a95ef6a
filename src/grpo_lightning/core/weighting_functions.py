"""The maths of the group weightings, as pure functions of tensors (no state, no classes).

Notation (Ramesh et al. 2024, §3): K groups, N_g training pairs in group g, N = Σ_g N_g, L_g(θ) the mean
preference loss over group g's data, n_g the pairs of group g in an optimizer step and n = Σ_g n_g. Every
function takes and returns tensors whose last dimension is the K groups; leading dimensions (several runs of the
bandit sweep at once) are allowed unless said otherwise.

* :func:`group_loss_estimate`: L̂_g from the step's per-group loss sums (``mean``, ``scaled_sum`` or ``sum``).
* :func:`exponentiated_gradient_step`: Algorithm 1's α step, α ← α ⊙ exp(η_α L̂) / Z, in log space, optionally
  moving only the groups present in the step.
* :func:`generalization_adjustment`: C/√N_g, added to L̂_g before the α step (Sagawa et al., ICLR 2020, eq. 5).
* :func:`cvar_log_weights`, :func:`tilted_log_weights`: memoryless log-weights of CVaR over groups and of tilted
  ERM over groups (beyond the paper).
* :func:`mix_with_uniform`: the χ trade-off of §4, w = (1 − χ)/K + χ α.
* :func:`weighted_objective`: the θ objective Σ_g w_g L̂_g.

The strategies that combine them (chosen by ``model.weighting.class_path``) are the classes of
:mod:`grpo_lightning.core.weighting`; the bandit sweep and the LightningModule call these same functions.
"""

from __future__ import annotations

from typing import Literal, get_args

import torch

# The estimates of L_g that group_loss_estimate knows (a strategy's ``estimator`` setting).
Estimator = Literal["mean", "scaled_sum", "sum"]
ESTIMATORS: tuple[str, ...] = get_args(Estimator)


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


def generalization_adjustment(train_counts: torch.Tensor, adjustment: float | torch.Tensor) -> torch.Tensor:
    """C/√N_g, the group adjustment of Sagawa et al. (ICLR 2020, eq. 5), ``(..., K)`` → ``(..., K)``.

    Group DRO then ascends on L̂_g + C/√N_g: a small group's training loss understates its
    generalisation loss by about O(1/√N_g), so without the term a small group that the model
    memorises loses its weight while staying the worst group on held-out data. C ≥ 0 is in the
    units of the loss; C = 0 gives zeros (the unadjusted method). N_g is clamped to ≥ 1.
    """
    counts = train_counts.to(torch.float64) if not train_counts.is_floating_point() else train_counts
    return adjustment / counts.clamp(min=1).sqrt()


def _present_mask(group_losses: torch.Tensor, present: torch.Tensor | None) -> torch.Tensor:
    if present is None:
        return torch.ones_like(group_losses, dtype=torch.bool)
    return present.to(torch.bool).expand_as(group_losses)


def cvar_log_weights(group_losses: torch.Tensor, rho: float, present: torch.Tensor | None = None) -> torch.Tensor:
    """log w of CVaR_ρ over groups: w uniform over the worst m = ⌈ρ K'⌉ groups, ``(..., K)`` → ``(..., K)``.

    K' is the number of groups present in the step (all K when ``present`` is None); absent groups
    get weight 0 for the step (their loss was not observed) and never count among the worst. The
    worst are the largest (detached) losses; ties go to the lower group id, so the choice is
    deterministic. ρ = 1 is the average over the present groups, ρ ≤ 1/K' the single worst group.
    This is CVaR at level ρ of the uniform distribution over groups (Rockafellar & Uryasev 2000; the
    CVaR-DRO of Levy et al., NeurIPS 2020, with groups in place of examples) restricted to whole groups. ⌈ρK'⌉ is taken
    after rounding ρK' to 9 decimals, so that ρ = 0.1·3 (0.30000000000000004), K' = 10 selects 3 groups, not 4.

    Unselected and absent groups get ``finfo.min`` (a finite log 0; ``exp`` gives exactly 0). If no
    group is present every entry is ``finfo.min``.
    """
    losses = group_losses.detach()
    present = _present_mask(losses, present)
    k = losses.shape[-1]
    ids = torch.arange(k, device=losses.device)
    # ahead[..., g, h]: group h ranks before group g (larger loss, or equal loss and lower id)
    other, mine = losses.unsqueeze(-2), losses.unsqueeze(-1)
    ahead = (other > mine) | ((other == mine) & (ids < ids.unsqueeze(-1)))
    rank = (ahead & present.unsqueeze(-2)).sum(-1)  # present groups ranked before g
    n_present = present.sum(-1, keepdim=True).to(torch.float64)
    m = torch.ceil(torch.round(rho * n_present, decimals=9)).clamp(min=1)
    selected = present & (rank < m)
    dtype = losses.dtype if losses.is_floating_point() else torch.float64
    neg = torch.finfo(dtype).min
    return torch.where(selected, -torch.log(m).to(dtype), torch.full_like(losses, neg, dtype=dtype))


def tilted_log_weights(group_losses: torch.Tensor, tilt: float, present: torch.Tensor | None = None) -> torch.Tensor:
    """log w of tilted ERM over groups, w_g = exp(t L̂_g) / Σ_h exp(t L̂_h), ``(..., K)`` → ``(..., K)``.

    The gradient of the tilted objective (1/t) log Σ_g exp(t L_g) / K (Li et al., "Tilted Empirical
    Risk Minimization", ICLR 2021, eq. 2 and Lemma 1, with groups as the units) is Σ_g w_g ∇L_g with
    these weights. t = 0 is the group average, t → ∞ the worst group. Computed in log space from
    L̂ − max L̂ (so losses of any size give finite weights); absent groups get weight 0
    (``finfo.min`` as log 0) and the present groups share all of it.
    """
    losses = group_losses.detach()
    if not losses.is_floating_point():
        losses = losses.to(torch.float64)
    present = _present_mask(losses, present)
    neg = torch.finfo(losses.dtype).min
    top = losses.masked_fill(~present, neg).amax(-1, keepdim=True)
    shifted = (losses - top).clamp(min=neg)  # ≤ 0 and finite for present groups
    logits = (tilt * shifted).clamp(min=neg).masked_fill(~present, neg)
    return torch.where(present, torch.log_softmax(logits, dim=-1), neg).clamp(min=neg)


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
