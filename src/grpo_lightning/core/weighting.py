"""Group weightings: how per-group losses are combined into the θ objective, one class per strategy.

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
  w = (1 − χ)/K + χ α (the trade-off of §4, χ = 1 is the pure worst-case objective). With a
  generalisation adjustment C > 0 the α step uses L̂_g + C/√N_g instead of L̂_g (Sagawa et al.,
  ICLR 2020, eq. 5), see :func:`generalization_adjustment`; C = 0 is the paper's method.

Beyond the paper, two objectives whose weights are a function of the step's (detached) group losses
alone, with no memory (the stored ``log α`` is just the last step's log-weights):

* ``cvar``: w uniform over the worst ⌈ρK⌉ groups (CVaR_ρ over groups), see :func:`cvar_log_weights`.
* ``tilted``: w_g ∝ exp(t L̂_g) (tilted ERM over groups, Li et al., ICLR 2021), see
  :func:`tilted_log_weights`.

The maths are the pure functions of :mod:`grpo_lightning.core.weighting_functions`; a class here holds a
strategy's settings (checked in its ``__init__``), its starting point, its update and when in an optimizer step
that update runs (:attr:`GroupWeighting.update_phase`), which the training step reads. Adding a strategy is one
subclass (decorate it with :func:`register_weighting` to give it a short name for the bandit sweep); the config
chooses it by ``class_path`` (``grpo_lightning.core.weighting.RobustWeighting``, ...).
"""

from __future__ import annotations

import inspect
import math
from typing import Any, ClassVar, Literal, get_args

import torch

from grpo_lightning.core.weighting_functions import (
    ESTIMATORS,
    Estimator,
    cvar_log_weights,
    exponentiated_gradient_step,
    generalization_adjustment,
    mix_with_uniform,
    tilted_log_weights,
)

AlphaOrder = Literal["paper", "lagged"]
ALPHA_ORDERS: tuple[str, ...] = get_args(AlphaOrder)
# When in an optimizer step a strategy's ``update`` runs (GroupWeighting.update_phase).
UpdatePhase = Literal["never", "before", "after"]

__all__ = [
    "ALPHA_ORDERS",
    "WEIGHTINGS",
    "AlphaOrder",
    "CVaRWeighting",
    "GroupWeighting",
    "ImportanceWeighting",
    "RobustWeighting",
    "TiltedWeighting",
    "UniformWeighting",
    "UpdatePhase",
    "class_config",
    "register_weighting",
]


WEIGHTINGS: dict[str, type[GroupWeighting]] = {}


def register_weighting(cls):
    if cls.name in WEIGHTINGS:
        raise ValueError(f"weighting {cls.name!r} is registered twice")
    WEIGHTINGS[cls.name] = cls
    return cls


def _check_estimator(estimator: str) -> None:
    if estimator not in ESTIMATORS:
        raise ValueError(f"model.weighting.estimator must be one of {ESTIMATORS}, got {estimator!r}")


def class_config(obj: Any) -> dict[str, Any]:
    """``obj`` as ``{class_path, init_args}``: its class and the values of its ``__init__`` arguments, read
    from the attributes of the same names (how a loss or weighting is stored in a checkpoint's hparams)."""
    cls = type(obj)
    params = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    return {"class_path": f"{cls.__module__}.{cls.__qualname__}", "init_args": {p: getattr(obj, p) for p in params}}


