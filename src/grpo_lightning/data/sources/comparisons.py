"""Comparisons + annotators → group-labelled preference pairs, chosen in configuration, not code.

Group-labelled preference data is usually held as two tables: the **comparisons** (a prompt, the responses shown, what
an annotator preferred, the annotator's id) and the **annotators** (one row per annotator with attributes: country,
age band, language…). This module joins them on the annotator id, takes each judgement's group from one named
attribute or a combination of several (country × age band → ``"UK | 25-34"``) and turns the preferences into the pairs
(prompt, chosen, rejected, group) that :class:`~grpo_lightning.data.PreferenceDataModule` trains on. Three layouts of
the comparisons table (``format``):

* ``pairwise``: one row per judgement of two responses A and B; a label says which one was preferred. A tie or "both
  bad" is no pair (counted).
* ``ratings``: one row per rated response; the rows of one item (a prompt shown with several responses, e.g. PRISM's
  ``interaction_id``) by one annotator become pairs, best vs each worse or best vs worst; equal ratings never make a
  pair.
* ``ranking``: one row per ranked item with a ranking string such as ``B>A=C=D`` (best first, ``>`` between tiers,
  ``=`` within a tier) over labelled responses; tier t of T counts as the rating T − t, then as ``ratings``.

Where a value is, is a *field path*: a column name, or a dotted path into nested JSON (``location.reside_country``;
a list index is a number, ``-1`` the last element: ``ranking_blocks.world.0.ranking``). ``fields.explode`` turns each
element of a list column into its own row (CA-1 keeps all annotators' assessments of a prompt in one row); paths that
start with ``each.`` read the element. A text field that holds a chat transcript (a list of ``{role, content}``
messages) is read as its text: a single message's content, or ``role: content`` blocks.

Accounting. Every row read ends in exactly one place: it is used, or skipped under the first reason of
:data:`SKIP_REASONS` that applies (the ``row:`` reasons). Used rows give judgements (``pairwise``: one per row;
``ratings``/``ranking``: one per (better, worse) response pair the rule forms), and every judgement is a kept pair or
is counted under a ``pair:`` reason. So

    rows read  = rows used + Σ row-level skips
    judgements = pairs kept + Σ pair-level skips

and for ``pairwise`` (one judgement per used row) rows read = pairs kept + Σ all skips. :class:`ComparisonsDataModule`
hands all the counts to the base class as its source skips (rows in = pairs + Σ skips, as for GOQA) and keeps both
ledgers in :attr:`ComparisonsDataModule.source_report`. Each skip reason is logged once, with its count and the first
rows it concerns; a table without a column the settings name is a :class:`~grpo_lightning.data.rows.DataError` (a
``ValueError``) naming the file, the column and the columns it has.

The functions are pure (tables in → pairs and counts out, no state): :func:`load_table` reads a table,
:func:`annotator_groups` the group of each annotator, :func:`build_pairs` the pairs. Recipes for public datasets are
YAML only: ``configs/data/*.yaml``; ``docs/own_data.md`` walks through one and through writing your own.
"""

from __future__ import annotations

import csv
import json
import logging
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

import datasets

from grpo_lightning.data.module import PreferenceDataModule
from grpo_lightning.data.rows import SOURCE_COLUMNS, DataError

log = logging.getLogger(__name__)

Format = Literal["pairwise", "ratings", "ranking"]
MultipleAnnotators = Literal["separate", "majority"]
RatingPairs = Literal["best_vs_each_worse", "best_vs_worst"]
SmallGroups = Literal["other", "drop"]

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

_READERS = {".jsonl": "jsonl", ".json": "json", ".csv": "csv", ".parquet": "parquet"}
_EACH = "each"


# ----------------------------------------------------------------------------------------------------------------------
# Settings
# ----------------------------------------------------------------------------------------------------------------------


@dataclass
class Table:
    """Where one table is read from: local file(s), or a Hugging Face hub dataset.

    Attributes:
        path: a ``.jsonl``/``.json``/``.csv``/``.parquet`` file, a list of them, or a directory of them (one format).
            Wins over ``hub_id`` when both are given, so a recipe's hub default is replaced by ``--…path``.
        hub_id: a hub dataset id, read with ``datasets.load_dataset`` (only when ``path`` is not given).
        hub_config: the hub dataset's configuration (subset), e.g. ``survey`` of ``HannahRoseKirk/prism-alignment``.
        hub_split: the hub split to read.
    """

    path: str | list[str] | None = None
    hub_id: str | None = None
    hub_config: str | None = None
    hub_split: str = "train"

    def describe(self) -> str:
        """The table's name in messages: its file name(s), or ``hub_id[/config]:split``."""
        if self.path is not None:
            paths = [self.path] if isinstance(self.path, str) else list(self.path)
            return ", ".join(Path(p).name for p in paths)
        if self.hub_id is not None:
            return f"{self.hub_id}{'/' + self.hub_config if self.hub_config else ''}:{self.hub_split}"
        return "<no table>"


