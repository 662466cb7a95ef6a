"""data/preparation.py: rows read, cleaned, split and tokenised, every row accounted for; the checks of the groups."""

from __future__ import annotations

import logging

import pytest
import torch
from conftest import file_dm, fit_quietly, group_pairs, pair_rows, write_jsonl

from grpo_lightning.core.weighting import RobustWeighting
from grpo_lightning.data import DataError, PreferenceDataModule

_rows, _pairs, _jsonl, _dm, _fit = pair_rows, group_pairs, write_jsonl, file_dm, fit_quietly


def test_all_rows_unusable_is_refused(tmp_path):
    rows = [{"prompt": "", "chosen": "a", "rejected": "b", "group": "A"}] * 5
    with pytest.raises(DataError, match="no usable rows"):
        _dm(_jsonl(tmp_path / "d.jsonl", rows))


def test_configured_group_absent_from_data_is_refused(tmp_path):
    with pytest.raises(DataError, match=r"data.groups: \['C'\] not found.*groups there: \['A', 'B'\]"):
        _dm(_jsonl(tmp_path / "d.jsonl", _rows()), groups=["A", "C"])


def test_listed_group_whose_rows_are_all_skipped_is_refused(tmp_path):
    rows = _rows() + [{"prompt": "lonely", "chosen": "same", "rejected": "same", "group": "C"}]
    dm = _dm(_jsonl(tmp_path / "d.jsonl", rows))  # C is not a group at all: its only row is skipped
    assert dm.group_names == ["A", "B"] and dm.skipped == {"chosen_equals_rejected": 1}
    with pytest.raises(DataError, match=r"data.groups: \['C'\] not found"):
        _dm(_jsonl(tmp_path / "d.jsonl", rows), groups=["A", "B", "C"])


def test_group_whose_training_rows_all_vanish_is_refused(tmp_path, monkeypatch):
    """A group whose every training pair is skipped at tokenisation has N_g = 0: refused."""
    same = "one two three four five six seven eight nine ten "
    rows = _rows() + [{"prompt": "p", "chosen": same + "X", "rejected": same + "Y", "group": "C"}]
    dm = PreferenceDataModule(path=str(_jsonl(tmp_path / "d.jsonl", rows)), max_length=8, max_prompt_length=7)
    with pytest.raises(DataError, match=r"group\(s\) \['C'\] have no training pairs"):
        dm.setup("fit")
    assert dm.skipped["identical_after_truncation"] >= 1


def test_group_labels_are_stripped_and_case_variants_reported_or_merged(tmp_path, caplog):
    rows = _pairs("north", 8) + _pairs("south", 8)
    for r in rows[:3]:
        r["group"] = "north "  # the same group with a trailing space
    rows[3]["group"] = " north\t"
    rows += _pairs("NORTH", 2, prefix="x")  # the same group in capitals
    rows.append({**rows[4], "group": " north"})  # a duplicate once stripped
    path = _jsonl(tmp_path / "d.jsonl", rows)
    with caplog.at_level(logging.INFO):
        dm = _dm(path)
    assert dm.group_names == ["NORTH", "north", "south"]
    assert dm.skipped == {"duplicate_pair": 1}
    assert any("stripped surrounding whitespace from 5 group labels" in m for m in caplog.messages)
    assert any(
        "differ only in case are kept as separate groups: [['NORTH', 'north']]" in m and "merge_group_case" in m
        for m in caplog.messages
    )
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        merged = _dm(path, merge_group_case=True)
    assert merged.group_names == ["north", "south"] and merged.train_group_counts[0] > dm.train_group_counts[1]
    assert any("merged group labels that differ only in case" in m for m in caplog.messages)
    assert _dm(path, merge_group_case=True, groups=["NORTH", "south"]).group_names == ["NORTH", "south"]


def test_empty_splits_are_allowed_and_a_zero_fraction_stays_empty(tmp_path):
    """Found by the fuzz test: one row (val and test empty) used to crash in tokenisation, and a
    split with fraction 0 used to get a prompt per group."""
    dm = _dm(_jsonl(tmp_path / "one.jsonl", _rows(1)))
    assert [len(dm.dataset(s)) for s in ("train", "val", "test")] == [1, 0, 0]
    assert list(dm.val_dataloader()) == []
    dm = _dm(_jsonl(tmp_path / "d.jsonl", _rows(20)), split_fractions=(0.9, 0.1, 0.0))
    assert len(dm.dataset("test")) == 0 and len(dm.dataset("val")) > 0


def test_groups_without_eval_pairs_are_named_at_setup(tmp_path, caplog):
    """C (2 pairs) cannot be in every split; B (3 pairs) is in each; both facts are said."""
    rows = _pairs("A", 20) + _pairs("B", 3) + _pairs("C", 2)
    with caplog.at_level(logging.INFO):
        dm = _dm(_jsonl(tmp_path / "d.jsonl", rows))
    names = dm.group_names
    for split in ("val", "test"):
        present = {names[g] for g in dm.dataset(split)["group_id"]}
        assert present == {"A", "B"}, split
        assert any(
            f"group(s) ['C'] have no {split} pairs" in m and f"{split}/worst_group_loss" in m for m in caplog.messages
        )
    summary = next(m for m in caplog.messages if "data prepared" in m)
    assert "val pairs cover 2/3 groups (none of ['C'])" in summary
    assert "test pairs cover 2/3 groups (none of ['C'])" in summary


def test_single_group_is_allowed_with_a_warning(tmp_path, caplog, make_module):
    with caplog.at_level(logging.WARNING):
        dm = _dm(_jsonl(tmp_path / "d.jsonl", _rows(groups=("A", "A"))))
    assert dm.group_names == ["A"]
    assert any("only one group" in m and "reduce to the plain" in m for m in caplog.messages)
    module = make_module(dm, weighting=RobustWeighting(step_size=1.0))
    _fit(module, dm, max_steps=2)
    assert torch.equal(module.group_weights(), torch.ones(1, dtype=torch.float64))


def test_group_smaller_than_a_step_warns(tmp_path, caplog):
    rows = _rows() + [{"prompt": f"c{i}", "chosen": "x", "rejected": "y", "group": "C"} for i in range(3)]
    with caplog.at_level(logging.WARNING):
        dm = _dm(_jsonl(tmp_path / "d.jsonl", rows), batch_size=4, accumulate_grad_batches=2)
    counts = dm.train_group_counts
    assert counts[2] * 8 / sum(counts) < 1 <= min(counts[:2]) * 8 / sum(counts)
    warned = [m for m in caplog.messages if "expected less than once per optimizer step of 8 pairs" in m]
    assert len(warned) == 1 and "'C'" in warned[0] and "'A'" not in warned[0]


def test_a_small_group_seen_in_most_steps_does_not_warn(tiny_dm_factory, caplog):
    """The default task: Eastvale's 60 of 1,200 pairs, 3.2 per step of 64 on average, is in ~96 % of steps."""
    with caplog.at_level(logging.WARNING):
        dm = tiny_dm_factory(generated={"num_pairs": 1200, "val_questions": 1, "test_questions": 1}, batch_size=64)
    assert dm.train_group_counts[-1] == 60
    assert not any("per optimizer step" in m for m in caplog.messages)
