"""How config files are read: ``__base__`` composition (a file names the files it builds on), the earlier
by-name form of losses and weightings, and the ``${method:...}`` resolver of run names (docs/configs.md).
Used by ``--config`` of the ``grpo`` CLI (cli.py)."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import os
import re
from pathlib import Path

import yaml
from jsonargparse import ActionConfigFile, get_config_read_mode
from jsonargparse import Path as ConfigPath
from omegaconf import OmegaConf


def method_short_name(class_path: str) -> str:
    """The short name (``ipo``, ``robust``) of the loss or weighting class a ``class_path`` names, as a bare class
    name or an import path: the ``${method:...}`` resolver of configs/base/method_name.yaml, so that run names stay
    ``<loss>_<weighting>`` (``dpo_robust``). A class without a ``name`` gives its class name in lower case."""
    from grpo_lightning.core.loss_classes import BUILTIN_LOSSES
    from grpo_lightning.core.weighting import WEIGHTINGS

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


def read_yaml(path: str | os.PathLike):
    """``path``'s YAML, or a ``ValueError`` naming the file, line and column of a syntax error (the YAML
    parser's own error names ``<unicode string>`` and comes with a hundred lines of traceback)."""
    try:
        return yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        what = "; ".join(str(x) for x in (getattr(err, "context", None), getattr(err, "problem", None)) if x)
        raise ValueError(f"{path}{where}: not valid YAML ({what or type(err).__name__})") from err


def config_bases(path: str | os.PathLike) -> list[Path]:
    """The files ``path``'s ``__base__`` names (one path or a list, each relative to ``path``'s folder), in order."""
    path = Path(path)
    loaded = read_yaml(path)
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
    from grpo_lightning.core.loss_classes import BUILTIN_LOSSES
    from grpo_lightning.core.weighting import WEIGHTINGS
    from grpo_lightning.training.legacy_config import LossConfig, WeightingConfig

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
