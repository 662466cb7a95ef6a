"""``GlobalOpinionQADataModule``: Global Opinion QA pairs (data/goqa.py) through the generic data module."""

from __future__ import annotations

from typing import Any

import datasets

from grpo_lightning.data.goqa import DEFAULT_HUB_ID, PAPER_COUNTRIES, build_goqa_pairs, load_goqa_table
from grpo_lightning.data.module import PreferenceDataModule


class GlobalOpinionQADataModule(PreferenceDataModule):
    """Global Opinion QA as group-labelled preference pairs, one group per country (Ramesh et al.
    2024, §5.2): the paper's real-data setting.

    Reads the dataset's own schema from ``path`` (a CSV or parquet file, or a directory of them)
    or else from ``hub_id``; every other argument is the one of :class:`PreferenceDataModule`
    (splits are 80/10/10 per country, seeded, so runs of different methods see the same pairs).

    Args:
        countries: the groups, in id order: a list of countries (default: the paper's five,
            Nigeria, Egypt, India (Current national sample), China, Japan) or ``"all"``.
        n_pairs: pairs per (question, country): an int (distinct rejected options), or ``"all"``
            for every ordered pair with a strictly higher share.
        hub_id: the dataset on the Hugging Face hub, used when ``path`` is not given.
        **kwargs: the arguments of :class:`PreferenceDataModule`.
    """

    def __init__(
        self,
        countries: list[str] | str = PAPER_COUNTRIES,
        n_pairs: int | str = 1,
        hub_id: str = DEFAULT_HUB_ID,
        **kwargs: Any,
    ) -> None:
        if kwargs.get("groups") is None and countries != "all":
            kwargs["groups"] = list(countries)  # the countries' order gives the group ids
        # A local path replaces the hub id (the base class refuses both at once).
        super().__init__(hub_id=None if kwargs.get("path") else hub_id, **kwargs)
        self.countries = countries if countries == "all" else list(countries)
        self.n_pairs = n_pairs

    def load_rows(self) -> datasets.Dataset:
        table = load_goqa_table(self.path, hub_id=self.hub_id, split=self.hub_split)
        pairs, skipped = build_goqa_pairs(
            table, groups=self.countries, n_pairs=self.n_pairs, seed=self.seed, source_name=self.source_name
        )
        self.source_skipped = skipped
        return pairs
