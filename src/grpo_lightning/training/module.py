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

from grpo_lightning.core import GroupWeighting
from grpo_lightning.core.losses import IPO, PreferenceLoss
from grpo_lightning.core.weighting import UniformWeighting
from grpo_lightning.metrics import EVAL_STAGES, GroupPreferenceMetrics, tags
from grpo_lightning.policies import CausalLM, PolicySpec
from grpo_lightning.training.hparams import loss_from_data, weighting_from_data
from grpo_lightning.training.reference import ReferenceCache
from grpo_lightning.training.schedules import LinearWarmup
from grpo_lightning.training.step import (
    NonFiniteLoss,
    alpha_after,
    alpha_before,
    backward_micro_batches,
    handle_nonfinite,
    log_step,
    optimizer_step,
    split_step,
)

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
            (see :mod:`grpo_lightning.training.reference`), add them to the splits as the columns
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
        # The reference log-probs as data (precompute_ref_logps): computed or loaded at fit start, handed to the
        # data module, the reference copy freed.
        self.reference_cache = ReferenceCache(precompute_ref_logps, ref_cache_dir)

    # ------------------------------------------------------------------ the method
    def group_weights(self) -> torch.Tensor:
        return self.weighting.weights(self.log_alpha)

    def batch_reference(self, batch) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(log π_ref(y_w|x), log π_ref(y_l|x)), each ``(B,)``: the cached values the batch carries, else the
        reference's forward; ``None`` for a loss without a reference (SFT)."""
        if not self.needs_reference:
            return None
        cached = self.reference_cache.pair_logps(batch)
        return cached if cached is not None else self.policy.reference_pair_logps(batch)

    def pair_outputs(self, batch, reference) -> PairOutputs:
        """The policy's log-probs of the batch's pairs and the loss's per-pair losses and implicit rewards."""
        chosen, rejected = self.policy.pair_logps(batch)
        ref_c, ref_r = reference if reference is not None else (None, None)
        losses, cr, rr = self.loss_fn.pair_losses(chosen, rejected, ref_c, ref_r)
        return PairOutputs(losses, cr, rr, chosen, rejected, reference)

    # ------------------------------------------------------------------ training: one optimizer step, in phases
    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor | None:
        """One optimizer step (Algorithm 1; the phases are described in :mod:`grpo_lightning.training.step`).
        Returns the step's objective, or ``None`` for a step skipped at a non-finite loss (``on_nonfinite: skip``),
        which leaves α and θ as they were."""
        step = split_step(self, batch)
        try:
            first = alpha_before(self, step)
            totals = backward_micro_batches(self, step, first)
            alpha_after(self, step, totals)
        except NonFiniteLoss as err:
            handle_nonfinite(err, self.hparams.on_nonfinite, self.global_step, batch_idx)  # raises unless "skip"
            self.optimizers().zero_grad(set_to_none=True)  # the micro-batches already back-propagated
            return None
        optimizer_step(self)
        log_step(self, totals, step.counts)
        return totals.objective

    # ------------------------------------------------------------------ evaluation
    def _eval_step(self, batch, stage: str) -> None:
        out = self.pair_outputs(batch, self.batch_reference(batch))
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
                    "%s and the other %s/min_group_* values cover %d of %d groups: no %s pairs of %s",
                    tags.eval_tag(stage, "worst_group_loss"),
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
        out = self.pair_outputs(batch, self.batch_reference(batch))
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
        self.reference_cache.setup(self._trainer, stage)

    def on_fit_start(self) -> None:
        if self.needs_reference:
            self.reference_cache.fit_start(self.trainer, self.policy, self.device)

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
