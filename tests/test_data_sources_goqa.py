"""Tests of the Global Opinion QA data layer (grpo_lightning.data.sources.goqa) on small files written here."""

from __future__ import annotations

import csv
import logging
import math
from collections import Counter
from pathlib import Path

import datasets
import pandas as pd
import pytest

from grpo_lightning.data.sources.goqa import (
    PAPER_COUNTRIES,
    build_goqa_pairs,
    format_prompt,
    load_goqa_table,
    parse_options,
    parse_selections,
)

GROUPS = ("Japan", "Nigeria", "Egypt")
WRAP = "defaultdict(<class 'list'>, {})"


def sel(body: str) -> str:
    """A selections string in the dataset's own defaultdict form."""
    return f"defaultdict(<class 'list'>, {{{body}}})"


TEA = "['Yes', 'No', \"Don't know\"]"
# question, selections, options -- with the skip reason(s) each malformed row should produce.
ROWS: list[tuple[str, str, str]] = [
    # 0: usable for Japan (B wins), Nigeria (A wins) and France (A/B tie).
    (
        "Do you like tea?",
        sel("'Japan': [0.2, 0.7, 0.1], 'Nigeria': [0.5, 0.3, 0.2], 'France': [0.4, 0.4, 0.2]"),
        TEA,
    ),
    ("", sel("'Japan': [0.2, 0.8]"), "['Yes', 'No']"),  # 1: empty_question
    ("Q2?", sel("'Japan': []"), "[]"),  # 2: no_options
    ("Q3?", sel("'Japan': [0.2, 0.8]"), "Yes, No"),  # 3: unparsable_options
    ("Q4?", "garbage", "['Yes', 'No']"),  # 4: unparsable_selections
    # 5: Japan wrong_length, Nigeria all_zero, Egypt invalid_shares (negative); France is not configured
    (
        "Q5?",
        sel("'Japan': [0.5, 0.5], 'Nigeria': [0.0, 0.0, 0.0], 'Egypt': [-0.1, 0.6, 0.5], 'France': [1, 0, 0]"),
        TEA,
    ),
    # 6: ties -- Japan A/B (A wins), Egypt B/C (B wins)
    ("Q6?", sel("'Japan': [0.4, 0.4, 0.2], 'Egypt': [0.1, 0.45, 0.45]"), TEA),
    ("Q7?", sel("'France': [0.9, 0.1]"), "['Yes', 'No']"),  # 7: no configured country -- not a skip
    ("Q8?", "__import__('os').system('echo pwned')", "['Yes', 'No']"),  # 8: unparsable_selections
    # 9: options with nested quotes
    ("Q9?", sel("'Japan': [0.3, 0.7]"), '[\'He said "yes"\', "It\'s fine"]'),
    ("Q10?", sel("'Egypt': [nan, 0.5, 0.5]"), TEA),  # 10: invalid_shares (NaN)
    ("Q11?", sel("'Japan': [1.0]"), "['Only']"),  # 11: single_option
]
EXPECTED_SKIPS = {
    "empty_question": 1,
    "no_options": 1,
    "unparsable_options": 1,
    "unparsable_selections": 2,
    "wrong_length": 1,
    "all_zero": 1,
    "invalid_shares": 2,
    "single_option": 1,
}


