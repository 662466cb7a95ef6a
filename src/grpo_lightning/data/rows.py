"""Loading raw preference rows and checking them before any tokenisation.

Every row that is not used is counted under a reason and logged; nothing is dropped silently.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

import datasets
import numpy as np

log = logging.getLogger(__name__)

REQUIRED = ("prompt", "chosen", "rejected", "group")
_BUILDERS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}


class DataError(ValueError):
    """Bad input data: the message names the source, row and field."""


def load_files(path: str | Sequence[str]) -> datasets.Dataset:
    """Local jsonl/json/csv/parquet file(s), or a directory of them, as one Dataset."""
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
    try:
        return datasets.load_dataset(builder, data_files=[str(f) for f in files], split="train")
    except Exception as err:  # the builders raise many types; name the file either way
        raise DataError(f"data.path: could not read {[str(f) for f in files]} as {builder}: {err}") from err


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
    missing = [src for src in mapping if src not in ds.column_names]
    if missing:
        raise DataError(f"{source}: column(s) {missing} named in data.columns not found; columns are {ds.column_names}")
    ds = ds.rename_columns(mapping) if mapping else ds
    absent = [c for c in REQUIRED if c not in ds.column_names]
    if absent:
        raise DataError(
            f"{source}: missing column(s) {absent}; found {ds.column_names}. Map yours with "
            "--data.columns '{prompt: my_prompt, chosen: ..., rejected: ..., group: ...}'"
        )
    for col in ("prompt", "chosen", "rejected"):
        dtype = ds.features[col]
        if not (isinstance(dtype, datasets.Value) and dtype.dtype in ("string", "large_string")):
            raise DataError(f"{source}: column {col!r} must hold text, found {dtype}")
    return ds


def clean_rows(ds: datasets.Dataset, source: str) -> tuple[datasets.Dataset, Counter]:
    """Drop unusable rows, counting each reason: empty prompt/chosen/rejected, a null group,
    chosen identical to rejected, and exact duplicate pairs (the first copy is kept)."""
    prompts, chosen, rejected, groups = (ds[c] for c in REQUIRED)
    reasons: list[str] = []
    seen: set[tuple] = set()
    for p, c, r, g in zip(prompts, chosen, rejected, groups, strict=True):
        if g is None or (isinstance(g, str) and not g.strip()):
            reasons.append("null_group")
        elif p is None or not p.strip():
            reasons.append("empty_prompt")
        elif c is None or not c.strip():
            reasons.append("empty_chosen")
        elif r is None or not r.strip():
            reasons.append("empty_rejected")
        elif c == r:
            reasons.append("chosen_equals_rejected")
        elif (key := (p, c, r, str(g))) in seen:
            reasons.append("duplicate_pair")
        else:
            seen.add(key)
            reasons.append("")
    keep = [i for i, why in enumerate(reasons) if not why]
    skipped = Counter(why for why in reasons if why)
    if skipped:
        log.warning("%s: skipped %d of %d rows: %s", source, sum(skipped.values()), len(ds), dict(skipped))
    ds = ds.select(keep) if len(keep) < len(ds) else ds
    group_feature = ds.features["group"]
    if not (isinstance(group_feature, datasets.Value) and group_feature.dtype == "string"):
        ds = ds.cast_column("group", datasets.Value("string"))  # integer group labels become names
    return ds, skipped


def stratified_split(
    groups: Sequence[int], prompts: Sequence[str], fractions: Sequence[float], seed: int
) -> list[np.ndarray]:
    """Row indices of the train/val/test splits: per group, seeded, all pairs of one prompt in
    the same split (so a prompt seen in training never scores a validation pair)."""
    rng = np.random.default_rng(seed)
    groups_arr = np.asarray(groups)
    prompts_arr = np.asarray(prompts, dtype=object)
    parts: list[list[np.ndarray]] = [[] for _ in fractions]
    for g in np.unique(groups_arr):
        rows = np.flatnonzero(groups_arr == g)
        uniq, inverse = np.unique(prompts_arr[rows].astype(str), return_inverse=True)
        order = rng.permutation(len(uniq))
        bounds = np.round(np.cumsum(fractions) * len(uniq)).astype(int)
        # At least one prompt in every non-empty split when the group has enough prompts.
        if len(uniq) >= len(fractions):
            for i in range(len(bounds) - 1):
                bounds[i] = min(max(bounds[i], (bounds[i - 1] if i else 0) + 1), len(uniq) - (len(bounds) - 1 - i))
        start = 0
        for i, stop in enumerate(bounds):
            chosen_prompts = order[start:stop]
            parts[i].append(rows[np.isin(inverse, chosen_prompts)])
            start = stop
    return [np.sort(np.concatenate(p)) if p else np.array([], dtype=int) for p in parts]
