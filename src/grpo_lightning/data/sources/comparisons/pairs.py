"""Comparisons + annotators → group-labelled pairs: the join, the judgements, their aggregation and the ledgers.

:func:`build_pairs` is pure (tables in → pairs and counts out, no state); the accounting it keeps is described in
:mod:`~grpo_lightning.data.sources.comparisons.ledger`.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from grpo_lightning.data.sources.comparisons.groups import annotator_groups, small_groups
from grpo_lightning.data.sources.comparisons.judgements import (
    Judgement,
    pairwise_judgement,
    ranking_judgements,
    rated_response,
    rating_pairs,
)
from grpo_lightning.data.sources.comparisons.ledger import SkipLedger, skipped_unit
from grpo_lightning.data.sources.comparisons.settings import (
    ComparisonFields,
    Format,
    GroupSettings,
    MultipleAnnotators,
    PreferenceLabels,
    RatingPairs,
)
from grpo_lightning.data.sources.comparisons.tables import (
    LoadedTable,
    field_value,
    fold,
    key_at,
    require_columns,
    text_at,
    units,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BuiltPairs:
    """What :func:`build_pairs` returns.

    Attributes:
        pairs: columns ``prompt, chosen, rejected, group, source_row`` (1-based comparisons row), one entry per pair.
        skipped: reason → count, row- and pair-level (:data:`~.ledger.SKIP_REASONS`).
        rows_read: rows of the comparisons table (after ``explode``; a row with nothing to explode counts once).
        rows_used: rows that gave at least one judgement, or whose item did.
        judgements: (better, worse) judgements before aggregation.
        merged_groups: small group → its pairs, merged into ``other_name``.
        annotators_without_id: rows of the annotators table without an id (not joinable; reported, not a skip).
    """

    pairs: dict[str, list]
    skipped: Counter
    rows_read: int
    rows_used: int
    judgements: int
    merged_groups: dict[str, int]
    annotators_without_id: int

    @property
    def kept(self) -> int:
        return len(self.pairs["prompt"])

    def report(self) -> dict[str, Any]:
        """The two ledgers as a JSON-able dict (rows read = used + row skips; judgements = kept + pair skips)."""
        level: dict[str, dict[str, int]] = {"rows": {}, "judgements": {}}
        for reason, n in sorted(self.skipped.items()):
            level[skipped_unit(reason)][reason] = n
        return {
            "rows_read": self.rows_read,
            "rows_used": self.rows_used,
            "rows_skipped": level["rows"],
            "judgements": self.judgements,
            "pairs_kept": self.kept,
            "pairs_skipped": level["judgements"],
            "merged_groups": dict(sorted(self.merged_groups.items())),
            "annotators_without_id": self.annotators_without_id,
        }


def build_pairs(
    comparisons: LoadedTable,
    annotators: LoadedTable,
    *,
    format: Format = "pairwise",
    fields: ComparisonFields | None = None,
    labels: PreferenceLabels | None = None,
    group: GroupSettings | None = None,
    multiple_annotators: MultipleAnnotators = "separate",
    rating_pairs_rule: RatingPairs = "best_vs_each_worse",
    where: Mapping[str, Sequence[Any]] | None = None,
) -> BuiltPairs:
    """Join ``comparisons`` with ``annotators`` on the annotator id and build group-labelled pairs.

    Steps, each counted (:mod:`~grpo_lightning.data.sources.comparisons.ledger`): rows outside ``where`` (field path
    → values kept), rows without an annotator, a known annotator or a group; rows without a usable preference
    (pairwise: a tie, both bad; ratings/ranking: too few or all-equal ratings); then the judgements are aggregated per
    group and comparison — ``separate``: each distinct (chosen, rejected) is a pair, so annotators of one group who
    disagree give both directions, and a repeat of the same judgement is ``duplicate_judgement`` (the pair's identity
    is (prompt, chosen, rejected, group)); ``majority``: the votes of one group on a pair of responses give one pair,
    the side with more votes chosen, ties dropped — and finally groups with fewer than ``group.min_pairs`` pairs are
    merged into ``group.other_name`` or dropped. Pairs keep the order in which their first judgement was read.
    """
    fields, labels, group = fields or ComparisonFields(), labels or PreferenceLabels(), group or GroupSettings()
    require_columns(comparisons, {**fields.needed(format), **{f"where.{p}": p for p in (where or {})}})
    require_columns(
        annotators,
        {"group.annotator_id": group.annotator_id}
        | {f"group.attributes[{i}]": a for i, a in enumerate(group.attributes)},
    )
    annotated = annotator_groups(annotators, group)
    ledger = SkipLedger(comparisons.name)
    label_sets = {
        name: {fold(v) for v in values}
        for name, values in (("a", labels.a), ("b", labels.b), ("tie", labels.tie), ("both_bad", labels.both_bad))
    }
    kept_values = {path: {fold(v) for v in keep} for path, keep in (where or {}).items()}
    judgements: list[Judgement] = []
    # ratings: the rows of one (item, annotator), with its group, comparison and prompt (of its first row).
    items: dict[tuple, list[tuple[int, str, str, float]]] = defaultdict(list)
    item_meta: dict[tuple, tuple[str, str, str | None]] = {}
    rows_read = rows_used = 0
    for row_no, ref, unit in units(comparisons.rows, fields.explode):
        rows_read += 1
        where_ref = f"{comparisons.name}, {ref}"
        if unit is None:
            ledger.skip("no_annotations", ref)
            continue
        excluded = next((p for p, keep in kept_values.items() if fold(field_value(unit, p)) not in keep), None)
        if excluded is not None:
            ledger.skip("excluded_by_where", ref, detail=excluded)
            continue
        annotator = key_at(unit, fields.annotator)
        if annotator is None:
            ledger.skip("annotator_id_missing", ref)
            continue
        if annotator in annotated.empty:
            ledger.skip("empty_attribute", ref, detail=annotated.empty[annotator])
            continue
        if annotator not in annotated.group:
            ledger.skip("annotator_not_found", ref, detail=annotator)
            continue
        label = annotated.group[annotator]
        prompt = text_at(unit, fields.prompt, where_ref)
        comparison = str(key_at(unit, fields.comparison_id) if fields.comparison_id else prompt)
        if format == "ratings":
            reason, detail, rated = rated_response(unit, fields, where_ref)
            if reason is None:
                key = (*(key_at(unit, p) for p in fields.item), annotator)
                items[key].append((row_no, ref, *rated))
                item_meta.setdefault(key, (label, comparison, prompt))
        else:
            if format == "pairwise":
                reason, detail, formed = pairwise_judgement(unit, fields, label_sets, where_ref)
            else:
                reason, detail, formed = ranking_judgements(unit, fields, rating_pairs_rule, where_ref)
            if reason is None:
                rows_used += 1
                judgements += [Judgement(label, comparison, prompt, c, r, row_no) for c, r in formed]
        if reason is not None:
            ledger.skip(reason, ref, detail=detail)
    for key, rated in items.items():  # ratings: an item's rows are used or skipped together
        label, comparison, prompt = item_meta[key]
        formed = rating_pairs([r[3] for r in rated], rating_pairs_rule) if len(rated) > 1 else []
        if not formed:
            ledger.skip("single_response" if len(rated) < 2 else "ratings_all_equal", rated[0][1], n=len(rated))
            continue
        rows_used += len(rated)
        for better, worse in formed:
            judgements.append(Judgement(label, comparison, prompt, rated[better][2], rated[worse][2], rated[better][0]))

    kept = _aggregate(judgements, multiple_annotators, ledger)
    kept, merged = small_groups(kept, group, ledger, comparisons.name)
    ledger.log({"rows": rows_read, "judgements": len(judgements)})
    if annotated.without_id:
        log.info("%s: %d rows without an annotator id (not joinable)", annotators.name, annotated.without_id)
    pairs = {
        column: [getattr(j, column) for j in kept] for column in ("prompt", "chosen", "rejected", "group", "source_row")
    }
    return BuiltPairs(pairs, ledger.counts, rows_read, rows_used, len(judgements), merged, annotated.without_id)


def _aggregate(judgements: list[Judgement], mode: MultipleAnnotators, ledger: SkipLedger) -> list[Judgement]:
    """``separate``: one pair per distinct judgement of a group; ``majority``: one pair per group, comparison and
    pair of responses, for the side with more votes (a tie: none)."""
    if mode == "separate":
        seen: set[tuple] = set()
        out = []
        for j in judgements:
            key = (j.group, j.comparison, j.chosen, j.rejected)
            if key in seen:
                ledger.skip("duplicate_judgement", f"row {j.source_row}")
                continue
            seen.add(key)
            out.append(j)
        return out
    votes: dict[tuple, list[tuple[int, Judgement]]] = defaultdict(list)
    for position, j in enumerate(judgements):
        votes[(j.group, j.comparison, frozenset((j.chosen, j.rejected)))].append((position, j))
    out: list[tuple[int, Judgement]] = []
    for cast in votes.values():
        ranked = Counter((j.chosen, j.rejected) for _, j in cast).most_common()
        if len(ranked) == 2 and ranked[0][1] == ranked[1][1]:
            ledger.skip("majority_tie", f"row {cast[0][1].source_row}", n=len(cast))
            continue
        winner = ranked[0][0]
        first = next(v for v in cast if (v[1].chosen, v[1].rejected) == winner)
        out.append(first)
        if ranked[0][1] > 1:
            ledger.skip("merged_by_majority", f"row {first[1].source_row}", n=ranked[0][1] - 1)
        if len(ranked) == 2:
            loser = next(j for _, j in cast if (j.chosen, j.rejected) != winner)
            ledger.skip("outvoted", f"row {loser.source_row}", n=ranked[1][1])
    return [j for _, j in sorted(out, key=lambda v: v[0])]
