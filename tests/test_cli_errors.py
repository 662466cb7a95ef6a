"""cli/errors.py: a user error at the `grpo` command is one line, `grpo: error: …` naming the setting, file or row."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import TINY_CLI, grpo_error, pair_rows, write_jsonl

ROOT = Path(__file__).resolve().parents[1]
_rows, _jsonl, _grpo_error = pair_rows, write_jsonl, grpo_error


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model.weighting.step_size", "nan"], "model.weighting.step_size must be a finite number, got nan"),
        (["--model.loss.beta=-inf"], "model.loss.beta must be a finite number, got -inf"),
        (["--model.weighting.step_size", ".inf"], "model.weighting.step_size must be a finite number >= 0, got inf"),
        (["--model.loss.beta", "-1"], "model.loss.beta must be a finite number > 0, got -1.0"),
        (["--data.init_args.batch_size", "abc"], "data.batch_size: expected int, got 'abc'"),
        (["--data.init_args.batch_size", "0"], "data.batch_size and data.eval_batch_size must be >= 1"),
        (["--data.init_args.path", "/no/such.jsonl"], "data.path: /no/such.jsonl does not exist"),
        (["--data.init_args.tokenizer", "/no/such/dir"], "data.tokenizer: /no/such/dir does not exist"),
        (["--no_such_option", "1"], "unrecognized arguments"),
        (["--trainer.max_steps", "-2"], "trainer.max_steps must be -1 (no limit) or >= 0, got -2"),
        (["--seed_everything", "abc"], "seed_everything: expected bool or int, got 'abc'"),
        (["--model.loss", "dpo"], "model.loss: unknown 'dpo'; choose one of DPO, IPO, Hinge, Exponential,"),
        (["--model.weighting", "robust"], "model.weighting: unknown 'robust'; choose one of UniformWeighting,"),
    ],
)
def test_grpo_errors_are_one_line_naming_the_setting(monkeypatch, capsys, tmp_path, args, message):
    line = _grpo_error(monkeypatch, capsys, tmp_path, *args)
    assert line.startswith("grpo: error: ") and message in line


def test_a_yaml_syntax_error_names_the_file_and_line(monkeypatch, capsys, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("trainer:\n  max_steps: [1\n  x: 2\n")
    line = _grpo_error(monkeypatch, capsys, tmp_path, "--config", str(bad))
    assert line.startswith(f"grpo: error: {bad}, line 3, column 4: not valid YAML (while parsing a flow sequence")


def test_grpo_data_error_names_file_row_and_field(monkeypatch, capsys, tmp_path):
    rows = _rows()
    rows[4]["rejected"] = 7
    path = _jsonl(tmp_path / "d.jsonl", rows)
    line = _grpo_error(monkeypatch, capsys, tmp_path, "--data.init_args.path", str(path))
    assert line == f"grpo: error: {path}, row 5, field 'rejected': expected text, got int 7. " + (
        "Every prompt/chosen/rejected value must be a string."
    )


def test_grpo_error_without_traceback_in_a_real_process_and_with_one_on_request(tmp_path):
    import os
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "grpo_lightning.cli.app", "fit", *TINY_CLI, "--model.loss.beta", "-1"]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    env.pop("GRPO_TRACEBACK", None)
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and "usage:" not in proc.stderr
    assert "grpo: error: model.loss.beta must be a finite number > 0, got -1.0\n" in proc.stderr
    proc = subprocess.run(cmd, cwd=tmp_path, env={**env, "GRPO_TRACEBACK": "1"}, capture_output=True, text=True)
    assert proc.returncode == 1 and "Traceback" in proc.stderr and "model.loss.beta" in proc.stderr