class GroupWeighting:
    """Base strategy: fixed α, w = α. Subclasses set ``name`` and override what differs.

    A strategy is chosen in YAML like the policy, ``model.weighting: {class_path: ..., init_args: ...}``
    (or just the class name, e.g. ``RobustWeighting``); each class takes only its own settings, so a
    setting another strategy uses is refused by the parser, naming it. The settings live on the
    instance under their own names, and :meth:`to_dict` records them as plain data for checkpoints.

    Attributes:
        name: the short name (``uniform``, ``importance``, ``robust``, ``cvar``, ``tilted``), used in run names.
        adaptive: whether :meth:`update` moves ``log α`` each optimizer step.
        forced_estimator: the estimator the strategy always uses (``uniform``: ``scaled_sum``), if any.
        estimator: the per-group loss estimate of :func:`group_loss_estimate`.
        alpha_order: ``paper`` (α step first, Algorithm 1) or ``lagged`` (θ step with the previous α);
            what it means for a step is :attr:`update_phase`.
    """

    name: ClassVar[str] = ""
    adaptive: ClassVar[bool] = False
    forced_estimator: ClassVar[str | None] = None
    alpha_order: AlphaOrder = "paper"

    def __init__(self, *, estimator: Estimator = "mean") -> None:
        _check_estimator(estimator)
        self.estimator = self.forced_estimator or estimator

    def to_dict(self) -> dict[str, Any]:
        """``{class_path, init_args}`` as plain data (checkpoint hyperparameters; loads with weights_only)."""
        return class_config(self)

    def initial_log_alpha(self, train_counts: torch.Tensor) -> torch.Tensor:
        k = train_counts.numel()
        return torch.full((k,), -math.log(k), dtype=torch.float64)

    def update(
        self,
        log_alpha: torch.Tensor,
        group_losses: torch.Tensor,
        present: torch.Tensor | None = None,
        train_counts: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The new ``log α`` from the step's detached group loss estimates ``(..., K)``.

        ``present`` (bool, ``(..., K)``) marks the groups with pairs in the step; ``train_counts`` is
        N_g of the training split. Called once per optimizer step, only when ``adaptive``."""
        return log_alpha

    def weights(self, log_alpha: torch.Tensor) -> torch.Tensor:
        return log_alpha.exp()

    # ---------------------------------------------------------------- when the update runs in an optimizer step
    @property
    def update_phase(self) -> UpdatePhase:
        """When the training step calls :meth:`update`, once per optimizer step.

        ``never``: fixed weights (not ``adaptive``). ``before``: ``alpha_order: paper``, Algorithm 1 of Ramesh et
        al. (2024): α moves on this step's group losses, then θ takes its step with the new weights. ``after``:
        ``alpha_order: lagged``: θ takes its step with the previous weights, then α moves on the same losses (no
        extra forward pass; the weights lag one step behind the paper's)."""
        if not self.adaptive:
            return "never"
        return "before" if self.alpha_order == "paper" else "after"

    def needs_prepass(self, micro_batches: int) -> bool:
        """Whether a step of ``micro_batches`` micro-batches needs a no-grad forward pass over all of them before
        the first backward: the ``before`` update needs the whole step's losses, but gradient accumulation
        back-propagates one micro-batch at a time. With one micro-batch its own forward gives them (no extra
        compute)."""
        return self.update_phase == "before" and micro_batches > 1


@register_weighting
class UniformWeighting(GroupWeighting):
    """Plain DPO/IPO: the pooled mean over pairs, i.e. w_g = N_g / N on unbiased group estimates."""

    name = "uniform"
    forced_estimator = "scaled_sum"

    def __init__(self) -> None:  # the pooled mean has no settings: the estimator is scaled_sum
        super().__init__(estimator="scaled_sum")

    def initial_log_alpha(self, train_counts: torch.Tensor) -> torch.Tensor:
        counts = train_counts.to(torch.float64)
        return torch.log(counts / counts.sum())


@register_weighting
class ImportanceWeighting(GroupWeighting):
    """Importance sampling: per-pair weights ∝ 1/N_g, i.e. w_g = 1/K; or the user's weights.

    Attributes:
        weights: the user's group weights, in the order of the groups (normalised to sum 1);
            ``None``: w_g = 1/K.
        estimator: the per-group loss estimate (``mean``, ``scaled_sum`` or ``sum``).
    """

    name = "importance"

    def __init__(self, *, weights: list[float] | None = None, estimator: Estimator = "mean") -> None:
        super().__init__(estimator=estimator)
        if weights is not None and not all(math.isfinite(w) and w >= 0 for w in weights):
            raise ValueError(f"model.weighting.weights must be finite numbers >= 0, got {list(weights)}")
        if weights is not None and sum(weights) <= 0:
            raise ValueError(f"model.weighting.weights must have a positive sum, got {list(weights)}")
        # ``weights`` is the method turning log α into w, so the user's list is kept under another name.
        self.user_weights = None if weights is None else [float(w) for w in weights]

    def to_dict(self) -> dict[str, Any]:
        cls = type(self)
        return {
            "class_path": f"{cls.__module__}.{cls.__qualname__}",
            "init_args": {"weights": self.user_weights, "estimator": self.estimator},
        }

    def initial_log_alpha(self, train_counts: torch.Tensor) -> torch.Tensor:
        if self.user_weights is None:
            return super().initial_log_alpha(train_counts)
        if len(self.user_weights) != train_counts.numel():
            raise ValueError(
                f"model.weighting.weights has {len(self.user_weights)} entries for {train_counts.numel()} groups"
            )
        w = torch.tensor(self.user_weights, dtype=torch.float64)
        return torch.log(w / w.sum())


class _AdaptiveWeighting(GroupWeighting):
    """A strategy whose ``log α`` moves each optimizer step; it also chooses when (``alpha_order``)."""

    adaptive = True

    def __init__(self, *, estimator: Estimator = "mean", alpha_order: AlphaOrder = "paper") -> None:
        super().__init__(estimator=estimator)
        if alpha_order not in ALPHA_ORDERS:
            raise ValueError(f"model.weighting.alpha_order must be one of {ALPHA_ORDERS}, got {alpha_order!r}")
        self.alpha_order = alpha_order


@register_weighting
class RobustWeighting(_AdaptiveWeighting):
    """Group-robust (GR-DPO / GR-IPO): exponentiated-gradient ascent on α, χ-mixed weights.

    ``adjustment`` C > 0: the α step sees L̂_g + C/√N_g (Sagawa et al., ICLR 2020, eq. 5), which keeps
    weight on small groups whose training loss is small only because they were memorised. The θ
    objective still uses L̂_g. C = 0 (the default) is Algorithm 1 of Ramesh et al. unchanged.

    Attributes:
        step_size: η_α ≥ 0 of the exponentiated-gradient step.
        chi: χ ∈ [0, 1]; weights are (1 − χ)/K + χ α (1 = the worst case).
        estimator: the per-group loss estimate: ``mean`` (the step's group mean) or ``scaled_sum``
            ((N/N_g)·Σ_g ℓ / n, the paper's N/N_g scaling, unbiased), or ``sum`` (the bandit code's).
        alpha_order: ``paper``: update α from the step's losses, then take the θ step with the new α
            (Algorithm 1; with gradient accumulation a no-grad pre-pass supplies the losses);
            ``lagged``: the θ step uses the previous α, updated after it (no extra compute).
        adjustment: C ≥ 0 of Sagawa et al. (eq. 5), in the units of the loss; 0 = off.
        chi_scaled_step: the α step uses η_α · χ, as the authors' bandit code does; the paper's
            Algorithm 1 uses η_α (default ``false``).
    """

    name = "robust"

    def __init__(
        self,
        *,
        step_size: float = 0.01,
        chi: float = 1.0,
        estimator: Estimator = "mean",
        alpha_order: AlphaOrder = "paper",
        adjustment: float = 0.0,
        chi_scaled_step: bool = False,
    ) -> None:
        super().__init__(estimator=estimator, alpha_order=alpha_order)
        if not (step_size >= 0 and math.isfinite(step_size)):
            raise ValueError(f"model.weighting.step_size must be a finite number >= 0, got {step_size}")
        if not 0.0 <= chi <= 1.0:
            raise ValueError(f"model.weighting.chi must lie in [0, 1], got {chi}")
        if not (adjustment >= 0 and math.isfinite(adjustment)):
            raise ValueError(f"model.weighting.adjustment must be a finite number >= 0, got {adjustment}")
        self.step_size, self.chi, self.adjustment = step_size, chi, adjustment
        self.chi_scaled_step = chi_scaled_step

    def update(
        self,
        log_alpha: torch.Tensor,
        group_losses: torch.Tensor,
        present: torch.Tensor | None = None,
        train_counts: torch.Tensor | None = None,
    ) -> torch.Tensor:
        # The group mean of an absent group is unknown, not 0: only observed groups move.
        mask = present if self.estimator == "mean" else None
        if self.adjustment:  # Sagawa et al. (2020), eq. 5: ascend on L̂_g + C/√N_g
            if train_counts is None:
                raise ValueError("model.weighting.adjustment > 0 needs the training group sizes N_g (train_counts)")
            adj = generalization_adjustment(train_counts.to(log_alpha), self.adjustment)
            group_losses = group_losses.detach().to(log_alpha) + adj
        return exponentiated_gradient_step(log_alpha, group_losses, self.effective_step_size, mask)

    @property
    def effective_step_size(self) -> float:
        """η_α, or η_α · χ with ``chi_scaled_step``: the authors' bandit code multiplies the exponent by χ,
        α ← α ⊙ exp(η_α χ L̂) / Z (rsshyam/GRPO-bandits, ``group_robust_dpo_vectorised_gradfix.py``), so in their χ
        ablation a smaller χ also slows α. Algorithm 1 and §4 of the paper have no χ in the α step (the default)."""
        return self.step_size * (self.chi if self.chi_scaled_step else 1.0)

    def weights(self, log_alpha: torch.Tensor) -> torch.Tensor:
        return mix_with_uniform(log_alpha.exp(), self.chi)


class _StepLossWeighting(_AdaptiveWeighting):
    """Weights that are a function of the step's group losses only (no memory). ``log α`` holds the
    last step's log-weights, so ``weights`` is ``exp``; with ``alpha_order: lagged`` these are the
    previous step's, and they are saved in checkpoints like the robust α."""

    def step_log_weights(self, group_losses: torch.Tensor, present: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError

    def update(
        self,
        log_alpha: torch.Tensor,
        group_losses: torch.Tensor,
        present: torch.Tensor | None = None,
        train_counts: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return self.step_log_weights(group_losses.detach().to(log_alpha), present).to(log_alpha)


@register_weighting
class CVaRWeighting(_StepLossWeighting):
    """CVaR over groups: w uniform over the worst ⌈ρK'⌉ of the K' groups present in the step, by the
    step's detached losses (ties: lower group id first); absent groups get 0. ρ = 1 is the group
    average, ρ ≤ 1/K the worst group. See :func:`cvar_log_weights`.

    Attributes:
        rho: ρ ∈ (0, 1], the share of groups averaged, worst first.
        estimator: the per-group loss estimate (``mean``, ``scaled_sum`` or ``sum``).
        alpha_order: ``paper`` (this step's weights) or ``lagged`` (the previous step's).
    """

    name = "cvar"

    def __init__(self, *, rho: float = 0.5, estimator: Estimator = "mean", alpha_order: AlphaOrder = "paper") -> None:
        super().__init__(estimator=estimator, alpha_order=alpha_order)
        if not 0.0 < rho <= 1.0:  # also rejects NaN
            raise ValueError(f"model.weighting.rho must lie in (0, 1], got {rho}")
        self.rho = rho

    def step_log_weights(self, group_losses: torch.Tensor, present: torch.Tensor | None) -> torch.Tensor:
        return cvar_log_weights(group_losses, self.rho, present)


@register_weighting
class TiltedWeighting(_StepLossWeighting):
    """Tilted ERM over groups (Li et al., ICLR 2021): w_g ∝ exp(t L̂_g) over the groups present in the
    step (absent groups get 0), computed in log space. t = 0 is the group average, t → ∞ the worst
    group. See :func:`tilted_log_weights`.

    Attributes:
        tilt: t ≥ 0, in 1 / loss units: 0 = group average, large = worst group.
        estimator: the per-group loss estimate (``mean``, ``scaled_sum`` or ``sum``).
        alpha_order: ``paper`` (this step's weights) or ``lagged`` (the previous step's).
    """

    name = "tilted"

    def __init__(self, *, tilt: float = 1.0, estimator: Estimator = "mean", alpha_order: AlphaOrder = "paper") -> None:
        super().__init__(estimator=estimator, alpha_order=alpha_order)
        if not (tilt >= 0 and math.isfinite(tilt)):
            raise ValueError(f"model.weighting.tilt must be a finite number >= 0, got {tilt}")
        self.tilt = tilt

    def step_log_weights(self, group_losses: torch.Tensor, present: torch.Tensor | None) -> torch.Tensor:
        return tilted_log_weights(group_losses, self.tilt, present)