@dataclass
class ComparisonFields:
    """Where each value is in a row of the comparisons table (field paths, see the module docstring).

    Attributes:
        prompt: the prompt text (or a chat transcript).
        annotator: the annotator's id, joined with ``group.annotator_id`` of the annotators table.
        comparison_id: what identifies one comparison across annotators (``majority`` and duplicate judgements are
            counted per comparison); ``None``: the prompt text.
        explode: a list column whose elements are separate rows (read with ``each.…`` paths); ``None``: none.
        response_a: ``pairwise``: the first response.
        response_b: ``pairwise``: the second response.
        preference: ``pairwise``: the label saying which was preferred (matched against ``labels``).
        response: ``ratings``: the rated response.
        rating: ``ratings``: its rating (a number; higher is better).
        item: ``ratings``: the column(s) that identify an item, i.e. the responses rated together (the annotator is
            added to them: one annotator's ratings of one item are compared with each other only).
        ranking: ``ranking``: the ranking string, best first (``B>A=C=D``).
        responses: ``ranking``: either a path to a list of response objects (with ``response_label`` and
            ``response_text`` inside each), or a mapping ``label: path`` (``{A: response_a, B: response_b}``).
        response_label: ``ranking``: the label of a response object (as used in the ranking string).
        response_text: ``ranking``: the text of a response object.
    """

    prompt: str = "prompt"
    annotator: str = "annotator_id"
    comparison_id: str | None = None
    explode: str | None = None
    response_a: str = "response_a"
    response_b: str = "response_b"
    preference: str = "preference"
    response: str = "response"
    rating: str = "rating"
    item: list[str] = field(default_factory=lambda: ["item_id"])
    ranking: str = "ranking"
    responses: str | dict[str, str] = "responses"
    response_label: str = "label"
    response_text: str = "text"


@dataclass
class PreferenceLabels:
    """``pairwise``: the labels of the preference field. Matched as text, without surrounding whitespace and case
    (``1`` matches the number 1). A label in none of the lists is counted as ``preference_unrecognised``.

    Attributes:
        a: labels meaning response A was preferred.
        b: labels meaning response B was preferred.
        tie: labels of a tie (no pair).
        both_bad: labels meaning neither response is acceptable (no pair).
    """

    a: list[str] = field(default_factory=lambda: ["a", "response_a", "1"])
    b: list[str] = field(default_factory=lambda: ["b", "response_b", "2"])
    tie: list[str] = field(default_factory=lambda: ["tie", "equal", "same", "0"])
    both_bad: list[str] = field(default_factory=lambda: ["both_bad", "both bad", "neither"])


@dataclass
class GroupSettings:
    """The group of a judgement: its annotator's attribute(s) in the annotators table.

    Attributes:
        annotator_id: the annotators table's id field (joined with ``fields.annotator``).
        attributes: the attribute path(s) that make the group; several are joined with ``separator``
            (``[location.reside_country, age]`` → ``"UK | 25-34 years old"``).
        separator: between the values of several attributes. Not ``/``: group names are part of metric tags.
        empty_values: attribute values that count as empty (besides a missing value and blank text), e.g.
            ``Prefer not to say``; matched without case and surrounding whitespace.
        min_pairs: a group with fewer pairs than this (after aggregation) is merged or dropped, see ``small_groups``.
        small_groups: ``other``: such groups are merged into one group named ``other_name`` (itself dropped if still
            below ``min_pairs``); ``drop``: their pairs are dropped. Both logged and counted.
        other_name: the name of the merged group.
    """

    annotator_id: str = "annotator_id"
    attributes: list[str] = field(default_factory=lambda: ["country"])
    separator: str = " | "
    empty_values: list[str] = field(default_factory=list)
    min_pairs: int = 1
    small_groups: SmallGroups = "other"
    other_name: str = "other"


# ----------------------------------------------------------------------------------------------------------------------
# Tables
# ----------------------------------------------------------------------------------------------------------------------


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


# ----------------------------------------------------------------------------------------------------------------------
# Values
# ----------------------------------------------------------------------------------------------------------------------


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


