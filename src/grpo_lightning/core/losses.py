"""Preference losses of the Generalized Preference Optimization family (Tang et al., 2024), one class per loss.

Every GPO loss is a convex function f of the log-ratio margin

    h = [log π(y_w|x) − log π_ref(y_w|x)] − [log π(y_l|x) − log π_ref(y_l|x)],

scaled by β: ℓ = f(β h) (IPO is written directly in h, as in Azar et al. 2023 and in Ramesh et al. 2024, eq. (8)).

A loss is one subclass of :class:`PreferenceLoss`: its ``__init__`` takes the loss's own settings as keywords and
checks them, naming the setting; its :meth:`~PreferenceLoss.forward` holds the formula; the margin and the implicit
rewards are the base class's (:meth:`~PreferenceLoss.pair_losses`). Configs choose a loss by its import path,
``model.loss: {class_path: grpo_lightning.core.losses.IPO, init_args: {beta: 0.1}}``, or, for the classes here, by
the class name alone (``--model.loss DPO``: jsonargparse resolves a bare name among the imported subclasses).

:data:`LOSSES` maps the short names of the built-in losses (``ipo``) to their classes: run names
(``${method:...}``), the CLI's list of choices and the bandit sweep read it. A loss of your own needs no entry
(docs/extending.md); decorate it with :func:`register_loss` to give it a short name the sweep can use.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from grpo_lightning.core.weighting import class_config


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


class PreferenceLoss:
    """A per-pair preference loss ℓ(h) of the log-ratio margin h (and, for SFT, of log π(y_w|x)).

    Subclasses set ``name`` and implement :meth:`forward`; their ``__init__`` takes the loss's own settings as
    keyword arguments, checks them, and keeps each as an attribute of the same name (so that :meth:`to_dict`
    records them for the checkpoint).

    Attributes:
        name: the short name of the loss, used in run names (``<loss>_<weighting>``).
        needs_reference: whether the loss reads π_ref (``sft`` does not: no reference is kept).
        beta: β > 0, the strength of the KL regularisation; also scales the logged implicit rewards
            β (log π − log π_ref).
    """

    name: ClassVar[str] = ""
    needs_reference: ClassVar[bool] = True

    def __init__(self, *, beta: float = 0.1) -> None:
        if not (beta > 0 and math.isfinite(beta)):
            raise ValueError(f"model.loss.beta must be a finite number > 0, got {beta}")
        self.beta = beta

    def forward(self, h: torch.Tensor, policy_chosen_logps: torch.Tensor) -> torch.Tensor:
        """Per-pair losses from the margin h and log π(y_w|x), both ``(B,)`` (or any shape, element-wise)."""
        raise NotImplementedError

    def __call__(self, h: torch.Tensor, policy_chosen_logps: torch.Tensor) -> torch.Tensor:
        return self.forward(h, policy_chosen_logps)

    def pair_losses(
        self,
        policy_chosen_logps: torch.Tensor,
        policy_rejected_logps: torch.Tensor,
        reference_chosen_logps: torch.Tensor | None,
        reference_rejected_logps: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-pair losses and implicit rewards.

        Args:
            policy_chosen_logps, policy_rejected_logps: ``(B,)`` log π(y_w|x), log π(y_l|x).
            reference_chosen_logps, reference_rejected_logps: ``(B,)`` the same under π_ref; ``None`` is read as 0
                (reference-free, and for ``sft``).

        Returns:
            ``(losses, chosen_rewards, rejected_rewards)``, each ``(B,)``: ``forward`` of the margin
            h = (log π(y_w) − log π_ref(y_w)) − (log π(y_l) − log π_ref(y_l)), and the implicit rewards
            β (log π − log π_ref) of DPO (Rafailov et al., 2023, eq. 5), detached.
        """
        chosen_ratio, rejected_ratio = log_ratios(
            policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps
        )
        losses = self(chosen_ratio - rejected_ratio, policy_chosen_logps)
        return losses, self.beta * chosen_ratio.detach(), self.beta * rejected_ratio.detach()

    def to_dict(self) -> dict[str, Any]:
        """``{class_path, init_args}`` as plain data (checkpoint hyperparameters; loads with weights_only)."""
        return class_config(self)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.to_dict()["init_args"].items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PreferenceLoss) and self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash(type(self))


