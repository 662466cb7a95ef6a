"""The data module: local and hub sources, cleaning, group ids, splits, tokenisation and collation."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import SMALL_DATA

from grpo_lightning.data import DataError, GeneratedOpinions, PreferenceDataModule
from grpo_lightning.data.tokenization import PairCollator, tokenize_pairs, train_tokenizer

SMALL = SMALL_DATA


def _rows(n_per_group=(12, 6), prefix="q"):
    rows = []
    for g, n in zip(("north", "south"), n_per_group, strict=True):
        for i in range(n):
            rows.append({"prompt": f"{prefix}{i} asked of {g}?", "chosen": " yes", "rejected": " no", "group": g})
    return rows


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_generated_data_module_uses_the_generated_splits(tiny_dm_factory):
    dm = tiny_dm_factory(generated={"num_pairs": 100, "val_questions": 3, "test_questions": 4})
    assert dm.train_group_counts == [45, 25, 15, 10, 5]
    for split, n in (("val", 9), ("test", 12)):
        assert Counter(dm.dataset(split)["group_id"]) == dict.fromkeys(range(5), n)


def test_tokenisation_masks_the_prompt_and_appends_eos():
    tok = train_tokenizer(["Opinion of people in X on: Y? A B C D"] * 10, vocab_size=300)
    out = tokenize_pairs(
        {"prompt": ["Opinion of people in X on: Y?"], "chosen": [" A"], "rejected": [" B"]},
        tokenizer=tok,
        max_length=64,
        max_prompt_length=48,
    )
    prompt_ids = tok("Opinion of people in X on: Y?", add_special_tokens=False)["input_ids"]
    assert out["prompt_length"] == [len(prompt_ids)]
    assert out["chosen_ids"][0] == prompt_ids + tok(" A", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    assert out["keep"] == [True] and out["note"] == [""]
    batch = PairCollator(tok.pad_token_id)(
        [
            {
                "chosen_ids": out["chosen_ids"][0],
                "rejected_ids": out["rejected_ids"][0],
                "prompt_length": out["prompt_length"][0],
                "group_id": 1,
                "index": 0,
            }
        ]
    )
    assert batch["input_ids"].shape[0] == 2  # chosen then rejected
    labels = batch["labels"][0]
    assert (labels[: len(prompt_ids)] == -100).all()
    assert labels[len(prompt_ids)] == tok(" A", add_special_tokens=False)["input_ids"][0]
    assert batch["group"].tolist() == [1]


def test_truncation_keeps_the_prompt_end_and_a_completion():
    tok = train_tokenizer(["a b c d e f g h i j k l m n o p"] * 5, vocab_size=280)
    out = tokenize_pairs(
        {"prompt": ["a b c d e f g h i j k l m n o p"], "chosen": [" x y z"], "rejected": [" w"]},
        tokenizer=tok,
        max_length=8,
        max_prompt_length=6,
    )
    full = tok("a b c d e f g h i j k l m n o p", add_special_tokens=False)["input_ids"]
    assert out["prompt_length"] == [6]
    assert out["chosen_ids"][0][:6] == full[-6:]
    assert len(out["chosen_ids"][0]) == 8 and out["keep"] == [True]
    assert out["note"] == ["prompt_truncated"]


def test_prefix_mismatch_falls_back_to_separate_encoding():
    """'ab' + 'c' may merge across the boundary; the pair is still encoded with the prompt's
    own tokens first, and counted."""
    tok = train_tokenizer(["abc abc abc abc"] * 20, vocab_size=300)
    out = tokenize_pairs(
        {"prompt": ["ab"], "chosen": ["c"], "rejected": ["d"]}, tokenizer=tok, max_length=16, max_prompt_length=8
    )
    prompt_ids = tok("ab", add_special_tokens=False)["input_ids"]
    assert out["chosen_ids"][0][: len(prompt_ids)] == prompt_ids
    assert out["note"] == ["prefix_mismatch"]


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_local_files_with_mapped_columns(tmp_path, fmt):
    rows = [{"question": r["prompt"], "good": r["chosen"], "bad": r["rejected"], "team": r["group"]} for r in _rows()]
    path = tmp_path / f"pairs.{fmt}"
    if fmt == "jsonl":
        _write_jsonl(path, rows)
    elif fmt == "csv":
        pd.DataFrame(rows).to_csv(path, index=False)
    else:
        pd.DataFrame(rows).to_parquet(path)
    dm = PreferenceDataModule(
        path=str(path),
        columns={"prompt": "question", "chosen": "good", "rejected": "bad", "group": "team"},
        max_length=32,
        max_prompt_length=24,
        batch_size=4,
    )
    assert dm.group_names == ["north", "south"]
    assert sum(dm.train_group_counts) + len(dm.dataset("val")) + len(dm.dataset("test")) == 18
    batch = next(iter(dm.train_dataloader()))
    assert batch["input_ids"].shape[0] == 8 and batch["group"].shape == (4,)


def test_configured_groups_order_unlisted_and_missing(tmp_path, caplog):
    rows = _rows((12, 6)) + [{"prompt": "x?", "chosen": " a", "rejected": " b", "group": "west"}]
    path = _write_jsonl(tmp_path / "d.jsonl", rows)
    dm = PreferenceDataModule(path=str(path), groups=["south", "north"], max_length=32, max_prompt_length=24)
    assert dm.group_names == ["south", "north"]  # the configured order gives the ids
    assert dm.skipped["group_not_in_data.groups"] == 1
    with pytest.raises(DataError, match=r"data.groups: \['east'\] not found"):
        _ = PreferenceDataModule(
            path=str(path), groups=["north", "east"], max_length=32, max_prompt_length=24
        ).group_names


def test_bad_rows_are_skipped_and_counted(tmp_path):
    rows = _rows((10, 5))
    rows += [
        {"prompt": " ", "chosen": " a", "rejected": " b", "group": "north"},
        {"prompt": "p", "chosen": " a", "rejected": " a", "group": "north"},
        {"prompt": "p", "chosen": "", "rejected": " b", "group": "north"},
        {"prompt": "p", "chosen": " a", "rejected": " b", "group": None},
        dict(rows[0]),
    ]
    dm = PreferenceDataModule(path=str(_write_jsonl(tmp_path / "d.jsonl", rows)), max_length=32, max_prompt_length=24)
    _ = dm.group_names
    assert dm.skipped == Counter(
        {"empty_prompt": 1, "chosen_equals_rejected": 1, "empty_chosen": 1, "null_group": 1, "duplicate_pair": 1}
    )
    kept = sum(len(dm.dataset(s)) for s in ("train", "val", "test"))
    assert dm.rows_in == kept + sum(dm.skipped.values()) == 20


def test_missing_column_is_named(tmp_path):
    path = _write_jsonl(tmp_path / "d.jsonl", [{"prompt": "p", "chosen": "a", "rejected": "b"}])
    with pytest.raises(DataError, match=r"missing column\(s\) \['group'\]"):
        _ = PreferenceDataModule(path=str(path)).group_names


def test_unreachable_hub_id_suggests_a_local_path():
    with pytest.raises(DataError, match="--data.path"):
        _ = PreferenceDataModule(hub_id="nobody/not-a-dataset").group_names


def test_train_loader_yields_whole_optimizer_steps(tiny_dm_factory):
    dm = tiny_dm_factory(batch_size=3, accumulate_grad_batches=2)
    batch = next(iter(dm.train_dataloader()))
    assert batch["group"].shape == (6,)
    first = [b["index"].tolist() for b in dm.train_dataloader()]
    assert first == [b["index"].tolist() for b in dm.train_dataloader()], "seeded order"
    dm.train_dataloader().sampler.set_epoch(1)


def test_bad_data_settings():
    with pytest.raises(ValueError, match="max_prompt_length"):
        PreferenceDataModule(max_length=10, max_prompt_length=10)
    with pytest.raises(ValueError, match="split_fractions"):
        PreferenceDataModule(split_fractions=(0.5, 0.1, 0.1))
    with pytest.raises(ValueError, match="batch_size"):
        PreferenceDataModule(batch_size=0)
    with pytest.raises(ValueError, match="num_pairs"):
        GeneratedOpinions(num_pairs=10)


def test_tokenizer_round_trip(tiny_dm_factory, tmp_path):
    dm = tiny_dm_factory()
    dm.tokenizer.save_pretrained(tmp_path / "tok")
    from grpo_lightning.data.tokenization import load_tokenizer

    again = load_tokenizer(str(tmp_path / "tok"))
    text = dm.dataset("train")["prompt"][0]
    assert again(text)["input_ids"] == dm.tokenizer(text)["input_ids"]
    assert again.pad_token_id == dm.tokenizer.pad_token_id and again.eos_token_id == dm.tokenizer.eos_token_id
    assert torch.is_tensor(next(iter(dm.val_dataloader()))["labels"])


def test_default_experiments_share_data_seed_and_steps_and_evaluate_every_group_alike():
    """IPO, IS-IPO and GR-IPO on the default task differ only in the weighting and the log name,
    and evaluate each group on ≥ 100 val and ≥ 200 test pairs on questions no group trains on."""
    from grpo_lightning.cli.app import main

    root = Path(__file__).resolve().parents[1] / "configs"
    files = {name: root / "experiment" / f"default_{name}.yaml" for name in ("ipo", "isipo", "gripo")}
    files["default"] = root / "default.yaml"
    # The merged configurations (the files build on shared bases), less the list of files read.
    configs = {}
    for name, path in files.items():
        configs[name] = main(["--config", str(path)], run=False, instantiate=False).config.as_dict()
        configs[name].pop("config", None)
    for cfg in configs.values():
        cfg["trainer"]["logger"]["init_args"].pop("name")
        generated = cfg["data"]["init_args"]["generated"]
        assert 3 * generated["val_questions"] >= 100 and 3 * generated["test_questions"] >= 200
    weightings = {name: cfg["model"].pop("weighting") for name, cfg in configs.items()}
    assert [w["class_path"].rsplit(".", 1)[-1] for w in weightings.values()] == [
        "UniformWeighting",
        "ImportanceWeighting",
        "RobustWeighting",
        "RobustWeighting",
    ]
    assert weightings["gripo"] == weightings["default"]
    first = configs["ipo"]
    assert all(cfg == first for cfg in configs.values())


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"batch_size": 0}, "data.batch_size"),
        ({"eval_batch_size": 0}, "data.eval_batch_size"),
        ({"accumulate_grad_batches": 0}, "accumulate_grad_batches"),
        ({"max_prompt_length": 48}, "data.max_prompt_length"),
        ({"max_prompt_length": 0}, "data.max_prompt_length"),
        ({"split_fractions": (0.5, 0.5, 0.5)}, "data.split_fractions"),
        ({"split_fractions": (1.2, -0.1, -0.1)}, "data.split_fractions"),
        ({"split_fractions": (float("nan"), 0.5, 0.5)}, "data.split_fractions"),
        ({"split_fractions": (0.0, 0.5, 0.5)}, "training fraction"),
        ({"predict_split": "dev"}, "data.predict_split"),
        ({"groups": ["A", "A"]}, "data.groups"),
        ({"groups": []}, "data.groups"),
        ({"num_workers": -1}, "data.num_workers"),
        ({"tokenizer_vocab_size": 100}, "data.tokenizer_vocab_size"),
        ({"path": "x.jsonl", "hub_id": "a/b"}, "not both"),
    ],
)
def test_out_of_range_data_settings_name_the_setting(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PreferenceDataModule(**{**SMALL, **kwargs})
