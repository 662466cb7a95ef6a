"""The LightningModule: policy, frozen reference, group weights; log-probs → loss → log."""

from __future__ import annotations

import logging
import math
from typing import Any, Literal, NamedTuple

import lightning as L
import torch
from jsonargparse import lazy_instance
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torchmetrics import MeanMetric

from grpo_lightning.core import (
    GroupWeighting,
    group_counts,
    group_loss_estimate,
    group_means,
    group_sums,
    weighted_objective,
)
from grpo_lightning.core.losses import IPO, PreferenceLoss
from grpo_lightning.core.weighting import UniformWeighting
from grpo_lightning.data.ref_cache import (
    CHOSEN_KEY,
    REF_COLUMNS,
    REJECTED_KEY,
    Ranks,
    ReferenceLogps,
    cached_reference_logps,
    data_fingerprint,
    weights_fingerprint,
)
from grpo_lightning.metrics import EVAL_STAGES, GroupPreferenceMetrics, tags
from grpo_lightning.policies import CausalLM, PolicySpec
from grpo_lightning.training.batching import split_pairs
from grpo_lightning.training.hparams import loss_from_data, weighting_from_data
from grpo_lightning.training.schedules import LinearWarmup
from grpo_lightning.training.sharding import fsdp_root, shards_parameters

log = logging.getLogger(__name__)

# The tiny causal LM; a lazy instance so the CLI can override its init_args from a YAML overlay.
DEFAULT_POLICY = lazy_instance(CausalLM)
# IPO at β 0.1 and the pooled mean (plain IPO); lazy for the same reason (--model.loss.beta 0.5 edits it).
DEFAULT_LOSS = lazy_instance(IPO, beta=0.1)
DEFAULT_WEIGHTING = lazy_instance(UniformWeighting)


class PairOutputs(NamedTuple):
    losses: torch.Tensor
    chosen_rewards: torch.Tensor
    rejected_rewards: torch.Tensor
    policy_chosen: torch.Tensor
    policy_rejected: torch.Tensor
    reference: tuple[torch.Tensor, torch.Tensor] | None


