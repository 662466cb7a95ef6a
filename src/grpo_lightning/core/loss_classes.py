"""The configurable preference losses: ``model.loss: {class_path: ..., init_args: ...}``.

Each class is a thin wrapper around a pure function of :mod:`grpo_lightning.core.losses` (where the
math is, pinned by tests against hand-computed numbers) that carries only the settings that loss
uses and checks them when it is built. A new loss with a hyperparameter of its own is one subclass
of :class:`PreferenceLoss` in one file and a YAML overlay naming it (docs/extending.md).

A class is chosen by its import path or, for the classes here, by its name alone
(``--model.loss DPO``, ``model.loss: {class_path: IPO, init_args: {beta: 0.01}}``): the parser
resolves a bare name among the imported subclasses of :class:`PreferenceLoss`.
"""

from __future__ import annotations

import importlib
import math
from typing import Any, ClassVar

import torch

from grpo_lightning.core.losses import LOSSES, log_ratios
from grpo_lightning.core.weighting import class_config


def _check_beta(beta: float) -> None:
    if not (beta > 0 and math.isfinite(beta)):
        raise ValueError(f"model.loss.beta must be a finite number > 0, got {beta}")


class PreferenceLoss:
    """A per-pair preference loss ℓ(h) of the log-ratio margin h (and, for SFT, of log π(y_w|x)).

    Subclasses set ``name`` and implement :meth:`forward`; their ``__init__`` takes the loss's own
    settings as keyword arguments, checks them, and keeps each as an attribute of the same name
    (so that :meth:`to_dict` records them for the checkpoint).

    Attributes:
        name: the short name of the loss, used in run names (``<loss>_<weighting>``).
        needs_reference: whether the loss reads π_ref (``sft`` does not: no reference is kept).
        beta: β > 0, the strength of the KL regularisation; also scales the logged implicit rewards
            β (log π − log π_ref).
    """

    name: ClassVar[str] = ""
    needs_reference: ClassVar[bool] = True

    def __init__(self, *, beta: float = 0.1) -> None:
        _check_beta(beta)
        self.beta = beta

    def forward(self, h: torch.Tensor, policy_chosen: torch.Tensor) -> torch.Tensor:
        """Per-pair losses ``(B,)`` from the margin h and log π(y_w|x), each ``(B,)``."""
        raise NotImplementedError

    def __call__(self, h: torch.Tensor, policy_chosen: torch.Tensor) -> torch.Tensor:
        return self.forward(h, policy_chosen)

    def pair_losses(
        self,
        policy_chosen_logps: torch.Tensor,
        policy_rejected_logps: torch.Tensor,
        reference_chosen_logps: torch.Tensor | None,
        reference_rejected_logps: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(losses, chosen_rewards, rejected_rewards)``, each ``(B,)``, as
        :func:`grpo_lightning.core.preference_loss` (a ``None`` reference is read as 0)."""
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


class DPO(PreferenceLoss):
    """DPO (Rafailov et al., 2023): −log σ(βh); with label smoothing ε, conservative DPO (Mitchell, 2023):
    −(1−ε) log σ(βh) − ε log σ(−βh).

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

    def forward(self, h: torch.Tensor, policy_chosen: torch.Tensor) -> torch.Tensor:
        return LOSSES["dpo"].fn(h, policy_chosen, self.beta, self.label_smoothing)


class _BetaLoss(PreferenceLoss):
    """A loss of the GPO family whose only setting is β: the core function registered as ``name``."""

    def forward(self, h: torch.Tensor, policy_chosen: torch.Tensor) -> torch.Tensor:
        return LOSSES[self.name].fn(h, policy_chosen, self.beta, 0.0)


class IPO(_BetaLoss):
    """IPO (Azar et al., 2023; Ramesh et al. 2024, eq. 8): (h − 1/(2β))².

    Attributes:
        beta: β > 0; the target margin is 1/(2β).
    """

    name = "ipo"


class Hinge(_BetaLoss):
    """SLiC (Zhao et al., 2023): max(0, 1 − βh).

    Attributes:
        beta: β > 0.
    """

    name = "hinge"


class Exponential(_BetaLoss):
    """Exponential (Tang et al., 2024, Table 1): exp(−βh).

    Attributes:
        beta: β > 0.
    """

    name = "exponential"


class TruncatedQuadratic(_BetaLoss):
    """Truncated quadratic (Tang et al., 2024, Table 1): max(0, 1 − βh)².

    Attributes:
        beta: β > 0.
    """

    name = "truncated_quadratic"


class Savage(_BetaLoss):
    """Savage (Tang et al., 2024, Table 1): σ(−βh)².

    Attributes:
        beta: β > 0.
    """

    name = "savage"


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

    def forward(self, h: torch.Tensor, policy_chosen: torch.Tensor) -> torch.Tensor:
        return LOSSES["sft"].fn(h, policy_chosen, self.beta, 0.0)


#: The built-in losses by short name: the ``name`` of the legacy ``{name: ..., beta: ...}`` form.
BUILTIN_LOSSES: dict[str, type[PreferenceLoss]] = {
    cls.name: cls for cls in (DPO, IPO, Hinge, Exponential, TruncatedQuadratic, Savage, SFT)
}


def concrete(obj: Any) -> Any:
    """``obj``, or a real instance of its class for a jsonargparse ``lazy_instance`` default (whose own class
    is a generated subclass: its ``to_dict`` would name that, and it is shared by every module built with it)."""
    lazy_class = getattr(obj, "_lazy_class_type", None)
    return obj if lazy_class is None else lazy_class(**obj._lazy_kwargs)


def import_class(class_path: str, base: type, *, builtins: dict[str, type], setting: str) -> type:
    """The class a ``class_path`` names: a dotted import path, a built-in class's bare name (``IPO``) or
    short name (``ipo``); it must subclass ``base``."""
    by_class_name = {cls.__name__: cls for cls in builtins.values()}
    if class_path in builtins or class_path in by_class_name:
        return builtins.get(class_path) or by_class_name[class_path]
    module_name, _, name = class_path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), name) if module_name else None
    except (ImportError, AttributeError) as err:
        raise ValueError(f"{setting}: cannot import {class_path!r} ({err})") from None
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise ValueError(f"{setting}: {class_path!r} is not a {base.__name__} (choose one of {sorted(builtins)})")
    return cls


def loss_from_dict(data: dict[str, Any] | PreferenceLoss | None) -> PreferenceLoss:
    """A loss from ``{class_path, init_args}`` (what :meth:`PreferenceLoss.to_dict` writes) or the
    legacy ``{name, beta, label_smoothing}`` of earlier checkpoints and Python callers; ``None``: IPO, β 0.1."""
    if data is None:
        return IPO()
    if isinstance(data, PreferenceLoss):
        return concrete(data)
    if "class_path" in data:
        cls = import_class(data["class_path"], PreferenceLoss, builtins=BUILTIN_LOSSES, setting="model.loss")
        return cls(**(data.get("init_args") or {}))
    from grpo_lightning.training.legacy_config import LossConfig  # the legacy form, with its cross-field checks

    return LossConfig(**data).build()
