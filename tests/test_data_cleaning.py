"""data/cleaning.py: every unused row counted under its reason (in SKIP_REASONS order) and logged; group labels
stripped, and labels that differ only in case reported or merged."""

from __future__ import annotations

import logging
from collections import Counter

import datasets
from conftest import file_dm, pair_rows, write_jsonl

from grpo_lightning.data.cleaning import SKIP_REASONS, clean_rows
from grpo_lightning.data.io import SOURCE_COLUMNS

_rows, _jsonl, _dm = pair_rows, write_jsonl, file_dm


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


def test_bad_rows_are_skipped_counted_per_reason_and_logged_with_their_rows(tmp_path, caplog):
    rows = _rows(30)
    rows[1]["prompt"] = "   "  # row 2
    rows[2]["chosen"] = ""  # row 3
    rows[3]["rejected"] = None  # row 4
    rows[4]["rejected"] = rows[4]["chosen"]  # row 5
    rows[5]["group"] = None  # row 6
    del rows[6]["group"]  # row 7: a missing key is a null value
    rows[7] = dict(rows[8])  # rows 8 and 9 identical: row 9 is the duplicate
    rows[10]["group"] = "Z"  # row 11: not in data.groups
    with caplog.at_level(logging.INFO):
        dm = _dm(_jsonl(tmp_path / "d.jsonl", rows), groups=["A", "B"])
    assert dm.rows_in == 30
    assert dm.skipped == {
        "empty_prompt": 1,
        "empty_chosen": 1,
        "empty_rejected": 1,
        "chosen_equals_rejected": 1,
        "null_group": 2,
        "duplicate_pair": 1,
        "group_not_in_data.groups": 1,
    }
    kept = sum(len(dm.dataset(s)) for s in ("train", "val", "test"))
    assert kept + sum(dm.skipped.values()) == dm.rows_in
    for reason, ref in [
        ("empty_prompt", "row 2"),
        ("empty_chosen", "row 3"),
        ("empty_rejected", "row 4"),
        ("chosen_equals_rejected", "row 5"),
        ("null_group", "d.jsonl, row 6; d.jsonl, row 7"),
        ("duplicate_pair", "row 9"),
        ("group_not_in_data.groups", "row 11"),
    ]:
        assert any(reason in m and ref in m for m in caplog.messages), reason
    summary = [m for m in caplog.messages if "data prepared" in m]
    assert len(summary) == 1
    assert f"30 rows in, {kept} kept" in summary[0] and "8 skipped" in summary[0] and "'null_group': 2" in summary[0]


def test_csv_empty_fields_are_skipped(tmp_path):
    lines = ["prompt,chosen,rejected,group"] + [f"q{i},good {i},bad {i},{'AB'[i % 2]}" for i in range(20)]
    lines[3] = "q2,,bad 2,A"
    lines[5] = "q4,good 4,bad 4,"
    (tmp_path / "d.csv").write_text("\n".join(lines) + "\n")
    dm = _dm(tmp_path / "d.csv")
    assert dm.skipped == {"empty_chosen": 1, "null_group": 1} and dm.rows_in == 20


def test_integer_group_labels_become_names(tmp_path):
    rows = _rows()
    for i, r in enumerate(rows):
        r["group"] = i % 2
    assert _dm(_jsonl(tmp_path / "d.jsonl", rows)).group_names == ["0", "1"]
