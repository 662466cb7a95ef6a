"""One optimizer step of group-robust preference optimisation (Algorithm 1 of Ramesh et al. 2024), phase by phase.

The data module yields one optimizer step's pairs per batch, and
:meth:`~grpo_lightning.training.module.GroupRobustPreferenceModule.training_step` runs these phases on it:

1. :func:`split_step`: ``accumulate_grad_batches`` micro-batches (:func:`split_pairs`), the step's group counts
   n_g summed over ranks, each micro-batch's reference log-probs;
2. :func:`alpha_before` (``update_phase == "before"``, Algorithm 1): the weighting's update from this step's group
   losses, before any backward; with several micro-batches the losses come from a no-grad pre-pass, with one from
   its own forward;
3. :func:`backward_micro_batches`: Σ_g w_g L̂_g with the current weights, back-propagated one micro-batch at a
   time. Every L̂_g uses the counts of the whole step and is linear in the loss sums, so the micro-batch objectives
   add up to the step's: accumulating 1 × 8 pairs gives the gradient of 8 × 1;
4. :func:`alpha_after` (``update_phase == "after"``, ``alpha_order: lagged``): the update from the same losses,
   so θ's gradients used the previous weights;
5. :func:`optimizer_step`: clip, step, schedule;
6. :func:`log_step`.

The weighting decides between 2 and 4 (:attr:`~grpo_lightning.core.weighting.GroupWeighting.update_phase`). Under
DDP every rank must take the same branch (a rank that skipped alone would leave the others waiting in the next
gradient all-reduce), so every sum over ranks is :func:`sum_over_ranks`, and every non-finite value ends in one
:class:`NonFiniteLoss`, found before α or θ moved and handled in one place (:func:`handle_nonfinite`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, NamedTuple

import lightning as L
import torch

from grpo_lightning.core import group_counts, group_loss_estimate, group_means, group_sums, weighted_objective
from grpo_lightning.metrics import tags
from grpo_lightning.training.sharding import fsdp_root

if TYPE_CHECKING:
    from grpo_lightning.training.module import GroupRobustPreferenceModule, PairOutputs

log = logging.getLogger(__name__)


class StepBatch(NamedTuple):
    """An optimizer step's batch, split for gradient accumulation."""

    micro: list[dict[str, torch.Tensor]]  # the micro-batches, in order
    references: list[tuple[torch.Tensor, torch.Tensor] | None]  # each one's (log π_ref(y_w|x), log π_ref(y_l|x))
    counts: torch.Tensor  # (K,) n_g: the step's pairs per group over all ranks, what every L̂_g divides by

    def pairs(self) -> Iterator[tuple[dict[str, torch.Tensor], tuple[torch.Tensor, torch.Tensor] | None]]:
        return zip(self.micro, self.references, strict=True)


class StepTotals(NamedTuple):
    """What the backward phase leaves for α after and the log (this rank's values)."""

    objective: torch.Tensor  # () Σ over the micro-batches of Σ_g w_g L̂_g, detached
    loss_sums: torch.Tensor  # (K,) float32 S_g, the per-group sums of the per-pair losses
    weights: torch.Tensor  # (K,) the weights w the step used


def sum_over_ranks(trainer: L.Trainer, t: torch.Tensor) -> torch.Tensor:
    """Σ of ``t`` over the DDP ranks (``t`` itself in one process): every collective of a training step, each run
    by every rank in the same order: the group counts, the α step's loss sums, each micro-batch's non-finite flag,
    and the logged loss sums and objective."""
    return trainer.strategy.reduce(t, reduce_op="sum") if trainer.world_size > 1 else t


# ---------------------------------------------------------------------------- the phases
def split_pairs(batch: dict[str, torch.Tensor], parts: int) -> list[dict[str, torch.Tensor]]:
    """Split a batch of B pairs into ``parts`` micro-batches (fewer when B < ``parts``). Tensors with 2B leading
    rows (chosen stacked over rejected) are split on both halves alike, so a pair's two completions stay together."""
    n = batch["group"].shape[0]
    chunks = torch.arange(n).tensor_split(min(parts, n))
    out = []
    for idx in chunks:
        idx = idx.to(batch["group"].device)
        mb = {}
        for key, value in batch.items():
            if value.shape[0] == 2 * n and n > 0 and key not in ("group",):
                mb[key] = torch.cat([value[idx], value[idx + n]])
            else:
                mb[key] = value[idx]
        out.append(mb)
    return out


