"""Reading raw preference rows: local jsonl/json/csv/parquet files (or a directory of them) and hub datasets, and
mapping the user's column names onto ``prompt, chosen, rejected, group``.

Only the columns in use are read. A problem that makes a file unusable (it cannot be parsed, a value has the wrong
type, text is not valid UTF-8) is refused with a :class:`DataError` naming the file, the 1-based data row of that
file and the field; each row keeps its file and row in :data:`SOURCE_COLUMNS`, so that later messages (cleaning,
splits, tokenisation) can name it too. See ``docs/reliability.md`` for the whole catalogue.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import datasets

REQUIRED = ("prompt", "chosen", "rejected", "group")
# An optional column of ``train``/``val``/``test``: the data's own splits, used as given.
SPLIT_COLUMN = "split"
TEXT_FIELDS = ("prompt", "chosen", "rejected")
#: Columns that carry each row's origin (file name, 1-based data row of that file) through
#: cleaning, splitting and tokenisation, so that any message about a row names the source row.
SOURCE_COLUMNS = ("source_file", "source_row")
_BUILDERS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}


class DataError(ValueError):
    """Bad input data: the message names the source, row and field."""


def _where(file: str, row: int | None = None, field: str | None = None, line: int | None = None) -> str:
    out = str(file)
    if row is not None:
        out += f", row {row}"
        if line is not None and line != row:
            out += f" (line {line})"
    elif line is not None:
        out += f", line {line}"
    if field is not None:
        out += f", field {field!r}"
    return out


def _check_text(value: Any, file: str, row: int, field: str, line: int | None = None) -> str | None:
    """A text cell: str or missing (None). Anything else, or text that is not valid UTF-8, is refused."""
    if value is None or isinstance(value, str):
        if value is not None:
            check_utf8(value, file, row, field, line)
        return value
    raise DataError(
        f"{_where(file, row, field, line)}: expected text, got {type(value).__name__} {value!r:.60}. "
        "Every prompt/chosen/rejected value must be a string."
    )


def _check_group(value: Any, file: str, row: int, field: str, line: int | None = None) -> str | None:
    """A group label: a string, an integer (used as its decimal name) or missing (None)."""
    if value is None or isinstance(value, str):
        if value is not None:
            check_utf8(value, file, row, field, line)
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise DataError(
        f"{_where(file, row, field, line)}: a group label must be a string or an integer, "
        f"got {type(value).__name__} {value!r:.60}"
    )


def check_utf8(text: str, file: str, row: int | None, field: str | None, line: int | None = None) -> None:
    """Refuse text that is not valid UTF-8 (a byte read as a surrogate, or a lone surrogate), naming where."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        bad = text[err.start]
        what = (
            f"byte 0x{ord(bad) - 0xDC00:02x} is not valid UTF-8"
            if 0xDC80 <= ord(bad) <= 0xDCFF
            else f"lone surrogate U+{ord(bad):04X} is not valid Unicode"
        )
        raise DataError(
            f"{_where(file, row, field, line)}: {what} (at character {err.start}). Re-save the file as UTF-8."
        ) from None


def _decode(path: Path) -> str:
    """The file's text; bytes that are not UTF-8 become surrogates (refused where they are used,
    naming the row and field)."""
    text = path.read_bytes().decode("utf-8", errors="surrogateescape")
    return text[1:] if text.startswith("\ufeff") else text


