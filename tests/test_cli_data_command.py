"""``grpo data``: the data report from the same configs and flags as ``grpo fit``, without building a model."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest
from conftest import TINY_DATA_FLAGS
from test_data_sources_comparisons import prism_files  # noqa: F401  (a fixture)

from grpo_lightning.cli.app import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def no_model(monkeypatch):
    """Building the model fails: ``grpo data`` must not build it (a real model would take minutes to load)."""
    from grpo_lightning.training.module import GroupRobustPreferenceModule

    @functools.wraps(GroupRobustPreferenceModule.__init__)  # the same signature for the parser
    def refuse(*args, **kwargs):
        raise AssertionError("grpo data built the model")

    monkeypatch.setattr(GroupRobustPreferenceModule, "__init__", refuse)


def test_grpo_data_reports_the_default_data_without_a_model(tmp_path, capsys, no_model):
    out = tmp_path / "report.json"
    report = main(["data", "--config", str(ROOT / "configs/default.yaml"), *TINY_DATA_FLAGS, "--report_path", str(out)])
    printed = capsys.readouterr().out
    # TINY_DATA_FLAGS: 100 training pairs shared 45/25/15/10/5 % (the default shares), 2 val and 2 test questions
    # whose pairs every group answers alike (data/sources/generated.py).
    splits = report["splits"]
    assert splits["train"] == 100 and report["rows"] == {"read": sum(splits.values()), "kept": 160, "skipped": {}}
    groups = report["groups"]
    assert {name: g["train_pairs"] for name, g in groups.items()} == {
        "Avalon": 45,
        "Brightwater": 25,
        "Cedarholm": 15,
        "Dunmore": 10,
        "Eastvale": 5,
    }
    assert [g["share"] for g in groups.values()] == pytest.approx([0.45, 0.25, 0.15, 0.10, 0.05])
    assert {g["val_pairs"] for g in groups.values()} == {splits["val"] // 5}
    assert {g["test_pairs"] for g in groups.values()} == {splits["test"] // 5}
    # 6 val and 6 test pairs per group, fewer than 10 (report.MIN_EVAL_PAIRS): a warning per group and split.
    assert splits["val"] // 5 == splits["test"] // 5 == 6 and len(report["warnings"]) == 10
    assert all(sum(f"'{name}'" in w for w in report["warnings"]) == 2 for name in groups)
    assert json.loads(out.read_text()) == report
    assert "Rows: 160 read, 160 kept, 0 skipped" in printed and "Eastvale" in printed


def test_grpo_data_counts_a_recipes_skipped_rows(prism_files, capsys, no_model):  # noqa: F811
    utterances, survey = prism_files
    report = main(
        [
            "data",
            "--config", str(ROOT / "configs/default.yaml"),
            "--config", str(ROOT / "configs/data/prism.yaml"),
            # the flags README.md and docs/own_data.md give
            "--data.path", str(utterances),
            "--data.annotators.path", str(survey),
            "--data.group.min_pairs", "1",
        ]
    )  # fmt: skip
    # The fixture's 19 rows (test_data_sources_comparisons.py): 2 of a later turn, 4 with equal ratings and 2 of a
    # participant missing from the survey are skipped, by reason; the other 11 give 8 pairs in 3 countries.
    assert report["rows"]["read"] == 19 and report["rows"]["kept"] == 8
    assert report["rows"]["skipped"] == {"excluded_by_where": 2, "ratings_all_equal": 4, "annotator_not_found": 2}
    assert {name: g["train_pairs"] for name, g in report["groups"].items()} == {
        "Canada": 2,
        "United Kingdom": 5,
        "United States": 1,
    }
    printed = capsys.readouterr().out
    assert "annotator_not_found" in printed
    assert "Source: 19 rows read = 11 used + 8 skipped; they give 8 judgements = 8 pairs + 0 skipped" in printed
