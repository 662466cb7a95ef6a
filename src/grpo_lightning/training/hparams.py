"""The loss and the weighting as plain data, and back.

A checkpoint stores the module's loss and weighting as ``{class_path, init_args}`` (``to_dict``, so that it loads with
``weights_only=True``), and a configuration parsed without instantiation holds the same form. The module's
``__init__`` and the ``--ckpt_path`` checks (cli/resume.py) build the objects from it here. The by-name form of
earlier versions (``model.loss: {name: ipo, beta: 0.1}``) was removed before any release; :func:`refuse_by_name_form`
turns it into one error that shows the ``class_path`` form to write instead (config files: cli/config_files.py).
"""

from __future__ import annotations

import importlib
import math
from typing import Any

import yaml

from grpo_lightning.core.losses import IPO, LOSSES, PreferenceLoss
from grpo_lightning.core.weighting import WEIGHTINGS, GroupWeighting, UniformWeighting

#: The two settings that take a class, with their base class and the short names of their built-in classes.
_SETTINGS: dict[str, tuple[type, dict[str, type]]] = {
    "model.loss": (PreferenceLoss, LOSSES),
    "model.weighting": (GroupWeighting, WEIGHTINGS),
}


def refuse_by_name_form(setting: str, value: Any) -> None:
    """A ``ValueError`` if ``value``, what a config or caller gives for ``setting`` (``model.loss`` or
    ``model.weighting``), is the removed by-name form ``{name: ..., ...}``; the message shows the ``class_path``
    form of the same settings, e.g. ``model.loss: {class_path: grpo_lightning.core.losses.IPO, init_args:
    {beta: 0.1}}``."""
    if not (isinstance(value, dict) and "name" in value and "class_path" not in value):
        return
    _, builtins = _SETTINGS[setting]
    settings = {k: v for k, v in value.items() if k != "name"}
    name = value["name"]
    cls = builtins.get(name) if isinstance(name, str) else None
    if cls is None:
        class_path, choose = "<class>", f" (one of {', '.join(c.__name__ for c in builtins.values())})"
    else:
        class_path, choose = f"{cls.__module__}.{cls.__qualname__}", ""
    form = {"class_path": class_path, **({"init_args": settings} if settings else {})}
    written = yaml.safe_dump(form, default_flow_style=True, sort_keys=False, width=math.inf).strip()
    given = yaml.safe_dump(dict(value), default_flow_style=True, sort_keys=False, width=math.inf).strip()
    raise ValueError(f"{setting}: the by-name form {given} was removed; choose the class: {setting}: {written}{choose}")


def concrete(obj: Any) -> Any:
    """``obj``, or a real instance of its class for a jsonargparse ``lazy_instance`` default (whose own class
    is a generated subclass: its ``to_dict`` would name that, and it is shared by every module built with it)."""
    lazy_class = getattr(obj, "_lazy_class_type", None)
    return obj if lazy_class is None else lazy_class(**obj._lazy_kwargs)


def import_class(class_path: str, setting: str) -> type:
    """The class a ``class_path`` names: a dotted import path, or a built-in class's bare name (``IPO``) or short
    name (``ipo``); it must subclass the setting's base class."""
    base, builtins = _SETTINGS[setting]
    by_class_name = {cls.__name__: cls for cls in builtins.values()}
    if class_path in builtins or class_path in by_class_name:
        return builtins.get(class_path) or by_class_name[class_path]
    module_name, _, name = class_path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), name) if module_name else None
    except (ImportError, AttributeError) as err:
        raise ValueError(f"{setting}: cannot import {class_path!r} ({err})") from None
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise ValueError(f"{setting}: {class_path!r} is not a {base.__name__} (choose one of {sorted(builtins)})")
    return cls


def _from_data(setting: str, data: dict[str, Any] | Any) -> Any:
    base, _ = _SETTINGS[setting]
    if isinstance(data, base):
        return concrete(data)
    refuse_by_name_form(setting, data)
    if not (isinstance(data, dict) and "class_path" in data):
        raise ValueError(f"{setting}: expected a {base.__name__} or {{class_path, init_args}}, got {data!r}")
    return import_class(data["class_path"], setting)(**(data.get("init_args") or {}))


def loss_from_data(data: dict[str, Any] | PreferenceLoss | None) -> PreferenceLoss:
    """A loss from ``{class_path, init_args}`` (what :meth:`PreferenceLoss.to_dict` writes) or a loss;
    ``None``: IPO at β 0.1."""
    return IPO() if data is None else _from_data("model.loss", data)


def weighting_from_data(data: dict[str, Any] | GroupWeighting | None) -> GroupWeighting:
    """A weighting from ``{class_path, init_args}`` (what :meth:`GroupWeighting.to_dict` writes) or a weighting;
    ``None``: the pooled mean (uniform)."""
    return UniformWeighting() if data is None else _from_data("model.weighting", data)
