"""What a comparisons recipe sets: the tables, where each value is in a row, the labels and the groups.

Three layouts of the comparisons table (``format``):

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
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

Format = Literal["pairwise", "ratings", "ranking"]
MultipleAnnotators = Literal["separate", "majority"]
RatingPairs = Literal["best_vs_each_worse", "best_vs_worst"]
SmallGroups = Literal["other", "drop"]


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

    def needed(self, format: Format) -> dict[str, str]:
        """The comparisons table's field paths that ``format`` reads, by setting name (for the column check)."""
        needed = {"fields.prompt": self.prompt, "fields.annotator": self.annotator}
        if self.explode is not None:
            needed["fields.explode"] = self.explode
        if self.comparison_id is not None:
            needed["fields.comparison_id"] = self.comparison_id
        if format == "pairwise":
            needed |= {
                "fields.response_a": self.response_a,
                "fields.response_b": self.response_b,
                "fields.preference": self.preference,
            }
        elif format == "ratings":
            needed |= {"fields.response": self.response, "fields.rating": self.rating}
            needed |= {f"fields.item[{i}]": p for i, p in enumerate(self.item)}
        else:
            needed["fields.ranking"] = self.ranking
            if isinstance(self.responses, str):
                needed["fields.responses"] = self.responses
            else:
                needed |= {f"fields.responses.{label}": p for label, p in self.responses.items()}
        return needed


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
