"""``grpo``: LightningCLI with fit, validate, test and predict (omegaconf parser mode)."""

from __future__ import annotations

import logging
import sys
import warnings
from pathlib import Path

import lightning as L
from jsonargparse import set_parsing_settings
from lightning import LightningDataModule
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.callbacks import ProgressBar as LightningProgressBar
from lightning.pytorch.cli import LightningCLI

from grpo_lightning.callbacks import (
    GroupSummary,
    GroupWeightFigure,
    HFExport,
    PredictionCSVWriter,
    ProgressBar,
    SaveTokenizer,
)
from grpo_lightning.errors import (
    CHECKPOINT_READ_ERRORS,
    TRACEBACK_ENV,
    USER_ERRORS,
    NamedCheckpointIO,
    show_traceback,
    unreadable_checkpoint,
    user_message,
)
from grpo_lightning.module import GroupRobustPreferenceModule

log = logging.getLogger(__name__)


class GroupRobustCLI(LightningCLI):
    """Links what the model learns from the data (group names, N_g, tokenizer, accumulation)
    and adds the template's callbacks under their own config keys."""

    def add_arguments_to_parser(self, parser) -> None:
        parser.link_arguments("data.group_names", "model.group_names", apply_on="instantiate")
        parser.link_arguments("data.train_group_counts", "model.group_counts", apply_on="instantiate")
        parser.link_arguments("data.tokenizer", "model.tokenizer", apply_on="instantiate")
        parser.link_arguments("data.accumulate_grad_batches", "model.accumulate_grad_batches", apply_on="instantiate")
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults(
            {
                "data": {"class_path": "grpo_lightning.data.PreferenceDataModule"},
                "checkpoint.save_last": True,
                "checkpoint.save_top_k": 0,
            }
        )
        parser.add_lightning_class_args(GroupWeightFigure, "group_weight_figure")
        parser.add_lightning_class_args(PredictionCSVWriter, "prediction_writer")
        parser.add_lightning_class_args(SaveTokenizer, "save_tokenizer")
        parser.add_lightning_class_args(HFExport, "export")
        parser.add_lightning_class_args(LearningRateMonitor, "lr_monitor")
        parser.add_lightning_class_args(ProgressBar, "progress_bar")
        parser.add_lightning_class_args(GroupSummary, "summary")

    def before_instantiate_classes(self) -> None:
        # The module optimises manually (the α step needs the whole optimizer step first), so the
        # Trainer's own accumulation and clipping are redirected to their equivalents here.
        cfg = self.config[self.subcommand] if self.subcommand else self.config
        trainer, data, model = cfg.trainer, cfg.data, cfg.model
        if cfg.get("ckpt_path") == "last" and not cfg.checkpoint.get("dirpath"):
            cfg.ckpt_path = _latest_last_checkpoint(trainer.get("logger"))
        init = data.init_args if "init_args" in data else data
        if trainer.get("accumulate_grad_batches", 1) not in (None, 1):
            log.info(
                "trainer.accumulate_grad_batches=%s -> data.accumulate_grad_batches", trainer.accumulate_grad_batches
            )
            init.accumulate_grad_batches = trainer.accumulate_grad_batches
            trainer.accumulate_grad_batches = 1
        if trainer.get("gradient_clip_val") is not None:
            log.info("trainer.gradient_clip_val=%s -> model.gradient_clip_val", trainer.gradient_clip_val)
            model.gradient_clip_val = trainer.gradient_clip_val
            if trainer.get("gradient_clip_algorithm"):
                model.gradient_clip_algorithm = trainer.gradient_clip_algorithm
            trainer.gradient_clip_val = None
            trainer.gradient_clip_algorithm = None

    def _parse_ckpt_path(self) -> None:
        # LightningCLI reads the checkpoint's hyperparameters before anything else is built, with
        # torch's own error for a truncated file, which does not name it.
        try:
            super()._parse_ckpt_path()
        except CHECKPOINT_READ_ERRORS as err:
            raise unreadable_checkpoint(self.config[self.config.subcommand].get("ckpt_path"), err) from err

    def instantiate_trainer(self, **kwargs):
        trainer = super().instantiate_trainer(**kwargs)
        # A checkpoint torch cannot read is refused naming the file (torch's error does not).
        trainer.strategy.checkpoint_io = NamedCheckpointIO(trainer.strategy.checkpoint_io)
        return trainer

    def _instantiate_trainer(self, config: dict, callbacks: list) -> L.Trainer:
        # The progress bar is on by default; `trainer.enable_progress_bar: false` or a progress
        # bar of one's own in trainer.callbacks replaces it (Lightning refuses two, or one when
        # disabled).
        own = config.get("callbacks") or []
        own = own if isinstance(own, list) else [own]
        if config.get("enable_progress_bar") is False or any(isinstance(c, LightningProgressBar) for c in own):
            callbacks = [c for c in callbacks if not isinstance(c, ProgressBar)]
        return super()._instantiate_trainer(config, callbacks)