def _read_json(path: Path) -> tuple[list[dict], list[int]]:
    """Rows of a JSON-lines file (or a .json file holding one list of objects) and their lines."""
    text = _decode(path)
    stripped = text.lstrip()
    if path.suffix == ".json" and stripped.startswith("["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise DataError(f"{_where(path, line=err.lineno)}: not valid JSON: {err.msg}") from None
        if not all(isinstance(r, dict) for r in data):
            bad = next(i for i, r in enumerate(data, 1) if not isinstance(r, dict))
            raise DataError(f"{_where(path, bad)}: expected a JSON object, got {type(data[bad - 1]).__name__}")
        return data, list(range(1, len(data) + 1))
    rows, lines = [], []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        row = len(rows) + 1
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            if any(0xDC80 <= ord(ch) <= 0xDCFF for ch in line):
                check_utf8(line, str(path), row, None, lineno)
            raise DataError(
                f"{_where(path, row, line=lineno)}: not valid JSON: {err.msg} (column {err.colno})"
            ) from None
        if not isinstance(obj, dict):
            raise DataError(f"{_where(path, row, line=lineno)}: expected a JSON object, got {type(obj).__name__}")
        rows.append(obj)
        lines.append(lineno)
    return rows, lines


def _read_csv(path: Path) -> tuple[list[dict], list[int]]:
    """Rows of a CSV file with a header; every value is text ("" is an empty value)."""
    reader = csv.reader(io.StringIO(_decode(path), newline=""), strict=True)
    rows, lines = [], []
    try:
        header = next(reader, None)
        if header is None:
            return [], []
        if len(set(header)) != len(header):
            raise DataError(f"{_where(path, line=1)}: the header names a column twice: {header}")
        for values in reader:
            if not values:  # a blank line is no row
                continue
            row = len(rows) + 1
            if len(values) != len(header):
                raise DataError(
                    f"{_where(path, row, line=reader.line_num)}: {len(values)} fields, the header has "
                    f"{len(header)} ({header}); quote values that contain commas or line breaks"
                )
            rows.append(dict(zip(header, values, strict=True)))
            lines.append(reader.line_num)
    except csv.Error as err:
        raise DataError(f"{_where(path, line=reader.line_num)}: not valid CSV: {err}") from None
    return rows, lines


def _require_columns(source: str, columns: Mapping[str, str], found: Sequence[str]) -> None:
    """Refuse a source without the columns in use, listing the columns it has."""
    found = [c for c in found if c not in SOURCE_COLUMNS]
    named = [src for dst, src in columns.items() if dst in REQUIRED and src != dst and src not in found]
    if named:
        raise DataError(f"{source}: column(s) {named} named in data.columns not found; columns are {found}")
    absent = [dst for dst in REQUIRED if columns.get(dst, dst) not in found]
    if absent:
        raise DataError(
            f"{source}: missing column(s) {absent}; found {found}. "
            "Map yours with --data.columns '{prompt: my_prompt, chosen: ..., rejected: ..., group: ...}'"
        )


def _rows_to_dataset(path: Path, rows: list[dict], lines: list[int], names: Mapping[str, str]) -> datasets.Dataset:
    """Check each row's fields in use and build a Dataset of them (other fields are not read, so
    a column nothing uses cannot make files disagree)."""
    file = str(path)
    cols: dict[str, list] = {}
    for dst, src in names.items():
        check = _check_group if dst == "group" else _check_text
        cols[src] = [
            check(r.get(src), file, i, src, line) for i, (r, line) in enumerate(zip(rows, lines, strict=True), 1)
        ]
    cols[SOURCE_COLUMNS[0]] = [path.name] * len(rows)
    cols[SOURCE_COLUMNS[1]] = list(range(1, len(rows) + 1))
    ds = datasets.Dataset.from_dict(cols)
    text = {src: datasets.Value("string") for src in names.values()}
    if any(ds.features[k] != v for k, v in text.items()):  # an all-null column has no type yet
        ds = ds.cast(datasets.Features({**ds.features, **text}))
    return ds


def _load_parquet(path: Path, names: Mapping[str, str]) -> datasets.Dataset:
    """The columns in use of a parquet file; integer group labels become names and all-null
    columns text, so that the files of a directory share one schema."""
    import pyarrow.parquet as pq

    try:
        found = pq.read_schema(path).names
    except Exception as err:  # pyarrow raises several types; name the file either way
        raise DataError(f"{path}: could not read as parquet ({type(err).__name__}: {err})") from err
    _require_columns(str(path), names, found)
    try:
        ds = datasets.Dataset.from_parquet(str(path), columns=list(dict.fromkeys(names.values())))
    except Exception as err:
        raise DataError(f"{path}: could not read as parquet ({type(err).__name__}: {err})") from err
    if len(ds) == 0:
        raise DataError(f"{path}: no data rows")
    for dst, src in names.items():
        dtype = ds.features[src]
        if isinstance(dtype, datasets.Value) and (dtype.dtype == "null" or (dst == "group" and "int" in dtype.dtype)):
            ds = ds.cast_column(src, datasets.Value("string"))
    return ds.add_column(SOURCE_COLUMNS[0], [path.name] * len(ds)).add_column(
        SOURCE_COLUMNS[1], list(range(1, len(ds) + 1))
    )


def _load_one(path: Path, builder: str, names: Mapping[str, str]) -> datasets.Dataset:
    if builder == "parquet":
        return _load_parquet(path, names)
    rows, lines = _read_json(path) if builder == "json" else _read_csv(path)
    if not rows:
        raise DataError(f"{path}: no data rows")
    found = list(dict.fromkeys(k for r in rows for k in r))
    _require_columns(str(path), names, found)
    return _rows_to_dataset(path, rows, lines, names)


def load_files(path: str | Sequence[str], columns: Mapping[str, str] | None = None) -> datasets.Dataset:
    """Local jsonl/json/csv/parquet file(s), or a directory of them, as one Dataset.

    Only the columns in use are read: prompt, chosen, rejected and group, under the names
    ``columns`` (the ``data.columns`` mapping) gives them; a file without one of them is refused,
    naming the file and listing its columns. Each row's file name and 1-based data row are kept in
    :data:`SOURCE_COLUMNS`. Values are checked row by row: text for prompt/chosen/rejected, a
    string or integer for the group; a wrong type or invalid UTF-8 is a :class:`DataError` naming
    file, row and field.
    """
    paths = [path] if isinstance(path, str) else list(path)
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files += sorted(f for f in p.iterdir() if f.suffix in _BUILDERS)
        elif p.is_file():
            files.append(p)
        else:
            raise FileNotFoundError(f"data.path: {p} does not exist")
    if not files:
        raise DataError(f"data.path: no .jsonl/.json/.csv/.parquet files in {paths}")
    kinds = {_BUILDERS.get(f.suffix) for f in files}
    if None in kinds or len(kinds) != 1:
        raise DataError(f"data.path: files must share one of {sorted(_BUILDERS)}, got {[f.name for f in files]}")
    builder = kinds.pop()
    names = {dst: dict(columns or {}).get(dst, dst) for dst in REQUIRED}
    parts = [_load_one(f, builder, names) for f in files]
    if len(parts) == 1:
        return parts[0]
    try:
        return datasets.concatenate_datasets(parts)
    except Exception as err:
        schemas = {f.name: dict(p.features) for f, p in zip(files, parts, strict=True)}
        raise DataError(f"data.path: the files do not share one set of columns and types: {schemas}") from err


def load_hub(hub_id: str, split: str = "train", revision: str | None = None) -> datasets.Dataset:
    """A dataset from the Hugging Face hub (or its local cache)."""
    try:
        return datasets.load_dataset(hub_id, split=split, revision=revision)
    except Exception as err:
        raise DataError(
            f"data.hub_id: could not load {hub_id!r} ({type(err).__name__}: {err}). "
            "Offline, point --data.path at a local copy (jsonl, csv, parquet or a directory)."
        ) from err


def rename_columns(ds: datasets.Dataset, columns: Mapping[str, str] | None, source: str) -> datasets.Dataset:
    """Map user column names onto ``prompt, chosen, rejected, group``; check that they exist."""
    columns = dict(columns or {})
    unknown = set(columns) - set(REQUIRED)
    if unknown:
        raise DataError(f"data.columns: keys must be among {REQUIRED}, got {sorted(unknown)}")
    mapping = {src: dst for dst, src in columns.items() if src != dst}
    _require_columns(source, columns, ds.column_names)
    clash = [dst for src, dst in mapping.items() if dst in ds.column_names and dst not in mapping]
    if clash:
        raise DataError(f"{source}: data.columns maps onto {clash}, which the data already has as column(s)")
    ds = ds.rename_columns(mapping) if mapping else ds
    for col in TEXT_FIELDS:
        dtype = ds.features[col]
        if not (isinstance(dtype, datasets.Value) and dtype.dtype in ("string", "large_string", "null")):
            raise DataError(f"{source}: column {col!r} must hold text, found {dtype}")
    group = ds.features["group"]
    if not (
        isinstance(group, datasets.Value)
        and (group.dtype in ("string", "large_string", "null") or "int" in group.dtype)
    ):
        raise DataError(f"{source}: column 'group' must hold strings or integers, found {group}")
    return ds


def row_refs(ds: datasets.Dataset, source: str) -> list[str]:
    """``file, row N`` of every row (the 1-based data row of its source file)."""
    if all(c in ds.column_names for c in SOURCE_COLUMNS):
        return [f"{f}, row {r}" for f, r in zip(ds[SOURCE_COLUMNS[0]], ds[SOURCE_COLUMNS[1]], strict=True)]
    return [f"{source}, row {i}" for i in range(1, len(ds) + 1)]
