"""data/cleaning.py: every unused row counted under its reason (in SKIP_REASONS order) and logged; group labels
stripped, and labels that differ only in case reported or merged."""

from __future__ import annotations

import logging
from collections import Counter

import datasets

from grpo_lightning.data.cleaning import SKIP_REASONS, clean_rows
from grpo_lightning.data.io import SOURCE_COLUMNS


def _dataset(rows: list[tuple]) -> datasets.Dataset:
    """Rows (prompt, chosen, rejected, group) as if read from pairs.jsonl, rows 1.. ."""
    cols = dict(zip(("prompt", "chosen", "rejected", "group"), map(list, zip(*rows, strict=True)), strict=True))
    cols[SOURCE_COLUMNS[0]], cols[SOURCE_COLUMNS[1]] = ["pairs.jsonl"] * len(rows), list(range(1, len(rows) + 1))
    return datasets.Dataset.from_dict(cols)


def test_each_unused_row_is_counted_once_under_the_first_reason_and_named(caplog):
    rows = [
        ("p", " a", " b", "north"),
        ("p", " a", " b", None),  # null group (also a duplicate: counted once, under the first reason)
        (" ", " a", " b", "north"),
        ("p", "", " b", "north"),
        ("p", " a", "\t", "north"),
        ("q", " a", " a", "north"),
        ("p", " a", " b", "north"),  # duplicate of row 1: the first copy is kept
        ("p", " a", " b", "south"),  # another group: not a duplicate
    ]
    with caplog.at_level(logging.WARNING):
        kept, skipped = clean_rows(_dataset(rows), "pairs.jsonl")
    assert list(skipped) == [r for r in SKIP_REASONS if r in skipped]  # counted in the order they are tested
    assert skipped == Counter(
        null_group=1, empty_prompt=1, empty_chosen=1, empty_rejected=1, chosen_equals_rejected=1, duplicate_pair=1
    )
    assert len(kept) + sum(skipped.values()) == len(rows)
    assert kept[SOURCE_COLUMNS[1]] == [1, 8] and kept["group"] == ["north", "south"]
    assert "pairs.jsonl: skipped 1 of 8 rows as duplicate_pair (pairs.jsonl, row 7)" in caplog.messages


def test_group_labels_are_stripped_and_case_variants_reported_or_merged(caplog):
    rows = [(f"q{i}", " a", " b", g) for i, g in enumerate(["north ", "North", "north", "NORTH", "North", 7])]
    with caplog.at_level(logging.INFO):
        kept, _ = clean_rows(_dataset([(*r[:3], str(r[3])) for r in rows]), "pairs.jsonl")
    assert kept["group"] == ["north", "North", "north", "NORTH", "North", "7"]
    assert any("stripped surrounding whitespace from 1 group labels" in m for m in caplog.messages)
    assert any("differ only in case are kept as separate groups" in m for m in caplog.messages)
    merged, _ = clean_rows(_dataset([(*r[:3], str(r[3])) for r in rows]), "pairs.jsonl", merge_group_case=True)
    assert merged["group"] == ["North"] * 5 + ["7"]  # the most common spelling (North 2, north 2: ties to sorted)
    listed, _ = clean_rows(
        _dataset([(*r[:3], str(r[3])) for r in rows]), "pairs.jsonl", merge_group_case=True, spellings=["NORTH"]
    )
    assert listed["group"] == ["NORTH"] * 5 + ["7"]  # a spelling of data.groups wins
