"""How config files are read: ``__base__`` composition (a file names the files it builds on), the
``${method:...}`` resolver of run names (docs/configs.md), and a clear error for the removed by-name form of the
loss and the weighting (``model.loss: {name: ipo}``). Used by ``--config`` of the ``grpo`` CLI (cli/app.py)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import yaml
from jsonargparse import ActionConfigFile, get_config_read_mode
from jsonargparse import Path as ConfigPath
from omegaconf import OmegaConf

from grpo_lightning.training.hparams import import_class, refuse_by_name_form


def method_short_name(class_path: str) -> str:
    """The short name (``ipo``, ``robust``) of the loss or weighting class a ``class_path`` names, as a bare class
    name or an import path: the ``${method:...}`` resolver of configs/base/method_name.yaml, so that run names stay
    ``<loss>_<weighting>`` (``dpo_robust``). The class is resolved as the settings resolve it
    (:func:`~grpo_lightning.training.hparams.import_class`); one without a ``name``, or a path that names neither a
    loss nor a weighting, gives its class name in lower case."""
    for setting in ("model.loss", "model.weighting"):
        try:
            cls = import_class(str(class_path), setting)
        except ValueError:
            continue
        return cls.name or cls.__name__.lower()
    return str(class_path).rpartition(".")[2].lower()


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


def refuse_removed_forms(text: str, source: str | os.PathLike) -> None:
    """A ``ValueError`` naming ``source`` if the config ``text`` gives ``model.loss`` or ``model.weighting`` in the
    removed by-name form (``{name: robust, ...}``); the message shows the ``class_path`` form to write instead.
    Without this check the parser would refuse ``name`` as a key of the default class, which does not say why."""
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError:
        return  # not YAML: the parser reports it
    model = loaded.get("model") if isinstance(loaded, dict) else None
    if not isinstance(model, dict):
        return
    for key in ("loss", "weighting"):
        try:
            refuse_by_name_form(f"model.{key}", model.get(key))
        except ValueError as err:
            raise ValueError(f"{source}: {err}") from None


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
            if path is not None and path.is_file():
                refuse_removed_forms(path.read_text(encoding="utf-8"), path)
            elif isinstance(value, str):  # the config's text itself (--config '{model: ...}')
                refuse_removed_forms(value, "--config")
            ActionConfigFile.apply_config(parser, cfg, dest, value)
            return
        *bases, _ = composed_files(path)
        for base in bases:
            if not config_bases(base):
                refuse_removed_forms(base.read_text(encoding="utf-8"), base)
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
        refuse_removed_forms(content, path)
        config_path = ConfigPath(str(path), mode=get_config_read_mode())
        try:
            with config_path.relative_path_context():
                ActionConfigFile.apply_config(parser, cfg, dest, content)
        except (TypeError, ValueError) as err:
            raise type(err)(f"{path}: {err}") from err
        cfg[dest][-1] = config_path
