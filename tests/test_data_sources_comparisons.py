"""Comparisons + annotators → group-labelled pairs (data/sources/comparisons/).

Each recipe under configs/data/ gets a small fixture in its dataset's own schema, written here, with the pairs and
groups it must give worked out by hand (explicit lists, not recomputed with the code under test). The accounting is
checked as documented: rows read = rows used + row skips; judgements = pairs kept + pair skips.
"""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import pytest
import yaml

from grpo_lightning.data.io import DataError
from grpo_lightning.data.sources.comparisons.judgements import parse_ranking, rating_pairs
from grpo_lightning.data.sources.comparisons.module import ComparisonsDataModule
from grpo_lightning.data.sources.comparisons.pairs import build_pairs
from grpo_lightning.data.sources.comparisons.settings import ComparisonFields, GroupSettings, Table
from grpo_lightning.data.sources.comparisons.tables import load_table

ROOT = Path(__file__).resolve().parents[1]
LOGGER = "grpo_lightning.data.sources.comparisons"


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def _recipe(name: str) -> dict:
    """The recipe's init_args, as a ComparisonsDataModule gets them (the YAML's own keys)."""
    data = yaml.safe_load((ROOT / "configs" / "data" / f"{name}.yaml").read_text())["data"]
    assert data["class_path"] == "grpo_lightning.data.sources.comparisons.module.ComparisonsDataModule"
    return data["init_args"]


def _build(comparisons: Path, annotators: Path, args: dict, **overrides):
    """build_pairs with the recipe's settings (``args``), the tables read from local files."""
    settings = {**args, **overrides}
    group = {**args.get("group", {}), **overrides.get("group", {})}
    return build_pairs(
        load_table(Table(path=str(comparisons)), "comparisons"),
        load_table(Table(path=str(annotators)), "annotators"),
        format=settings["format"],
        fields=ComparisonFields(**settings["fields"]),
        group=GroupSettings(**group),
        multiple_annotators=settings.get("multiple_annotators", "separate"),
        rating_pairs_rule=settings.get("rating_pairs", "best_vs_each_worse"),
        where=settings.get("where"),
    )


def _pairs(built) -> list[tuple[str, str, str, str]]:
    p = built.pairs
    return list(zip(p["prompt"], p["chosen"], p["rejected"], p["group"], strict=True))


def _ledgers_balance(built) -> None:
    report = built.report()
    assert report["rows_read"] == report["rows_used"] + sum(report["rows_skipped"].values())
    assert report["judgements"] == report["pairs_kept"] + sum(report["pairs_skipped"].values())


# ----------------------------------------------------------------------------------------------------------------------
# PRISM: utterances.jsonl (one row per rated response) + survey.jsonl (one row per participant)
# ----------------------------------------------------------------------------------------------------------------------


def _utterance(interaction: str, user: str, turn: int, prompt: str, k: int, response: str, score: int) -> dict:
    conversation = interaction.rsplit("-", 1)[0]
    return {
        "utterance_id": f"{interaction}-ut{k}",
        "interaction_id": interaction,
        "conversation_id": conversation,
        "user_id": user,
        "turn": turn,
        "within_turn_id": k,
        "conversation_type": "unguided",
        "user_prompt": prompt,
        "model_response": response,
        "model_name": f"model-{k}",
        "model_provider": "provider",
        "score": score,
        "if_chosen": False,
        "included_in_balanced_subset": True,
    }


def _participant(user: str, country: str, age: str = "25-34 years old") -> dict:
    return {
        "user_id": user,
        "survey_only": False,
        "age": age,
        "gender": "Female",
        "study_locale": "uk",
        "location": {
            "birth_country": country,
            "birth_countryISO": "XXX",
            "reside_country": country,
            "reside_countryISO": "XXX",
            "same_birth_reside_country": "Yes",
        },
    }


