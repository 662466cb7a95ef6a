"""What ``--ckpt_path`` names and whether this run may use it, decided from the merged configuration before
anything is built: ``last`` resolved to a file, a checkpoint of another method or other data refused, trainer
limits that a resume would break, and which tokenizer the data must use with it."""

from __future__ import annotations

import importlib
import logging
import os
from pathlib import Path
from typing import Any

from jsonargparse import Namespace

from grpo_lightning.data.module import PreferenceDataModule, source_settings
from grpo_lightning.data.sources.generated import GeneratedOpinions
from grpo_lightning.training.hparams import loss_from_data, weighting_from_data

log = logging.getLogger(__name__)


def last_checkpoint(dirpath: str | None, logger, default_root_dir: str | None = None) -> str:
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
    return latest_last_checkpoint(logger)


def latest_last_checkpoint(logger) -> str:
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


def policy_args(cfg) -> dict:
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


def method_differences(ckpt: dict[str, Any], cfg) -> list[str]:
    """The method settings (loss, β, weighting, groups, data source) in which the run that wrote
    ``ckpt`` and this configuration differ, each as ``setting: checkpoint value != this run's``."""
    saved = ckpt.get("hyper_parameters") or {}
    model = cfg.model
    out = []
    # Both sides as built objects, so that a class given by its bare name (IPO) compares with the import path
    # the checkpoint stores, and a different class is named by its short name (ipo, robust), as in run names.
    for key, build in (("model.loss", loss_from_data), ("model.weighting", weighting_from_data)):
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


def check_trainer_limits(trainer, ckpt_path: str | None, ckpt: dict[str, Any] | None) -> None:
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


def refuse_other_method(ckpt_path: str, differences: list[str], *, last: bool) -> None:
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


def choose_tokenizer(subcommand: str | None, cfg, ckpt_path: str | None, ckpt: dict[str, Any] | None) -> None:
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
    policy = policy_args(cfg)
    if init.get("tokenizer") is None and init.get("tokenizer_gguf_file") is None:
        name, gguf = policy.get("name_or_path"), policy.get("gguf_file")
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
