"""Errors a person can read.

The ``grpo`` command ends an error in the data, the settings, a path or a checkpoint with one
message on stderr (``grpo: error: ...``) and exit status 2, without a traceback: the message names
the file, row, field or setting, and a traceback of library frames only buries it.
``GRPO_TRACEBACK=1`` re-raises the error with its traceback. Any other exception is a bug and keeps
its traceback. See ``docs/reliability.md``.
"""

from __future__ import annotations

import math
import os
import re
import sys
from argparse import ArgumentError

import yaml
from lightning.fabric.utilities.exceptions import MisconfigurationException

TRACEBACK_ENV = "GRPO_TRACEBACK"
#: What the message alone lets a person fix: bad data and settings (``DataError`` and the settings
#: checks raise ``ValueError``), a path that does not exist or cannot be read (``OSError``), a
#: command-line value jsonargparse refuses (``ArgumentError``), and a non-finite loss
#: (``FloatingPointError``, which names the step and the groups).
#: Lightning's ``MisconfigurationException`` is a setting it refuses (a last resort: the CLI checks the ones it
#: knows first, naming the setting).
USER_ERRORS: tuple[type[BaseException], ...] = (
    ValueError,
    OSError,
    ArgumentError,
    FloatingPointError,
    MisconfigurationException,
)
#: How jsonargparse starts the messages it wraps around the real error (a union of subtypes, a
#: class_path, a nested key); the real error is their ``__cause__``.
_WRAPPER_STARTS = ("Does not validate against any of the Union subtypes", "Problem with given class_path", "Parser key")
_PARSER_KEY = re.compile(r'^Parser key "([^"]+)"')
_EXPECTED = re.compile(r"^Expected a <class '(\w+)'>(?:\. Got value: (.*))?$", re.DOTALL)
#: What jsonargparse says of ``name`` under a class setting (``--model.loss.name ipo``: the removed by-name form).
_NAME_REFUSED = "Option 'name' is not accepted"
#: How it quotes a mapping given as the setting's value (``--model.loss '{name: ipo}'``).
_GIVEN_MAPPING = re.compile(r"Expected a path but (\{.*?\}) either not accessible", re.DOTALL)


def show_traceback() -> bool:
    return os.environ.get(TRACEBACK_ENV, "").strip().lower() not in ("", "0", "false", "no")


def user_message(err: BaseException) -> str:
    """The message of ``err`` without jsonargparse's wrapping: for a command-line value, the full
    setting name and what was wrong with it; for a settings check that failed while jsonargparse
    built a class, that check's own message."""
    keys: list[str] = []
    union: str | None = None
    inner = err
    while True:
        text = str(inner).strip()
        key = _PARSER_KEY.match(text)
        if key and key.group(1) not in keys[-1:]:
            keys.append(key.group(1))
        if text.startswith(_WRAPPER_STARTS[0]):
            union = text
        cause = inner.__cause__
        if cause is None or not (isinstance(inner, ArgumentError) or text.startswith(_WRAPPER_STARTS)):
            break
        inner = cause
    text = str(inner).strip()
    if inner is err or not keys:
        return text
    setting = ".".join(keys)
    removed = _removed_by_name_form(setting, text)
    if removed is not None:
        return removed
    expected = _EXPECTED.match(text)
    if expected is None:
        if setting in _CLASS_CHOICES and "import path" in text:
            given = text.rsplit(":", 1)[-1].strip()
            return (
                f"{setting}: unknown {given!r}; choose one of {', '.join(_CLASS_CHOICES[setting]())} or an import path"
            )
        return f"{setting}: {text}"
    kind, value = expected.group(1), (expected.group(2) or "").strip()
    if union is not None:
        # A Union (seed_everything: bool | int): every type it takes, not only the first one tried.
        subtypes = re.search(r"Subtypes: \[(.*)\]", union)
        kinds = re.findall(r"<class '(\w+)'>", subtypes.group(1)) if subtypes else []
        kind = " or ".join(k for k in kinds if k != "NoneType") or kind
    if kind == "float" and _non_finite(value):
        # The YAML loader leaves nan/inf as text, so the dataclass checks never see them.
        return f"{setting} must be a finite number, got {value}"
    return f"{setting}: expected {kind}, got {value!r}" if value else f"{setting}: expected {kind}"


def _loss_names() -> list[str]:
    from grpo_lightning.core.losses import LOSSES

    return [cls.__name__ for cls in LOSSES.values()]


def _weighting_names() -> list[str]:
    from grpo_lightning.core.weighting import WEIGHTINGS

    return [cls.__name__ for cls in WEIGHTINGS.values()]


#: The settings that take a class by name, and the names they take (for a name that is none of them).
_CLASS_CHOICES = {"model.loss": _loss_names, "model.weighting": _weighting_names}


def _removed_by_name_form(setting: str, text: str) -> str | None:
    """For the removed by-name form given on the command line (``--model.loss.name ipo``, ``--model.loss '{name:
    ipo}'``), the same message as for a config file that writes it: the ``class_path`` form to use instead. The name
    is read from the mapping jsonargparse quotes, else from the ``--<setting>.name`` flag of the command line."""
    if setting not in _CLASS_CHOICES or not text.endswith(_NAME_REFUSED):
        return None
    from grpo_lightning.training.hparams import refuse_by_name_form

    given = _GIVEN_MAPPING.search(text)
    try:
        value = yaml.safe_load(given.group(1)) if given else None
    except yaml.YAMLError:
        value = None
    if not isinstance(value, dict) or "name" not in value:
        value = {"name": _flag_value(sys.argv, f"--{setting}.name")}
    try:
        refuse_by_name_form(setting, value)
    except ValueError as err:
        return str(err)
    return None


def _flag_value(argv: list[str], flag: str) -> str | None:
    """The value of ``flag`` in ``argv`` (``flag value`` or ``flag=value``), the last one given; ``None`` if absent."""
    value = None
    for i, arg in enumerate(argv):
        if arg == flag and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.startswith(flag + "="):
            value = arg[len(flag) + 1 :]
    return value


def _non_finite(text: str) -> bool:
    try:
        return not math.isfinite(float(text))
    except ValueError:
        return False
