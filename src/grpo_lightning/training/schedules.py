"""Learning-rate schedules: :class:`LinearWarmup` (the DPO reference code's warm-up, the default task's), and the
GOQA schedule of the authors' code (rsshyam/GRPO, ``src/trainers/grouptrainerearlystop.py``).

The paper (Ramesh et al. 2024, App. E) names ReduceLROnPlateau only; the authors' trainer does more, and this module
reproduces it as one callback, :class:`AuthorsPlateauSchedule`:

* **Plateau on the validation loss.** After each evaluation the monitored loss (GR-IPO: the worst group's validation
  loss; IPO: the average validation loss) is compared with the best so far. With ``threshold_mode: rel`` an
  evaluation *improves* when  v < best · (1 − τ)  (τ = ``threshold``, 1e-3 in the authors' code). The authors step
  ``ReduceLROnPlateau(mode="max")`` on −v instead, where the test reads −v > −best · (1 + τ), i.e.
  v < best · (1 + τ): a loss up to 0.1 % *worse* than the best still counts as an improvement. ``authors_sign: true``
  reproduces that; the default is the usual minimisation test.
* **Patience in examples.** The authors set ``patience = 10 · (192 / eval_every) · patience_factor`` evaluations with
  ``eval_every`` in examples, i.e. a patience of 1920 · ``patience_factor`` training examples (3840 for their
  GOQA runs: patience_factor 2, an evaluation every 960 examples, 4 evaluations). Here the examples since the last
  improvement are counted (``e_bad``, the sum of the training pairs between consecutive non-improving evaluations);
  the rate is cut when ``e_bad > patience_examples``, which for a fixed evaluation interval E is the authors'
  ``num_bad_evaluations > patience_examples / E``.
* **At a cut:** every parameter group's rate is multiplied by ``factor`` (0.1), the bad count restarts (cooldown 0, as
  in PyTorch), and the group-weight step size η_α is multiplied by ``alpha_step_factor`` (the authors'
  ``loss.step_factor`` = 0.5 for GR-IPO: η_α halves at every cut; their code computes
  η_α ← η_α · ratio · step_factor / 0.1 with ratio = 0.1, only when the rate was cut by exactly 10×).
* **Stop:** once the smallest rate is below ``min_lr`` (1e-8), training stops (``trainer.should_stop``). The authors'
  test is ``lr < min_lr · 1.001``; so is this one.

The model's own ``lr_scheduler`` must be ``null`` with this callback (the authors' preference stage has no warm-up:
its ``LambdaLR`` warm-up line is commented out), since a ``LambdaLR`` would overwrite the cut rates every step.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace
from typing import Any

import torch
from lightning.pytorch.callbacks import Callback

from grpo_lightning.metrics import tags

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PlateauState:
    """What the schedule remembers between evaluations."""

    best: float = math.inf
    bad_examples: int = 0
    cuts: int = 0


def improves(value: float, best: float, *, threshold: float, threshold_mode: str, authors_sign: bool) -> bool:
    """Whether ``value`` (a loss) improves on ``best`` (PyTorch's ReduceLROnPlateau test, see the module docstring).

    ``rel``: v < best·(1 − τ) (or v < best·(1 + τ) with ``authors_sign``); ``abs``: v < best − τ (or best + τ).
    """
    if not math.isfinite(best):
        return math.isfinite(value)
    sign = 1.0 if authors_sign else -1.0
    if threshold_mode == "rel":
        return value < best * (1.0 + sign * threshold)
    if threshold_mode == "abs":
        return value < best + sign * threshold
    raise ValueError(f"threshold_mode must be 'rel' or 'abs', got {threshold_mode!r}")


def plateau_update(
    state: PlateauState,
    value: float,
    examples: int,
    *,
    patience_examples: int,
    threshold: float = 1e-3,
    threshold_mode: str = "rel",
    authors_sign: bool = False,
) -> tuple[PlateauState, bool]:
    """One evaluation: ``value`` the monitored loss, ``examples`` the training pairs since the previous evaluation.

    Returns the new state and whether to cut the rate now (``bad_examples > patience_examples``).
    """
    if improves(value, state.best, threshold=threshold, threshold_mode=threshold_mode, authors_sign=authors_sign):
        return replace(state, best=value, bad_examples=0), False
    bad = state.bad_examples + examples
    if bad > patience_examples:
        return replace(state, bad_examples=0, cuts=state.cuts + 1), True
    return replace(state, bad_examples=bad), False


class AuthorsPlateauSchedule(Callback):
    """The authors' GOQA schedule: plateau cuts with patience in examples, η_α scaled at each cut, stop at a minimum
    rate (see the module docstring for the equations and the departures).

    Args:
        monitor: the logged validation loss to watch (``val/worst_group_loss`` for GR-IPO, ``val/loss`` for IPO).
        patience_examples: training pairs without improvement before a cut (authors: 3840).
        factor: the rate multiplier at a cut (authors: 0.1).
        threshold: τ of the improvement test (authors: 1e-3).
        threshold_mode: ``rel`` (authors) or ``abs``.
        authors_sign: the authors' test on the negated loss (a loss up to τ worse still "improves").
        alpha_step_factor: η_α multiplier at a cut (authors: 0.5 for GR-IPO); ignored for weightings without an η_α
            (uniform, importance, CVaR, tilted).
        min_lr: stop once the smallest rate is below ``min_lr · 1.001`` (authors: 1e-8).
    """

    def __init__(
        self,
        monitor: str = tags.VAL_WORST_GROUP_LOSS,
        patience_examples: int = 3840,
        factor: float = 0.1,
        threshold: float = 1e-3,
        threshold_mode: str = "rel",
        authors_sign: bool = False,
        alpha_step_factor: float = 0.5,
        min_lr: float = 1e-8,
    ) -> None:
        if not 0 < factor < 1:
            raise ValueError(f"factor must lie in (0, 1), got {factor}")
        if patience_examples < 0 or threshold < 0 or min_lr < 0 or alpha_step_factor <= 0:
            raise ValueError("patience_examples, threshold and min_lr must be >= 0 and alpha_step_factor > 0")
        if threshold_mode not in ("rel", "abs"):
            raise ValueError(f"threshold_mode must be 'rel' or 'abs', got {threshold_mode!r}")
        self.monitor = monitor
        self.patience_examples = patience_examples
        self.factor = factor
        self.threshold = threshold
        self.threshold_mode = threshold_mode
        self.authors_sign = authors_sign
        self.alpha_step_factor = alpha_step_factor
        self.min_lr = min_lr
        self.state = PlateauState()
        self.examples_seen = 0
        self.examples_at_last_eval = 0
        self.alpha_step_size: float | None = None  # restored into the weighting on resume

    def on_fit_start(self, trainer, pl_module) -> None:
        if trainer.lr_scheduler_configs:
            raise ValueError(
                "AuthorsPlateauSchedule sets the learning rate itself: use model.lr_scheduler: null "
                f"(found {type(trainer.lr_scheduler_configs[0].scheduler).__name__})"
            )
        if self.alpha_step_size is not None and hasattr(getattr(pl_module, "weighting", None), "step_size"):
            pl_module.weighting.step_size = self.alpha_step_size

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if isinstance(batch, dict) and "group" in batch:
            self.examples_seen += int(batch["group"].numel()) * trainer.world_size

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit":
            return
        if self.monitor not in trainer.callback_metrics:
            raise KeyError(f"AuthorsPlateauSchedule.monitor={self.monitor!r} is not a logged metric")
        value = float(trainer.callback_metrics[self.monitor])
        examples, self.examples_at_last_eval = self.examples_seen - self.examples_at_last_eval, self.examples_seen
        self.state, cut = plateau_update(
            self.state,
            value,
            examples,
            patience_examples=self.patience_examples,
            threshold=self.threshold,
            threshold_mode=self.threshold_mode,
            authors_sign=self.authors_sign,
        )
        if cut:
            self.cut(trainer, pl_module)
        if self.min_rate(trainer) < self.min_lr * 1.001:
            log.info(
                "learning rate %.3g is below %.3g: stopping (the authors' rule)", self.min_rate(trainer), self.min_lr
            )
            trainer.should_stop = True

    @staticmethod
    def min_rate(trainer) -> float:
        return min(g["lr"] for opt in trainer.optimizers for g in opt.param_groups)

    def cut(self, trainer, pl_module) -> None:
        """Multiply every rate by ``factor`` and η_α by ``alpha_step_factor``."""
        for opt in trainer.optimizers:
            for group in opt.param_groups:
                group["lr"] = group["lr"] * self.factor
        weighting = getattr(pl_module, "weighting", None)
        # Only a weighting with an η_α (robust): CVaR and tilted weightings are adaptive without a step size.
        if weighting is not None and getattr(weighting, "adaptive", False) and hasattr(weighting, "step_size"):
            weighting.step_size = weighting.step_size * self.alpha_step_factor
            self.alpha_step_size = weighting.step_size
        log.info(
            "plateau cut %d at step %d: lr -> %.3g%s",
            self.state.cuts,
            trainer.global_step,
            self.min_rate(trainer),
            f", eta_alpha -> {self.alpha_step_size:.3g}" if self.alpha_step_size is not None else "",
        )
        for logger in trainer.loggers:
            if self.alpha_step_size is not None:
                logger.log_metrics({tags.ALPHA_STEP_SIZE: self.alpha_step_size}, step=trainer.global_step)

    def state_dict(self) -> dict[str, Any]:
        return {
            "best": self.state.best,
            "bad_examples": self.state.bad_examples,
            "cuts": self.state.cuts,
            "examples_seen": self.examples_seen,
            "examples_at_last_eval": self.examples_at_last_eval,
            "alpha_step_size": self.alpha_step_size,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.state = PlateauState(state_dict["best"], state_dict["bad_examples"], state_dict["cuts"])
        self.examples_seen = state_dict["examples_seen"]
        self.examples_at_last_eval = state_dict["examples_at_last_eval"]
        self.alpha_step_size = state_dict["alpha_step_size"]


class LinearWarmup(torch.optim.lr_scheduler.LambdaLR):
    """Linear warm-up from ``1/(warmup_steps+1)`` of the learning rate to all of it, then constant
    (the DPO reference code's schedule)."""

    def __init__(self, optimizer: torch.optim.Optimizer, warmup_steps: int = 10) -> None:
        if warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}")
        self.warmup_steps = warmup_steps
        super().__init__(optimizer, lambda step: min(1.0, (step + 1) / (warmup_steps + 1)))
