"""ComparisonsDataModule: group-labelled pairs from a comparisons table and an annotators table, as configuration.

The pairs are built by :func:`~grpo_lightning.data.sources.comparisons.pairs.build_pairs`; every row read is used or
counted under a skip reason, and both ledgers are kept in :attr:`ComparisonsDataModule.source_report`. Recipes for
public datasets are ``configs/data/*.yaml``; ``docs/own_data.md`` walks through one and through writing your own.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any, get_args

import datasets

from grpo_lightning.data.io import SOURCE_COLUMNS
from grpo_lightning.data.module import PreferenceDataModule
from grpo_lightning.data.sources.comparisons.pairs import build_pairs
from grpo_lightning.data.sources.comparisons.settings import (
    ComparisonFields,
    Format,
    GroupSettings,
    MultipleAnnotators,
    PreferenceLabels,
    RatingPairs,
    SmallGroups,
    Table,
)
from grpo_lightning.data.sources.comparisons.tables import load_table

log = logging.getLogger(__name__)

_PAIR_COLUMNS = ("prompt", "chosen", "rejected", "group")
_PAIR_FEATURES = datasets.Features(
    {
        **{column: datasets.Value("string") for column in _PAIR_COLUMNS},
        SOURCE_COLUMNS[0]: datasets.Value("string"),
        SOURCE_COLUMNS[1]: datasets.Value("int64"),
    }
)


class ComparisonsDataModule(PreferenceDataModule):
    """Group-labelled pairs from a comparisons table and an annotators table (package docstring), as a
    :class:`PreferenceDataModule`: the pairs are then cleaned, split, tokenised and batched as any other data.

    The comparisons table is the base class's source: ``path`` (local files) or ``hub_id`` (+ ``hub_config``,
    ``hub_split``), so a checkpoint records it as the data's source; every other setting changes the pairs, which
    the checkpoint's pair fingerprints record (a resume on other pairs is refused). The pair counts go to the base
    class as its source skips (rows in = pairs + Σ skips, as for GOQA).

    Args:
        annotators: the annotators table.
        hub_config: the comparisons' hub configuration (``hub_id`` and ``hub_split`` are the base class's).
        format: ``pairwise``, ``ratings`` or ``ranking`` (:mod:`~grpo_lightning.data.sources.comparisons.settings`).
        fields: where each value is in a comparisons row.
        labels: ``pairwise``: what the preference labels mean.
        group: which annotator attribute(s) make the group, and what happens to small groups.
        multiple_annotators: several annotators on one comparison: ``separate`` (each judgement its own pair) or
            ``majority`` (one pair per group by majority vote, ties dropped); see
            :func:`~grpo_lightning.data.sources.comparisons.pairs.build_pairs`.
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
        """Read both tables and build the pairs (:func:`~grpo_lightning.data.sources.comparisons.pairs.build_pairs`);
        the skip counts become the base class's source skips and, with the rest of the ledgers and the settings,
        :attr:`source_report`."""
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
                **{column: built.pairs[column] for column in _PAIR_COLUMNS},
                SOURCE_COLUMNS[0]: [comparisons.name] * built.kept,
                SOURCE_COLUMNS[1]: built.pairs["source_row"],
            },
            features=_PAIR_FEATURES,
        )
