"""Typed, documented settings of the method, checked when they are built.

The loss and the weighting are chosen in configs as classes (``model.loss: {class_path: ..., init_args:
...}``, :mod:`grpo_lightning.core.loss_classes` and :mod:`grpo_lightning.core.weighting`). :class:`LossConfig` and
:class:`WeightingConfig` are the earlier by-name form, ``{name: ipo, beta: 0.1}``, kept so that checkpoints
written before the change and Python callers still load: ``build()`` maps the name to its class and passes
only the settings that class takes.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, field
from typing import Any

from grpo_lightning.core.loss_classes import BUILTIN_LOSSES, PreferenceLoss, concrete, import_class
from grpo_lightning.core.losses import LOSSES
from grpo_lightning.core.weighting import (
    ALPHA_ORDERS,
    ESTIMATORS,
    WEIGHTINGS,
    AlphaOrder,
    Estimator,
    GroupWeighting,
)

__all__ = ["ALPHA_ORDERS", "AlphaOrder", "LossConfig", "WeightingConfig", "weighting_from_dict"]


@dataclass(frozen=True)
class LossConfig:
    """The preference loss by name (the legacy form; configs choose a :class:`~grpo_lightning.core.loss_classes.PreferenceLoss`).

    Attributes:
        name: one of ``dpo`` (logistic; cDPO with ``label_smoothing``), ``ipo`` ((h − 1/(2β))²),
            ``hinge`` (SLiC), ``exponential``, ``truncated_quadratic``, ``savage`` (the GPO family,
            Tang et al. 2024) or ``sft`` (−log π(y_w|x), for the supervised stage).
        beta: β > 0, the strength of the KL regularisation towards the reference.
        label_smoothing: ε ∈ [0, 0.5), the assumed label-noise rate of cDPO; ``dpo`` only.
    """

    name: str = "ipo"
    beta: float = 0.1
    label_smoothing: float = 0.0

    def __post_init__(self) -> None:
        if self.name not in LOSSES:
            raise ValueError(f"model.loss.name: unknown loss {self.name!r}; choose one of {sorted(LOSSES)}")
        if not (self.beta > 0 and math.isfinite(self.beta)):
            raise ValueError(f"model.loss.beta must be a finite number > 0, got {self.beta}")
        if not 0.0 <= self.label_smoothing < 0.5:
            raise ValueError(f"model.loss.label_smoothing must lie in [0, 0.5), got {self.label_smoothing}")
        if self.label_smoothing and self.name != "dpo":
            raise ValueError(f"model.loss.label_smoothing is defined for the dpo loss only, not {self.name!r}")

    def build(self) -> PreferenceLoss:
        """The loss class of ``name`` with the settings it takes (β; ε for dpo)."""
        if self.name not in BUILTIN_LOSSES:  # a core function registered without a class
            raise ValueError(f"model.loss.name: {self.name!r} has no loss class; choose it by class_path")
        extra = {"label_smoothing": self.label_smoothing} if self.name == "dpo" else {}
        return BUILTIN_LOSSES[self.name](beta=self.beta, **extra)


@dataclass(frozen=True)
class WeightingConfig:
    """How group losses are weighted, by name (the legacy form; configs choose a
    :class:`~grpo_lightning.core.weighting.GroupWeighting` subclass, see :mod:`grpo_lightning.core.weighting`).

    Attributes:
        name: ``uniform`` (pooled mean: plain DPO/IPO), ``importance`` (fixed weights; per-pair
            ∝ 1/N_g by default), ``robust`` (group-robust: exponentiated-gradient steps on α),
            ``cvar`` (uniform over the step's worst ⌈ρK⌉ groups) or ``tilted`` (w_g ∝ exp(t L̂_g)).
        step_size: η_α ≥ 0 of the exponentiated-gradient step (``robust`` only).
        chi: χ ∈ [0, 1]; weights are (1 − χ)/K + χ α (``robust`` only; 1 = worst case).
        estimator: the per-group loss estimate: ``mean`` (the step's group mean) or
            ``scaled_sum`` ((N/N_g)·Σ_g ℓ / n, the paper's N/N_g scaling, unbiased).
        alpha_order: ``paper``: update α from the step's losses, then take the θ step with the new
            α (Algorithm 1; with gradient accumulation a no-grad pre-pass over the step's
            micro-batches supplies the losses); ``lagged``: the θ step uses the previous α and α is
            updated after it (the usual online-learning order; no extra compute).
        weights: user-given group weights for ``importance`` (normalised to sum 1), in the order
            of the groups.
        adjustment: C ≥ 0, the generalisation adjustment of ``robust``: the α step uses
            L̂_g + C/√N_g (Sagawa et al., ICLR 2020, eq. 5), in the units of the loss; 0 = off.
        rho: ρ ∈ (0, 1] of ``cvar`` (default 0.5): the share of groups averaged, worst first.
        tilt: t ≥ 0 of ``tilted`` (default 1.0), in 1 / loss units: 0 = group average, large = worst group.
        chi_scaled_step: ``robust`` only: the α step uses η_α · χ, as the authors' bandit code does
            (α ← α ⊙ exp(η_α χ L̂)/Z); the paper's Algorithm 1 uses η_α (default ``false``).
    """

    name: str = "uniform"
    step_size: float = 0.01
    chi: float = 1.0
    estimator: Estimator = "mean"
    alpha_order: AlphaOrder = "paper"
    weights: list[float] | None = field(default=None)
    adjustment: float = 0.0
    rho: float | None = None
    tilt: float | None = None
    chi_scaled_step: bool = False

    def __post_init__(self) -> None:
        if self.name not in WEIGHTINGS:
            raise ValueError(
                f"model.weighting.name: unknown weighting {self.name!r}; choose one of {sorted(WEIGHTINGS)}"
            )
        if not (self.step_size >= 0 and math.isfinite(self.step_size)):
            raise ValueError(f"model.weighting.step_size must be a finite number >= 0, got {self.step_size}")
        if not 0.0 <= self.chi <= 1.0:
            raise ValueError(f"model.weighting.chi must lie in [0, 1], got {self.chi}")
        if self.estimator not in ESTIMATORS:
            raise ValueError(f"model.weighting.estimator must be one of {ESTIMATORS}, got {self.estimator!r}")
        if self.alpha_order not in ALPHA_ORDERS:
            raise ValueError(f"model.weighting.alpha_order must be one of {ALPHA_ORDERS}, got {self.alpha_order!r}")
        if self.weights is not None and self.name != "importance":
            raise ValueError("model.weighting.weights is only used by the importance weighting")
        if self.weights is not None and not all(math.isfinite(w) and w >= 0 for w in self.weights):
            raise ValueError(f"model.weighting.weights must be finite numbers >= 0, got {self.weights}")
        if not (self.adjustment >= 0 and math.isfinite(self.adjustment)):
            raise ValueError(f"model.weighting.adjustment must be a finite number >= 0, got {self.adjustment}")
        if self.adjustment and self.name != "robust":
            raise ValueError("model.weighting.adjustment is only used by the robust weighting")
        if self.rho is not None:
            if not 0.0 < self.rho <= 1.0:  # also rejects NaN
                raise ValueError(f"model.weighting.rho must lie in (0, 1], got {self.rho}")
            if self.name != "cvar":
                raise ValueError("model.weighting.rho is only used by the cvar weighting")
        if self.tilt is not None:
            if not (self.tilt >= 0 and math.isfinite(self.tilt)):
                raise ValueError(f"model.weighting.tilt must be a finite number >= 0, got {self.tilt}")
            if self.name != "tilted":
                raise ValueError("model.weighting.tilt is only used by the tilted weighting")

    def build(self) -> GroupWeighting:
        """The weighting class of ``name`` with the settings it takes."""
        cls = WEIGHTINGS[self.name]
        every = {
            "step_size": self.step_size,
            "chi": self.chi,
            "estimator": self.estimator,
            "alpha_order": self.alpha_order,
            "weights": self.weights,
            "adjustment": self.adjustment,
            "rho": self.rho,
            "tilt": self.tilt,
            "chi_scaled_step": self.chi_scaled_step,
        }
        takes = inspect.signature(cls.__init__).parameters
        # rho/tilt None means "the class's default"; the checks above refused every other setting a
        # weighting does not use, so the ones dropped here are at their defaults.
        return cls(**{k: v for k, v in every.items() if k in takes and v is not None})


def weighting_from_dict(data: dict[str, Any] | GroupWeighting | WeightingConfig | None) -> GroupWeighting:
    """A weighting from ``{class_path, init_args}`` (what :meth:`GroupWeighting.to_dict` writes) or the legacy
    ``{name, step_size, ...}`` of earlier checkpoints and Python callers; ``None``: uniform."""
    if data is None:
        return WEIGHTINGS["uniform"]()
    if isinstance(data, GroupWeighting):
        return concrete(data)
    if isinstance(data, WeightingConfig):
        return data.build()
    if "class_path" in data:
        cls = import_class(data["class_path"], GroupWeighting, builtins=WEIGHTINGS, setting="model.weighting")
        return cls(**(data.get("init_args") or {}))
    return WeightingConfig(**data).build()
