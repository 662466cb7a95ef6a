"""``grpo``: LightningCLI with fit, validate, test and predict (omegaconf parser mode)."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import torch
from jsonargparse import DefaultHelpFormatter, Namespace, set_parsing_settings
from lightning import LightningDataModule
from lightning.pytorch.callbacks import LearningRateMonitor
from lightning.pytorch.callbacks import ProgressBar as LightningProgressBar
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback
from lightning.pytorch.utilities.rank_zero import rank_zero_info

from grpo_lightning.callbacks import (
    GroupSummary,
    GroupWeightFigure,
    HFExport,
    PredictionCSVWriter,
    ProgressBar,
    SaveTokenizer,
    run_log_dir,
)
from grpo_lightning.checkpointing import RunCheckpoint
from grpo_lightning.config import weighting_from_dict
from grpo_lightning.config_files import ComposedConfigFile
from grpo_lightning.data.generated import GeneratedOpinions
from grpo_lightning.data.module import PreferenceDataModule, source_settings
from grpo_lightning.data.tokenization import read_checkpoint
from grpo_lightning.errors import (
    CHECKPOINT_READ_ERRORS,
    TRACEBACK_ENV,
    USER_ERRORS,
    NamedCheckpointIO,
    refuse_remote,
    show_traceback,
    unreadable_checkpoint,
    user_message,
)
from grpo_lightning.held_out import HeldOutScores
from grpo_lightning.host_memory import HostMemory, describe, set_host_memory
from grpo_lightning.losses import loss_from_dict
from grpo_lightning.module import GroupRobustPreferenceModule
from grpo_lightning.opinion_alignment import OpinionAlignment

log = logging.getLogger(__name__)


HELP_EPILOG = """\
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
        log_dir = Path(run_log_dir(trainer) or trainer.default_root_dir)
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
        parser.add_argument(
            "--host_memory",
            type=HostMemory,
            default="auto",
            help="What glibc does with the CPU buffers a step frees: retain (reused, no page faults; the resident "
            "set stays at its high-water mark), release (back to the system at once: lower RSS, faults every step), "
            "auto (retain, or release with gradient checkpointing). See grpo_lightning/host_memory.py.",
        )

    def before_instantiate_classes(self) -> None:
        log.info(
            "torch uses %d CPU threads (OMP_NUM_THREADS=%s)", torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS")
        )
        cfg = self.config[self.subcommand] if self.subcommand else self.config
        trainer, data, model = cfg.trainer, cfg.data, cfg.model
        # Before any model or batch is allocated (host_memory.py: why).
        checkpointing = bool(_policy_args(cfg).get("gradient_checkpointing"))
        log.info(describe(set_host_memory(cfg.host_memory, gradient_checkpointing=checkpointing)))
        asked = ckpt_path = cfg.get("ckpt_path")
        if asked == "last":
            ckpt_path = cfg.ckpt_path = _last_checkpoint(
                cfg.checkpoint.get("dirpath"), trainer.get("logger"), trainer.get("default_root_dir")
            )
        ckpt = read_checkpoint(ckpt_path) if ckpt_path and Path(ckpt_path).is_file() else None
        if ckpt is not None and self.subcommand in (None, "fit") and asked == "last":
            _refuse_other_method(ckpt_path, _method_differences(ckpt, cfg), last=True)
        _check_trainer_limits(trainer, ckpt_path, ckpt if self.subcommand in (None, "fit") else None)
        _choose_tokenizer(self.subcommand, cfg, ckpt_path, ckpt)
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
                _refuse_other_method(path, _method_differences(read_checkpoint(path), cfg), last=False)
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


def _last_checkpoint(dirpath: str | None, logger, default_root_dir: str | None = None) -> str:
    """``--ckpt_path last``: the newest ``last*.ckpt`` in ``checkpoint.dirpath`` (left as
    ``last`` for Lightning, which warns and starts afresh, when there is none), without a logger in
    ``<default_root_dir>/checkpoints`` (where Lightning writes them then), or, with the default
    per-version checkpoint folders, in the newest run under the logger's name."""
    if dirpath:
        found = sorted(Path(dirpath).glob("last*.ckpt"), key=lambda p: p.stat().st_mtime)
        return str(found[-1]) if found else "last"
    if logger in (False, None):
        # Without a logger Lightning's ModelCheckpoint writes <default_root_dir>/checkpoints/last[-vN].ckpt.
        folder = Path(default_root_dir or os.getcwd()) / "checkpoints"
        found = sorted(folder.glob("last*.ckpt"), key=lambda p: p.stat().st_mtime)
        if not found:
            raise FileNotFoundError(f"--ckpt_path last: no last*.ckpt in {folder} (--trainer.logger false)")
        log.info("--ckpt_path last -> %s", found[-1])
        return str(found[-1])
    return _latest_last_checkpoint(logger)


