"""``grpo``: LightningCLI with fit, validate, test and predict (omegaconf parser mode)."""

from __future__ import annotations

import logging
import sys
import warnings
from pathlib import Path

from jsonargparse import set_parsing_settings
from lightning import LightningDataModule
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.cli import LightningCLI

from grpo_lightning.callbacks import GroupWeightFigure, HFExport, PredictionCSVWriter, SaveTokenizer
from grpo_lightning.module import GroupRobustPreferenceModule
from grpo_lightning.opinion_alignment import OpinionAlignment

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
        parser.add_lightning_class_args(OpinionAlignment, "opinion_alignment")  # GOQA data only

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


def main(args: list[str] | None = None, run: bool = True, instantiate: bool = True) -> GroupRobustCLI:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    # The frozen reference is in eval mode on purpose.
    warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode")
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
        parser_kwargs={"parser_mode": "omegaconf+"},
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
    """The ``grpo`` console script (returns nothing, so the exit status is 0 on success)."""
    main(sys.argv[1:])


if __name__ == "__main__":
    entry_point()
