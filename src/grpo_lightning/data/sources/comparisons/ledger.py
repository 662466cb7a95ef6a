"""Why a row or a judgement gave no pair: the skip reasons, their counts, and one log line per reason.

Accounting. Every row read ends in exactly one place: it is used, or skipped under the first reason of
:data:`SKIP_REASONS` that applies (the ``row:`` reasons). Used rows give judgements (``pairwise``: one per row;
``ratings``/``ranking``: one per (better, worse) response pair the rule forms), and every judgement is a kept pair or
is counted under a ``pair:`` reason. So

    rows read  = rows used + Σ row-level skips
    judgements = pairs kept + Σ pair-level skips

and for ``pairwise`` (one judgement per used row) rows read = pairs kept + Σ all skips.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Mapping

log = logging.getLogger(__name__)

#: Why a row (``row:``) or a judgement (``pair:``) gave no pair, in the order the reasons are tested.
SKIP_REASONS: dict[str, str] = {
    "no_annotations": "row: `fields.explode` names a missing or empty list",
    "excluded_by_where": "row: a value is not among those `where` keeps",
    "annotator_id_missing": "row: no annotator id",
    "annotator_not_found": "row: the annotator id is not in the annotators table",
    "empty_attribute": "row: the annotator's group attribute is missing, empty or one of `group.empty_values`",
    "preference_missing": "row (pairwise): no preference label",
    "tie": "row (pairwise): the label is one of `labels.tie`",
    "both_bad": "row (pairwise): the label is one of `labels.both_bad`",
    "preference_unrecognised": "row (pairwise): the label is in none of the `labels` lists",
    "item_missing": "row (ratings): a `fields.item` value is missing",
    "rating_missing": "row (ratings): the rating is missing or not a number",
    "ranking_missing": "row (ranking): no ranking",
    "ranking_unparsable": "row (ranking): not of the form `B>A=C`, or a label appears twice",
    "response_missing": "row (ratings/ranking): a rated or ranked response has no text",
    "single_response": "row (ratings/ranking): the item has fewer than two rated responses",
    "ratings_all_equal": "row (ratings/ranking): every response of the item has the same rating",
    "duplicate_judgement": "pair (separate): the same pair in the same group from another annotator",
    "merged_by_majority": "pair (majority): a vote that agrees with the pair kept for its group",
    "outvoted": "pair (majority): a vote for the side that lost its group's majority",
    "majority_tie": "pair (majority): the group's votes on a pair are tied",
    "group_below_min_pairs": "pair: its group (or `other` after merging) has fewer than `group.min_pairs` pairs",
}


def skipped_unit(reason: str) -> str:
    """What a skip reason counts: ``judgements`` (a ``pair:`` reason) or ``rows`` (a ``row:`` reason)."""
    return "judgements" if SKIP_REASONS[reason].startswith("pair") else "rows"


class SkipLedger:
    """Skip counts with the first rows of each reason, for one log line per reason."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.counts: Counter = Counter()
        self.refs: dict[str, list[str]] = defaultdict(list)
        self.details: dict[str, Counter] = defaultdict(Counter)

    def skip(self, reason: str, ref: str, n: int = 1, detail: str | None = None) -> None:
        self.counts[reason] += n
        if len(self.refs[reason]) < 5:
            self.refs[reason].append(ref)
        if detail is not None:
            self.details[reason][detail] += n

    def log(self, totals: Mapping[str, int]) -> None:
        """One warning per reason that occurred, out of ``totals`` (``rows`` and ``judgements``)."""
        for reason in SKIP_REASONS:
            n = self.counts.get(reason)
            if not n:
                continue
            unit = skipped_unit(reason)
            shown = "; ".join(self.refs[reason]) + ("; ..." if n > len(self.refs[reason]) else "")
            # The most common details (unknown ids, empty attributes, bad labels), five at most: ids can be many.
            common = self.details[reason].most_common()
            more = f" and {len(common) - 5} more" if len(common) > 5 else ""
            detail = f" {dict(common[:5])}{more}" if common else ""
            log.warning(
                "%s: skipped %d of %d %s as %s%s (%s)", self.source, n, totals[unit], unit, reason, detail, shown
            )
