"""``grpo``: LightningCLI with fit, validate, test and predict (omegaconf parser mode)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import torch
from jsonargparse import DefaultHelpFormatter, set_parsing_settings
from lightning import LightningDataModule
from lightning.pytorch.callbacks import LearningRateMonitor
from lightning.pytorch.callbacks import ProgressBar as LightningProgressBar
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback
from lightning.pytorch.utilities.rank_zero import rank_zero_info

from grpo_lightning.callbacks.data_report import DataReportWriter
from grpo_lightning.callbacks.export import HFExport, SaveTokenizer
from grpo_lightning.callbacks.figures import GroupWeightFigure
from grpo_lightning.callbacks.held_out import HeldOutScores
from grpo_lightning.callbacks.log_dir import log_dir_path
from grpo_lightning.callbacks.opinion_alignment import OpinionAlignment
from grpo_lightning.callbacks.predictions import PredictionCSVWriter
from grpo_lightning.callbacks.progress import ProgressBar
from grpo_lightning.callbacks.summary import GroupSummary
from grpo_lightning.cli import data_command
from grpo_lightning.cli.config_files import ComposedConfigFile
from grpo_lightning.cli.errors import TRACEBACK_ENV, USER_ERRORS, show_traceback, user_message
from grpo_lightning.cli.host_memory import HostMemory, describe, set_host_memory
from grpo_lightning.cli.resume import (
    check_trainer_limits,
    choose_tokenizer,
    last_checkpoint,
    method_differences,
    policy_args,
    refuse_other_method,
)
from grpo_lightning.training.checkpoints import (
    CHECKPOINT_READ_ERRORS,
    NamedCheckpointIO,
    RunCheckpoint,
    read_checkpoint,
    refuse_remote,
    unreadable_checkpoint,
)
from grpo_lightning.training.module import GroupRobustPreferenceModule

log = logging.getLogger(__name__)


HELP_EPILOG = """\
grpo data --config ... (the same configs and flags as fit) prints what training would see, without training:
rows kept and skipped by reason, groups and their pairs per split, token lengths, groups too small to evaluate.
The template's own settings (most of the options above are Lightning's Trainer):
  --model.*                                  listed above after the trainer's: loss (--model.loss DPO,
                                             --model.loss.beta), group weighting (--model.weighting
                                             RobustWeighting, --model.weighting.*), optimizer,
                                             precompute_ref_logps, on_nonfinite
  --model.loss.help IPO                      a loss's settings (DPO, IPO, Hinge, Exponential, ...)
  --model.weighting.help RobustWeighting     a weighting's settings (Uniform-, Importance-, Robust-,
                                             CVaR-, TiltedWeighting)
  --model.policy.help CausalLM               the policy: model, GGUF file, LoRA, dtype, prefix sharing
  --data.help PreferenceDataModule           the data: --data.path, columns, groups, batch_size,
                                             group_by_length, chat_template
  --data.help GlobalOpinionQADataModule      Global Opinion QA (countries, n_pairs)
  --print_config                             the merged configuration of a command
