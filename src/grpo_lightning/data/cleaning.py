"""Checking rows before any tokenisation: every row that is not used is counted under a reason and logged
(nothing is dropped silently), and group labels become names (stripped; labels that differ only in case reported,
or merged with ``data.merge_group_case``). See ``docs/reliability.md`` for the whole catalogue.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import datasets

from grpo_lightning.data.io import REQUIRED, SPLIT_COLUMN, TEXT_FIELDS, check_utf8, row_refs

log = logging.getLogger(__name__)

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
                check_utf8(g, refs[i], None, "group")
    labels = _group_labels(groups, refs, source, merge_group_case, spellings)
    reasons: list[str] = []
    seen: set[tuple] = set()
    for i, (p, c, r, g, split) in enumerate(zip(prompts, chosen, rejected, labels, splits, strict=True)):
        for field, value in zip(TEXT_FIELDS, (p, c, r), strict=True):
            if isinstance(value, str):
                try:
                    value.encode("utf-8")
                except UnicodeEncodeError:
                    check_utf8(value, refs[i], None, field)
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