@pytest.fixture()
def prism_files(tmp_path) -> tuple[Path, Path]:
    u = _utterance
    utterances = [
        # u1 (United Kingdom), opening turn: a and c share the top score 80.
        u("c1-t0", "u1", 0, "Opening one", 0, "ans 1a", 80),
        u("c1-t0", "u1", 0, "Opening one", 1, "ans 1b", 40),
        u("c1-t0", "u1", 0, "Opening one", 2, "ans 1c", 80),
        u("c1-t0", "u1", 0, "Opening one", 3, "ans 1d", 10),
        # a later turn: left out by the recipe's `where: {turn: [0]}`.
        u("c1-t1", "u1", 1, "Follow-up", 0, "ans 1e", 90),
        u("c1-t1", "u1", 1, "Follow-up", 1, "ans 1f", 20),
        # u2 (United States): four equal scores, no pair.
        u("c2-t0", "u2", 0, "Opening two", 0, "ans 2a", 50),
        u("c2-t0", "u2", 0, "Opening two", 1, "ans 2b", 50),
        u("c2-t0", "u2", 0, "Opening two", 2, "ans 2c", 50),
        u("c2-t0", "u2", 0, "Opening two", 3, "ans 2d", 50),
        # u3 (United Kingdom): two responses.
        u("c3-t0", "u3", 0, "Opening three", 0, "ans 3a", 30),
        u("c3-t0", "u3", 0, "Opening three", 1, "ans 3b", 70),
        # u5 is not in the survey.
        u("c5-t0", "u5", 0, "Opening five", 0, "ans 5a", 60),
        u("c5-t0", "u5", 0, "Opening five", 1, "ans 5b", 20),
        # u2 (United States) again: one pair.
        u("c6-t0", "u2", 0, "Opening six", 0, "ans 6a", 90),
        u("c6-t0", "u2", 0, "Opening six", 1, "ans 6b", 20),
        # u4 (Canada): a tie at the top, one worse.
        u("c7-t0", "u4", 0, "Opening seven", 0, "ans 7a", 60),
        u("c7-t0", "u4", 0, "Opening seven", 1, "ans 7b", 60),
        u("c7-t0", "u4", 0, "Opening seven", 2, "ans 7c", 10),
    ]
    survey = [
        _participant("u1", "United Kingdom"),
        _participant("u2", "United States"),
        _participant("u3", "United Kingdom"),
        _participant("u4", "Canada"),
    ]
    return _jsonl(tmp_path / "utterances.jsonl", utterances), _jsonl(tmp_path / "survey.jsonl", survey)


def test_prism_recipe_best_vs_each_worse(prism_files):
    """19 rows: 2 of a later turn left out, 4 all-equal, 2 of an unknown participant; the 11 others give 8 pairs.
    min_pairs 3: United States (1 pair) and Canada (2) merge into `other` (3 pairs)."""
    built = _build(*prism_files, _recipe("prism"), group={"min_pairs": 3})
    uk, other = "United Kingdom", "other"
    assert _pairs(built) == [
        ("Opening one", "ans 1a", "ans 1b", uk),
        ("Opening one", "ans 1a", "ans 1d", uk),
        ("Opening one", "ans 1c", "ans 1b", uk),
        ("Opening one", "ans 1c", "ans 1d", uk),
        ("Opening three", "ans 3b", "ans 3a", uk),
        ("Opening six", "ans 6a", "ans 6b", other),
        ("Opening seven", "ans 7a", "ans 7c", other),
        ("Opening seven", "ans 7b", "ans 7c", other),
    ]
    assert built.pairs["source_row"] == [1, 1, 3, 3, 12, 15, 17, 18]
    assert dict(built.skipped) == {"excluded_by_where": 2, "ratings_all_equal": 4, "annotator_not_found": 2}
    report = built.report()
    assert (report["rows_read"], report["rows_used"], report["judgements"], report["pairs_kept"]) == (19, 11, 8, 8)
    assert report["merged_groups"] == {"Canada": 2, "United States": 1}
    _ledgers_balance(built)


