"""Tests of the Global Opinion QA data layer (grpo_lightning.data.sources.goqa) on small files the tests write
(the rows: conftest.py; reading the table: test_data_sources_goqa_loading.py)."""

from __future__ import annotations

import logging
import math
from collections import Counter
from pathlib import Path

import datasets
import pytest
from conftest import EXPECTED_SKIPS, GROUPS, sel, write_csv

from grpo_lightning.data.sources.goqa import (
    PAPER_COUNTRIES,
    build_goqa_pairs,
    format_prompt,
    load_goqa_table,
    parse_options,
    parse_selections,
)

WRAP = "defaultdict(<class 'list'>, {})"


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