#: The losses with a short name: ``name`` → class (run names, the CLI's choices, the bandit sweep).
LOSSES: dict[str, type[PreferenceLoss]] = {}


def register_loss(cls: type[PreferenceLoss]) -> type[PreferenceLoss]:
    """Class decorator: enter ``cls`` in :data:`LOSSES` under its ``name``."""
    if not cls.name:
        raise ValueError(f"{cls.__qualname__} has no short name (set the class attribute `name`)")
    if cls.name in LOSSES:
        raise ValueError(f"loss {cls.name!r} is registered twice")
    LOSSES[cls.name] = cls
    return cls


@register_loss
class DPO(PreferenceLoss):
    """DPO (Rafailov et al., 2023): −log σ(βh). With label smoothing ε, conservative DPO (cDPO, Mitchell, 2023):
    the label is flipped with probability ε, −(1−ε) log σ(βh) − ε log σ(−βh).

    Attributes:
        beta: β > 0.
        label_smoothing: ε ∈ [0, 0.5), the assumed label-noise rate (cDPO); 0 = DPO.
    """

    name = "dpo"

    def __init__(self, *, beta: float = 0.1, label_smoothing: float = 0.0) -> None:
        super().__init__(beta=beta)
        if not 0.0 <= label_smoothing < 0.5:  # also rejects NaN
            raise ValueError(f"model.loss.label_smoothing must lie in [0, 0.5), got {label_smoothing}")
        self.label_smoothing = label_smoothing

    def forward(self, h: torch.Tensor, policy_chosen_logps: torch.Tensor) -> torch.Tensor:
        if self.label_smoothing == 0:
            return -F.logsigmoid(self.beta * h)
        eps = self.label_smoothing
        return -(1.0 - eps) * F.logsigmoid(self.beta * h) - eps * F.logsigmoid(-self.beta * h)


@register_loss
class IPO(PreferenceLoss):
    """IPO (Azar et al., 2023; Ramesh et al. 2024, eq. 8): (h − 1/(2β))², a regression of the margin on 1/(2β).

    Attributes:
        beta: β > 0; the target margin is 1/(2β).
    """

    name = "ipo"

    def forward(self, h: torch.Tensor, policy_chosen_logps: torch.Tensor) -> torch.Tensor:
        return (h - 1.0 / (2.0 * self.beta)) ** 2


@register_loss
class Hinge(PreferenceLoss):
    """SLiC (Zhao et al., 2023): max(0, 1 − βh).

    Attributes:
        beta: β > 0.
    """

    name = "hinge"

    def forward(self, h: torch.Tensor, policy_chosen_logps: torch.Tensor) -> torch.Tensor:
        return torch.relu(1.0 - self.beta * h)


@register_loss
class Exponential(PreferenceLoss):
    """Exponential (Tang et al., 2024, Table 1): exp(−βh).

    Attributes:
        beta: β > 0.
    """

    name = "exponential"

    def forward(self, h: torch.Tensor, policy_chosen_logps: torch.Tensor) -> torch.Tensor:
        return torch.exp(-self.beta * h)


@register_loss
class TruncatedQuadratic(PreferenceLoss):
    """Truncated quadratic (Tang et al., 2024, Table 1): max(0, 1 − βh)².

    Attributes:
        beta: β > 0.
    """

    name = "truncated_quadratic"

    def forward(self, h: torch.Tensor, policy_chosen_logps: torch.Tensor) -> torch.Tensor:
        return torch.relu(1.0 - self.beta * h) ** 2


@register_loss
class Savage(PreferenceLoss):
    """Savage (Tang et al., 2024, Table 1): 1 / (1 + exp(βh))² = σ(−βh)².

    Attributes:
        beta: β > 0.
    """

    name = "savage"

    def forward(self, h: torch.Tensor, policy_chosen_logps: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(-self.beta * h) ** 2


@register_loss
class SFT(PreferenceLoss):
    """Supervised fine-tuning on the chosen completion: −log π(y_w|x). No reference is kept.

    Attributes:
        beta: β > 0 does not enter the loss; it only scales the logged implicit rewards β log π(y|x)
            (default 1: the rewards are the log-probabilities).
    """

    name = "sft"
    needs_reference = False

    def __init__(self, *, beta: float = 1.0) -> None:
        super().__init__(beta=beta)

    def forward(self, h: torch.Tensor, policy_chosen_logps: torch.Tensor) -> torch.Tensor:
        return -policy_chosen_logps
