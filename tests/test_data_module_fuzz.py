"""Fuzzing data preparation: random small datasets (empty, whitespace and unicode text, null and
integer groups, duplicates) and settings. Preparation either succeeds with consistent counts
(rows in = rows kept + rows skipped, per reason) or raises the documented ``DataError``; no other
exception escapes."""

from __future__ import annotations

import csv
import json
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from grpo_lightning.data import DataError, PreferenceDataModule
from grpo_lightning.data.cleaning import SKIP_REASONS

TEXT = st.one_of(
    st.none(),
    st.sampled_from(["", " ", "\t\n", "a", "same", "é", "日本語", "🙂 x", "a,b", '"q"']),
    st.text(max_size=16),
)
GROUP = st.one_of(st.none(), st.sampled_from(["A", "B", "C", "", "  ", "Ä"]), st.integers(0, 2))
# Usable text and groups, so that a good share of the datasets get through preparation.
GOOD_TEXT = st.builds(
    str.__add__, st.sampled_from(["why ", "yes", "no", "maybe ", "日本", "é", "🙂"]), st.text(max_size=8)
)
GOOD_GROUP = st.sampled_from(["A", "B", "C", 0, 1])
ROW = st.one_of(
    st.fixed_dictionaries({"prompt": TEXT, "chosen": TEXT, "rejected": TEXT, "group": GROUP}),
    st.fixed_dictionaries({"prompt": GOOD_TEXT, "chosen": GOOD_TEXT, "rejected": GOOD_TEXT, "group": GOOD_GROUP}),
)


@st.composite
def datasets_(draw):
    pool = draw(st.lists(ROW, min_size=1, max_size=16))
    # Rows drawn from a small pool, so exact duplicates are common.
    rows = draw(st.lists(st.sampled_from(pool), min_size=1, max_size=40))
    fmt = draw(st.sampled_from(["jsonl", "csv"]))
    max_length = draw(st.sampled_from([4, 16, 64]))
    config = {
        "max_length": max_length,
        "max_prompt_length": draw(st.integers(1, max_length - 1)),
        "batch_size": draw(st.sampled_from([1, 4, 64])),
        "split_fractions": draw(st.sampled_from([(0.8, 0.1, 0.1), (1.0, 0.0, 0.0), (0.34, 0.33, 0.33)])),
        "groups": draw(st.sampled_from([None, None, ["A"], ["A", "B"], ["0", "1"]])),
        "seed": draw(st.integers(0, 3)),
    }
    return rows, fmt, config


def _write(path: Path, rows: list[dict], fmt: str) -> None:
    if fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        return
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["prompt", "chosen", "rejected", "group"])
        for r in rows:
            writer.writerow(["" if r[k] is None else r[k] for k in ("prompt", "chosen", "rejected", "group")])


def _null_group(g) -> bool:
    return g is None or (isinstance(g, str) and not g.strip())


@settings(
    max_examples=50,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(datasets_())
def test_data_preparation_succeeds_consistently_or_raises_data_error(case):
    rows, fmt, config = case
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"data.{fmt}"
        _write(path, rows, fmt)
        dm = PreferenceDataModule(path=str(path), tokenizer_vocab_size=258, **config)
        try:
            dm.setup("fit")
        except DataError as err:
            event(f"DataError: {str(err).split(':')[-1][:40]}")
            return  # the documented refusal (no usable rows, a listed group absent or left empty)
        event("prepared")
        assert dm.rows_in == len(rows)
        assert set(dm.skipped) <= set(SKIP_REASONS), dm.skipped
        assert all(n > 0 for n in dm.skipped.values())
        kept = sum(len(dm.dataset(s)) for s in ("train", "val", "test"))
        assert kept + sum(dm.skipped.values()) == dm.rows_in
        assert dm.skipped["null_group"] == sum(_null_group(r["group"]) for r in rows)
        assert len(dm.group_names) == len(dm.train_group_counts) and min(dm.train_group_counts) >= 1
        if config["groups"] is not None:
            assert dm.group_names == config["groups"]
        for split in ("train", "val", "test"):
            ds = dm.dataset(split)
            assert all(0 <= g < len(dm.group_names) for g in ds["group_id"])
            assert all(len(ids) <= config["max_length"] for ids in list(ds["chosen_ids"]) + list(ds["rejected_ids"]))
