"""The data report (data/report.py) on a tiny dataset whose numbers are worked out by hand.

The data module trains its byte-level tokenizer at the smallest vocabulary (258: 256 bytes + <pad> + <eos>), which
has no merges, so every ASCII character is one token and the lengths below are character counts.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import datasets
import pytest

from grpo_lightning.data import PreferenceDataModule
from grpo_lightning.data.report import data_report, format_report, length_stats, write_report

ROOT = Path(__file__).resolve().parents[1]

# (prompt, chosen, rejected, group, split); lengths with max_length 12, max_prompt_length 6.
ROWS = [
    ("abcd", "xy", "z", "north", "train"),  # prompt 4; answers 2+EOS = 3, 1+EOS = 2
    ("abcdefgh", "x", "yy", "north", "train"),  # prompt 8 → its last 6 (truncated); answers 2, 3
    ("pq", "long answer!", "n", "south", "train"),  # prompt 2; 12+EOS cut to 10 (truncated), 2
    ("abcd", "xy", "z", "north", "train"),  # a copy of the first: duplicate_pair
    ("pq", "same", "same", "south", "train"),  # chosen_equals_rejected
    ("ab", "k", "m", "south", "train"),  # 2; 2, 2
    ("abcdefgh", "xxxxxxA", "xxxxxxB", "north", "train"),  # both cut to xxxxxx: identical_after_truncation
    ("vv", "a", "b", "north", "val"),  # 2; 2, 2
    ("tt", "c", "d", "north", "test"),  # 2; 2, 2
    ("uu", "e", "f", "south", "test"),  # 2; 2, 2
]


class _GivenRows(PreferenceDataModule):
    """The rows above with their own splits (a ``split`` column is used as given)."""

    def load_rows(self) -> datasets.Dataset:
        names = ("prompt", "chosen", "rejected", "group", "split")
        return datasets.Dataset.from_dict({n: [r[i] for r in ROWS] for i, n in enumerate(names)})


@pytest.fixture(scope="module")
def report() -> dict:
    dm = _GivenRows(tokenizer_vocab_size=258, max_length=12, max_prompt_length=6, batch_size=2)
    dm.setup("fit")
    return data_report(dm, min_eval_pairs=1)


def test_rows_splits_and_groups(report):
    assert report["data_class"] == "_GivenRows" and "source_report" not in report
    assert report["rows"] == {
        "read": 10,
        "kept": 7,
        "skipped": {"chosen_equals_rejected": 1, "duplicate_pair": 1, "identical_after_truncation": 1},
    }
    assert report["splits"] == {"train": 4, "val": 1, "test": 2}
    assert report["groups"] == {
        "north": {"id": 0, "train_pairs": 2, "share": 0.5, "val_pairs": 1, "test_pairs": 1},
        "south": {"id": 1, "train_pairs": 2, "share": 0.5, "val_pairs": 0, "test_pairs": 1},
    }
    assert report["identical_tokenisation"] == {"dropped": 1, "in_splits": 0}
    assert report["duplicate_pairs"] == {"dropped": 1, "in_splits": 0}


def test_token_lengths(report):
    """Prompts of the 7 kept pairs: 4, 6, 2, 2, 2, 2, 2 → mean 20/7, p95 at 0.95·6 = 5.7 between the sorted values
    4 and 6: 4 + 0.7·2 = 5.4. Answers (14): eleven 2s, two 3s and a 10 → mean 38/14, p95 at 0.95·13 = 12.35 between
    3 and 10: 3 + 0.35·7 = 5.45."""
    lengths = report["lengths"]
    assert (lengths["max_length"], lengths["max_prompt_length"]) == (12, 6)
    assert lengths["prompt"] == pytest.approx({"count": 7, "mean": 20 / 7, "p95": 5.4, "max": 6, "truncated": 1})
    assert lengths["answer"] == pytest.approx({"count": 14, "mean": 38 / 14, "p95": 5.45, "max": 10, "truncated": 1})


def test_small_groups_are_warned_about(report):
    assert report["min_eval_pairs"] == 1
    assert report["warnings"] == [
        "group 'south' has 0 val pairs (< 1): its val metrics rest on too few pairs to compare groups"
    ]


def test_format_and_write(report, tmp_path):
    text = format_report(report)
    assert "Rows: 10 read, 7 kept, 3 skipped" in text
    assert "Splits: train 4, val 1, test 2" in text
    assert "  north    0        2   50.0%       1       1" in text
    assert "prompt  mean 2.9, p95 5.4, max 6; truncated 1 of 7" in text
    assert "answer  mean 2.7, p95 " in text and "max 10; truncated 1 of 14" in text
    assert "  - group 'south' has 0 val pairs" in text
    path = write_report(report, tmp_path / "run" / "data_report.json")
    assert json.loads(path.read_text()) == json.loads(json.dumps(report))


def test_length_stats_of_nothing():
    assert length_stats([], 0) == {"count": 0, "mean": None, "p95": None, "max": None, "truncated": 0}


def test_the_comparisons_source_adds_its_ledgers(tmp_path):
    from grpo_lightning.data.sources.comparisons.module import ComparisonsDataModule
    from grpo_lightning.data.sources.comparisons.settings import Table

    comparisons = tmp_path / "comparisons.jsonl"
    rows = [
        {"prompt": f"P{i}", "response_a": f"a{i}", "response_b": f"b{i}", "preference": pref, "annotator_id": who}
        for i, (pref, who) in enumerate([("A", "u1"), ("B", "u2"), ("tie", "u1"), ("A", "u3")])
    ]
    comparisons.write_text("".join(json.dumps(r) + "\n" for r in rows))
    annotators = tmp_path / "annotators.jsonl"
    annotators.write_text('{"annotator_id": "u1", "country": "UK"}\n{"annotator_id": "u2", "country": "FR"}\n')
    dm = ComparisonsDataModule(
        path=str(comparisons), annotators=Table(path=str(annotators)), tokenizer_vocab_size=258, max_length=32,
        max_prompt_length=16,
    )  # fmt: skip
    dm.setup("fit")
    report = data_report(dm)
    assert report["rows"] == {"read": 4, "kept": 2, "skipped": {"annotator_not_found": 1, "tie": 1}}
    assert report["source_report"]["rows_read"] == 4 and report["source_report"]["pairs_kept"] == 2
    assert report["source_report"]["rows_skipped"] == {"annotator_not_found": 1, "tie": 1}
    assert "Source: 4 rows read = 2 used + 2 skipped; they give 2 judgements = 2 pairs + 0 skipped" in format_report(
        report
    )


def test_fast_on_the_default_generated_data(tmp_path):
    """configs/default.yaml's data (1200 training pairs, 102 val and 201 test pairs per group): the report in < 10 s
    once the data is prepared (here it takes well under a second)."""
    from conftest import TINY_MODEL_FLAGS

    from grpo_lightning.cli.app import main

    cli = main(
        ["--config", str(ROOT / "configs/default.yaml"), *TINY_MODEL_FLAGS, "--trainer.logger", "false",
         "--trainer.default_root_dir", str(tmp_path)],
        run=False,
    )  # fmt: skip
    dm = cli.datamodule
    dm.setup("fit")
    start = time.perf_counter()
    report = data_report(dm)
    assert time.perf_counter() - start < 10
    assert report["splits"] == {"train": 1200, "val": 510, "test": 1005}
    assert [g["val_pairs"] for g in report["groups"].values()] == [102] * 5
    assert report["warnings"] == []
