"""One comparisons row's judgements, per layout: who preferred which response, or why the row has none.

Each reader returns a :data:`Found`: ``(None, None, what was found)``, or ``(skip reason, detail for the log, None)``
with a reason of :data:`~grpo_lightning.data.sources.comparisons.ledger.SKIP_REASONS`. ``ratings`` rows are read one
response at a time here and paired per item in :func:`~grpo_lightning.data.sources.comparisons.pairs.build_pairs`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from grpo_lightning.data.sources.comparisons.settings import ComparisonFields, RatingPairs
from grpo_lightning.data.sources.comparisons.tables import as_number, as_text, field_value, key_at, text_at

Found = tuple[str | None, str | None, Any]  # (skip reason or None, detail for the log, what was found)


@dataclass(frozen=True)
class Judgement:
    """One annotator's preference of ``chosen`` over ``rejected`` (a pair before aggregation)."""

    group: str
    comparison: str
    prompt: str | None
    chosen: str | None
    rejected: str | None
    source_row: int  # 1-based row of the comparisons table


def parse_ranking(text: str) -> list[list[str]] | None:
    """``"B>A=C=D"`` → ``[["B"], ["A", "C", "D"]]`` (tiers, best first); ``None`` if a label is empty or repeated."""
    tiers = [[label.strip() for label in tier.split("=")] for tier in text.split(">")]
    labels = [label for tier in tiers for label in tier]
    if not labels or any(not label for label in labels) or len(set(labels)) != len(labels):
        return None
    return tiers


def rating_pairs(ratings: Sequence[float], rule: RatingPairs) -> list[tuple[int, int]]:
    """(better, worse) index pairs from one item's ratings: each top-rated response against each lower-rated one
    (``best_vs_each_worse``) or against each bottom-rated one (``best_vs_worst``). Equal ratings are never a pair;
    ratings that are all equal give none."""
    top, bottom = max(ratings), min(ratings)
    if top == bottom:
        return []
    best = [i for i, r in enumerate(ratings) if r == top]
    worse = [i for i, r in enumerate(ratings) if (r < top if rule == "best_vs_each_worse" else r == bottom)]
    return [(b, w) for b in best for w in worse]


def pairwise_judgement(unit: Any, fields: ComparisonFields, label_sets: Mapping[str, set[str]], where: str) -> Found:
    """``pairwise``: the row's [(chosen, rejected)], or why it has none. ``label_sets``: ``a``, ``b``, ``tie`` and
    ``both_bad`` → their labels, folded (:func:`~grpo_lightning.data.sources.comparisons.tables.fold`)."""
    preference = key_at(unit, fields.preference)
    if preference is None:
        return "preference_missing", None, None
    side = preference.casefold()
    for reason in ("tie", "both_bad"):
        if side in label_sets[reason]:
            return reason, None, None
    if side not in label_sets["a"] and side not in label_sets["b"]:
        return "preference_unrecognised", preference, None
    a = text_at(unit, fields.response_a, where)
    b = text_at(unit, fields.response_b, where)
    return None, None, [(a, b) if side in label_sets["a"] else (b, a)]


def _labelled_responses(unit: Any, fields: ComparisonFields, where: str) -> dict[str, str | None]:
    """``ranking``: label → response text of one unit."""
    if isinstance(fields.responses, Mapping):
        return {str(label): as_text(field_value(unit, p), where) for label, p in fields.responses.items()}
    out: dict[str, str | None] = {}
    for response in field_value(unit, fields.responses) or []:
        label = key_at(response, fields.response_label)
        if label is not None:
            out[label] = as_text(field_value(response, fields.response_text), where)
    return out


def ranking_judgements(unit: Any, fields: ComparisonFields, rule: RatingPairs, where: str) -> Found:
    """``ranking``: the row's (better, worse) responses by ``rule``, or why it has none."""
    ranking = key_at(unit, fields.ranking)
    if ranking is None:
        return "ranking_missing", None, None
    tiers = parse_ranking(ranking)
    if tiers is None:
        return "ranking_unparsable", ranking, None
    texts = _labelled_responses(unit, fields, where)
    ranked = [(label, len(tiers) - t) for t, tier in enumerate(tiers) for label in tier]  # tier t of T → T − t
    unknown = [label for label, _ in ranked if texts.get(label) is None]
    if unknown:
        return "response_missing", ",".join(unknown), None
    if len(ranked) < 2:
        return "single_response", None, None
    formed = rating_pairs([r for _, r in ranked], rule)
    if not formed:
        return "ratings_all_equal", None, None
    return None, None, [(texts[ranked[b][0]], texts[ranked[w][0]]) for b, w in formed]


def rated_response(unit: Any, fields: ComparisonFields, where: str) -> Found:
    """``ratings``: the row's (response, rating), or why it has none."""
    if any(key_at(unit, p) is None for p in fields.item):
        return "item_missing", None, None
    rating = as_number(field_value(unit, fields.rating))
    if rating is None:
        return "rating_missing", None, None
    response = text_at(unit, fields.response, where)
    if response is None:
        return "response_missing", None, None
    return None, None, (response, rating)
