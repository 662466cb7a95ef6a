"""Preference losses of the Generalized Preference Optimization family (Tang et al., 2024).

Every GPO loss is a convex function f of the log-ratio margin

    h = [log π(y_w|x) − log π_ref(y_w|x)] − [log π(y_l|x) − log π_ref(y_l|x)],

scaled by β: ℓ = f(β h) (IPO is written directly in h, as in Azar et al. 2023 and in
Ramesh et al. 2024, eq. (8)). The math lives here as pure functions; the configurable loss classes
the config chooses (``model.loss: {class_path: ...}``) are thin wrappers in
:mod:`grpo_lightning.core.loss_classes`, and a new loss with settings of its own is one such class.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class LossSpec:
    """A registered loss: ``fn(h, policy_chosen_logps, beta, label_smoothing) -> (B,)``."""

    fn: Callable[..., torch.Tensor]
    needs_reference: bool = True


LOSSES: dict[str, LossSpec] = {}


def register_loss(name: str, *, needs_reference: bool = True):
    """Register ``fn(h, policy_chosen_logps, beta, label_smoothing) -> per-pair loss``."""

    def decorator(fn):
        if name in LOSSES:
            raise ValueError(f"loss {name!r} is registered twice")
        LOSSES[name] = LossSpec(fn=fn, needs_reference=needs_reference)
        return fn

    return decorator


@register_loss("dpo")
def _logistic(h, policy_chosen, beta, label_smoothing):
    """DPO (Rafailov et al., 2023): −log σ(βh). With label smoothing ε (cDPO, Mitchell 2023)
    the label is flipped with probability ε: −(1−ε) log σ(βh) − ε log σ(−βh)."""
    if label_smoothing == 0:
        return -F.logsigmoid(beta * h)
    return -(1.0 - label_smoothing) * F.logsigmoid(beta * h) - label_smoothing * F.logsigmoid(-beta * h)


@register_loss("ipo")
def _squared(h, policy_chosen, beta, label_smoothing):
    """IPO (Azar et al., 2023; Ramesh et al. 2024 eq. 8): (h − 1/(2β))²."""
    return (h - 1.0 / (2.0 * beta)) ** 2


@register_loss("hinge")
def _hinge(h, policy_chosen, beta, label_smoothing):
    """SLiC (Zhao et al., 2023): max(0, 1 − βh)."""
    return torch.relu(1.0 - beta * h)


@register_loss("exponential")
def _exponential(h, policy_chosen, beta, label_smoothing):
    """Exponential (Tang et al., 2024, Table 1): exp(−βh)."""
    return torch.exp(-beta * h)


@register_loss("truncated_quadratic")
def _truncated_quadratic(h, policy_chosen, beta, label_smoothing):
    """Truncated quadratic (Tang et al., 2024, Table 1): max(0, 1 − βh)²."""
    return torch.relu(1.0 - beta * h) ** 2


@register_loss("savage")
def _savage(h, policy_chosen, beta, label_smoothing):
    """Savage (Tang et al., 2024, Table 1): 1 / (1 + exp(βh))² = σ(−βh)²."""
    return torch.sigmoid(-beta * h) ** 2


@register_loss("sft", needs_reference=False)
def _sft(h, policy_chosen, beta, label_smoothing):
    """Supervised fine-tuning on the chosen completion: −log π(y_w|x)."""
    return -policy_chosen


def preference_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    reference_chosen_logps: torch.Tensor | None,
    reference_rejected_logps: torch.Tensor | None,
    *,
    loss_type: str,
    beta: float,
    label_smoothing: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-pair loss and implicit rewards.

    Args:
        policy_chosen_logps, policy_rejected_logps: ``(B,)`` log π(y_w|x), log π(y_l|x).
        reference_chosen_logps, reference_rejected_logps: ``(B,)`` the same under π_ref;
            ``None`` is read as 0 (reference-free, and for ``sft``).
        loss_type: a key of :data:`LOSSES`.
        beta: the KL-regularisation strength β > 0.
        label_smoothing: ε in [0, 0.5) for cDPO; only ``dpo`` uses it.

    Returns:
        ``(losses, chosen_rewards, rejected_rewards)``, each ``(B,)``. Rewards are the
        implicit rewards β (log π − log π_ref) of DPO, detached.
    """
    if loss_type not in LOSSES:
        raise ValueError(f"unknown loss {loss_type!r}; choose one of {sorted(LOSSES)}")
    if beta <= 0:
        raise ValueError(f"beta must be > 0, got {beta}")
    chosen_ratio, rejected_ratio = log_ratios(
        policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps
    )
    h = chosen_ratio - rejected_ratio
    losses = LOSSES[loss_type].fn(h, policy_chosen_logps, beta, label_smoothing)
    return losses, beta * chosen_ratio.detach(), beta * rejected_ratio.detach()


def log_ratios(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    reference_chosen_logps: torch.Tensor | None,
    reference_rejected_logps: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(log π(y_w|x) − log π_ref(y_w|x), log π(y_l|x) − log π_ref(y_l|x))``, each ``(B,)``; a
    ``None`` reference is read as 0. The margin h is their difference."""
    ref_chosen = torch.zeros_like(policy_chosen_logps) if reference_chosen_logps is None else reference_chosen_logps
    ref_rejected = (
        torch.zeros_like(policy_rejected_logps) if reference_rejected_logps is None else reference_rejected_logps
    )
    return policy_chosen_logps - ref_chosen, policy_rejected_logps - ref_rejected
