"""The per-group summary at the end of fit/validate/test, the default progress bar, and the
warnings a plain run no longer prints."""

from __future__ import annotations

import json
import logging
import sys
import warnings
from pathlib import Path

import lightning as L
import pytest
import torch
from conftest import TINY_DATA_FLAGS, TINY_MODEL_FLAGS
from lightning.pytorch.loggers import CSVLogger

from grpo_lightning.callbacks.progress import ProgressBar
from grpo_lightning.callbacks.summary import GroupSummary, format_summary
from grpo_lightning.cli.app import _drop_litlogger_tip, main
from grpo_lightning.core.weighting import RobustWeighting

ROOT = Path(__file__).resolve().parents[1]


def _write_jsonl(path: Path) -> Path:
    """Groups North and South with 12 prompts each; Islands with one prompt, so all its pairs
    land in the training split (a prompt's pairs never straddle splits)."""
    rows = []
    for g in ("North", "South"):
        for p in range(12):
            rows.append({"prompt": f"{g} question {p}?", "chosen": "yes indeed", "rejected": "no", "group": g})
    rows += [
        {"prompt": "Islands question?", "chosen": f"yes {i}", "rejected": "no", "group": "Islands"} for i in range(3)
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def test_summary_lists_every_group_and_says_no_pairs(tmp_path, tiny_dm_factory, make_module, caplog):
    dm = tiny_dm_factory(path=str(_write_jsonl(tmp_path / "pairs.jsonl")), batch_size=8)
    module = make_module(dm, weighting=RobustWeighting())
    caplog.set_level(logging.INFO, logger="grpo_lightning.callbacks.summary")
    L.seed_everything(0)
    trainer = L.Trainer(
        logger=CSVLogger(tmp_path, name="run", version=0),
        callbacks=[GroupSummary()],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        max_epochs=1,
        log_every_n_steps=1,
        num_sanity_val_steps=0,
    )
    trainer.fit(module, dm)
    run_dir = Path(trainer.log_dir)
    val = json.loads((run_dir / "summary_val.json").read_text())
    assert [r["group"] for r in val["groups"]] == dm.group_names == ["Islands", "North", "South"]
    by_group = {r["group"]: r for r in val["groups"]}
    assert by_group["Islands"]["pairs"] == 0 and by_group["Islands"]["loss"] is None
    assert by_group["North"]["pairs"] == dm.dataset("val")["group"].count("North") > 0
    metrics = trainer.callback_metrics
    for g in ("North", "South"):
        assert by_group[g]["loss"] == pytest.approx(float(metrics[f"val/loss/{g}"]))
        assert by_group[g]["reward_acc"] == pytest.approx(float(metrics[f"val/reward_acc/{g}"]))
    weights = module.group_weights().tolist()
    assert [r["weight"] for r in val["groups"]] == pytest.approx(weights)
    assert val["worst_group"] == max(("North", "South"), key=lambda g: by_group[g]["loss"])
    assert val["fn"] == "fit" and val["seed"] == 0

    table = next(r.getMessage() for r in caplog.records if "val per-group summary (fit" in r.getMessage())
    lines = table.splitlines()
    assert any(line.startswith("Islands") and "no pairs" in line for line in lines)
    assert sum("<- worst" in line for line in lines) == 1
    assert next(line for line in lines if "<- worst" in line).startswith(val["worst_group"])

    trainer.test(module, dm)
    test = json.loads((run_dir / "summary_test.json").read_text())
    assert [r["group"] for r in test["groups"]] == dm.group_names
    assert test["fn"] == "test" and {r["group"]: r["pairs"] for r in test["groups"]}["Islands"] == 0
    assert any("test per-group summary (test" in r.getMessage() for r in caplog.records)


def test_summary_of_a_split_without_any_pairs():
    summary = {
        "split": "test",
        "fn": "test",
        "step": 0,
        "loss": None,
        "worst_group": None,
        "worst_group_loss": None,
        "groups": [{"group": "A", "pairs": 0, "loss": None, "reward_acc": None, "logp_acc": None, "weight": 1.0}],
    }
    text = format_summary(summary)
    assert "no pairs" in text and "<- worst" not in text


def test_cli_fit_shows_a_bar_writes_the_summary_and_no_known_warnings(tmp_path, monkeypatch, caplog):
    args = [
        "fit",
        "--config",
        str(ROOT / "configs/default.yaml"),
        *TINY_DATA_FLAGS,
        "--data.init_args.batch_size",
        "16",
        *TINY_MODEL_FLAGS,
        "--trainer.max_epochs",
        "1",
        "--trainer.enable_progress_bar",
        "true",
        "--trainer.logger.init_args.save_dir",
        str(tmp_path),
    ]
    monkeypatch.setattr(sys, "argv", ["grpo", *args])  # as the console script sees them
    caplog.set_level(logging.INFO)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cli = main()
    bars = [c for c in cli.trainer.callbacks if isinstance(c, L.pytorch.callbacks.ProgressBar)]
    assert len(bars) == 1 and isinstance(bars[0], ProgressBar)
    messages = [str(w.message) for w in caught]
    for known in ("on_after_batch_transfer", "LeafSpec", "args parameter"):
        assert not [m for m in messages if known in m], known
    summary = json.loads((Path(cli.trainer.log_dir) / "summary_val.json").read_text())
    assert [r["group"] for r in summary["groups"]] == cli.model.group_names
    assert (summary["loss_name"], summary["weighting"]) == ("ipo", "robust")
    # A test of the checkpoint reports the checkpoint's step (the trainer's own is 0 outside fit).
    ckpt = Path(cli.trainer.log_dir) / "checkpoints/last.ckpt"
    tested = main(["test", *args[1:], "--ckpt_path", str(ckpt)])
    summary = json.loads((Path(tested.trainer.log_dir) / "summary_test.json").read_text())
    assert summary["step"] == torch.load(ckpt, weights_only=True)["global_step"] > 0
    assert (summary["loss_name"], summary["weighting"]) == ("ipo", "robust")
    # TensorBoard's INFO line at every read of the event files (the group-weight figure, at every validation).
    assert not [m for m in caplog.messages if m.startswith("No path found after")]

    # `trainer.enable_progress_bar: false` still turns it off (Lightning refuses a bar then).
    cli = main([*args[1:], "--trainer.enable_progress_bar", "false"], run=False)
    assert not [c for c in cli.trainer.callbacks if isinstance(c, L.pytorch.callbacks.ProgressBar)]


def test_only_the_litlogger_tip_is_dropped():
    record = lambda msg: logging.LogRecord("lightning", logging.INFO, __file__, 1, msg, None, None)  # noqa: E731
    assert not _drop_litlogger_tip(record("💡 Tip: For seamless cloud logging, try installing [litlogger](...)"))
    assert _drop_litlogger_tip(record("GPU available: False, used: False"))
