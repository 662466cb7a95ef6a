"""The groups: each annotator's group from the annotators table, and what happens to groups with too few pairs."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, replace

from grpo_lightning.data.io import DataError
from grpo_lightning.data.sources.comparisons.judgements import Judgement
from grpo_lightning.data.sources.comparisons.ledger import SkipLedger
from grpo_lightning.data.sources.comparisons.settings import GroupSettings
from grpo_lightning.data.sources.comparisons.tables import LoadedTable, as_key, field_value, fold, key_at

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AnnotatorGroups:
    """Each annotator id's group, or the attribute that left it without one."""

    group: dict[str, str]
    empty: dict[str, str]  # annotator id → the first empty attribute
    without_id: int  # annotators-table rows without an id (they cannot be joined)


def annotator_groups(annotators: LoadedTable, settings: GroupSettings) -> AnnotatorGroups:
    """The group label of each annotator: its ``settings.attributes`` joined with ``settings.separator``. An id twice
    with different labels is refused (which group would its judgements be in?); twice with the same label is fine."""
    empty_values = {fold(v) for v in settings.empty_values}
    group: dict[str, str] = {}
    empty: dict[str, str] = {}
    first_row: dict[str, int] = {}
    without_id = 0
    for row_no, row in enumerate(annotators.rows, 1):
        annotator = key_at(row, settings.annotator_id)
        if annotator is None:
            without_id += 1
            continue
        values, missing = [], None
        for attribute in settings.attributes:
            value = field_value(row, attribute)
            if isinstance(value, Mapping | list):
                keys = f" with keys {sorted(value)}" if isinstance(value, Mapping) else ""
                raise DataError(
                    f"{annotators.name}, row {row_no}: group attribute {attribute!r} is a "
                    f"{type(value).__name__}{keys}; name one value inside it (data.group.attributes)"
                )
            text = as_key(value)
            if text is None or fold(text) in empty_values:
                missing = attribute
                break
            values.append(text)
        label = None if missing else settings.separator.join(values)
        if annotator in first_row:
            before = group.get(annotator)
            if before != label:
                raise DataError(
                    f"{annotators.name}: annotator {annotator!r} appears in rows {first_row[annotator]} and {row_no} "
                    f"with different groups ({before!r}, {label!r}); keep one row per annotator"
                )
            continue
        first_row[annotator] = row_no
        if label is None:
            empty[annotator] = missing
        else:
            group[annotator] = label
    return AnnotatorGroups(group, empty, without_id)


def small_groups(
    kept: list[Judgement], settings: GroupSettings, ledger: SkipLedger, source: str
) -> tuple[list[Judgement], dict[str, int]]:
    """Merge (or drop) the pairs of groups with fewer than ``settings.min_pairs`` pairs; ``other`` is dropped too if
    the merged group is still below the minimum. Returns the pairs left and the merged groups' sizes."""
    sizes = Counter(j.group for j in kept)
    small = {g: n for g, n in sorted(sizes.items()) if n < settings.min_pairs}
    if not small:
        return kept, {}
    merged: dict[str, int] = {}
    if settings.small_groups == "other":
        merged = dict(small)
        kept = [replace(j, group=settings.other_name) if j.group in small else j for j in kept]
        other = sum(1 for j in kept if j.group == settings.other_name)
        log.warning(
            "%s: %d groups with fewer than %d pairs (group.min_pairs) merged into %r, now %d pairs: %s",
            source,
            len(small),
            settings.min_pairs,
            settings.other_name,
            other,
            small,
        )
        small = {settings.other_name: other} if other < settings.min_pairs else {}
    if small:
        for j in kept:
            if j.group in small:
                ledger.skip("group_below_min_pairs", f"row {j.source_row}", detail=j.group)
        kept = [j for j in kept if j.group not in small]
    return kept, merged