class GroupRobustPreferenceModule(L.LightningModule):
    """Group-robust preference optimisation (Ramesh et al. 2024) and its baselines.

    Optimisation is manual because the group-weight step must see the losses of all
    micro-batches of an optimizer step before the first backward (``alpha_order: paper``).
    The data module therefore yields one optimizer step per batch, and this module splits it
    into ``accumulate_grad_batches`` micro-batches.

    Args:
        policy: the policy spec (default: the tiny causal LM built from a config).
        loss: the preference loss, a :class:`~grpo_lightning.core.losses.PreferenceLoss` with its own settings
            (``class_path`` + ``init_args`` in YAML, which is also what a checkpoint stores).
        weighting: how group losses are weighted, a :class:`~grpo_lightning.core.weighting.GroupWeighting`
            (uniform / importance / robust / cvar / tilted) with its own settings (``class_path`` + ``init_args``).
        group_names: the groups, in id order (linked from the data).
        group_counts: N_g, training pairs per group (linked from the data).
        tokenizer: the data's tokenizer (linked from the data; saved with checkpoints).
        accumulate_grad_batches: micro-batches per optimizer step.
        gradient_clip_val: clip the gradient norm (or value) to this; ``None`` = no clipping.
        gradient_clip_algorithm: ``norm`` or ``value``.
        optimizer: the optimizer (default AdamW).
        lr_scheduler: the schedule (default linear warm-up); ``ReduceLROnPlateau`` is stepped
            on ``lr_scheduler_monitor`` after each validation.
        lr_scheduler_monitor: the metric ``ReduceLROnPlateau`` watches.
        on_nonfinite: ``raise`` stops the run at a NaN/inf loss before any backward, naming the
            step, batch, micro-batch and groups; ``skip`` skips that optimizer step.
        precompute_ref_logps: at the start of ``fit``, run the reference once over the data
            module's train/val/test splits (no grad, sharded over DDP ranks), cache the log-probs
            (see :mod:`grpo_lightning.data.ref_cache`), add them to the splits as the columns
            ``ref_chosen_logps``/``ref_rejected_logps`` (so every batch carries them) and free the
            reference copy for the rest of the run.
        ref_cache_dir: directory of the reference log-prob cache files (default
            ``<trainer.default_root_dir>/ref_logps``); a file is reused only for the same data
            and the same reference weights.
    """

    def __init__(
        self,
        policy: PolicySpec = DEFAULT_POLICY,
        loss: PreferenceLoss = DEFAULT_LOSS,
        weighting: GroupWeighting = DEFAULT_WEIGHTING,
        group_names: list[str] | None = None,
        group_counts: list[int] | None = None,
        tokenizer: Any = None,
        accumulate_grad_batches: int = 1,
        gradient_clip_val: float | None = None,
        gradient_clip_algorithm: Literal["norm", "value"] = "norm",
        optimizer: OptimizerCallable = torch.optim.AdamW,
        lr_scheduler: LRSchedulerCallable | None = LinearWarmup,
        lr_scheduler_monitor: str = tags.VAL_LOSS,
        on_nonfinite: Literal["raise", "skip"] = "raise",
        precompute_ref_logps: bool = False,
        ref_cache_dir: str | None = None,
    ) -> None:
        super().__init__()
        self.automatic_optimization = False
        policy = PolicySpec.from_dict(policy) if policy is not None else CausalLM()
        loss, weighting = loss_from_data(loss), weighting_from_data(weighting)
        if not group_names or not group_counts:
            raise ValueError("model.group_names and model.group_counts are required (the CLI links them from the data)")
        if len(group_names) != len(group_counts) or min(group_counts) < 1:
            raise ValueError(f"model.group_counts {group_counts} must give N_g >= 1 for each of {group_names}")
        if accumulate_grad_batches < 1:
            raise ValueError(f"model.accumulate_grad_batches must be >= 1, got {accumulate_grad_batches}")
        if gradient_clip_val is not None and not (gradient_clip_val > 0 and math.isfinite(gradient_clip_val)):
            raise ValueError(f"model.gradient_clip_val must be a finite number > 0, got {gradient_clip_val}")
        if on_nonfinite not in ("raise", "skip"):
            raise ValueError(f"model.on_nonfinite must be 'raise' or 'skip', got {on_nonfinite!r}")
        # Plain data only in the hyperparameters, so checkpoints load with weights_only=True.
        self.save_hyperparameters(
            {
                "policy": policy.to_dict(),
                "loss": loss.to_dict(),
                "weighting": weighting.to_dict(),
                "group_names": list(group_names),
                "group_counts": [int(c) for c in group_counts],
                "accumulate_grad_batches": accumulate_grad_batches,
                "gradient_clip_val": gradient_clip_val,
                "gradient_clip_algorithm": gradient_clip_algorithm,
                "lr_scheduler_monitor": lr_scheduler_monitor,
                "on_nonfinite": on_nonfinite,
                "precompute_ref_logps": precompute_ref_logps,
                "ref_cache_dir": ref_cache_dir,
            }
        )
        self.loss_fn, self.weighting = loss, weighting
        self.group_names = list(group_names)
        self.tokenizer = tokenizer
        self.optimizer_factory, self.lr_scheduler_factory = optimizer, lr_scheduler
        self.needs_reference = loss.needs_reference
        self.policy = policy.build(tokenizer)
        counts = torch.tensor(group_counts, dtype=torch.float64)
        self.register_buffer("group_counts", counts, persistent=False)
        # log α, in the checkpoint so a resumed run continues from the same weights.
        self.register_buffer("log_alpha", self.weighting.initial_log_alpha(counts))
        self.metrics = torch.nn.ModuleDict({s: GroupPreferenceMetrics(self.group_names, s) for s in EVAL_STAGES})
        self._coverage_warned: set[tuple[str, tuple[str, ...]]] = set()
        # The epoch mean of the training loss, in the checkpoint so a run resumed mid-epoch logs
        # the same train/loss_epoch as an uninterrupted one (Lightning does not save its own).
        self.train_loss_epoch = MeanMetric()
        self.train_loss_epoch.persistent(True)
        self.reference_logps: ReferenceLogps | None = None

    # ------------------------------------------------------------------ the method
    def group_weights(self) -> torch.Tensor:
        return self.weighting.weights(self.log_alpha)

    def _reference(self, batch) -> tuple[torch.Tensor, torch.Tensor] | None:
        if not self.needs_reference:
            return None
        # Only this module's own cache is trusted: columns left by another run's reference are ignored.
        if CHOSEN_KEY in batch and self.reference_logps is not None:
            return batch[CHOSEN_KEY], batch[REJECTED_KEY]
        return self.policy.reference_pair_logps(batch)

    def _pair_outputs(self, batch, reference) -> PairOutputs:
        chosen, rejected = self.policy.pair_logps(batch)
        ref_c, ref_r = reference if reference is not None else (None, None)
        losses, cr, rr = self.loss_fn.pair_losses(chosen, rejected, ref_c, ref_r)
        return PairOutputs(losses, cr, rr, chosen, rejected, reference)

    def _all_reduce(self, t: torch.Tensor) -> torch.Tensor:
        return self.trainer.strategy.reduce(t, reduce_op="sum") if self.trainer.world_size > 1 else t

    def _finite_on_every_rank(self, t: torch.Tensor) -> bool:
        """Whether ``t`` is finite on every rank. Under DDP each backward all-reduces the gradients, so a
        rank that raised or skipped alone would leave the others waiting in that all-reduce: the decision
        is one all-reduced count of non-finite ranks, taken before any backward of the micro-batch."""
        bad = (~torch.isfinite(t)).any().to(torch.float32)
        return not bool(self._all_reduce(bad) > 0)

    def _update_alpha(self, loss_sums: torch.Tensor, counts: torch.Tensor, batch_idx: int) -> bool:
        """One weighting update (the robust exponentiated-gradient step, or the cvar/tilted weights)
        from the whole step's (all-reduced) group losses.
        Returns False (α untouched) when the losses are not finite and ``on_nonfinite: skip``."""
        sums = self._all_reduce(loss_sums.detach().to(torch.float64))
        estimate = group_loss_estimate(
            sums, counts, estimator=self.weighting.estimator, train_counts=self.group_counts, total=counts.sum()
        )
        finite = torch.isfinite(estimate)
        if not finite.all():  # names are built only on failure, not every step
            bad = [self.group_names[g] for g in torch.nonzero(~finite).flatten().tolist()]
            return self._nonfinite(f"non-finite group loss of {bad}", batch_idx, None)
        self.log_alpha = self.weighting.update(
            self.log_alpha, estimate, present=counts > 0, train_counts=self.group_counts
        )
        return True

    def _nonfinite(self, what: str, batch_idx: int, micro: int | None) -> bool:
        """Raise (default) or log and drop the step's gradients; never touches α or θ."""
        where = f"{what} at optimizer step {self.global_step}, batch {batch_idx}"
        where += "" if micro is None else f", micro-batch {micro}"
        if self.hparams.on_nonfinite == "raise":
            raise FloatingPointError(where + "; no weights or group weights were changed")
        log.warning("%s; skipping this optimizer step", where)
        self.optimizers().zero_grad(set_to_none=True)
        return False

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor | None:
        k = len(self.group_names)
        micro = split_pairs(batch, self.hparams.accumulate_grad_batches)
        counts = self._all_reduce(group_counts(batch["group"], k).to(self.log_alpha))
        references = [self._reference(mb) for mb in micro]
        paper_order = self.weighting.adaptive and self.weighting.alpha_order == "paper"
        if paper_order and len(micro) > 1:  # no-grad pre-pass: the step's losses before any backward
            with torch.no_grad():
                sums = sum(
                    group_sums(self._pair_outputs(mb, r).losses, mb["group"], k)
                    for mb, r in zip(micro, references, strict=True)
                )
            if not self._update_alpha(sums, counts, batch_idx):
                return None
        loss_sums, total, weights = None, torch.zeros((), device=self.device), None
        for i, (mb, ref) in enumerate(zip(micro, references, strict=True)):
            out = self._pair_outputs(mb, ref)
            sums = group_sums(out.losses, mb["group"], k)
            if paper_order and len(micro) == 1 and not self._update_alpha(sums, counts, batch_idx):
                return None
            weights = self.group_weights()
            objective = weighted_objective(
                sums,
                counts,
                weights,
                estimator=self.weighting.estimator,
                train_counts=self.group_counts,
                total=counts.sum(),
            )
            if not self._finite_on_every_rank(objective):
                groups = sorted({self.group_names[g] for g in mb["group"].tolist()})
                where = "" if torch.isfinite(objective) else f" (groups {groups})"
                what = f"non-finite loss{where}" if where else "non-finite loss on another rank"
                return self._nonfinite(what, batch_idx, i) or None
            # DDP averages gradients over ranks; the objective is a sum over all ranks' pairs.
            self.manual_backward(objective * self.trainer.world_size)
            total = total + objective.detach()
            # The group sums already computed for the objective are all a training step logs (with the
            # step's counts); reward and log-prob accuracy are evaluation metrics only.
            loss_sums = sums.detach().float() if loss_sums is None else loss_sums + sums.detach().float()
        lagged = self.weighting.adaptive and self.weighting.alpha_order == "lagged"
        if lagged and not self._update_alpha(loss_sums, counts, batch_idx):
            return None
        self._optimizer_step()
        self._log_train(total, loss_sums, counts, weights)
        return total

    def _optimizer_step(self) -> None:
        opt = self.optimizers()
        root = fsdp_root(self.trainer.strategy)
        if (
            self.hparams.gradient_clip_val is not None
            and root is not None
            and self.hparams.gradient_clip_algorithm != "value"
        ):
            # Under FSDP each rank holds a shard of each gradient: the norm is the root module's, over all shards
            # (Lightning's FSDP precision refuses norm clipping; torch.nn.utils.clip_grad_norm_ would use the shard's).
            root.clip_grad_norm_(self.hparams.gradient_clip_val)
        elif self.hparams.gradient_clip_val is not None:
            self.clip_gradients(
                opt,
                gradient_clip_val=self.hparams.gradient_clip_val,
                gradient_clip_algorithm=self.hparams.gradient_clip_algorithm,
            )
        opt.step()
        opt.zero_grad(set_to_none=True)
        sched = self.lr_schedulers()
        if sched is not None and not isinstance(sched, torch.optim.lr_scheduler.ReduceLROnPlateau):
            sched.step()

    def _log_train(
        self, objective: torch.Tensor, loss_sums: torch.Tensor, counts: torch.Tensor, weights: torch.Tensor
    ) -> None:
        """Logs the step's objective, group mean losses and weights. ``counts`` are already summed over ranks
        (the step needed them for the α step); the loss sums are all-reduced here, once.

        ``train/loss`` is the weighted objective Σ_g w_g L̂_g that θ descends: its scale depends on the weighting
        and the estimator, so it is not comparable across methods. ``train/pooled_loss`` is the plain mean of the
        step's per-pair losses, Σ_g S_g / Σ_g N_g (S_g the group's loss sum), the same quantity for every method
        (and equal to ``train/loss`` under the ``uniform`` weighting)."""
        sums = self._all_reduce(loss_sums)
        means = group_means(sums, counts)
        values = {tags.TRAIN_LOSS: self._all_reduce(objective) if self.trainer.world_size > 1 else objective}
        values[tags.TRAIN_POOLED_LOSS] = sums.sum() / counts.sum().clamp(min=1)
        count = counts.cpu()  # one host sync for the whole log, not one per group
        for g, name in enumerate(self.group_names):
            if count[g] > 0:
                values[tags.group_loss_tag(name)] = means[g]
            values[tags.group_weight_tag(name)] = weights[g]
        n = int(count.sum())
        self.log_dict({key: v.float() for key, v in values.items()}, on_step=True, on_epoch=False, batch_size=n)
        self.train_loss_epoch.update(values[tags.TRAIN_LOSS].detach().float(), weight=n)
        self.log(tags.TRAIN_LOSS_EPOCH, self.train_loss_epoch, on_step=False, on_epoch=True, prog_bar=True)

    # ------------------------------------------------------------------ evaluation
    def _eval_step(self, batch, stage: str) -> None:
        out = self._pair_outputs(batch, self._reference(batch))
        ref = out.reference or (None, None)
        self.metrics[stage].update(
            out.losses,
            out.chosen_rewards,
            out.rejected_rewards,
            out.policy_chosen,
            out.policy_rejected,
            *ref,
            batch["group"],
        )

    def _eval_epoch_end(self, stage: str) -> None:
        # The metric states are already reduced over ranks by torchmetrics.
        values = self.metrics[stage].compute()
        self.log_dict(values, sync_dist=False)
        self.metrics[stage].reset()
        # The worst-group value silently ranges over fewer groups when some have no pairs here:
        # say which, once per stage and set of absent groups (not for the sanity check's few batches).
        absent = tuple(g for g in self.group_names if tags.eval_group_tag(stage, "loss", g) not in values)
        trainer = self._trainer
        if absent and (stage, absent) not in self._coverage_warned and not (trainer and trainer.sanity_checking):
            self._coverage_warned.add((stage, absent))
            if trainer is None or trainer.is_global_zero:
                log.warning(
                    "%s/worst_group_loss and the other %s/min_group_* values cover %d of %d groups: no %s pairs of %s",
                    stage,
                    stage,
                    len(self.group_names) - len(absent),
                    len(self.group_names),
                    stage,
                    list(absent),
                )

    def validation_step(self, batch, batch_idx):
        self._eval_step(batch, "val")

    def test_step(self, batch, batch_idx):
        self._eval_step(batch, "test")

    def on_validation_epoch_end(self) -> None:
        self._eval_epoch_end("val")
        sched = self.lr_schedulers() if self.trainer.state.fn == "fit" and not self.trainer.sanity_checking else None
        if isinstance(sched, torch.optim.lr_scheduler.ReduceLROnPlateau):
            monitor = self.hparams.lr_scheduler_monitor
            if monitor not in self.trainer.callback_metrics:
                raise KeyError(f"model.lr_scheduler_monitor={monitor!r} is not a logged metric")
            sched.step(self.trainer.callback_metrics[monitor])

    def on_test_epoch_end(self) -> None:
        self._eval_epoch_end("test")

    def predict_step(self, batch, batch_idx) -> dict[str, torch.Tensor]:
        out = self._pair_outputs(batch, self._reference(batch))
        return {
            "index": batch["index"],
            "group": batch["group"],
            "loss": out.losses.detach(),
            "chosen_reward": out.chosen_rewards,
            "rejected_reward": out.rejected_rewards,
            "margin": out.chosen_rewards - out.rejected_rewards,
        }

    # ------------------------------------------------------------------ cached reference log-probs
    def setup(self, stage: str) -> None:
        sharded = self._trainer is not None and shards_parameters(self._trainer.strategy)
        if stage == "fit" and self.hparams.get("precompute_ref_logps") and sharded:
            # The cache is keyed by a fingerprint of the reference's weights, which a rank holds only a shard of.
            raise ValueError(
                "model.precompute_ref_logps is not supported with a strategy that shards the parameters (FSDP): "
                "use DDP, or leave it off"
            )
        # validate/test/predict after a fit freed the reference: give the data module (perhaps a fresh one) the
        # columns too, for the splits that are the data the cache was computed on.
        dm = self._trainer.datamodule if self._trainer is not None else None
        if stage != "fit" and self.reference_logps is not None and hasattr(dm, "set_dataset"):
            self._add_reference_columns(check=True)

    def on_fit_start(self) -> None:
        if not (self.hparams.get("precompute_ref_logps") and self.needs_reference):
            return
        fresh = self.reference_logps is None
        if fresh:
            self.reference_logps = self._reference_logps()
            self._free_reference()
        # A second fit of this module may bring other data: only splits the cache was computed on get columns.
        self._add_reference_columns(check=not fresh)

    def _reference_data(self):
        dm = self.trainer.datamodule
        if dm is None or not hasattr(dm, "set_dataset"):
            raise ValueError("model.precompute_ref_logps needs a PreferenceDataModule passed to the Trainer")
        return dm

    def _reference_logps(self) -> ReferenceLogps:
        """The splits' reference log-probs, loaded or computed (see :func:`cached_reference_logps`); this wires
        the trainer and the policy into it."""
        from grpo_lightning.data.tokenization import PairCollator

        dm, policy, trainer = self._reference_data(), self.policy, self.trainer
        if not hasattr(policy, "reference_state_dict"):
            raise ValueError(f"model.precompute_ref_logps is not supported by {type(policy).__name__}")
        splits = {s: dm.dataset(s) for s in ("train", "val", "test") if len(dm.dataset(s))}
        directory = self.hparams.get("ref_cache_dir") or f"{trainer.default_root_dir}/ref_logps"
        strategy = trainer.strategy
        was_training = policy.training
        policy.eval()
        try:
            with trainer.precision_plugin.forward_context():
                return cached_reference_logps(
                    splits,
                    policy.reference_pair_logps,
                    reference=weights_fingerprint(policy.reference_state_dict()),
                    directory=directory,
                    batch_size=getattr(dm, "eval_batch_size", None) or 16,
                    collate=PairCollator(dm.tokenizer.pad_token_id),
                    device=self.device,
                    settings={
                        "average_log_prob": bool(policy.average_log_prob),
                        "policy": type(policy).__name__,
                        "precision": str(trainer.precision),  # bf16-mixed log-probs differ from float32 ones
                    },
                    ranks=Ranks(trainer.global_rank, trainer.world_size, strategy.all_gather, strategy.broadcast),
                )
        finally:
            policy.train(was_training)

    def _free_reference(self) -> None:
        """Drop the policy's reference copy: from here on the data carries its log-probs (a LoRA policy's
        reference is the base model with the adapter off, so it has none to free)."""
        import gc

        if getattr(self.policy, "reference", None) is None:
            return
        self.policy.free_reference()
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        log.info("reference model freed: training uses the cached reference log-probs")

    def _add_reference_columns(self, check: bool = False) -> None:
        """Put the cached values into the data module's splits as columns, before any loader is made (the hooks
        that call this run before Lightning builds the dataloaders), so the collator batches them. With ``check``
        (a data module the values were not just computed for), only splits with the cached data fingerprint
        get them; the others lose any reference columns they carry, so no batch holds another run's values (and
        with the reference freed, the policy says so when asked for it)."""
        dm, cache = self._reference_data(), self.reference_logps
        for split in cache.tables:
            ds = dm.dataset(split)
            if not check or data_fingerprint(ds) == cache.data.get(split):
                dm.set_dataset(split, cache.columns(split, ds))
            elif any(c in ds.column_names for c in REF_COLUMNS):
                dm.set_dataset(split, ds.remove_columns([c for c in REF_COLUMNS if c in ds.column_names]))

    # ------------------------------------------------------------------ optimisation and checkpoints
    def configure_optimizers(self):
        optimizer = self.optimizer_factory(self.policy.trainable_parameters())
        if self.lr_scheduler_factory is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": self.lr_scheduler_factory(optimizer)}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["group_names"] = list(self.group_names)
        if self.tokenizer is not None and hasattr(self.tokenizer, "backend_tokenizer"):
            checkpoint["tokenizer"] = {
                "json": self.tokenizer.backend_tokenizer.to_str(),
                "special_tokens": {k: str(v) for k, v in self.tokenizer.special_tokens_map.items()},
            }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # The step of the loaded weights, for what validate/test/predict report (they do not restore global_step).
        self.checkpoint_step = checkpoint.get("global_step")
        fresh = self.train_loss_epoch.state_dict(prefix="train_loss_epoch.")
        for key, value in fresh.items():
            checkpoint.get("state_dict", {}).setdefault(key, value)  # checkpoints from before it existed
        # A checkpoint written after an epoch's last batch (by the step trigger, at the epoch's end or
        # on a signal) holds that finished epoch's mean, which Lightning resets only after saving; the
        # resumed run starts the next epoch, whose mean starts empty.
        progress = (checkpoint.get("loops") or {}).get("fit_loop", {}).get("epoch_loop.batch_progress", {})
        if progress.get("is_last_batch") and "state_dict" in checkpoint:
            checkpoint["state_dict"].update(fresh)
        # A run with precompute_ref_logps freed its reference copy, so its checkpoints hold none:
        # keep this module's (the same initial weights), and drop a saved one this module lacks.
        state, prefix = checkpoint.get("state_dict"), "policy.reference."
        if state is not None:
            saved = [k for k in state if k.startswith(prefix)]
            own = any(name.startswith(prefix) for name, _ in self.named_parameters())
            if own and not saved:
                # The values only when needed: a state_dict of a sharded (FSDP) module is a collective.
                state.update({k: v for k, v in self.state_dict().items() if k.startswith(prefix)})
            elif saved and not own:
                for k in saved:
                    del state[k]
        saved = checkpoint.get("group_names")
        if saved is not None and list(saved) != self.group_names:
            only_ckpt = [g for g in saved if g not in self.group_names]
            only_run = [g for g in self.group_names if g not in saved]
            diff = (
                f"only in the checkpoint: {only_ckpt}; only in this run: {only_run}"
                if only_ckpt or only_run
                else "the same groups in another order"
            )
            raise ValueError(
                f"the checkpoint was trained on groups {list(saved)} but this run has {self.group_names} "
                f"({diff}); resuming would mix up the group weights. Use the same data and data.groups."
            )
        self._check_vocabulary(checkpoint)

    def _check_vocabulary(self, checkpoint: dict[str, Any]) -> None:
        """Refuse a checkpoint whose tokenizer or embedding size is not this module's, before any
        weight is loaded: token ids of another tokenizer would silently read the wrong embeddings
        (and another size fails deep inside ``load_state_dict``)."""
        saved = checkpoint.get("tokenizer")
        if saved and self.tokenizer is not None and hasattr(self.tokenizer, "get_vocab"):
            from tokenizers import Tokenizer

            theirs, ours = Tokenizer.from_str(saved["json"]).get_vocab(), self.tokenizer.get_vocab()
            if theirs != ours:
                moved = sum(ours.get(token) != i for token, i in theirs.items())
                raise ValueError(
                    f"the checkpoint's tokenizer has {len(theirs)} tokens, this run's {len(ours)}, and {moved} of "
                    "the checkpoint's tokens have another id or none here: the weights would read the wrong "
                    "embeddings. Use the checkpoint's tokenizer (grpo does with --ckpt_path; or data.tokenizer=<ckpt>)"
                )
        embeddings = getattr(getattr(self.policy, "model", None), "get_input_embeddings", lambda: None)()
        if embeddings is None or "state_dict" not in checkpoint:
            return
        # The size from the module, not from the weight: under FSDP a rank holds a flat shard of it.
        size = getattr(embeddings, "num_embeddings", None)
        for name, param in self.named_parameters():
            if param is embeddings.weight and name in checkpoint["state_dict"]:
                rows = checkpoint["state_dict"][name].shape[0]
                size = param.shape[0] if size is None else size
                if rows != size:
                    raise ValueError(
                        f"the checkpoint's vocabulary has {rows} tokens (embedding rows) but this run's model "
                        f"{size} (from a tokenizer of {len(self.tokenizer) if self.tokenizer else '?'} "
                        "tokens): use the run's tokenizer (data.tokenizer=<ckpt>)"
                    )
                return