def write_csv(path: Path, rows: list[tuple[str, str, str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["question", "selections", "options", "source"])
        writer.writerows([(*row, "") for row in rows])
    return path


@pytest.fixture()
def table(tmp_path: Path) -> datasets.Dataset:
    return load_goqa_table(str(write_csv(tmp_path / "goqa.csv", ROWS)))


def as_tuples(ds: datasets.Dataset) -> list[tuple]:
    return list(zip(ds["question_id"], ds["group"], ds["chosen"], ds["rejected"], ds["sft_target"], strict=True))


# -------------------------------------------------------------------------------------------------------------- parsing


def test_parse_selections_valid_forms() -> None:
    assert parse_selections(sel("'Japan': [0.25, 0.75], 'India (Current national sample)': [1, 0]")) == {
        "Japan": [0.25, 0.75],
        "India (Current national sample)": [1.0, 0.0],
    }
    assert parse_selections("{'Egypt': (0.5, -0.5)}") == {"Egypt": [0.5, -0.5]}
    assert parse_selections(WRAP) == {}
    nan_share = parse_selections(sel("'Egypt': [nan, 0.5]"))["Egypt"]
    assert math.isnan(nan_share[0]) and nan_share[1] == 0.5


@pytest.mark.parametrize(
    "text",
    [
        "__import__('os').system('echo pwned')",
        sel("'Japan': __import__('os').getcwd()"),
        sel("'Japan': [__import__('os')]"),
        "defaultdict(<class 'dict'>, {'Japan': [0.5]})",
        sel("'Japan': [0.5, 0.5]").rstrip(")"),
        sel("1: [0.5, 0.5]"),
        sel("'Japan': 0.5"),
        sel("'Japan': [True, False]"),
        sel("'Japan': ['0.5']"),
        "['Japan', 0.5]",
        "",
    ],
)
def test_parse_selections_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="selections"):
        parse_selections(text)


def test_parse_options_valid_and_nested_quotes() -> None:
    assert parse_options("['Yes', 'No', 'DK/Refused']") == ["Yes", "No", "DK/Refused"]
    assert parse_options('[\'He said "yes"\', "It\'s fine"]') == ['He said "yes"', "It's fine"]
    assert parse_options("[1, 2.5, 'x']") == ["1", "2.5", "x"]
    assert parse_options("[]") == []


@pytest.mark.parametrize(
    "text", ["__import__('os').listdir('.')", "[__import__('os')]", "Yes, No", "{'Yes'}", "[['Yes']]", "[None]", ""]
)
def test_parse_options_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="options"):
        parse_options(text)


# ------------------------------------------------------------------------------------------------------------ pairs


def test_exact_prompt_and_bare_letter_responses(table: datasets.Dataset) -> None:
    pairs, _ = build_goqa_pairs(table, groups=("Japan",))
    assert pairs.column_names == ["prompt", "chosen", "rejected", "group", "sft_target", "question_id", "shares"]
    assert pairs[0]["prompt"] == (
        "Opinion of people in Japan on: Do you like tea?\nPlease select the best response:\nA. Yes\nB. No\nC. Don't know"
    )
    assert pairs[0]["chosen"] == "B" and pairs[0]["sft_target"] == "B"
    row9 = pairs.filter(lambda r: r["question_id"] == 9)[0]
    assert row9["prompt"].endswith('\nA. He said "yes"\nB. It\'s fine')
    assert (row9["chosen"], row9["rejected"]) == ("B", "A")
    assert (
        format_prompt("Egypt", "Q?", ["x", "y"])
        == "Opinion of people in Egypt on: Q?\nPlease select the best response:\nA. x\nB. y"
    )


def test_skip_counts_per_reason_and_log(table: datasets.Dataset, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="grpo_lightning.data.sources.goqa"):
        pairs, skips = build_goqa_pairs(table, groups=GROUPS, source_name="goqa.csv")
    assert dict(skips) == EXPECTED_SKIPS
    assert len(pairs) == 5
    message = caplog.records[-1].getMessage()
    assert "goqa.csv" in message and "'unparsable_selections': 2" in message and "'Japan': 3" in message


