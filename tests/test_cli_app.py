"""The real `grpo` CLI end to end on a tiny config, and every YAML under configs/."""

from __future__ import annotations

import csv
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import TINY_CLI, TINY_DATA_FLAGS, TINY_MODEL_FLAGS, composed_yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from grpo_lightning.cli.app import main
from grpo_lightning.metrics import eval_tags, train_tags

ROOT = Path(__file__).resolve().parents[1]
TINY = [
    *TINY_DATA_FLAGS,
    "--data.init_args.batch_size",
    "8",
    *TINY_MODEL_FLAGS,
]


def _scalars(run_dir: Path) -> set[str]:
    ea = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "images": 0})
    ea.Reload()
    return set(ea.Tags()["scalars"]), set(ea.Tags()["images"])


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """`grpo fit` in a subprocess through the console script, as a user runs it."""
    out = tmp_path_factory.mktemp("cli")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    cmd = [
        str(Path(sys.executable).with_name("grpo")),
        "fit",
        "--config",
        str(ROOT / "configs/default.yaml"),
        *TINY,
        "--trainer.max_epochs",
        "2",
        "--trainer.log_every_n_steps",
        "1",
        "--trainer.logger.init_args.save_dir",
        str(out),
        "--trainer.logger.init_args.name",
        "tiny",
    ]
    proc = subprocess.run(cmd, cwd=out, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return out / "tiny" / "version_0", proc


def test_fit_writes_every_tag_for_every_group(fitted):
    run_dir, _ = fitted
    groups = ["Avalon", "Brightwater", "Cedarholm", "Dunmore", "Eastvale"]
    scalars, images = _scalars(run_dir)
    missing = (set(train_tags(groups)) | set(eval_tags("val", groups))) - scalars
    assert not missing, sorted(missing)
    assert "train/group_weights" in images
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert (run_dir / "tokenizer" / "tokenizer.json").is_file()
    assert (run_dir / "config.yaml").is_file()
    # What the run trained on (callbacks/data_report.py): the groups and their N_g, as `grpo data` prints them.
    report = json.loads((run_dir / "data_report.json").read_text())
    assert list(report["groups"]) == groups and report["splits"]["train"] == 100


def test_group_weights_move_towards_the_worst_group(fitted):
    run_dir, _ = fitted
    ea = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    ea.Reload()
    first = {g: ea.Scalars(f"train/group_weight/{g}")[0].value for g in ("Avalon", "Eastvale")}
    last = {g: ea.Scalars(f"train/group_weight/{g}")[-1].value for g in ("Avalon", "Eastvale")}
    assert last != first, "the group-robust weights moved"
    total = sum(
        ea.Scalars(f"train/group_weight/{g}")[-1].value
        for g in ("Avalon", "Brightwater", "Cedarholm", "Dunmore", "Eastvale")
    )
    assert total == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("subcommand", ["validate", "test"])
def test_validate_and_test_from_the_checkpoint(fitted, subcommand, tmp_path):
    run_dir, _ = fitted
    cli = main(
        [
            subcommand,
            "--config",
            str(ROOT / "configs/default.yaml"),
            *TINY,
            "--ckpt_path",
            str(run_dir / "checkpoints/last.ckpt"),
            "--trainer.logger.init_args.save_dir",
            str(tmp_path),
        ]
    )
    stage = "val" if subcommand == "validate" else "test"
    metrics = cli.trainer.callback_metrics
    assert f"{stage}/worst_group_loss" in metrics
    per_group = [metrics[f"{stage}/loss/{g}"] for g in cli.model.group_names if f"{stage}/loss/{g}" in metrics]
    assert metrics[f"{stage}/worst_group_loss"] == max(per_group)


def test_predict_writes_a_csv(fitted, tmp_path):
    run_dir, _ = fitted
    out = tmp_path / "pred.csv"
    cli = main(
        [
            "predict",
            "--config",
            str(ROOT / "configs/default.yaml"),
            *TINY,
            "--ckpt_path",
            str(run_dir / "checkpoints/last.ckpt"),
            "--prediction_writer.output_path",
            str(out),
            "--trainer.logger.init_args.save_dir",
            str(tmp_path),
        ]
    )
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == len(cli.datamodule.dataset("test"))
    assert list(rows[0]) == [
        "index", "source_file", "source_row", "group", "prompt", "loss", "chosen_reward", "rejected_reward", "margin"
    ]  # fmt: skip
    r = rows[0]
    assert float(r["margin"]) == pytest.approx(float(r["chosen_reward"]) - float(r["rejected_reward"]), abs=1e-5)
    assert {row["group"] for row in rows} <= set(cli.model.group_names)
    # Each pair's source row is its row of the generated data (1-based): same prompt and group.
    source = cli.datamodule.generated.rows()
    assert {row["source_file"] for row in rows} == {"generated group opinions"}
    for row in rows:
        k = int(row["source_row"]) - 1
        assert (row["prompt"], row["group"]) == (source["prompt"][k], source["group"][k])


def test_trainer_accumulation_and_clipping_are_redirected(tmp_path):
    cli = main(
        [
            "--config",
            str(ROOT / "configs/default.yaml"),
            *TINY,
            "--trainer.accumulate_grad_batches",
            "2",
            "--trainer.gradient_clip_val",
            "1.0",
            "--trainer.logger.init_args.save_dir",
            str(tmp_path),
        ],
        run=False,
    )
    assert cli.model.hparams.accumulate_grad_batches == 2
    assert cli.datamodule.accumulate_grad_batches == 2
    assert cli.model.hparams.gradient_clip_val == 1.0
    assert cli.trainer.accumulate_grad_batches == 1 and cli.trainer.gradient_clip_val is None


CONFIGS = sorted(p.relative_to(ROOT) for p in (ROOT / "configs").rglob("*.yaml"))


def _external_model(config: Path) -> str | None:
    """Why a config's model or data cannot be built here (a hub id offline, a GGUF file not installed, FSDP without a
    GPU); the data recipes of configs/data/ are built on fixtures in their schemas by test_data_sources_comparisons.py."""
    data_args = ((composed_yaml(config).get("data") or {}).get("init_args")) or {}
    if data_args.get("hub_id") and not data_args.get("path"):
        return f"hub dataset {data_args['hub_id']} (offline)"
    strategy = (composed_yaml(config).get("trainer") or {}).get("strategy") or {}
    if "FSDP" in str(strategy.get("class_path", strategy)).upper() and not torch.cuda.is_available():
        return "FSDP (configs/base/fsdp.yaml): Lightning refuses it without a GPU; scripts/gpu_smoke.sh runs it on one"
    policy = (composed_yaml(config).get("model") or {}).get("policy") or {}
    args = policy.get("init_args") or {}
    gguf, name = args.get("gguf_file"), args.get("name_or_path")
    if gguf and str(gguf).startswith("package://"):
        return f"GGUF file {gguf} inside a package (a real model: too slow to load for every test run)"
    if gguf and not (ROOT / gguf).is_file() and not Path(gguf).is_file():
        return f"GGUF file {gguf} is not installed"
    if name and not str(name).startswith("$") and not Path(name).exists():
        return f"hub model {name} (offline)"
    return None


@pytest.mark.parametrize("config", CONFIGS, ids=str)
def test_every_config_parses_and_instantiates(config, tmp_path, goqa_csv):
    """Each YAML on its own, with its bases (overlays and bases fall back to the defaults for the rest); configs
    with GOQA data read a small GOQA-schema file the test writes. A config whose model needs the hub or a file
    that is not installed is parsed and validated but not instantiated."""
    data_class = ((composed_yaml(ROOT / config).get("data") or {}).get("class_path") or "").rsplit(".", 1)[-1]
    if data_class == "GlobalOpinionQADataModule":
        extra = ["--data.path", str(goqa_csv)]
    elif data_class == "BanditDataModule":
        extra = []
    else:
        extra = TINY
    external = _external_model(ROOT / config)
    cli = main(
        [
            "--config",
            str(ROOT / config),
            *extra,
            "--trainer.logger",
            "false",
            "--trainer.default_root_dir",
            str(tmp_path),
        ],
        run=False,
        instantiate=external is None,
    )
    if external is not None:
        assert cli.config.data.class_path, external
        loss = cli.config.model.loss  # None in a base that leaves the loss to the experiment
        assert loss is None or loss.class_path.rpartition(".")[2] in ("IPO", "DPO", "SFT"), external
        return
    assert cli.model.group_names == cli.datamodule.group_names
    assert len(cli.model.hparams.group_counts) == len(cli.model.group_names)


def test_bad_setting_stops_at_startup_naming_it(tmp_path):
    with pytest.raises(ValueError, match="model.loss.beta"):
        main(["--config", str(ROOT / "configs/default.yaml"), *TINY, "--model.loss.beta", "-1"], run=False)
    with pytest.raises(ValueError, match="model.weighting.chi"):
        main(["--config", str(ROOT / "configs/default.yaml"), *TINY, "--model.weighting.chi", "2"], run=False)


def test_ckpt_path_last_finds_the_newest_version(tmp_path):
    """With per-version checkpoint folders, `--ckpt_path last` means the newest run's last.ckpt."""
    import os

    from grpo_lightning.cli.resume import latest_last_checkpoint

    logger = {"class_path": "TensorBoardLogger", "init_args": {"save_dir": str(tmp_path), "name": "run"}}
    with pytest.raises(FileNotFoundError, match="ckpt_path last"):
        latest_last_checkpoint(logger)
    for i, mtime in ((0, 100), (1, 300), (2, 200)):
        f = tmp_path / "run" / f"version_{i}" / "checkpoints" / "last.ckpt"
        f.parent.mkdir(parents=True)
        f.write_bytes(b"x")
        os.utime(f, (mtime, mtime))
    assert latest_last_checkpoint(logger).endswith("version_1/checkpoints/last.ckpt")


def test_fit_without_a_logger(tmp_path):
    """`--trainer.logger false` (Lightning's way to log nothing): the learning-rate monitor, which Lightning refuses
    without a logger, is left out; the run trains, validates, checkpoints and writes its summary in the root dir."""
    main(
        [
            "fit", "--config", str(ROOT / "configs/default.yaml"), *TINY,
            "--trainer.logger", "false", "--trainer.default_root_dir", str(tmp_path),
            "--trainer.limit_train_batches", "3", "--trainer.max_epochs", "1", "--trainer.enable_progress_bar", "false",
        ]
    )  # fmt: skip
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()
    assert (tmp_path / "summary_val.json").is_file()
    assert not any(tmp_path.rglob("events.out.tfevents.*"))


def test_help_ends_by_saying_where_the_template_options_are(capsys):
    with pytest.raises(SystemExit):
        main(["fit", "--help"], run=False)
    text = capsys.readouterr().out
    epilog = text[text.index("The template's own settings") :]
    for pointer in ("--model.loss.beta", "--model.policy.help CausalLM", "--data.help PreferenceDataModule"):
        assert pointer in epilog
    with pytest.raises(SystemExit):
        main(["fit", "--data.help", "PreferenceDataModule"], run=False)
    data_help = capsys.readouterr().out
    assert "--data.path" in data_help and "--data.group_by_length" in data_help


def test_runs_without_a_logger_in_one_folder_keep_each_config(monkeypatch, tmp_path, caplog):
    """``--trainer.logger false`` writes into ``default_root_dir``: a second run there writes ``config-v1.yaml``
    (Lightning's SaveConfigCallback stopped it with a RuntimeError), and ``--ckpt_path last`` looks in
    ``<default_root_dir>/checkpoints`` (not in ``lightning_logs/``)."""
    from grpo_lightning.cli.app import main

    monkeypatch.chdir(tmp_path)
    main(["fit", *TINY_CLI])
    assert (tmp_path / "config.yaml").is_file() and (tmp_path / "checkpoints/last.ckpt").is_file()
    with caplog.at_level(logging.INFO):
        cli = main(["fit", *TINY_CLI, "--trainer.max_steps", "2", "--ckpt_path", "last"])
    assert (tmp_path / "config-v1.yaml").is_file()
    assert cli.config.fit.ckpt_path == str(tmp_path / "checkpoints/last.ckpt") and cli.trainer.global_step == 2