def test_prism_best_vs_worst_and_country_by_age(prism_files):
    """best_vs_worst: each top-scored response against the bottom-scored ones only (item 1: a and c against d);
    two attributes make the group `country | age`."""
    built = _build(
        *prism_files,
        _recipe("prism"),
        rating_pairs="best_vs_worst",
        group={"attributes": ["location.reside_country", "age"], "min_pairs": 1},
    )
    uk, us, ca = "United Kingdom | 25-34 years old", "United States | 25-34 years old", "Canada | 25-34 years old"
    assert _pairs(built) == [
        ("Opening one", "ans 1a", "ans 1d", uk),
        ("Opening one", "ans 1c", "ans 1d", uk),
        ("Opening three", "ans 3b", "ans 3a", uk),
        ("Opening six", "ans 6a", "ans 6b", us),
        ("Opening seven", "ans 7a", "ans 7c", ca),
        ("Opening seven", "ans 7b", "ans 7c", ca),
    ]
    assert built.report()["judgements"] == 6 and built.report()["merged_groups"] == {}


def test_prism_prefer_not_to_say_is_an_empty_attribute(prism_files, tmp_path, caplog):
    utterances, _ = prism_files
    survey = _jsonl(
        tmp_path / "survey2.jsonl",
        [
            _participant("u1", "United Kingdom"),
            _participant("u2", "United States", age="Prefer not to say"),
            _participant("u3", "United Kingdom"),
            _participant("u4", "Canada"),
        ],
    )
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        built = _build(utterances, survey, _recipe("prism"), group={"attributes": ["location.reside_country", "age"]})
    # u2's 6 opening-turn rows (4 equal, 2 in item c6) are skipped before their ratings are looked at.
    assert built.skipped["empty_attribute"] == 6
    assert built.skipped["ratings_all_equal"] == 0
    lines = [r.getMessage() for r in caplog.records if "empty_attribute" in r.getMessage()]
    assert len(lines) == 1 and "skipped 6 of 19 rows" in lines[0] and "'age': 6" in lines[0]


def test_ratings_rows_without_an_item_or_a_rating_are_counted(tmp_path):
    u = _utterance
    rows = [
        u("c1-t0", "u1", 0, "Q", 0, "r1", 80),
        {**u("c1-t0", "u1", 0, "Q", 1, "r2", 0), "score": "n/a"},  # rating_missing
        u("c1-t0", "u1", 0, "Q", 2, "r3", 20),
        {**u("c1-t0", "u1", 0, "Q", 3, "r4", 50), "interaction_id": None},  # item_missing
        u("c2-t0", "u1", 0, "Q2", 0, "r5", 50),  # the only rated response of its item: single_response
    ]
    built = _build(
        _jsonl(tmp_path / "u.jsonl", rows),
        _jsonl(tmp_path / "s.jsonl", [_participant("u1", "United Kingdom")]),
        _recipe("prism"),
        group={"min_pairs": 1},
    )
    assert _pairs(built) == [("Q", "r1", "r3", "United Kingdom")]
    assert dict(built.skipped) == {"rating_missing": 1, "item_missing": 1, "single_response": 1}
    assert (built.rows_read, built.rows_used, built.judgements) == (5, 2, 1)


# ----------------------------------------------------------------------------------------------------------------------
# CA-1: comparisons.jsonl (one row per prompt, its assessments nested) + annotators.jsonl
# ----------------------------------------------------------------------------------------------------------------------


def _assessment(annotator: str, world: str | None) -> dict:
    return {
        "annotator_id": annotator,
        "ranking_blocks": {
            "personal": [],
            "world": [] if world is None else [{"ranking": world, "rationale": "because"}],
            "unacceptable": [],
        },
        "importance": "Somewhat important",
    }


def _ca1_prompt(prompt_id: str, messages: list[dict], letters: str, assessments: list[dict]) -> dict:
    return {
        "prompt_id": prompt_id,
        "prompt": {"id": prompt_id, "messages": messages},
        "responses": [
            {"response_index": x, "messages": [{"role": "assistant", "content": f"{prompt_id} answer {x}"}]}
            for x in letters
        ],
        "metadata": {"assessments": assessments},
    }