def split_step(module: GroupRobustPreferenceModule, batch: dict[str, torch.Tensor]) -> StepBatch:
    """The micro-batches, the step's counts n_g ``(K,)`` over all ranks (in log α's dtype, float64) and the
    reference log-probs of each micro-batch."""
    micro = split_pairs(batch, module.hparams.accumulate_grad_batches)
    counts = sum_over_ranks(module.trainer, group_counts(batch["group"], len(module.group_names)).to(module.log_alpha))
    return StepBatch(micro, [module.batch_reference(mb) for mb in micro], counts)


def alpha_before(module: GroupRobustPreferenceModule, step: StepBatch) -> tuple[PairOutputs, torch.Tensor] | None:
    """Algorithm 1's order (``update_phase == "before"``): α moves on this step's losses before any backward.
    Several micro-batches: a no-grad pre-pass over all of them. One: its own forward, returned with its group sums
    for the backward phase to reuse (no extra compute)."""
    if module.weighting.update_phase != "before":
        return None
    k = len(module.group_names)
    if module.weighting.needs_prepass(len(step.micro)):
        with torch.no_grad():
            sums = sum(group_sums(module.pair_outputs(mb, r).losses, mb["group"], k) for mb, r in step.pairs())
        module.log_alpha = alpha_step(module, sums, step.counts)
        return None
    out = module.pair_outputs(step.micro[0], step.references[0])
    sums = group_sums(out.losses, step.micro[0]["group"], k)
    module.log_alpha = alpha_step(module, sums, step.counts)
    return out, sums


def backward_micro_batches(
    module: GroupRobustPreferenceModule, step: StepBatch, first: tuple[PairOutputs, torch.Tensor] | None
) -> StepTotals:
    """Σ_g w_g L̂_g of each micro-batch (the current weights, the whole step's counts), checked finite on every rank
    (:func:`check_objective`), back-propagated; the gradients accumulate until the optimizer step. ``first``: the
    first micro-batch's outputs and group sums when :func:`alpha_before` already ran its forward."""
    k, weights, world_size = len(module.group_names), module.group_weights(), module.trainer.world_size
    total, loss_sums = torch.zeros((), device=module.device), None
    for i, (mb, ref) in enumerate(step.pairs()):
        if i == 0 and first is not None:
            out, sums = first
        else:
            out = module.pair_outputs(mb, ref)
            sums = group_sums(out.losses, mb["group"], k)
        objective = weighted_objective(
            sums,
            step.counts,
            weights,
            estimator=module.weighting.estimator,
            train_counts=module.group_counts,
            total=step.counts.sum(),
        )
        check_objective(module, objective, mb["group"], i)
        # DDP averages gradients over ranks; the objective is a sum over all ranks' pairs.
        module.manual_backward(objective * world_size)
        total = total + objective.detach()
        loss_sums = sums.detach().float() if loss_sums is None else loss_sums + sums.detach().float()
    return StepTotals(total, loss_sums, weights)


def alpha_after(module: GroupRobustPreferenceModule, step: StepBatch, totals: StepTotals) -> None:
    """``alpha_order: lagged`` (``update_phase == "after"``): θ's gradients used the previous weights; α moves on
    the same losses now, still before the optimizer step, so a non-finite loss skips the whole step."""
    if module.weighting.update_phase == "after":
        module.log_alpha = alpha_step(module, totals.loss_sums, step.counts)