def test_single_pair_choice_and_ties(table: datasets.Dataset) -> None:
    pairs, _ = build_goqa_pairs(table, groups=GROUPS, seed=0)
    got = {(qid, group): (chosen, sft) for qid, group, chosen, _, sft in as_tuples(pairs)}
    assert got == {
        (0, "Japan"): ("B", "B"),
        (0, "Nigeria"): ("A", "A"),
        (6, "Japan"): ("A", "A"),  # A/B tie -> lowest index
        (6, "Egypt"): ("B", "B"),  # B/C tie -> lowest index
        (9, "Japan"): ("B", "B"),
    }
    for qid, _group, chosen, rejected, _ in as_tuples(pairs):
        assert rejected != chosen and rejected in "ABC"[: 2 if qid == 9 else 3]
    # rows in table order, then group order
    assert [(q, g) for q, g, *_ in as_tuples(pairs)] == [
        (0, "Japan"),
        (0, "Nigeria"),
        (6, "Japan"),
        (6, "Egypt"),
        (9, "Japan"),
    ]


def test_n_pairs_distinct_and_capped(table: datasets.Dataset) -> None:
    two, _ = build_goqa_pairs(table, groups=GROUPS, n_pairs=2)
    many, _ = build_goqa_pairs(table, groups=GROUPS, n_pairs=10)
    for ds in (two, many):
        assert len(ds) == 2 + 2 + 2 + 2 + 1
        by_key: dict[tuple[int, str], set[str]] = {}
        for qid, group, _chosen, rejected, _ in as_tuples(ds):
            by_key.setdefault((qid, group), set()).add(rejected)
        assert by_key == {
            (0, "Japan"): {"A", "C"},
            (0, "Nigeria"): {"B", "C"},
            (6, "Japan"): {"B", "C"},
            (6, "Egypt"): {"A", "C"},
            (9, "Japan"): {"A"},
        }


def test_n_pairs_all_strict_order(table: datasets.Dataset) -> None:
    pairs, skips = build_goqa_pairs(table, groups=("Japan",), n_pairs="all")
    assert [(q, c, r, s) for q, _, c, r, s in as_tuples(pairs)] == [
        (0, "A", "C", "B"),  # [0.2, 0.7, 0.1]
        (0, "B", "A", "B"),
        (0, "B", "C", "B"),
        (6, "A", "C", "A"),  # [0.4, 0.4, 0.2]: the tied A/B pair is left out
        (6, "B", "C", "A"),
        (9, "B", "A", "B"),
    ]
    assert skips["wrong_length"] == 1


def test_n_pairs_all_with_uniform_shares_is_counted(tmp_path: Path) -> None:
    table = load_goqa_table(str(write_csv(tmp_path / "u.csv", [("Q?", sel("'Japan': [0.5, 0.5]"), "['a', 'b']")])))
    pairs, skips = build_goqa_pairs(table, groups=("Japan",), n_pairs="all")
    assert len(pairs) == 0 and pairs.column_names[0] == "prompt" and dict(skips) == {"no_strict_preference": 1}
    one, skips_one = build_goqa_pairs(table, groups=("Japan",), n_pairs=1)
    assert (one[0]["chosen"], one[0]["rejected"]) == ("A", "B") and not skips_one


@pytest.mark.parametrize("bad", [0, -1, "some", True, 1.5])
def test_n_pairs_validation(table: datasets.Dataset, bad: object) -> None:
    with pytest.raises(ValueError, match="n_pairs"):
        build_goqa_pairs(table, groups=GROUPS, n_pairs=bad)  # type: ignore[arg-type]


def test_determinism_and_independence_from_other_groups(table: datasets.Dataset) -> None:
    first, _ = build_goqa_pairs(table, groups=GROUPS, seed=7)
    again, _ = build_goqa_pairs(table, groups=GROUPS, seed=7)
    assert first.to_dict() == again.to_dict()
    japan_only, _ = build_goqa_pairs(table, groups=("Japan",), seed=7)
    assert japan_only.to_dict() == first.filter(lambda r: r["group"] == "Japan").to_dict()
    # across seeds, question 0 / Japan draws both of its other options
    drawn = {build_goqa_pairs(table, groups=("Japan",), seed=s)[0][0]["rejected"] for s in range(20)}
    assert drawn == {"A", "C"}


