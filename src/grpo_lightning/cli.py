"""``grpo``: LightningCLI with fit, validate, test and predict (omegaconf parser mode)."""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import inspect
import logging
import os
import re
import sys
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import torch
import yaml
from jsonargparse import ActionConfigFile, DefaultHelpFormatter, Namespace, get_config_read_mode, set_parsing_settings
from jsonargparse import Path as ConfigPath
from lightning import LightningDataModule
from lightning.pytorch.callbacks import LearningRateMonitor
from lightning.pytorch.callbacks import ProgressBar as LightningProgressBar
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from omegaconf import OmegaConf

from grpo_lightning.callbacks import (
    GroupSummary,
    GroupWeightFigure,
    HFExport,
    PredictionCSVWriter,
    ProgressBar,
    SaveTokenizer,
)
from grpo_lightning.checkpointing import RunCheckpoint
from grpo_lightning.config import weighting_from_dict
from grpo_lightning.data.generated import GeneratedOpinions
from grpo_lightning.data.module import PreferenceDataModule, source_settings
from grpo_lightning.data.tokenization import read_checkpoint
from grpo_lightning.errors import (
    CHECKPOINT_READ_ERRORS,
    TRACEBACK_ENV,
    USER_ERRORS,
    NamedCheckpointIO,
    show_traceback,
    unreadable_checkpoint,
    user_message,
)
from grpo_lightning.host_memory import ENV, cap_heap_retention
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


def method_short_name(class_path: str) -> str:
    """The short name (``ipo``, ``robust``) of the loss or weighting class a ``class_path`` names, as a bare class
    name or an import path: the ``${method:...}`` resolver of configs/base/method_name.yaml, so that run names stay
    ``<loss>_<weighting>`` (``dpo_robust``). A class without a ``name`` gives its class name in lower case."""
    from grpo_lightning.core.weighting import WEIGHTINGS
    from grpo_lightning.losses import BUILTIN_LOSSES

    for cls in (*BUILTIN_LOSSES.values(), *WEIGHTINGS.values()):
        if class_path in (cls.__name__, f"{cls.__module__}.{cls.__qualname__}"):
            return cls.name
    module_name, _, name = str(class_path).rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), name) if module_name else None
    except (ImportError, AttributeError):
        cls = None
    return getattr(cls, "name", "") or name.lower()


# Registered once at import: omegaconf+ resolves ${method:...} after all configs and flags are merged.
if not OmegaConf.has_resolver("method"):
    # omegaconf 2.4 renames register_new_resolver (now deprecated) to register_resolver.
    (getattr(OmegaConf, "register_resolver", None) or OmegaConf.register_new_resolver)("method", method_short_name)

#: The top-level key of a config file that names the files it builds on (docs/configs.md, "Bases").
BASE_KEY = "__base__"
_BASE_LINE = re.compile(rf"^{re.escape(BASE_KEY)}\s*:")


def config_bases(path: str | os.PathLike) -> list[Path]:
    """The files ``path``'s ``__base__`` names (one path or a list, each relative to ``path``'s folder), in order."""
    path = Path(path)
    loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    bases = loaded.get(BASE_KEY) if isinstance(loaded, dict) else None
    if bases is None:
        return []
    bases = [bases] if isinstance(bases, str) else bases
    if not isinstance(bases, list) or not all(isinstance(b, str) for b in bases):
        raise ValueError(f"{path}: {BASE_KEY} must be a file or a list of files, got {bases!r}")
    return [path.parent / b for b in bases]


def composed_files(path: str | os.PathLike, _chain: tuple[Path, ...] = ()) -> list[Path]:
    """``path`` with its bases expanded, depth first: the files in the order ``--config`` applies them,
    ``path`` last. A file reached twice (a diamond) is applied twice, as two ``--config`` would be."""
    path = Path(path)
    here = path.resolve()
    if here in _chain:
        raise ValueError(f"{BASE_KEY} loop: {' -> '.join(str(p) for p in (*_chain, here))}")
    if not path.is_file():
        raise FileNotFoundError(f"{_chain[-1] if _chain else 'config'}: {BASE_KEY} names {path}, which does not exist")
    return [f for base in config_bases(path) for f in composed_files(base, (*_chain, here))] + [path]


def _without_bases(text: str) -> str:
    """A config's text without its top-level ``__base__`` entry (the line and the list items or indented
    lines that continue it); every other line, comments and number spellings included, as written."""
    out, skipping = [], False
    for line in text.splitlines(keepends=True):
        if _BASE_LINE.match(line):
            skipping = True
            continue
        if skipping and (not line.strip() or line[0] in " \t-#"):
            continue
        skipping = False
        out.append(line)
    return "".join(out)