def alpha_step(module: GroupRobustPreferenceModule, loss_sums: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """The new ``log α`` (K,): the weighting's update (the robust exponentiated-gradient step, or the cvar/tilted
    log-weights) from the step's group losses L̂_g, estimated from the loss sums ``(K,)`` summed over ranks (in
    float64), the step's ``counts`` n_g and N_g. Raises :class:`NonFiniteLoss` (α untouched) when an L̂_g is not
    finite; the sums are over all ranks, so every rank decides alike."""
    weighting, train_counts = module.weighting, module.group_counts
    sums = sum_over_ranks(module.trainer, loss_sums.detach().to(torch.float64))
    estimate = group_loss_estimate(
        sums, counts, estimator=weighting.estimator, train_counts=train_counts, total=counts.sum()
    )
    check_group_losses(estimate, module.group_names)
    return weighting.update(module.log_alpha, estimate, present=counts > 0, train_counts=train_counts)


def optimizer_step(module: GroupRobustPreferenceModule) -> None:
    """Clip the accumulated gradients if asked (``model.gradient_clip_val``), one optimizer step, zero the
    gradients, one scheduler step (not ``ReduceLROnPlateau``, stepped after each validation on its metric)."""
    opt, clip, algorithm = module.optimizers(), module.hparams.gradient_clip_val, module.hparams.gradient_clip_algorithm
    root = fsdp_root(module.trainer.strategy)
    if clip is not None and root is not None and algorithm != "value":
        # Under FSDP each rank holds a shard of each gradient: the norm is the root module's, over all shards
        # (Lightning's FSDP precision refuses norm clipping; torch.nn.utils.clip_grad_norm_ would use the shard's).
        root.clip_grad_norm_(clip)
    elif clip is not None:
        module.clip_gradients(opt, gradient_clip_val=clip, gradient_clip_algorithm=algorithm)
    opt.step()
    opt.zero_grad(set_to_none=True)
    sched = module.lr_schedulers()
    if sched is not None and not isinstance(sched, torch.optim.lr_scheduler.ReduceLROnPlateau):
        sched.step()


def log_step(module: GroupRobustPreferenceModule, totals: StepTotals, counts: torch.Tensor) -> None:
    """Logs the step's objective, group mean losses and weights, and the epoch mean of the objective. ``counts``
    are already summed over ranks (the step needed them for L̂); the loss sums and the objective are summed here.

    ``train/loss`` is the weighted objective Σ_g w_g L̂_g that θ descends: its scale depends on the weighting and
    the estimator, so it is not comparable across methods. ``train/pooled_loss`` is the plain mean of the step's
    per-pair losses, Σ_g S_g / Σ_g n_g (S_g the group's loss sum), the same quantity for every method (and equal to
    ``train/loss`` under the ``uniform`` weighting). ``train/group_loss/<g>`` (groups in the step only) is S_g / n_g,
    ``train/group_weight/<g>`` is w_g. The group sums already computed for the objective are all a step logs;
    reward and log-prob accuracy are evaluation metrics only."""
    sums = sum_over_ranks(module.trainer, totals.loss_sums)
    means = group_means(sums, counts)
    values = {tags.TRAIN_LOSS: sum_over_ranks(module.trainer, totals.objective)}
    values[tags.TRAIN_POOLED_LOSS] = sums.sum() / counts.sum().clamp(min=1)
    count = counts.cpu()  # one host sync for the whole log, not one per group
    for g, name in enumerate(module.group_names):
        if count[g] > 0:
            values[tags.group_loss_tag(name)] = means[g]
        values[tags.group_weight_tag(name)] = totals.weights[g]
    n = int(count.sum())
    module.log_dict({key: v.float() for key, v in values.items()}, on_step=True, on_epoch=False, batch_size=n)
    module.train_loss_epoch.update(values[tags.TRAIN_LOSS].detach().float(), weight=n)
    module.log(tags.TRAIN_LOSS_EPOCH, module.train_loss_epoch, on_step=False, on_epoch=True, prog_bar=True)


# ---------------------------------------------------------------------------- non-finite losses, in one place
class NonFiniteLoss(Exception):
    """A NaN/inf loss, found before any weight or group weight moved. ``micro``: the micro-batch whose objective
    it was (``None``: the step's group losses)."""

    def __init__(self, what: str, micro: int | None = None) -> None:
        super().__init__(what)
        self.what, self.micro = what, micro


def check_group_losses(estimate: torch.Tensor, group_names: Sequence[str]) -> None:
    """The α step's L̂ ``(K,)``, from sums over all ranks, so every rank raises alike."""
    finite = torch.isfinite(estimate)
    if not finite.all():  # names are built only on failure, not every step
        bad = [group_names[g] for g in torch.nonzero(~finite).flatten().tolist()]
        raise NonFiniteLoss(f"non-finite group loss of {bad}")


def check_objective(
    module: GroupRobustPreferenceModule, objective: torch.Tensor, group_ids: torch.Tensor, micro: int
) -> None:
    """A micro-batch's objective, finite on every rank? Under DDP each backward all-reduces the gradients, so the
    decision is one all-reduced count of non-finite ranks, taken before the micro-batch's backward."""
    bad = (~torch.isfinite(objective)).any().to(torch.float32)
    if not bool(sum_over_ranks(module.trainer, bad) > 0):
        return
    if torch.isfinite(objective):
        raise NonFiniteLoss("non-finite loss on another rank", micro)
    groups = sorted({module.group_names[g] for g in group_ids.tolist()})
    raise NonFiniteLoss(f"non-finite loss (groups {groups})", micro)


def handle_nonfinite(err: NonFiniteLoss, on_nonfinite: str, global_step: int, batch_idx: int) -> None:
    """``model.on_nonfinite``: ``raise`` stops the run naming the step, batch, micro-batch and groups; ``skip``
    logs it (the caller then drops the step's gradients). Neither touches α or θ."""
    where = f"{err.what} at optimizer step {global_step}, batch {batch_idx}"
    where += "" if err.micro is None else f", micro-batch {err.micro}"
    if on_nonfinite == "raise":
        raise FloatingPointError(where + "; no weights or group weights were changed") from None
    log.warning("%s; skipping this optimizer step", where)