Configs compose: --config configs/default.yaml --config configs/loss/dpo.yaml; a file's __base__ lists the
files it builds on, read first (README.md, docs/configs.md)."""


class _HelpFormatter(DefaultHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """jsonargparse's help, with the epilog's lines kept as written."""


class RunConfig(SaveConfigCallback):
    """Lightning's ``SaveConfigCallback`` (the run's merged ``config.yaml`` in its log dir) without its
    traceback for a folder that holds one already.

    * Without a logger (``--trainer.logger false``) every run writes into ``trainer.default_root_dir``:
      a second run there writes ``config-v1.yaml`` (then ``-v2``, ...), as ``ModelCheckpoint`` names a
      second ``last.ckpt``, instead of stopping with advice the command line cannot follow.
    * With a logger, a log version that holds a ``config.yaml`` (a fixed ``version``) is refused with one
      line naming it.

    The folder is read on every rank (``run_log_dir``; Lightning's ``trainer.log_dir`` is a collective) and
    rank 0's finding is broadcast, so all ranks make the same decision."""

    def setup(self, trainer, pl_module, stage: str) -> None:
        if self.already_saved or not self.save_to_log_dir:
            return super().setup(trainer, pl_module, stage)
        log_dir = log_dir_path(trainer)
        stem, suffix = os.path.splitext(self.config_filename)
        name = self.config_filename
        if trainer.is_global_zero and not self.overwrite and (log_dir / name).is_file():
            if trainer.loggers:
                name = None
            else:
                n = 1
                while (log_dir / f"{stem}-v{n}{suffix}").is_file():
                    n += 1
                name = f"{stem}-v{n}{suffix}"
        name = trainer.strategy.broadcast(name)
        if name is None:
            raise ValueError(
                f"{log_dir / self.config_filename} exists: log version {log_dir.name} holds another run; "
                "give this run a version of its own (leave --trainer.logger.init_args.version unset)"
            )
        if name != self.config_filename:
            rank_zero_info(f"{log_dir} holds the config of an earlier run without a logger: this run's is {name}")
        self.config_filename = name
        super().setup(trainer, pl_module, stage)


class GroupRobustCLI(LightningCLI):
    """Links what the model learns from the data (group names, N_g, tokenizer, accumulation)
    and adds the template's callbacks under their own config keys."""

    def init_parser(self, **kwargs: Any) -> LightningArgumentParser:
        # LightningCLI's own parser, with a --config that reads __base__ (ComposedConfigFile).
        kwargs.setdefault("dump_header", [f"lightning.pytorch=={L.__version__}"])
        parser = self.parser_class(**kwargs)
        parser.add_argument(
            "-c",
            "--config",
            action=ComposedConfigFile,
            help="Path to a configuration file in json or yaml format; its __base__ files are read first.",
        )
        return parser

    def add_arguments_to_parser(self, parser) -> None:
        # --help lists Lightning's ~800 trainer lines first; the epilog says where the template's own options are.
        parser.epilog = HELP_EPILOG
        parser.link_arguments("data.group_names", "model.group_names", apply_on="instantiate")
        parser.link_arguments("data.train_group_counts", "model.group_counts", apply_on="instantiate")
        parser.link_arguments("data.tokenizer", "model.tokenizer", apply_on="instantiate")
        parser.link_arguments("data.accumulate_grad_batches", "model.accumulate_grad_batches", apply_on="instantiate")
        parser.add_lightning_class_args(RunCheckpoint, "checkpoint")
        # last.ckpt after every validation, every 100 steps and when a signal stops the run; no other
        # files (save_top_k 0). See RunCheckpoint and docs/reliability.md.
        parser.set_defaults(
            {
                "data": {"class_path": "grpo_lightning.data.PreferenceDataModule"},
                "checkpoint.save_last": True,
                "checkpoint.save_top_k": 0,
                "checkpoint.every_n_train_steps": 100,
                "checkpoint.save_on_exception": True,
            }
        )
        parser.add_lightning_class_args(GroupWeightFigure, "group_weight_figure")
        parser.add_lightning_class_args(PredictionCSVWriter, "prediction_writer")
        parser.add_lightning_class_args(SaveTokenizer, "save_tokenizer")
        parser.add_lightning_class_args(HFExport, "export")
        parser.add_lightning_class_args(LearningRateMonitor, "lr_monitor")
        parser.add_lightning_class_args(ProgressBar, "progress_bar")
        parser.add_lightning_class_args(GroupSummary, "summary")
        parser.add_lightning_class_args(OpinionAlignment, "opinion_alignment")  # GOQA data only
        parser.add_lightning_class_args(HeldOutScores, "held_out")  # off unless held_out.split is set
        parser.add_lightning_class_args(DataReportWriter, "data_report")  # <log dir>/data_report.json
        parser.add_argument(
            "--host_memory",
            type=HostMemory,
            default="auto",
            help="What glibc does with the CPU buffers a step frees: retain (reused, no page faults; the resident "
            "set stays at its high-water mark), release (back to the system at once: lower RSS, faults every step), "
            "auto (retain, or release with gradient checkpointing). See grpo_lightning/cli/host_memory.py.",
        )

    def before_instantiate_classes(self) -> None:
        log.info(
            "torch uses %d CPU threads (OMP_NUM_THREADS=%s)", torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS")
        )
        cfg = self.config[self.subcommand] if self.subcommand else self.config
        trainer, data, model = cfg.trainer, cfg.data, cfg.model
        # Before any model or batch is allocated (host_memory.py: why).
        checkpointing = bool(policy_args(cfg).get("gradient_checkpointing"))
        log.info(describe(set_host_memory(cfg.host_memory, gradient_checkpointing=checkpointing)))
        asked = ckpt_path = cfg.get("ckpt_path")
        if asked == "last":
            ckpt_path = cfg.ckpt_path = last_checkpoint(
                cfg.checkpoint.get("dirpath"), trainer.get("logger"), trainer.get("default_root_dir")
            )
        ckpt = read_checkpoint(ckpt_path) if ckpt_path and Path(ckpt_path).is_file() else None
        if ckpt is not None and self.subcommand in (None, "fit") and asked == "last":
            refuse_other_method(ckpt_path, method_differences(ckpt, cfg), last=True)
        check_trainer_limits(trainer, ckpt_path, ckpt if self.subcommand in (None, "fit") else None)
        choose_tokenizer(self.subcommand, cfg, ckpt_path, ckpt)
        # The module optimises manually (the α step needs the whole optimizer step first), so the
        # Trainer's own accumulation and clipping are redirected to their equivalents here.
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
        subcommand = self.config.get("subcommand")
        cfg = self.config[subcommand] if subcommand else None
        path = cfg.get("ckpt_path") if cfg is not None else None
        refuse_remote(path)
        try:
            # The method check comes first: LightningCLI replaces this run's model settings with the
            # checkpoint's, after which a loss or weighting given here could no longer be compared.
            if subcommand == "fit" and path and path != "last" and Path(path).is_file():
                refuse_other_method(path, method_differences(read_checkpoint(path), cfg), last=False)
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
        # `--trainer.logger false`: the learning-rate monitor has nothing to write to (Lightning
        # refuses it without a logger), so it is left out rather than failing at the first step.
        if config.get("logger") in (False, None):
            callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
        return super()._instantiate_trainer(config, callbacks)


class _ParseOnlyCLI(GroupRobustCLI):
    """Parses and validates a config without building the model or data (for configs whose model
    cannot be loaded here, e.g. a hub model offline)."""

    def instantiate_classes(self) -> None:
        pass


def _drop_litlogger_tip(record: logging.LogRecord) -> bool:
    msg = str(record.msg)
    return not ("Tip:" in msg and "litlogger" in msg)


def main(args: list[str] | None = None, run: bool = True, instantiate: bool = True) -> GroupRobustCLI | dict:
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
    # torchdata's StatefulDataLoader (the training loader) still calls torch's deprecated set_vital; nothing to act on.
    warnings.filterwarnings("ignore", message=r"'set_vital' is deprecated", category=UserWarning)
    # Checkpoints of manual optimisation hold the state after the step, which is what a resume continues from.
    warnings.filterwarnings("ignore", message=r"Using ModelCheckpoint with manual optimization")
    # omegaconf+ resolves ${...} interpolations after all configs and flags are merged, so an
    # interpolation follows a value given on the command line; paths like ${seed_everything}
    # are read from the top of the config.
    set_parsing_settings(omegaconf_absolute_to_relative_paths=True)
    kwargs = dict(
        model_class=GroupRobustPreferenceModule,
        # Any DataModule that exposes group_names, train_group_counts, tokenizer and
        # accumulate_grad_batches (PreferenceDataModule and its subclasses, the bandit's).
        datamodule_class=LightningDataModule,
        subclass_mode_data=True,
        # Errors are raised, not printed with the whole usage: ``entry_point`` prints one line.
        parser_kwargs={"parser_mode": "omegaconf+", "exit_on_error": False, "formatter_class": _HelpFormatter},
        trainer_defaults={
            "logger": {
                "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
                "init_args": {"save_dir": "logs", "name": "default"},
            },
        },
        save_config_callback=RunConfig,
        auto_configure_optimizers=False,
    )
    argv = sys.argv[1:] if args is None else args
    if argv[:1] == ["data"]:  # not a Trainer method: the data module alone (cli/data_command.py)
        return data_command.run(GroupRobustCLI, argv[1:], kwargs)
    cli_class = GroupRobustCLI if instantiate else _ParseOnlyCLI
    return cli_class(**kwargs, args=args, run=run and instantiate)


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