def test_groups_all_and_single_string(table: datasets.Dataset) -> None:
    pairs, skips = build_goqa_pairs(table, groups="all")
    assert dict(Counter(pairs["group"])) == {"Egypt": 1, "France": 3, "Japan": 3, "Nigeria": 1}
    assert pairs.filter(lambda r: r["group"] == "France")["chosen"] == ["A", "A", "A"]
    assert skips["wrong_length"] == 1  # the France row-5 distribution is usable now; the others are as before
    single, _ = build_goqa_pairs(table, groups="Nigeria")
    assert single["group"] == ["Nigeria"]


def test_unknown_country_names_it_with_close_matches(tmp_path: Path) -> None:
    rows = [("Q?", sel("'India (Current national sample)': [0.6, 0.4], 'Nigeria': [0.1, 0.9]"), "['a', 'b']")]
    table = load_goqa_table(str(write_csv(tmp_path / "c.csv", rows)))
    with pytest.raises(ValueError, match=r"'Nigera' \(close matches: \['Nigeria'\]\)"):
        build_goqa_pairs(table, groups=("Nigera",))
    with pytest.raises(ValueError, match=r"'India' \(close matches: \['India \(Current national sample\)'\]\)"):
        build_goqa_pairs(table, groups=("India",))
    with pytest.raises(ValueError, match="'China'"):
        build_goqa_pairs(table)  # the default PAPER_COUNTRIES, of which only two are present
    assert PAPER_COUNTRIES == ("Nigeria", "Egypt", "India (Current national sample)", "China", "Japan")


# ---------------------------------------------------------------------------------------------------------- loading


def test_csv_keeps_empty_cells_as_strings(table: datasets.Dataset) -> None:
    assert table.column_names == ["question", "selections", "options", "source"]
    assert len(table) == len(ROWS)
    assert table[1]["question"] == "" and table[0]["source"] == ""


def test_parquet_and_directory_loading(tmp_path: Path) -> None:
    frame = pd.DataFrame(ROWS, columns=["question", "selections", "options"])
    frame.to_parquet(tmp_path / "goqa.parquet")
    from_parquet = load_goqa_table(str(tmp_path / "goqa.parquet"))
    assert from_parquet["question"] == [row[0] for row in ROWS]
    pairs, skips = build_goqa_pairs(from_parquet, groups=GROUPS)
    assert len(pairs) == 5 and dict(skips) == EXPECTED_SKIPS

    folder = tmp_path / "csvs"
    folder.mkdir()
    write_csv(folder / "b.csv", ROWS[6:])
    write_csv(folder / "a.csv", ROWS[:6])
    (folder / "notes.txt").write_text("ignored")
    from_dir = load_goqa_table(str(folder))
    assert from_dir["question"] == [row[0] for row in ROWS]  # a.csv then b.csv

    (folder / "c.parquet").write_bytes((tmp_path / "goqa.parquet").read_bytes())
    with pytest.raises(ValueError, match="mixes CSV and parquet"):
        load_goqa_table(str(folder))


def test_bad_local_paths(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_goqa_table(str(tmp_path / "nope.csv"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no .csv or .parquet"):
        load_goqa_table(str(tmp_path / "empty"))
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(ValueError, match=".csv or .parquet"):
        load_goqa_table(str(tmp_path / "x.json"))
    (tmp_path / "cols.csv").write_text("question,options\nQ?,\"['a']\"\n")
    with pytest.raises(ValueError, match=r"lacks the column\(s\) \['selections'\]"):
        load_goqa_table(str(tmp_path / "cols.csv"))


def test_offline_hub_error_suggests_data_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    # the libraries read the variables at import time: patch their copies too, and hide any local cache
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "ds_cache"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub_cache"))
    with pytest.raises(ConnectionError, match=r"--data\.path") as info:
        load_goqa_table()
    assert "'Anthropic/llm_global_opinions'" in str(info.value)
    assert "offline" in str(info.value).lower()