def _latest_last_checkpoint(logger) -> str:
    """The newest ``<save_dir>/<name>/version_*/checkpoints/last.ckpt`` of the configured logger
    (Lightning alone would look in the new run's empty folder and silently start from scratch)."""
    init = (logger.get("init_args") if hasattr(logger, "get") else None) or {}
    root = Path(init.get("save_dir") or "lightning_logs") / (init.get("name") or "")
    found = sorted(root.glob("version_*/checkpoints/last.ckpt"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise FileNotFoundError(f"--ckpt_path last: no version_*/checkpoints/last.ckpt under {root}")
    log.info("--ckpt_path last -> %s", found[-1])
    return str(found[-1])


def _plain(value: Any) -> Any:
    return value.as_dict() if isinstance(value, Namespace) else value


def _policy_args(cfg) -> dict:
    """The policy's ``init_args`` as a dict (empty for a policy given otherwise)."""
    policy = _plain(cfg.model.get("policy")) or {}
    return (policy.get("init_args") or {}) if isinstance(policy, dict) else {}


def _data_class(data) -> type | None:
    class_path = data.get("class_path") if hasattr(data, "get") else None
    if not class_path:
        return None
    module, _, name = class_path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        return None


def _short_name(obj) -> str:
    return getattr(obj, "name", "") or type(obj).__name__


def _method_differences(ckpt: dict[str, Any], cfg) -> list[str]:
    """The method settings (loss, β, weighting, groups, data source) in which the run that wrote
    ``ckpt`` and this configuration differ, each as ``setting: checkpoint value != this run's``."""
    saved = ckpt.get("hyper_parameters") or {}
    model = cfg.model
    out = []
    # Both sides as built objects, so a legacy {name: ...} checkpoint compares with a class_path config,
    # and a different class is named by its short name (ipo, robust), as in run names.
    for key, build in (("model.loss", loss_from_dict), ("model.weighting", weighting_from_dict)):
        theirs = saved.get(key.split(".")[1])
        if theirs is None:
            continue
        theirs, current = build(theirs), build(_plain(model.get(key.split(".")[1])))
        if type(theirs) is not type(current):
            out.append(f"{key}: {_short_name(theirs)!r} != {_short_name(current)!r}")
        mine = current.to_dict()["init_args"]
        for field, value in theirs.to_dict()["init_args"].items():
            if field in mine and mine[field] != value:
                out.append(f"{key}.{field}: {value!r} != {mine[field]!r}")
    data = cfg.data
    init = _plain(data.get("init_args") if "init_args" in data else data) or {}
    data_cls = _data_class(data)
    groups = init.get("groups")
    if groups is not None and ckpt.get("group_names") is not None and list(groups) != list(ckpt["group_names"]):
        out.append(f"data.groups: {list(ckpt['group_names'])} != {list(groups)}")
    if data_cls is not None and issubclass(data_cls, PreferenceDataModule):
        theirs = (ckpt.get(data_cls.__qualname__) or {}).get("source")
        generated = init.get("generated")
        current = source_settings(
            init.get("path"),
            init.get("hub_id"),
            init.get("hub_split", "train"),
            GeneratedOpinions(**generated) if generated else None,
        )
        if theirs is not None and theirs != current:
            out.append(f"data source: {theirs} != {current}")
    return out


def _check_trainer_limits(trainer, ckpt_path: str | None, ckpt: dict[str, Any] | None) -> None:
    """``trainer.max_steps`` / ``max_epochs`` as settings (Lightning refuses them later, with a traceback), and a
    resume whose checkpoint is past ``max_epochs`` (Lightning's ``MisconfigurationException`` at restore)."""
    for key in ("max_steps", "max_epochs"):
        value = trainer.get(key)
        if value is not None and value < -1:
            raise ValueError(f"trainer.{key} must be -1 (no limit) or >= 0, got {value}")
    max_epochs, epoch = trainer.get("max_epochs"), (ckpt or {}).get("epoch")
    if epoch is not None and max_epochs not in (None, -1) and epoch > max_epochs:
        raise ValueError(
            f"--ckpt_path {ckpt_path} was saved in epoch {epoch}, past trainer.max_epochs={max_epochs}: "
            f"resume with --trainer.max_epochs {epoch + 1} or more"
        )


def _refuse_other_method(ckpt_path: str, differences: list[str], *, last: bool) -> None:
    """``fit --ckpt_path`` of a run whose method settings (loss, weighting, groups, data source) differ
    from this run's is refused: resumed, it would train one method under the other's settings and log
    name (LightningCLI takes the model settings from the checkpoint), or on other data."""
    if not differences:
        return
    what = f"--ckpt_path last is {ckpt_path}" if last else f"--ckpt_path {ckpt_path} is"
    advice = (
        "give this run its own logger name (--trainer.logger.init_args.name) or resume that run with its own "
        "config (config.yaml in its log version)"
        if last
        else "resume it with its own config (config.yaml in its log version) or start this run without --ckpt_path"
    )
    raise ValueError(
        f"{what}{',' if last else ''} a run with other method settings: "
        + "; ".join(differences)
        + f". Resuming it would mix two runs: {advice}"
    )


def _choose_tokenizer(subcommand: str | None, cfg, ckpt_path: str | None, ckpt: dict[str, Any] | None) -> None:
    """Which tokenizer the data uses: a run's own (the one in ``--ckpt_path``, else the run's saved
    ``tokenizer`` folder) whenever a checkpoint is given, never one trained on the new data; a
    pretrained policy's own unless ``data.tokenizer`` names another; a new one is trained only for
    a fresh ``fit`` of the tiny model."""
    data = cfg.data
    data_cls = _data_class(data)
    if data_cls is None or not issubclass(data_cls, PreferenceDataModule) or "init_args" not in data:
        return
    init = data.init_args
    if ckpt is not None:
        saved_dir = Path(ckpt_path).parent.parent / "tokenizer"
        source = ckpt_path if ckpt.get("tokenizer") else str(saved_dir) if saved_dir.is_dir() else None
        if source is not None:
            if init.get("tokenizer") not in (None, source):
                log.info("data.tokenizer=%s is replaced by the run's tokenizer in %s", init.tokenizer, source)
            init.tokenizer, init.tokenizer_gguf_file = source, None
            return
    policy_args = _policy_args(cfg)
    if init.get("tokenizer") is None and init.get("tokenizer_gguf_file") is None:
        name, gguf = policy_args.get("name_or_path"), policy_args.get("gguf_file")
        if name is not None or gguf is not None:
            log.info("data.tokenizer: the pretrained policy's own (%s)", " / ".join(x for x in (name, gguf) if x))
            init.tokenizer, init.tokenizer_gguf_file = name, gguf
            return
        if ckpt is not None or subcommand not in (None, "fit"):
            raise ValueError(
                f"{'--ckpt_path ' + str(ckpt_path) + ' holds no tokenizer' if ckpt is not None else 'no --ckpt_path'}"
                " and data.tokenizer is not set: a tokenizer trained on this data would not be the model's. "
                "Pass the run's checkpoint (--ckpt_path) or its tokenizer folder (--data.tokenizer)."
            )


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
    # torchdata's StatefulDataLoader (the training loader) still calls torch's deprecated set_vital; nothing to act on.
    warnings.filterwarnings("ignore", message=r"'set_vital' is deprecated", category=UserWarning)
    # Checkpoints of manual optimisation hold the state after the step, which is what a resume continues from.
    warnings.filterwarnings("ignore", message=r"Using ModelCheckpoint with manual optimization")
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
        parser_kwargs={"parser_mode": "omegaconf+", "exit_on_error": False, "formatter_class": _HelpFormatter},
        trainer_defaults={
            "logger": {
                "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
                "init_args": {"save_dir": "logs", "name": "default"},
            },
        },
        save_config_callback=RunConfig,
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
