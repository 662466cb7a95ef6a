"""DDP through the ``grpo`` command as a user runs it: ``--trainer.strategy ddp --trainer.devices 2
--trainer.accelerator cpu`` (gloo), each command a real subprocess that Lightning re-launches once per rank.

Every collective must be reached by every rank: Lightning's ``trainer.log_dir`` is one (rank 0
broadcasts it), and a read of it on rank 0 alone hung ``fit`` or failed it at teardown."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import TINY_DATA_FLAGS, TINY_MODEL_FLAGS

ROOT = Path(__file__).resolve().parents[1]
DDP = ["--trainer.strategy", "ddp", "--trainer.devices", "2", "--trainer.accelerator", "cpu"]
SMALL = [
    "--config",
    str(ROOT / "configs/default.yaml"),
    *TINY_DATA_FLAGS,
    "--data.init_args.batch_size",
    "8",
    *TINY_MODEL_FLAGS,
    "--trainer.enable_progress_bar",
    "false",
    "--trainer.enable_model_summary",
    "false",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env() -> dict[str, str]:
    env = {
        **os.environ,
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(_free_port()),
        "OMP_NUM_THREADS": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
    }
    for k in ("LOCAL_RANK", "NODE_RANK", "WORLD_SIZE", "RANK", "GROUP_RANK"):
        env.pop(k, None)
    return env


def _grpo(cwd: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", "grpo_lightning.cli.app", *args],
        cwd=cwd,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, f"grpo {' '.join(args)} exited {proc.returncode}:\n{proc.stderr[-6000:]}"
    return proc


@pytest.mark.slow
@pytest.mark.distributed
def test_fit_test_and_predict_under_ddp_finish_and_write_their_files(tmp_path):
    logs = ["--trainer.logger.init_args.save_dir", str(tmp_path / "logs"), "--trainer.logger.init_args.name", "ddp"]
    _grpo(tmp_path, "fit", *SMALL, *DDP, *logs, "--trainer.max_steps", "4", "--trainer.val_check_interval", "2")
    run = tmp_path / "logs/ddp/version_0"
    ckpt = run / "checkpoints/last.ckpt"
    assert (run / "tokenizer").is_dir() and (run / "summary_val.json").is_file()
    assert torch.load(ckpt, weights_only=True)["global_step"] == 4
    _grpo(tmp_path, "test", *SMALL, *DDP, *logs, "--ckpt_path", str(ckpt))
    assert (tmp_path / "logs/ddp/version_1/summary_test.json").is_file()
    _grpo(tmp_path, "predict", *SMALL, *DDP, *logs, "--ckpt_path", str(ckpt), "--data.init_args.predict_split", "test")
    predictions = (tmp_path / "logs/ddp/version_2/predictions.csv").read_text().splitlines()
    assert len(predictions) > 1 and predictions[0].startswith("index,")


@pytest.mark.slow
@pytest.mark.distributed
def test_fit_and_validate_under_ddp_without_a_logger(tmp_path):
    """No logger: both commands write into ``default_root_dir``; ``--ckpt_path last`` finds the checkpoint
    there, and the second command's config is ``config-v1.yaml`` (not Lightning's refusal)."""
    out = tmp_path / "out"
    no_logger = ["--trainer.logger", "false", "--trainer.default_root_dir", str(out)]
    _grpo(tmp_path, "fit", *SMALL, *DDP, *no_logger, "--trainer.max_steps", "2", "--trainer.limit_val_batches", "1")
    assert (out / "checkpoints/last.ckpt").is_file() and (out / "config.yaml").is_file()
    _grpo(tmp_path, "validate", *SMALL, *DDP, *no_logger, "--ckpt_path", "last")
    assert (out / "config-v1.yaml").is_file()


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.slow
@pytest.mark.distributed
def test_sigterm_under_ddp_checkpoints_the_step_and_resume_last_equals_uninterrupted(tmp_path):
    """SIGTERM to the launching process (rank 0) of a 2-rank ``fit``: every rank stops after the same step
    (rank 1 never gets the signal; the ranks agree by an all-reduce), ``last.ckpt`` holds that step, the
    command exits 143 and no rank is left behind; ``--ckpt_path last`` then ends with the weights, log α
    and optimizer state of an uninterrupted 2-rank run, bitwise."""
    from test_training_checkpoints import _assert_same_state

    steps = 12
    run = [*SMALL, *DDP, "--trainer.max_steps", str(steps), "--checkpoint.every_n_train_steps", "3"]
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    straight.mkdir()
    stopped.mkdir()
    logs = lambda root: ["--trainer.logger.init_args.save_dir", str(root / "logs")]  # noqa: E731
    _grpo(straight, "fit", *run, *logs(straight))

    ckpt = stopped / "logs/default/version_0/checkpoints/last.ckpt"
    proc = subprocess.Popen(
        [sys.executable, "-m", "grpo_lightning.cli.app", "fit", *run, *logs(stopped)],
        cwd=stopped,
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,  # its own process group: rank 0 and the rank it launches
    )
    try:
        deadline = time.monotonic() + 240
        while not ckpt.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        assert ckpt.exists(), "no checkpoint at step 3"
        os.kill(proc.pid, signal.SIGTERM)  # rank 0 only, the child we started, by its id
        _, err = proc.communicate(timeout=120)
        err = err.decode()[-6000:]
        assert proc.returncode == 128 + signal.SIGTERM, (proc.returncode, err)
        deadline = time.monotonic() + 30
        while _group_alive(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _group_alive(proc.pid), f"a rank is still running after rank 0 exited:\n{err}"
    finally:
        if _group_alive(proc.pid):
            os.killpg(proc.pid, signal.SIGKILL)  # the group we started
            proc.wait()
    step = torch.load(ckpt, weights_only=True)["global_step"]
    assert 3 < step < steps, (step, err)

    _grpo(stopped, "fit", *run, *logs(stopped), "--ckpt_path", "last")
    a = torch.load(straight / "logs/default/version_0/checkpoints/last.ckpt", weights_only=True)
    b = torch.load(stopped / "logs/default/version_1/checkpoints/last.ckpt", weights_only=True)
    assert a["global_step"] == b["global_step"] == steps
    assert "log_alpha" in a["state_dict"]
    _assert_same_state(a["state_dict"], b["state_dict"], "state_dict")
    _assert_same_state(a["optimizer_states"], b["optimizer_states"], "optimizer_states")
