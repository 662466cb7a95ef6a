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
import pickle
import re
import zipfile
from argparse import ArgumentError
from typing import Any

from lightning.fabric.plugins import CheckpointIO
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


class CheckpointError(ValueError):
    """A checkpoint file that cannot be read (truncated, or not a checkpoint): the message names it."""


#: What ``torch.load`` raises for a file that is not a whole checkpoint (a truncated zip archive is
#: a ``RuntimeError`` of its reader; a cut pickle an ``EOFError`` or ``UnpicklingError``).
CHECKPOINT_READ_ERRORS = (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile)


def unreadable_checkpoint(path: Any, err: BaseException) -> CheckpointError:
    if isinstance(err, pickle.UnpicklingError) and "weights only load failed" in str(err).lower():
        # torch's advice (load with weights_only=False) is what must not be done with a file of unknown origin.
        return CheckpointError(
            f"checkpoint {path} holds objects other than tensors and plain data; refused: checkpoints are "
            "loaded with weights_only=True only (unpickling them could run code)"
        )
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return CheckpointError(
        f"checkpoint {path} cannot be read ({type(err).__name__}: {first}); it may be truncated "
        "(a full disk or an interrupted copy) or not a Lightning checkpoint"
    )


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
    from grpo_lightning.losses import BUILTIN_LOSSES

    return [cls.__name__ for cls in BUILTIN_LOSSES.values()]


def _weighting_names() -> list[str]:
    from grpo_lightning.core.weighting import WEIGHTINGS

    return [cls.__name__ for cls in WEIGHTINGS.values()]


#: The settings that take a class by name, and the names they take (for a name that is none of them).
_CLASS_CHOICES = {"model.loss": _loss_names, "model.weighting": _weighting_names}


def _non_finite(text: str) -> bool:
    try:
        return not math.isfinite(float(text))
    except ValueError:
        return False


def is_remote(path: Any) -> bool:
    """Whether a checkpoint path is a URL (``http://``, ``https://``, ``s3://``, ...) rather than a local file."""
    return isinstance(path, str | os.PathLike) and re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", str(path)) is not None


def refuse_remote(path: Any) -> None:
    """A remote checkpoint is not loaded: Lightning unpickles an http(s) one with ``weights_only=False`` (any code
    in it runs), and the run-identity checks (method, groups, tokenizer) read local files only."""
    if is_remote(path) and not str(path).startswith("file://"):
        raise CheckpointError(
            f"--ckpt_path {path}: a remote checkpoint is not loaded; download it and pass the local file "
            "(read with weights_only=True and checked against this run)"
        )


class NamedCheckpointIO(CheckpointIO):
    """The strategy's checkpoint IO, with a load that names the file it could not read, and reads it with
    ``weights_only=True`` always (tensors and plain data only: nothing in the file can run code).

    torch reports a truncated checkpoint (a full disk, a copy cut short) as ``PytorchStreamReader
    failed reading zip archive: failed finding central directory``, without the path; this wrapper
    re-raises such errors as :class:`CheckpointError` naming the file. Saving and removing are
    passed through unchanged.
    """

    def __init__(self, base: CheckpointIO) -> None:
        self.base = base

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        self.base.save_checkpoint(checkpoint, path, storage_options=storage_options)

    def remove_checkpoint(self, path: Any) -> None:
        self.base.remove_checkpoint(path)

    def teardown(self) -> None:
        self.base.teardown()

    def load_checkpoint(
        self, path: Any, map_location: Any | None = None, weights_only: bool | None = None
    ) -> dict[str, Any]:
        refuse_remote(path)
        if weights_only is False:
            raise CheckpointError(
                f"checkpoint {path}: weights_only=False is refused (it unpickles arbitrary objects); "
                "our checkpoints load with weights_only=True"
            )
        try:
            return self.base.load_checkpoint(path, map_location=map_location, weights_only=True)
        except CHECKPOINT_READ_ERRORS as err:
            raise unreadable_checkpoint(path, err) from err