def _latest_last_checkpoint(logger) -> str:
    """``--ckpt_path last`` with the default per-version checkpoint folders: the newest
    ``<save_dir>/<name>/version_*/checkpoints/last.ckpt`` of the configured logger (Lightning alone
    would look in the new run's empty folder and silently start from scratch)."""
    init = (logger.get("init_args") if hasattr(logger, "get") else None) or {}
    root = Path(init.get("save_dir") or "lightning_logs") / (init.get("name") or "")
    found = sorted(root.glob("version_*/checkpoints/last.ckpt"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise FileNotFoundError(f"--ckpt_path last: no version_*/checkpoints/last.ckpt under {root}")
    log.info("--ckpt_path last -> %s", found[-1])
    return str(found[-1])


class _ParseOnlyCLI(GroupRobustCLI):
    """Parses and validates a config without building the model or data (for configs whose model
    cannot be loaded here, e.g. a hub model offline)."""

    def instantiate_classes(self) -> None:
        pass


def _drop_litlogger_tip(record: logging.LogRecord) -> bool:
    msg = str(record.msg)
    return not ("Tip:" in msg and "litlogger" in msg)


def main(args: list[str] | None = None, run: bool = True, instantiate: bool = True) -> GroupRobustCLI:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    # The frozen reference is in eval mode on purpose.
    warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode")
    # Lightning's own pytree helper still builds torch's deprecated LeafSpec; nothing to act on here.
    warnings.filterwarnings(
        "ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated", category=FutureWarning
    )
    # An advertisement for a cloud logger, printed on every run (through whichever of the two
    # rank-zero loggers Lightning imported last).
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logging.getLogger(name).addFilter(_drop_litlogger_tip)
    # omegaconf+ resolves ${...} interpolations after all configs and flags are merged, so an
    # interpolation follows a value given on the command line; paths like ${seed_everything}
    # are read from the top of the config.
    set_parsing_settings(omegaconf_absolute_to_relative_paths=True)
    cli_class = GroupRobustCLI if instantiate else _ParseOnlyCLI
    return cli_class(
        GroupRobustPreferenceModule,
        # Any DataModule that exposes group_names, train_group_counts, tokenizer and
        # accumulate_grad_batches (PreferenceDataModule and its subclasses, the bandit's).
        LightningDataModule,
        subclass_mode_data=True,
        # Errors are raised, not printed with the whole usage: ``entry_point`` prints one line.
        parser_kwargs={"parser_mode": "omegaconf+", "exit_on_error": False},
        trainer_defaults={
            "logger": {
                "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
                "init_args": {"save_dir": "logs", "name": "default"},
            },
        },
        args=args,
        run=run and instantiate,
        auto_configure_optimizers=False,
    )


def entry_point() -> None:
    """The ``grpo`` console script (returns nothing, so the exit status is 0 on success).

    An error in the data, the settings, a path or a checkpoint ends the command with one message
    naming what to fix and exit status 2; ``GRPO_TRACEBACK=1`` shows its traceback instead.
    """
    try:
        main()  # LightningCLI reads sys.argv itself
    except USER_ERRORS as err:
        if show_traceback():
            raise
        sys.stderr.write(f"grpo: error: {user_message(err)}\n(set {TRACEBACK_ENV}=1 for the traceback)\n")
        raise SystemExit(2) from None


if __name__ == "__main__":
    entry_point()
