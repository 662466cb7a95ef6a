"""Tests of grpo_lightning.data.sources.goqa_loading: reading Global Opinion QA from local files or the hub."""

from __future__ import annotations

from pathlib import Path

import datasets
import pandas as pd
import pytest
from conftest import EXPECTED_SKIPS, GROUPS, ROWS, write_csv

from grpo_lightning.data.sources.goqa import build_goqa_pairs
from grpo_lightning.data.sources.goqa_loading import load_goqa_table


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