def _legacy_upgraded(text: str) -> str | None:
    """``text`` with the earlier by-name form ``model.loss: {name: ipo, beta: 0.1}`` (and ``model.weighting:
    {name: robust, ...}``) rewritten as ``{class_path: ..., init_args: {...}}``; ``None`` when it has none.

    The short names stay accepted in config files: ``name`` picks the class and the other keys become its
    ``init_args``. A key the class does not take is kept when set to anything but the old form's default, so the
    parser refuses it naming it (``rho`` on a robust weighting); at its default it meant nothing and is dropped.
    """
    loaded = yaml.safe_load(text)
    model = loaded.get("model") if isinstance(loaded, dict) else None
    if not isinstance(model, dict):
        return None
    from grpo_lightning.config import LossConfig, WeightingConfig
    from grpo_lightning.core.weighting import WEIGHTINGS
    from grpo_lightning.losses import BUILTIN_LOSSES

    changed = False
    for key, classes, legacy in (("loss", BUILTIN_LOSSES, LossConfig), ("weighting", WEIGHTINGS, WeightingConfig)):
        value = model.get(key)
        if not (isinstance(value, dict) and "name" in value and "class_path" not in value):
            continue
        name = value.pop("name")
        if name not in classes:
            raise ValueError(f"model.{key}.name: unknown {key} {name!r}; choose one of {sorted(classes)}")
        cls = classes[name]
        takes = inspect.signature(cls.__init__).parameters
        defaults = {f.name: f.default for f in dataclasses.fields(legacy) if f.default is not dataclasses.MISSING}
        init = {k: v for k, v in value.items() if k in takes or defaults.get(k, object()) != v}
        model[key] = {"class_path": f"{cls.__module__}.{cls.__qualname__}", "init_args": init}
        changed = True
    return yaml.safe_dump(loaded, sort_keys=False) if changed else None


class ComposedConfigFile(ActionConfigFile):
    """``--config`` that also reads a file's ``__base__``: its bases are applied first, in order (each with
    its own bases), then the file itself, exactly as if each had been given as ``--config`` before it.

    jsonargparse has no include of its own that an experiment could also override: ``trainer: file.yaml``
    loads one group from a file but leaves no room for the experiment's own trainer keys, and a ``config:``
    key inside a file is ignored.
    """

    @staticmethod
    def apply_config(parser, cfg, dest, value) -> None:
        path = Path(str(value)) if isinstance(value, (str, os.PathLike)) else None
        if path is None or not path.is_file() or not config_bases(path):
            if path is not None and path.is_file() and _legacy_upgraded(path.read_text(encoding="utf-8")):
                ComposedConfigFile._apply_without_bases(parser, cfg, dest, path)
                return
            ActionConfigFile.apply_config(parser, cfg, dest, value)
            return
        *bases, _ = composed_files(path)
        for base in bases:
            if not config_bases(base) and not _legacy_upgraded(base.read_text(encoding="utf-8")):
                ActionConfigFile.apply_config(parser, cfg, dest, str(base))
            else:
                ComposedConfigFile._apply_without_bases(parser, cfg, dest, base)
        ComposedConfigFile._apply_without_bases(parser, cfg, dest, path)

    @staticmethod
    def _apply_without_bases(parser, cfg, dest, path: Path) -> None:
        # jsonargparse refuses an unknown key, so the file goes in as its text without __base__, read with the
        # file's folder as the base of relative paths inside it, and is recorded under --config as itself.
        content = _without_bases(path.read_text(encoding="utf-8"))
        if yaml.safe_load(content) is None:  # nothing but bases
            return
        content = _legacy_upgraded(content) or content
        config_path = ConfigPath(str(path), mode=get_config_read_mode())
        try:
            with config_path.relative_path_context():
                ActionConfigFile.apply_config(parser, cfg, dest, content)
        except (TypeError, ValueError) as err:
            raise type(err)(f"{path}: {err}") from err
        cfg[dest][-1] = config_path


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

    def before_instantiate_classes(self) -> None:
        log.info(
            "torch uses %d CPU threads (OMP_NUM_THREADS=%s)", torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS")
        )
        cfg = self.config[self.subcommand] if self.subcommand else self.config
        trainer, data, model = cfg.trainer, cfg.data, cfg.model
        asked = ckpt_path = cfg.get("ckpt_path")
        if asked == "last":
            ckpt_path = cfg.ckpt_path = _last_checkpoint(cfg.checkpoint.get("dirpath"), trainer.get("logger"))
        ckpt = read_checkpoint(ckpt_path) if ckpt_path and Path(ckpt_path).is_file() else None
        if ckpt is not None and self.subcommand in (None, "fit"):
            differences = _method_differences(ckpt, cfg)
            if differences and asked == "last":
                raise ValueError(
                    f"--ckpt_path last is {ckpt_path}, a run with other method settings: "
                    + "; ".join(differences)
                    + ". Resuming it would mix two runs: give this run its own logger name "
                    "(--trainer.logger.init_args.name) or pass that checkpoint's path to resume it anyway."
                )
            for difference in differences:
                log.warning("resuming %s with other settings: %s", ckpt_path, difference)
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
        # `--trainer.logger false`: the learning-rate monitor has nothing to write to (Lightning
        # refuses it without a logger), so it is left out rather than failing at the first step.
        if config.get("logger") in (False, None):
            callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
        return super()._instantiate_trainer(config, callbacks)


def _last_checkpoint(dirpath: str | None, logger) -> str:
    """``--ckpt_path last``: the newest ``last*.ckpt`` in ``checkpoint.dirpath`` (left as
    ``last`` for Lightning, which warns and starts afresh, when there is none) or, with the default
    per-version checkpoint folders, in the newest run under the logger's name."""
    if dirpath:
        found = sorted(Path(dirpath).glob("last*.ckpt"), key=lambda p: p.stat().st_mtime)
        return str(found[-1]) if found else "last"
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
    policy = _plain(cfg.model.get("policy")) or {}
    policy_args = (policy.get("init_args") or {}) if isinstance(policy, dict) else {}
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
    if cap_heap_retention():  # before any tensor is allocated (host_memory.py: why)
        log.info(
            "glibc mmap threshold fixed at 4 MiB (freed activation buffers go back to the system; %s overrides)", ENV
        )
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
