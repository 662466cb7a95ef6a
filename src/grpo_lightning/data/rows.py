"""Loading raw preference rows and checking them before any tokenisation.

Every row that is not used is counted under a reason and logged; nothing is dropped silently.
A problem that makes the file unusable (it cannot be parsed, a value has the wrong type, text is
not valid UTF-8) is refused with a :class:`DataError` naming the file, the 1-based data row of
that file and the field. See ``docs/reliability.md`` for the whole catalogue.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import datasets
import numpy as np

log = logging.getLogger(__name__)

REQUIRED = ("prompt", "chosen", "rejected", "group")
# An optional column of ``train``/``val``/``test``: the data's own splits, used as given.
SPLIT_COLUMN = "split"
TEXT_FIELDS = ("prompt", "chosen", "rejected")
#: Columns that carry each row's origin (file name, 1-based data row of that file) through
#: cleaning, splitting and tokenisation, so that any message about a row names the source row.
SOURCE_COLUMNS = ("source_file", "source_row")
_BUILDERS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}
#: Skip reasons, in the order they are tested (a row is counted once, under the first that applies).
SKIP_REASONS = (
    "null_group",
    "empty_prompt",
    "empty_chosen",
    "empty_rejected",
    "chosen_equals_rejected",
    "duplicate_pair",
    "group_not_in_data.groups",
    "completion_empty_after_tokenization",
    "identical_after_truncation",
)


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
            _check_utf8(value, file, row, field, line)
        return value
    raise DataError(
        f"{_where(file, row, field, line)}: expected text, got {type(value).__name__} {value!r:.60}. "
        "Every prompt/chosen/rejected value must be a string."
    )


def _check_group(value: Any, file: str, row: int, field: str, line: int | None = None) -> str | None:
    """A group label: a string, an integer (used as its decimal name) or missing (None)."""
    if value is None or isinstance(value, str):
        if value is not None:
            _check_utf8(value, file, row, field, line)
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise DataError(
        f"{_where(file, row, field, line)}: a group label must be a string or an integer, "
        f"got {type(value).__name__} {value!r:.60}"
    )


def _check_utf8(text: str, file: str, row: int | None, field: str | None, line: int | None = None) -> None:
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
                _check_utf8(line, str(path), row, None, lineno)
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


def log_skipped(source: str, rows: Mapping[str, list[str]], total: int, examples: int = 5) -> None:
    """One warning per skip reason, naming the first few source rows."""
    for why, refs in rows.items():
        shown = "; ".join(refs[:examples]) + ("; ..." if len(refs) > examples else "")
        log.warning("%s: skipped %d of %d rows as %s (%s)", source, len(refs), total, why, shown)


def _group_labels(groups: Sequence[Any], refs: Sequence[str], source: str, merge_case: bool, spellings: Sequence[str]):
    """Group labels as names: integers as their decimal text, surrounding whitespace stripped (and
    logged), and labels that differ only in case reported, or merged into one spelling."""
    labels = [None if g is None else str(g).strip() for g in groups]
    padded = [
        i for i, (g, lbl) in enumerate(zip(groups, labels, strict=True)) if lbl and g != lbl and isinstance(g, str)
    ]
    if padded:
        shown = "; ".join(f"{refs[i]}: {groups[i]!r}" for i in padded[:5]) + ("; ..." if len(padded) > 5 else "")
        log.info("%s: stripped surrounding whitespace from %d group labels (%s)", source, len(padded), shown)
    counts = Counter(lbl for lbl in labels if lbl)
    variants: dict[str, list[str]] = defaultdict(list)
    for lbl in sorted(counts):
        variants[lbl.casefold()].append(lbl)
    clashes = [names for names in variants.values() if len(names) > 1]
    if not clashes:
        return labels
    found = {n: counts[n] for names in clashes for n in names}
    if not merge_case:
        log.warning(
            "%s: group labels that differ only in case are kept as separate groups: %s (rows per label %s); "
            "set data.merge_group_case=true to merge each set into one group",
            source,
            clashes,
            found,
        )
        return labels
    # A spelling listed in data.groups wins, then the most common one (ties: the first in sorted order).
    canon = {}
    for names in clashes:
        pick = next((n for n in spellings if n in names), None) or min(names, key=lambda n: (-counts[n], n))
        canon.update({n: pick for n in names})
    log.warning(
        "%s: merged group labels that differ only in case (data.merge_group_case): %s (rows per label %s)",
        source,
        {canon[names[0]]: names for names in clashes},
        found,
    )
    return [canon.get(lbl, lbl) for lbl in labels]


def clean_rows(
    ds: datasets.Dataset, source: str, *, merge_group_case: bool = False, spellings: Sequence[str] = ()
) -> tuple[datasets.Dataset, Counter]:
    """Drop unusable rows, counting each reason: empty prompt/chosen/rejected, a null group,
    chosen identical to rejected, and exact duplicate pairs (the first copy is kept).

    Text that is not valid UTF-8 is refused (:class:`DataError` naming the row and field).
    Whitespace-only text counts as empty; a duplicate is the same prompt, chosen, rejected and group
    (and ``split``, when the data gives its own splits: the same pair may be drawn for training and
    for evaluation).
    Group labels lose surrounding whitespace (``north `` is ``north``); labels that differ only in
    case (``north``, ``NORTH``) are named in a warning and kept apart, or with ``merge_group_case``
    become one group, spelled as in ``spellings`` (``data.groups``) or as most rows spell it.
    """
    prompts, chosen, rejected, groups = (ds[c] for c in REQUIRED)
    splits = ds[SPLIT_COLUMN] if SPLIT_COLUMN in ds.column_names else [None] * len(ds)
    refs = row_refs(ds, source)
    for i, g in enumerate(groups):
        if isinstance(g, str):
            try:
                g.encode("utf-8")
            except UnicodeEncodeError:
                _check_utf8(g, refs[i], None, "group")
    labels = _group_labels(groups, refs, source, merge_group_case, spellings)
    reasons: list[str] = []
    seen: set[tuple] = set()
    for i, (p, c, r, g, split) in enumerate(zip(prompts, chosen, rejected, labels, splits, strict=True)):
        for field, value in zip(TEXT_FIELDS, (p, c, r), strict=True):
            if isinstance(value, str):
                try:
                    value.encode("utf-8")
                except UnicodeEncodeError:
                    _check_utf8(value, refs[i], None, field)
        if not g:
            reasons.append("null_group")
        elif p is None or not p.strip():
            reasons.append("empty_prompt")
        elif c is None or not c.strip():
            reasons.append("empty_chosen")
        elif r is None or not r.strip():
            reasons.append("empty_rejected")
        elif c == r:
            reasons.append("chosen_equals_rejected")
        elif (key := (p, c, r, g, split)) in seen:
            reasons.append("duplicate_pair")
        else:
            seen.add(key)
            reasons.append("")
    keep = [i for i, why in enumerate(reasons) if not why]
    skipped = Counter(why for why in reasons if why)
    by_reason: dict[str, list[str]] = defaultdict(list)
    for ref, why in zip(refs, reasons, strict=True):
        if why:
            by_reason[why].append(ref)
    log_skipped(source, by_reason, len(ds))
    ds = ds.select(keep) if len(keep) < len(ds) else ds
    kept = [labels[i] for i in keep]
    group_feature = ds.features["group"]
    if kept != ds["group"] or not (isinstance(group_feature, datasets.Value) and group_feature.dtype == "string"):
        ds = ds.remove_columns("group").add_column("group", kept, feature=datasets.Value("string"))
    return ds, skipped


def given_split(values: Sequence, source: str, refs: Sequence[str], names: Sequence[str]) -> list[np.ndarray]:
    """Row indices of the splits named in a ``split`` column (values among ``names``); any other
    value is a :class:`DataError` naming the first rows that carry one."""
    arr = np.asarray([str(v).strip().lower() if v is not None else "" for v in values], dtype=object)
    bad = np.flatnonzero(~np.isin(arr, list(names)))
    if len(bad):
        shown = "; ".join(f"{refs[i]}: {values[i]!r}" for i in bad[:5])
        raise DataError(f"{source}: column {SPLIT_COLUMN!r} must be one of {list(names)} ({shown})")
    return [np.flatnonzero(arr == name) for name in names]


def pair_fingerprints(groups: Sequence[str], prompts: Sequence[str], chosen: Sequence[str], rejected: Sequence[str]):
    """One 63-bit hash per pair (group, prompt, chosen, rejected), sorted, as an int64 tensor: what a checkpoint
    records of the pairs of each split it was trained with, so a resume or re-evaluation on other data can say
    how many pairs differ (a set, not one digest, so the number can be told)."""
    import torch

    out = [
        int.from_bytes(hashlib.blake2b("\x1f".join(map(str, row)).encode("utf-8"), digest_size=8).digest(), "big") >> 1
        for row in zip(groups, prompts, chosen, rejected, strict=True)
    ]
    return torch.tensor(sorted(out), dtype=torch.int64)


def fingerprint_changes(saved: Mapping[str, Any], current: Mapping[str, Any]) -> dict[str, int]:
    """How the pairs of ``current`` differ from those of ``saved`` (each ``{split: pair_fingerprints}``):
    ``removed`` (the saved data's pairs not in the current data), ``added`` (the current data's pairs not in the
    saved data; an edited pair counts in both) and ``seen_in_training`` (current val/test pairs that were training
    pairs of the saved data)."""
    as_set = lambda splits, names: {int(x) for n in names if n in splits for x in splits[n].tolist()}  # noqa: E731
    before, now = as_set(saved, saved.keys()), as_set(current, current.keys())
    trained = as_set(saved, ["train"])
    evaluated = as_set(current, [n for n in current if n != "train"])
    return {"removed": len(before - now), "added": len(now - before), "seen_in_training": len(evaluated & trained)}


def prompt_position(prompt: str, seed: int) -> float:
    """Where a prompt falls in [0, 1): a keyed hash (BLAKE2b, keyed with the seed) of its text alone.

    A pair's split is read off this number, so it depends on the pair's prompt and the seed only, never on the
    other rows: adding or removing rows moves no kept pair between train, val and test (a seeded permutation of
    all prompts, as before, re-drew every split at any change of the rows and put training pairs into the test
    split of a re-evaluation)."""
    digest = hashlib.blake2b(str(prompt).encode("utf-8"), digest_size=8, key=str(int(seed)).encode()).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def stratified_split(
    groups: Sequence[int], prompts: Sequence[str], fractions: Sequence[float], seed: int
) -> list[np.ndarray]:
    """Row indices of the train/val/test splits, all pairs of one prompt in the same split (so a prompt seen in
    training never scores a validation pair).

    A prompt is in split i when its :func:`prompt_position` lies in ``[F_{i-1}, F_i)`` (``F`` the cumulative
    fractions): the split of a pair depends on its prompt and the seed, not on the other rows, so adding or
    removing rows does not move it, and a split with fraction 0 stays empty. Two exceptions keep every group
    trainable and evaluable, each a function of that group's own prompts: a group with fewer distinct prompts
    than splits of fraction > 0 is all training (as before); a group with enough whose hash leaves one of those
    splits empty gets one prompt moved there, from its largest split, the one whose position lies nearest the
    empty split's interval. Only a change that empties (or fills) a split of a group moves a pair of that group;
    a re-evaluation on changed data counts such pairs (``fingerprint_changes``)."""
    bounds = np.concatenate([[0.0], np.cumsum(np.asarray(fractions, dtype=float))])
    bounds[-1] = 1.0 + 1e-12  # positions are < 1; rounding of the cumulative sum must not lose the last split
    groups_arr = np.asarray(groups)
    uniq, inverse = np.unique(np.asarray(prompts, dtype=object).astype(str), return_inverse=True)
    position = np.array([prompt_position(p, seed) for p in uniq])
    row_split = (np.searchsorted(bounds, position, side="right") - 1)[inverse]
    wanted = [i for i, f in enumerate(fractions) if f > 0]
    for g in np.unique(groups_arr):
        rows = np.flatnonzero(groups_arr == g)
        own = {int(k): int(s) for k, s in zip(inverse[rows], row_split[rows], strict=True)}  # prompt -> split
        if len(own) < len(wanted):  # too few prompts to be in every split: all train
            row_split[rows] = 0
            continue
        for target in wanted:
            members = {s: sorted(k for k, v in own.items() if v == s) for s in wanted}
            if members[target]:
                continue
            donor = max((s for s in wanted if len(members[s]) > 1), key=lambda s: (len(members[s]), -s))
            centre = (bounds[target] + min(bounds[target + 1], 1.0)) / 2
            own[min(members[donor], key=lambda k: (abs(position[k] - centre), k))] = target
        row_split[rows] = [own[int(k)] for k in inverse[rows]]
    return [np.flatnonzero(row_split == i) for i in range(len(fractions))]