@pytest.fixture()
def ca1_files(tmp_path) -> tuple[Path, Path]:
    user = [{"role": "user", "content": "Question two"}]
    comparisons = [
        _ca1_prompt(
            "p1",
            [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Question one"}],
            "ABCD",
            [
                _assessment("x1", "B>A=C=D"),
                _assessment("x2", "B>A>C>D"),
                _assessment("x3", "A>B=C=D"),
                _assessment("x5", "A>B>C>D"),
                _assessment("x6", "C>A=B=D"),
            ],
        ),
        _ca1_prompt(
            "p2",
            user,
            "ABCD",
            [
                _assessment("x1", "A=B=C=D"),
                _assessment("x4", "A>B"),
                _assessment("x2", None),
                _assessment("x3", "A>B>A"),
            ],
        ),
        _ca1_prompt("p3", user, "AB", []),
    ]
    annotators = [
        {"annotator_id": a, "demographics": {"country": c}, "assessments": []}
        for a, c in (("x1", "US"), ("x2", "US"), ("x3", "JP"), ("x5", "US"), ("x6", "US"))
    ]
    return _jsonl(tmp_path / "comparisons.jsonl", comparisons), _jsonl(tmp_path / "annotators.jsonl", annotators)


def test_collective_alignment_recipe_majority_per_group(ca1_files):
    """US votes on p1 (x1, x2, x5, x6), best vs each worse:
    x1 B>A B>C B>D; x2 B>A B>C B>D; x5 A>B A>C A>D; x6 C>A C>B C>D.
    {A,B}: B>A 2-1 (kept, 1 merged, 1 outvoted); {B,C}: B>C 2-1 (same); {B,D}: B>D 2-0 (1 merged);
    {A,C}: 1-1 (a tie: 2 votes dropped); {A,D}: A>D 1-0; {C,D}: C>D 1-0. JP (x3): A>B A>C A>D.
    Kept in the order of each pair's first winning vote: 0, 1, 2 (US), 6, 7, 8 (JP), 11, 14 (US)."""
    built = _build(*ca1_files, _recipe("collective_alignment_1"), group={"min_pairs": 1})
    prompt = "system: Be brief.\n\nuser: Question one"
    a, b, c, d = (f"p1 answer {x}" for x in "ABCD")
    assert _pairs(built) == [
        (prompt, b, a, "US"),
        (prompt, b, c, "US"),
        (prompt, b, d, "US"),
        (prompt, a, b, "JP"),
        (prompt, a, c, "JP"),
        (prompt, a, d, "JP"),
        (prompt, a, d, "US"),
        (prompt, c, d, "US"),
    ]
    assert dict(built.skipped) == {
        # rows: p2's four assessments and p3's empty list
        "ratings_all_equal": 1,
        "annotator_not_found": 1,
        "ranking_missing": 1,
        "ranking_unparsable": 1,
        "no_annotations": 1,
        # judgements
        "merged_by_majority": 3,
        "outvoted": 2,
        "majority_tie": 2,
    }
    report = built.report()
    assert (report["rows_read"], report["rows_used"], report["judgements"], report["pairs_kept"]) == (10, 5, 15, 8)
    _ledgers_balance(built)


def test_collective_alignment_separate_keeps_disagreement(ca1_files):
    """``separate``: the 12 US votes give 9 distinct pairs (B>A, B>C, B>D repeated once each: 3 duplicates), both
    directions of {A,B}, {B,C} and {A,C} included."""
    built = _build(
        *ca1_files, _recipe("collective_alignment_1"), multiple_annotators="separate", group={"min_pairs": 1}
    )
    us = [(ch[-1], rj[-1]) for _, ch, rj, g in _pairs(built) if g == "US"]
    assert us == [("B", "A"), ("B", "C"), ("B", "D"), ("A", "B"), ("A", "C"), ("A", "D"), ("C", "A"), ("C", "B"),
                  ("C", "D")]  # fmt: skip
    assert built.skipped["duplicate_judgement"] == 3 and built.report()["pairs_kept"] == 12


# ----------------------------------------------------------------------------------------------------------------------
# Your own pairwise files: bad input, counted and logged
# ----------------------------------------------------------------------------------------------------------------------

PAIRWISE_FIELDS = {"comparison_id": "comparison_id"}


@pytest.fixture()
def pairwise_files(tmp_path) -> tuple[Path, Path]:
    header = ["comparison_id", "prompt", "response_a", "response_b", "preference", "annotator_id"]
    rows = [
        ["c1", "P1", "x1", "y1", "A", "a1"],  # UK
        ["c2", "P2", "x2", "y2", "B", "a1"],  # UK
        ["c3", "P3", "x3", "y3", "tie", "a1"],  # a tie
        ["c4", "P4", "x4", "y4", "A", "a9"],  # a9 is not in the annotators table
        ["c5", "P5", "x5", "y5", "A", "a3"],  # a3's country is empty
        ["c6", "P6", "x6", "y6", "A", "a4"],  # FR
        ["c7", "P7", "x7", "y7", "B", "a4"],  # FR: 2 pairs, below min_pairs 3
        ["c8", "P8", "x8", "y8", "both bad", "a2"],
        ["c9", "P9", "x9", "y9", "a", "a2"],  # UK (labels match without case)
        ["c1", "P1", "x1", "y1", "A", "a2"],  # c1 again, same group and direction: one pair
        ["c10", "P10", "x10", "y10", "maybe", "a2"],  # an unknown label
        ["c11", "P11", "x11", "y11", "A", ""],  # no annotator id
    ]
    annotators = [["a1", "UK", "18-24"], ["a2", "UK", "25-34"], ["a3", "", "25-34"], ["a4", "FR", "18-24"]]
    return (
        _csv(tmp_path / "comparisons.csv", header, rows),
        _csv(tmp_path / "annotators.csv", ["annotator_id", "country", "age_band"], annotators),
    )


def test_bad_input_is_counted_and_logged_once_per_reason(pairwise_files, caplog):
    """12 rows read = 3 pairs kept + 9 skipped: one each of tie, both_bad, unknown label, missing id, unknown
    annotator, empty attribute and repeated judgement, and the 2 pairs of FR (below min_pairs 3, dropped)."""
    args = {"format": "pairwise", "fields": PAIRWISE_FIELDS, "group": {"min_pairs": 3, "small_groups": "drop"}}
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        built = _build(*pairwise_files, args)
    assert _pairs(built) == [("P1", "x1", "y1", "UK"), ("P2", "y2", "x2", "UK"), ("P9", "x9", "y9", "UK")]
    assert dict(built.skipped) == {
        "tie": 1,
        "annotator_not_found": 1,
        "empty_attribute": 1,
        "both_bad": 1,
        "preference_unrecognised": 1,
        "annotator_id_missing": 1,
        "duplicate_judgement": 1,
        "group_below_min_pairs": 2,
    }
    assert built.report()["rows_read"] == 12 == built.kept + sum(built.skipped.values())
    _ledgers_balance(built)
    messages = [r.getMessage() for r in caplog.records]
    for reason, count, unit in (
        ("annotator_not_found", 1, "rows"),
        ("empty_attribute", 1, "rows"),
        ("group_below_min_pairs", 2, "judgements"),
    ):
        lines = [m for m in messages if f" as {reason}" in m]
        assert len(lines) == 1, (reason, messages)
        assert f"skipped {count} of " in lines[0] and unit in lines[0]
    assert "{'a9': 1}" in next(m for m in messages if "annotator_not_found" in m)  # names the unknown id
    assert "{'country': 1}" in next(m for m in messages if "empty_attribute" in m)  # and the empty attribute


def test_small_groups_merge_into_other_which_is_dropped_when_still_small(pairwise_files, caplog):
    args = {"format": "pairwise", "fields": PAIRWISE_FIELDS, "group": {"min_pairs": 3}}
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        built = _build(*pairwise_files, args)
    assert built.merged_groups == {"FR": 2}
    assert built.skipped["group_below_min_pairs"] == 2 and set(built.pairs["group"]) == {"UK"}
    assert sum("merged into 'other', now 2 pairs" in r.getMessage() for r in caplog.records) == 1


def test_country_by_age_band_groups(pairwise_files):
    args = {"format": "pairwise", "fields": PAIRWISE_FIELDS, "group": {"attributes": ["country", "age_band"]}}
    built = _build(*pairwise_files, args)
    assert built.pairs["group"] == ["UK | 18-24", "UK | 18-24", "FR | 18-24", "FR | 18-24", "UK | 25-34", "UK | 25-34"]
    # c1 by a2 is now another group's judgement (UK | 25-34), not a repeat.
    assert built.pairs["prompt"][-1] == "P1" and "duplicate_judgement" not in built.skipped


def test_a_missing_column_names_the_file_the_column_and_the_columns(tmp_path, pairwise_files):
    _, annotators = pairwise_files
    comparisons = _csv(tmp_path / "no_pref.csv", ["prompt", "response_a", "response_b", "annotator_id"], [])
    comparisons.write_text(comparisons.read_text() + "P,x,y,a1\n")
    with pytest.raises(ValueError, match=r"no_pref\.csv: no column 'preference' \(data\.fields\.preference\); its "
                                         r"columns: \['annotator_id', 'prompt', 'response_a', 'response_b'\]"):  # fmt: skip
        _build(comparisons, annotators, {"format": "pairwise", "fields": {}})
    with pytest.raises(DataError, match=r"annotators\.csv: no column 'region' \(data\.group\.attributes\[1\]\)"):
        _build(*pairwise_files, {"format": "pairwise", "fields": {}, "group": {"attributes": ["country", "region"]}})


def test_an_annotator_twice_with_different_groups_is_refused(tmp_path, pairwise_files):
    comparisons, _ = pairwise_files
    annotators = _csv(tmp_path / "ann.csv", ["annotator_id", "country"], [["a1", "UK"], ["a1", "FR"]])
    with pytest.raises(DataError, match=r"ann\.csv: annotator 'a1' appears in rows 1 and 2 with different groups"):
        _build(comparisons, annotators, {"format": "pairwise", "fields": {}})


def test_rankings_and_rating_rules():
    assert parse_ranking("B>A=C = D") == [["B"], ["A", "C", "D"]]
    assert parse_ranking("A>B>A") is None and parse_ranking("A>>B") is None
    assert rating_pairs([80, 40, 80, 10], "best_vs_each_worse") == [(0, 1), (0, 3), (2, 1), (2, 3)]
    assert rating_pairs([80, 40, 80, 10], "best_vs_worst") == [(0, 3), (2, 3)]
    assert rating_pairs([5, 5], "best_vs_worst") == []


def test_the_hub_is_read_only_for_a_hub_id(monkeypatch, tmp_path, pairwise_files):
    import datasets

    calls = []

    def fake_load(*args, **kwargs):
        calls.append((args, kwargs))
        return datasets.Dataset.from_dict({"annotator_id": ["a1"], "country": ["UK"]})

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    load_table(Table(path=str(pairwise_files[1]), hub_id="someone/data"), "annotators")  # a path wins
    assert calls == []
    table = load_table(Table(hub_id="someone/data", hub_config="survey", hub_split="train"), "annotators")
    assert calls == [(("someone/data", "survey"), {"split": "train"})]
    assert table.rows == [{"annotator_id": "a1", "country": "UK"}] and table.name == "someone/data/survey:train"


# ----------------------------------------------------------------------------------------------------------------------
# The data module, built from the recipe YAML
# ----------------------------------------------------------------------------------------------------------------------


def test_prism_recipe_yaml_builds_a_data_module_that_gives_batches(prism_files, tmp_path):
    from conftest import TINY_MODEL_FLAGS

    from grpo_lightning.cli.app import main

    utterances, survey = prism_files
    cli = main(
        [
            "--config", str(ROOT / "configs/default.yaml"),
            "--config", str(ROOT / "configs/data/prism.yaml"),
            "--data.init_args.path", str(utterances),
            "--data.init_args.annotators.path", str(survey),
            "--data.init_args.group.min_pairs", "1",
            "--data.init_args.max_length", "48",
            "--data.init_args.max_prompt_length", "24",
            *TINY_MODEL_FLAGS,
            "--trainer.logger", "false",
            "--trainer.default_root_dir", str(tmp_path),
        ],
        run=False,
    )  # fmt: skip
    dm = cli.datamodule
    assert isinstance(dm, ComparisonsDataModule) and dm.hub_id is None and dm.annotators.hub_id is None
    dm.setup("fit")
    assert dm.group_names == ["Canada", "United Kingdom", "United States"] == cli.model.group_names
    # 8 pairs, each group's prompts fewer than three: all training pairs (splits.stratified_split).
    assert dm.train_group_counts == [2, 5, 1]
    assert dm.rows_in == 8 + 8 and dict(dm.skipped) == {
        "excluded_by_where": 2,
        "ratings_all_equal": 4,
        "annotator_not_found": 2,
    }
    assert dm.source_report["rows_read"] == 19 and dm.source_report["format"] == "ratings"
    batch = next(iter(dm.train_dataloader()))
    assert sorted(batch["group"].tolist()) == [0, 0, 1, 1, 1, 1, 1, 2]


def test_collective_alignment_recipe_yaml_builds_a_data_module_that_gives_batches(ca1_files, tmp_path):
    from conftest import TINY_MODEL_FLAGS

    from grpo_lightning.cli.app import main

    comparisons, annotators = ca1_files
    cli = main(
        [
            "--config", str(ROOT / "configs/default.yaml"),
            "--config", str(ROOT / "configs/data/collective_alignment_1.yaml"),
            "--data.path", str(comparisons),
            "--data.annotators.path", str(annotators),
            "--data.group.min_pairs", "1",
            *TINY_MODEL_FLAGS,
            "--trainer.logger", "false",
            "--trainer.default_root_dir", str(tmp_path),
        ],
        run=False,
    )  # fmt: skip
    dm = cli.datamodule
    dm.setup("fit")
    # The 8 majority pairs of test_collective_alignment_recipe_majority_per_group, all of one prompt: all training.
    assert dm.group_names == ["JP", "US"] and dm.train_group_counts == [3, 5]
    assert dm.rows_in == 8 + 5 + 7  # pairs + row skips + judgement skips
    assert dm.source_report["judgements"] == 15 and dm.source_report["multiple_annotators"] == "majority"
    batch = next(iter(dm.train_dataloader()))
    assert sorted(batch["group"].tolist()) == [0, 0, 0, 1, 1, 1, 1, 1]


def test_comparisons_module_settings_are_checked():
    annotators = Table(path="annotators.csv")
    with pytest.raises(ValueError, match="data.annotators"):
        ComparisonsDataModule(path="c.csv")
    with pytest.raises(ValueError, match="data.path .* or data.hub_id"):
        ComparisonsDataModule(annotators=annotators)
    with pytest.raises(ValueError, match="data.format"):
        ComparisonsDataModule(path="c.csv", annotators=annotators, format="stars")
    with pytest.raises(ValueError, match="data.columns"):
        ComparisonsDataModule(path="c.csv", annotators=annotators, columns={"prompt": "q"})
    with pytest.raises(ValueError, match="separator"):
        ComparisonsDataModule(path="c.csv", annotators=annotators, group=GroupSettings(separator=" / "))
    dm = ComparisonsDataModule(path="c.csv", hub_id="a/b", annotators=Table(path="x.csv", hub_id="a/b"))
    assert dm.hub_id is None and dm.annotators == Table(path="x.csv")  # local paths win over a recipe's hub ids