def _key(value: Any) -> str | None:
    """An id or label as text (ids may be numbers in one table and strings in the other); blank → ``None``."""
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _number(value: Any) -> float | None:
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


# ----------------------------------------------------------------------------------------------------------------------
# Groups
# ----------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AnnotatorGroups:
    """Each annotator id's group, or the attribute that left it without one."""

    group: dict[str, str]
    empty: dict[str, str]  # annotator id → the first empty attribute
    without_id: int  # annotators-table rows without an id (they cannot be joined)


def annotator_groups(annotators: LoadedTable, settings: GroupSettings) -> AnnotatorGroups:
    """The group label of each annotator: its ``settings.attributes`` joined with ``settings.separator``. An id twice
    with different labels is refused (which group would its judgements be in?); twice with the same label is fine."""
    empty_values = {v.strip().casefold() for v in settings.empty_values}
    group: dict[str, str] = {}
    empty: dict[str, str] = {}
    first_row: dict[str, int] = {}
    without_id = 0
    for row_no, row in enumerate(annotators.rows, 1):
        annotator = _key(field_value(row, settings.annotator_id))
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
            text = _key(value)
            if text is None or text.casefold() in empty_values:
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


# ----------------------------------------------------------------------------------------------------------------------
# Pairs
# ----------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Judgement:
    """One annotator's preference of ``chosen`` over ``rejected`` (a pair before aggregation)."""

    group: str
    comparison: str
    prompt: str | None
    chosen: str | None
    rejected: str | None
    source_row: int  # 1-based row of the comparisons table


@dataclass(frozen=True)
class BuiltPairs:
    """What :func:`build_pairs` returns.

    Attributes:
        pairs: columns ``prompt, chosen, rejected, group, source_row`` (1-based comparisons row), one entry per pair.
        skipped: reason → count, row- and pair-level (:data:`SKIP_REASONS`).
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
        row_level = {r: n for r, n in self.skipped.items() if SKIP_REASONS[r].startswith("row")}
        pair_level = {r: n for r, n in self.skipped.items() if SKIP_REASONS[r].startswith("pair")}
        return {
            "rows_read": self.rows_read,
            "rows_used": self.rows_used,
            "rows_skipped": dict(sorted(row_level.items())),
            "judgements": self.judgements,
            "pairs_kept": self.kept,
            "pairs_skipped": dict(sorted(pair_level.items())),
            "merged_groups": dict(sorted(self.merged_groups.items())),
            "annotators_without_id": self.annotators_without_id,
        }


class _Ledger:
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
        for reason in SKIP_REASONS:
            n = self.counts.get(reason)
            if not n:
                continue
            unit = "judgements" if SKIP_REASONS[reason].startswith("pair") else "rows"
            shown = "; ".join(self.refs[reason]) + ("; ..." if n > len(self.refs[reason]) else "")
            # The most common details (unknown ids, empty attributes, bad labels), five at most: ids can be many.
            common = self.details[reason].most_common() if self.details.get(reason) else []
            detail = f" {dict(common[:5])}" + (f" and {len(common) - 5} more" if len(common) > 5 else "")
            detail = detail if common else ""
            log.warning(
                "%s: skipped %d of %d %s as %s%s (%s)", self.source, n, totals[unit], unit, reason, detail, shown
            )


def _matches(value: Any, allowed: Iterable[Any]) -> bool:
    return str(value).strip().casefold() in {str(a).strip().casefold() for a in allowed}


def _units(rows: Sequence[Mapping[str, Any]], explode: str | None) -> Iterable[tuple[int, str, Any]]:
    """(1-based row, reference, unit) for each row, or for each element of its ``explode`` list (as ``each``)."""
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


def _needed(format: Format, fields: ComparisonFields) -> dict[str, str]:
    needed = {"fields.prompt": fields.prompt, "fields.annotator": fields.annotator}
    if fields.explode is not None:
        needed["fields.explode"] = fields.explode
    if fields.comparison_id is not None:
        needed["fields.comparison_id"] = fields.comparison_id
    if format == "pairwise":
        needed |= {
            "fields.response_a": fields.response_a,
            "fields.response_b": fields.response_b,
            "fields.preference": fields.preference,
        }
    elif format == "ratings":
        needed |= {"fields.response": fields.response, "fields.rating": fields.rating}
        needed |= {f"fields.item[{i}]": p for i, p in enumerate(fields.item)}
    else:
        needed["fields.ranking"] = fields.ranking
        if isinstance(fields.responses, str):
            needed["fields.responses"] = fields.responses
        else:
            needed |= {f"fields.responses.{label}": p for label, p in fields.responses.items()}
    return needed


def _labelled_responses(unit: Any, fields: ComparisonFields, where: str) -> dict[str, str | None]:
    """``ranking``: label → response text of one unit."""
    if isinstance(fields.responses, Mapping):
        return {str(label): as_text(field_value(unit, p), where) for label, p in fields.responses.items()}
    out: dict[str, str | None] = {}
    for response in field_value(unit, fields.responses) or []:
        label = _key(field_value(response, fields.response_label))
        if label is not None:
            out[label] = as_text(field_value(response, fields.response_text), where)
    return out


Found = tuple[str | None, str | None, Any]  # (skip reason or None, detail for the log, what was found)


def _pairwise_judgement(unit, fields: ComparisonFields, label_sets, _rule, where: str) -> Found:
    """``pairwise``: the row's (chosen, rejected), or why it has none."""
    preference = _key(field_value(unit, fields.preference))
    if preference is None:
        return "preference_missing", None, None
    side = preference.casefold()
    for reason in ("tie", "both_bad"):
        if side in label_sets[reason]:
            return reason, None, None
    if side not in label_sets["a"] and side not in label_sets["b"]:
        return "preference_unrecognised", preference, None
    a = as_text(field_value(unit, fields.response_a), f"{where}, {fields.response_a}")
    b = as_text(field_value(unit, fields.response_b), f"{where}, {fields.response_b}")
    return None, None, [(a, b) if side in label_sets["a"] else (b, a)]


