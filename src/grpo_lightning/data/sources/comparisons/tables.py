"""Reading the comparisons and annotators tables, and the values in their rows.

A table is read from local files with the standard library (CSV cells as text) or from the hub with
``datasets.load_dataset``; a value is found by its field path (:func:`field_value`, see
:mod:`~grpo_lightning.data.sources.comparisons.settings`) and read as text, an id or a number. A table without a
column the settings name is a :class:`~grpo_lightning.data.io.DataError` (a ``ValueError``) naming the file, the
column and the columns it has.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets

from grpo_lightning.data.io import DataError
from grpo_lightning.data.sources.comparisons.settings import Table

_READERS = {".jsonl": "jsonl", ".json": "json", ".csv": "csv", ".parquet": "parquet"}
_EACH = "each"


@dataclass(frozen=True)
class LoadedTable:
    """A table's rows (plain Python values), its name in messages and its columns (keys of any row)."""

    rows: list[dict[str, Any]]
    name: str
    columns: frozenset[str]


def _read_file(file: Path) -> list[dict[str, Any]]:
    kind = _READERS[file.suffix.lower()]
    if kind == "parquet":
        import pyarrow.parquet as pq

        return pq.read_table(file).to_pylist()
    try:
        text = file.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise DataError(f"{file}: not valid UTF-8 (byte {err.start}); re-save the file as UTF-8") from None
    if kind == "csv":
        # Every cell as text; an empty cell is "" (a missing id or attribute, counted where it is used).
        return [dict(row) for row in csv.DictReader(text.splitlines())]
    if kind == "json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise DataError(f"{file}: not valid JSON ({err})") from None
        if not (isinstance(data, list) and all(isinstance(r, dict) for r in data)):
            raise DataError(f"{file}: a .json table must be a list of objects (one per row)")
        return data
    rows = []
    for line_no, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(f"{file}, line {line_no}: not valid JSON ({err})") from None
        if not isinstance(row, dict):
            raise DataError(f"{file}, line {line_no}: each line must be a JSON object, got {type(row).__name__}")
        rows.append(row)
    return rows


def _local_files(path: str | list[str]) -> list[Path]:
    files: list[Path] = []
    for p in map(Path, [path] if isinstance(path, str) else path):
        if p.is_dir():
            files += sorted(f for f in p.iterdir() if f.suffix.lower() in _READERS)
        elif p.is_file():
            files.append(p)
        else:
            raise FileNotFoundError(f"{p} does not exist")
    if not files:
        raise DataError(f"no .jsonl/.json/.csv/.parquet files in {path}")
    kinds = {_READERS.get(f.suffix.lower()) for f in files}
    if None in kinds or len(kinds) != 1:
        raise DataError(f"files of one table must share one of {sorted(_READERS)}, got {[f.name for f in files]}")
    return files


def load_table(table: Table, role: str) -> LoadedTable:
    """Read a table: local files with the standard library (CSV cells as text), or the hub with
    ``datasets.load_dataset(hub_id, hub_config, split=hub_split)`` (only ever called for a hub id). ``role``
    (``comparisons``/``annotators``) names the setting in messages."""
    if table.path is not None:
        rows = [row for f in _local_files(table.path) for row in _read_file(f)]
    elif table.hub_id is not None:
        try:
            ds = datasets.load_dataset(table.hub_id, table.hub_config, split=table.hub_split)
        except Exception as err:
            raise DataError(
                f"{role}: could not load {table.describe()} ({type(err).__name__}: {err}). Offline, download the "
                f"files and give their path (docs/own_data.md)."
            ) from err
        rows = ds.to_list()
    else:
        raise ValueError(f"data: the {role} table needs a path or a hub_id")
    name = table.describe()
    if not rows:
        raise DataError(f"{name} ({role}): the table has no rows")
    return LoadedTable(rows, name, frozenset(k for row in rows for k in row))


def field_value(row: Any, path: str | None) -> Any:
    """The value at a field path: a key (a key that itself contains dots wins), else dotted steps into nested
    mappings and lists (a number indexes a list, ``-1`` its last element). ``None`` where a step is missing."""
    if path is None:
        return None
    value = row
    rest = path
    while rest:
        if isinstance(value, Mapping):
            if rest in value:
                return value[rest]
            step, _, rest = rest.partition(".")
            value = value.get(step)
        elif isinstance(value, list | tuple):
            step, _, rest = rest.partition(".")
            try:
                value = value[int(step)]
            except (ValueError, IndexError):
                return None
        else:
            return None
    return value


def _top_column(path: str, columns: frozenset[str]) -> str:
    return path if path in columns else path.split(".", 1)[0]


def require_columns(table: LoadedTable, needed: Mapping[str, str]) -> None:
    """Refuse a table that lacks a column the settings name (``needed``: setting → field path), naming the file, the
    missing column(s) and the columns the table has. Paths into ``each.`` (exploded elements) are not columns."""
    missing = {
        setting: _top_column(path, table.columns)
        for setting, path in needed.items()
        if path is not None
        and not path.startswith(_EACH + ".")
        and _top_column(path, table.columns) not in table.columns
    }
    if missing:
        named = ", ".join(f"{col!r} (data.{setting})" for setting, col in missing.items())
        raise DataError(f"{table.name}: no column {named}; its columns: {sorted(table.columns)}")


def units(rows: Sequence[Mapping[str, Any]], explode: str | None) -> Iterable[tuple[int, str, Any]]:
    """(1-based row, reference, unit) for each row, or for each element of its ``explode`` list (as ``each``); the
    unit is ``None`` for a row whose ``explode`` list is missing or empty."""
    for row_no, row in enumerate(rows, 1):
        if explode is None:
            yield row_no, f"row {row_no}", row
            continue
        elements = field_value(row, explode)
        if not isinstance(elements, list) or not elements:
            yield row_no, f"row {row_no}", None
            continue
        for k, element in enumerate(elements, 1):
            yield row_no, f"row {row_no} #{k}", {**row, _EACH: element}


def as_text(value: Any, where: str) -> str | None:
    """A text field: a string, or a chat transcript (a message ``{role, content}`` or a list of them) read as its
    content (one message) or ``role: content`` blocks; ``None`` for a missing value. Anything else is refused."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, Mapping) and "content" in value:
        return as_text(value["content"], where)
    if isinstance(value, list | tuple) and all(isinstance(m, Mapping) and "content" in m for m in value):
        if len(value) == 1:
            return as_text(value[0]["content"], where)
        return "\n\n".join(f"{m.get('role', 'message')}: {as_text(m['content'], where) or ''}" for m in value)
    raise DataError(f"{where}: expected text or a chat transcript, got {type(value).__name__} {str(value)[:80]!r}")


def text_at(row: Any, path: str, where: str) -> str | None:
    """:func:`as_text` of the value at ``path``; messages name ``where`` and the path."""
    return as_text(field_value(row, path), f"{where}, {path}")


def as_key(value: Any) -> str | None:
    """An id or label as text (ids may be numbers in one table and strings in the other); blank → ``None``."""
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def key_at(row: Any, path: str | None) -> str | None:
    """:func:`as_key` of the value at ``path``."""
    return as_key(field_value(row, path))


def fold(value: Any) -> str:
    """A value as compared with labels and listed values: text, without surrounding whitespace and case."""
    return str(value).strip().casefold()


def as_number(value: Any) -> float | None:
    """A finite number, or a text that reads as one; anything else (a bool, NaN, blank text) → ``None``."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return None
        return number if math.isfinite(number) else None
    return None