def _ranking_judgements(unit, fields: ComparisonFields, _labels, rule: RatingPairs, where: str) -> Found:
    """``ranking``: the row's (better, worse) responses by ``rule``, or why it has none."""
    ranking = _key(field_value(unit, fields.ranking))
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


def _rated_response(unit, fields: ComparisonFields, where: str) -> Found:
    """``ratings``: the row's (response, rating), or why it has none."""
    if any(_key(field_value(unit, p)) is None for p in fields.item):
        return "item_missing", None, None
    rating = _number(field_value(unit, fields.rating))
    if rating is None:
        return "rating_missing", None, None
    response = as_text(field_value(unit, fields.response), f"{where}, {fields.response}")
    if response is None:
        return "response_missing", None, None
    return None, None, (response, rating)


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

    Steps, each counted (module docstring, "Accounting"): rows outside ``where`` (field path → values kept), rows
    without an annotator, a known annotator or a group; rows without a usable preference (pairwise: a tie, both bad;
    ratings/ranking: too few or all-equal ratings); then the judgements are aggregated per group and comparison —
    ``separate``: each distinct (chosen, rejected) is a pair, so annotators of one group who disagree give both
    directions, and a repeat of the same judgement is ``duplicate_judgement`` (the pair's identity is (prompt,
    chosen, rejected, group)); ``majority``: the votes of one group on a pair of responses give one pair, the side
    with more votes chosen, ties dropped — and finally groups with fewer than ``group.min_pairs`` pairs are merged
    into ``group.other_name`` or dropped. Pairs keep the order in which their first judgement was read.
    """
    fields, labels, group = fields or ComparisonFields(), labels or PreferenceLabels(), group or GroupSettings()
    require_columns(comparisons, {**_needed(format, fields), **{f"where.{p}": p for p in (where or {})}})
    require_columns(
        annotators,
        {"group.annotator_id": group.annotator_id}
        | {f"group.attributes[{i}]": a for i, a in enumerate(group.attributes)},
    )
    annotated = annotator_groups(annotators, group)
    ledger = _Ledger(comparisons.name)
    label_sets = {
        name: {str(v).strip().casefold() for v in values}
        for name, values in (("a", labels.a), ("b", labels.b), ("tie", labels.tie), ("both_bad", labels.both_bad))
    }
    judgements: list[Judgement] = []
    # ratings: the rows of one (item, annotator), with its group, comparison and prompt (of its first row).
    items: dict[tuple, list[tuple[int, str, str, float]]] = defaultdict(list)
    item_meta: dict[tuple, tuple[str, str, str | None]] = {}
    rows_read = rows_used = 0
    for row_no, ref, unit in _units(comparisons.rows, fields.explode):
        rows_read += 1
        where_ref = f"{comparisons.name}, {ref}"
        if unit is None:
            ledger.skip("no_annotations", ref)
            continue
        excluded = next((p for p, keep in (where or {}).items() if not _matches(field_value(unit, p), keep)), None)
        if excluded is not None:
            ledger.skip("excluded_by_where", ref, detail=excluded)
            continue
        annotator = _key(field_value(unit, fields.annotator))
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
        prompt = as_text(field_value(unit, fields.prompt), f"{where_ref}, {fields.prompt}")
        comparison = str(_key(field_value(unit, fields.comparison_id)) if fields.comparison_id else prompt)
        if format == "ratings":
            reason, detail, rated = _rated_response(unit, fields, where_ref)
            if reason is None:
                key = (*(_key(field_value(unit, p)) for p in fields.item), annotator)
                items[key].append((row_no, ref, *rated))
                item_meta.setdefault(key, (label, comparison, prompt))
        else:
            find = _pairwise_judgement if format == "pairwise" else _ranking_judgements
            reason, detail, formed = find(unit, fields, label_sets, rating_pairs_rule, where_ref)
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
    kept, merged = _small_groups(kept, group, ledger, comparisons.name)
    ledger.log({"rows": rows_read, "judgements": len(judgements)})
    if annotated.without_id:
        log.info("%s: %d rows without an annotator id (not joinable)", annotators.name, annotated.without_id)
    pairs = {
        "prompt": [j.prompt for j in kept],
        "chosen": [j.chosen for j in kept],
        "rejected": [j.rejected for j in kept],
        "group": [j.group for j in kept],
        "source_row": [j.source_row for j in kept],
    }
    return BuiltPairs(pairs, ledger.counts, rows_read, rows_used, len(judgements), merged, annotated.without_id)


def _aggregate(judgements: list[Judgement], mode: MultipleAnnotators, ledger: _Ledger) -> list[Judgement]:
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


def _small_groups(
    kept: list[Judgement], settings: GroupSettings, ledger: _Ledger, source: str
) -> tuple[list[Judgement], dict[str, int]]:
    """Merge (or drop) the pairs of groups with fewer than ``settings.min_pairs`` pairs; ``other`` is dropped too if
    the merged group is still below the minimum."""
    sizes = Counter(j.group for j in kept)
    small = {g: n for g, n in sorted(sizes.items()) if n < settings.min_pairs}
    if not small:
        return kept, {}
    merged: dict[str, int] = {}
    if settings.small_groups == "other":
        merged = dict(small)
        kept = [
            Judgement(settings.other_name, j.comparison, j.prompt, j.chosen, j.rejected, j.source_row)
            if j.group in small
            else j
            for j in kept
        ]
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


# ----------------------------------------------------------------------------------------------------------------------
# The data module
# ----------------------------------------------------------------------------------------------------------------------

_PAIR_FEATURES = datasets.Features(
    {
        "prompt": datasets.Value("string"),
        "chosen": datasets.Value("string"),
        "rejected": datasets.Value("string"),
        "group": datasets.Value("string"),
        SOURCE_COLUMNS[0]: datasets.Value("string"),
        SOURCE_COLUMNS[1]: datasets.Value("int64"),
    }
)


class ComparisonsDataModule(PreferenceDataModule):
    """Group-labelled pairs from a comparisons table and an annotators table (module docstring), as a
    :class:`PreferenceDataModule`: the pairs are then cleaned, split, tokenised and batched as any other data.

    The comparisons table is the base class's source: ``path`` (local files) or ``hub_id`` (+ ``hub_config``,
    ``hub_split``), so a checkpoint records it as the data's source; every other setting changes the pairs, which
    the checkpoint's pair fingerprints record (a resume on other pairs is refused).

    Args:
        annotators: the annotators table.
        hub_config: the comparisons' hub configuration (``hub_id`` and ``hub_split`` are the base class's).
        format: ``pairwise``, ``ratings`` or ``ranking`` (module docstring).
        fields: where each value is in a comparisons row.
        labels: ``pairwise``: what the preference labels mean.
        group: which annotator attribute(s) make the group, and what happens to small groups.
        multiple_annotators: several annotators on one comparison: ``separate`` (each judgement its own pair) or
            ``majority`` (one pair per group by majority vote, ties dropped); see :func:`build_pairs`.
        rating_pairs: ``ratings``/``ranking``: ``best_vs_each_worse`` or ``best_vs_worst``.
        where: keep only rows whose value at a field path is one of the listed values (``{turn: [0]}``); the others
            are counted as ``excluded_by_where``.
        hub_id: the comparisons' hub id, used when ``path`` is not given (a recipe's default).
        **kwargs: the arguments of :class:`PreferenceDataModule` (``path`` is the comparisons table; ``columns`` does
            not apply: use ``fields``).
    """

    def __init__(
        self,
        annotators: Table | None = None,
        hub_config: str | None = None,
        format: Format = "pairwise",
        fields: ComparisonFields | None = None,
        labels: PreferenceLabels | None = None,
        group: GroupSettings | None = None,
        multiple_annotators: MultipleAnnotators = "separate",
        rating_pairs: RatingPairs = "best_vs_each_worse",
        where: dict[str, list[str | int | float | bool]] | None = None,
        hub_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        if kwargs.get("columns") is not None:
            raise ValueError("data.columns does not apply to ComparisonsDataModule: name the fields in data.fields")
        # A local path replaces the hub id (the base class refuses both at once), as for GOQA.
        super().__init__(hub_id=None if kwargs.get("path") is not None else hub_id, **kwargs)
        choices = {
            "format": (format, Format),
            "multiple_annotators": (multiple_annotators, MultipleAnnotators),
            "rating_pairs": (rating_pairs, RatingPairs),
        }
        for name, (value, kind) in choices.items():
            if value not in get_args(kind):
                raise ValueError(f"data.{name} must be one of {get_args(kind)}, got {value!r}")
        if self.path is None and self.hub_id is None:
            raise ValueError("data: give the comparisons table as data.path (local files) or data.hub_id")
        if annotators is None or (annotators.path is None and annotators.hub_id is None):
            raise ValueError("data.annotators: give the annotators table as data.annotators.path or .hub_id")
        group = group or GroupSettings()
        if not group.attributes:
            raise ValueError("data.group.attributes: name at least one annotator attribute")
        if group.min_pairs < 1:
            raise ValueError(f"data.group.min_pairs must be >= 1, got {group.min_pairs}")
        if group.small_groups not in get_args(SmallGroups):
            raise ValueError(f"data.group.small_groups must be one of {get_args(SmallGroups)}")
        if "/" in group.separator:
            raise ValueError("data.group.separator must not contain '/' (group names are part of metric tags)")
        fields = fields or ComparisonFields()
        if format == "ratings" and not fields.item:
            raise ValueError("data.fields.item: name the column(s) that identify an item of rated responses")
        if annotators.path is not None:
            annotators = Table(path=annotators.path)
        self.annotators, self.hub_config, self.format = annotators, hub_config, format
        self.fields, self.labels, self.group = fields, labels or PreferenceLabels(), group
        self.multiple_annotators, self.rating_pairs = multiple_annotators, rating_pairs
        self.where = dict(where) if where else None
        self.source_report: dict[str, Any] | None = None

    @property
    def comparisons_table(self) -> Table:
        if self.path is not None:
            return Table(path=self.path)
        return Table(hub_id=self.hub_id, hub_config=self.hub_config, hub_split=self.hub_split)

    def load_rows(self) -> datasets.Dataset:
        """Read both tables and build the pairs (:func:`build_pairs`); the skip counts become the base class's
        source skips and, with the rest of the ledgers and the settings, :attr:`source_report`."""
        comparisons = load_table(self.comparisons_table, "comparisons")
        annotators = load_table(self.annotators, "annotators")
        built = build_pairs(
            comparisons,
            annotators,
            format=self.format,
            fields=self.fields,
            labels=self.labels,
            group=self.group,
            multiple_annotators=self.multiple_annotators,
            rating_pairs_rule=self.rating_pairs,
            where=self.where,
        )
        self.source_skipped = Counter(built.skipped)
        self.source_report = {
            "comparisons": comparisons.name,
            "annotators": annotators.name,
            "format": self.format,
            "group_attributes": list(self.group.attributes),
            "multiple_annotators": self.multiple_annotators,
            **({"rating_pairs": self.rating_pairs} if self.format != "pairwise" else {}),
            **built.report(),
        }
        log.info(
            "%s: %d rows read, %d used, %d judgements, %d pairs in %d groups",
            comparisons.name,
            built.rows_read,
            built.rows_used,
            built.judgements,
            built.kept,
            len(set(built.pairs["group"])),
        )
        return datasets.Dataset.from_dict(
            {
                **{k: built.pairs[k] for k in ("prompt", "chosen", "rejected", "group")},
                SOURCE_COLUMNS[0]: [comparisons.name] * built.kept,
                SOURCE_COLUMNS[1]: built.pairs["source_row"],
            },
            features=_PAIR_FEATURES,
        )
