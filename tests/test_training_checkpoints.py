"""training/checkpoints.py: every checkpoint read with ``weights_only=True`` (a remote one, a pickled payload and a
file cut short refused, naming it), none written under ``fast_dev_run``; and interrupted runs: a ``grpo fit`` killed
with SIGKILL, or stopped by SIGTERM or SIGINT (Ctrl-C), in the middle of an epoch and resumed with ``--ckpt_path
last`` ends exactly (bitwise, on CPU) where an uninterrupted run with the same seed ends: parameters, log α,
optimizer and scheduler state, loop progress, the callbacks' states and the logged metrics (see ``_compare_metrics``
for the two rows Lightning's logging order can leave out)."""

from __future__ import annotations

import contextlib
import csv
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
import yaml
from conftest import TINY_DATA_FLAGS, fit_quietly, grpo_error
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from grpo_lightning.core.weighting import RobustWeighting

ROOT = Path(__file__).resolve().parents[1]
_fit, _grpo_error = fit_quietly, grpo_error

STEPS_PER_EPOCH = 7  # 60 generated pairs split 80/10/10 by prompt hash → 49 training pairs, batch 8
KILL_AFTER_STEP = 8  # in the middle of the second epoch

CONFIG = """\
seed_everything: 0
trainer:
  max_epochs: 2
  accelerator: cpu
  devices: 1
  log_every_n_steps: 1
  enable_progress_bar: false
  enable_model_summary: false
  num_sanity_val_steps: 0
  logger:
    class_path: lightning.pytorch.loggers.CSVLogger
    init_args: {{save_dir: {root}/logs, name: run, version: 0, flush_logs_every_n_steps: 1}}
model:
  policy:
    class_path: grpo_lightning.policies.CausalLM
    init_args:
      tiny: {{hidden_size: 32, num_hidden_layers: 1, num_attention_heads: 2, intermediate_size: 64}}
  loss: {{class_path: grpo_lightning.core.losses.IPO, init_args: {{beta: 0.1}}}}
  weighting: {{class_path: grpo_lightning.core.weighting.RobustWeighting, init_args: {{step_size: 0.1}}}}
  optimizer:
    class_path: torch.optim.AdamW
    init_args: {{lr: 0.003}}
data:
  class_path: grpo_lightning.data.PreferenceDataModule
  init_args:
    generated: {{num_pairs: 60, val_questions: 0, test_questions: 0}}
    max_length: 64
    max_prompt_length: 56
    batch_size: 8
checkpoint:
  dirpath: {root}/checkpoints
  every_n_train_steps: 1
  save_top_k: -1
"""


# The same run with the CLI's default checkpoint settings and log versions.
DEFAULT_CONFIG = CONFIG[: CONFIG.index("checkpoint:")].replace(", version: 0", "")


def _write_config(root: Path, template: str = CONFIG) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    cfg = root / "config.yaml"
    cfg.write_text(template.format(root=root))
    return cfg


def _child_env() -> dict[str, str]:
    return {
        **os.environ,
        "TOKENIZERS_PARALLELISM": "false",
        "OMP_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1] / "src"), os.environ.get("PYTHONPATH", "")]),
    }


def _fit_in_process(cfg: Path, *extra: str) -> None:
    from grpo_lightning.cli.app import main

    main(["fit", "--config", str(cfg), *extra])


def _metrics(root: Path) -> dict[tuple[int, int], dict[str, str]]:
    """Every logged value by (epoch, step), over all log versions of a run. A step logged again
    after the resume must hold the same values."""
    out: dict[tuple[int, int], dict[str, str]] = {}
    for version in sorted((root / "logs/run").glob("version_*")):
        with (version / "metrics.csv").open() as f:
            for row in csv.DictReader(f):
                key = (int(row["epoch"] or -1), int(row["step"]))
                values = {k: v for k, v in row.items() if v not in ("", None) and k not in ("epoch", "step")}
                merged = out.setdefault(key, {})
                for k, v in values.items():
                    assert merged.setdefault(k, v) == v, f"{k} at {key} logged twice with other values"
    return out


def _compare_metrics(straight: dict, resumed: dict, ckpt_step: int) -> None:
    """The killed + resumed logs hold the uninterrupted run's values, with two exceptions that
    come from Lightning, not from the state: (1) the row of the checkpointed step itself is
    written after its checkpoint (``on_train_batch_end``), so a kill in between loses it;
    (2) Lightning re-logs the previous value of a metric not logged in a step (a group absent
    from a batch), and a resumed process has no previous value to repeat."""
    lost = {(1, ckpt_step - 1)}  # CSV step of optimizer step N is N - 1
    assert resumed.keys() <= straight.keys(), resumed.keys() - straight.keys()
    assert straight.keys() - resumed.keys() <= lost, straight.keys() - resumed.keys()
    steps = sorted(straight)
    for key in resumed:
        for name, value in resumed[key].items():
            assert straight[key].get(name) == value, (key, name, straight[key].get(name), value)
        for name in straight[key].keys() - resumed[key].keys():
            prev = [straight[k][name] for k in steps if k < key and name in straight[k]]
            assert name.startswith("train/group_loss/") and prev and prev[-1] == straight[key][name], (key, name)


def _assert_same_state(a: dict, b: dict, path: str = "") -> None:
    assert type(a) is type(b), path
    if isinstance(a, dict):
        assert a.keys() == b.keys(), (path, a.keys() ^ b.keys())
        for k in a:
            _assert_same_state(a[k], b[k], f"{path}/{k}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_same_state(x, y, f"{path}[{i}]")
    elif isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape, path
        assert torch.equal(a, b), f"{path} differs (max abs diff {(a.double() - b.double()).abs().max()})"
    else:
        assert a == b, (path, a, b)


def _kill_when(proc: subprocess.Popen, ckpt: Path, timeout: float, seen: dict) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        last = ckpt.parent / "last.ckpt"
        # Killing once last.ckpt holds the target step is the worst moment: that step's metrics
        # row is not written yet.
        if ckpt.exists() and last.exists() and last.stat().st_mtime_ns >= ckpt.stat().st_mtime_ns:
            os.kill(proc.pid, signal.SIGKILL)  # the child we started, by its id
            seen["killed"] = True
            return
        time.sleep(0.001)


@contextlib.contextmanager
def _child_beside_straight_run(cfg_child: Path, cfg_straight: Path, watch, *watch_args):
    """The real CLI fits ``cfg_child`` in a child process while ``watch(proc, *watch_args, 120 s, seen)``
    interrupts it from a thread; meanwhile the uninterrupted run fits ``cfg_straight`` in this process
    (2 cores), with the child's single thread so the arithmetic is the same. Yields the finished child,
    what the watcher saw and the end of its stderr; the child is killed if still running on exit."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "grpo_lightning.cli.app", "fit", "--config", str(cfg_child)],
        env=_child_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    seen: dict = {}
    watcher = threading.Thread(target=watch, args=(proc, *watch_args, 120.0, seen))
    watcher.start()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _fit_in_process(cfg_straight)
        watcher.join()
        _, err = proc.communicate(timeout=60)
        yield proc, seen, err.decode()[-3000:]
    finally:
        torch.set_num_threads(threads)
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_last_equals_uninterrupted(tmp_path, monkeypatch):
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    cfg_straight, cfg_killed = _write_config(straight), _write_config(killed)
    target = killed / "checkpoints" / f"epoch=1-step={KILL_AFTER_STEP}.ckpt"
    with _child_beside_straight_run(cfg_killed, cfg_straight, _kill_when, target) as (proc, seen, err):
        assert seen.get("killed"), f"the child ended before step {KILL_AFTER_STEP}: {err}"
        assert proc.returncode == -signal.SIGKILL
        assert not (killed / "checkpoints" / f"epoch=1-step={2 * STEPS_PER_EPOCH}.ckpt").exists()
        last = torch.load(killed / "checkpoints" / "last.ckpt", weights_only=True)
        step = last["global_step"]
        assert step % STEPS_PER_EPOCH != 0, f"killed at an epoch boundary (step {step}); the test wants mid-epoch"
        _assert_loader_state_resumes_after(last, step)
        collated = _count_training_batches_collated(monkeypatch)
        # A new log version (as the default TensorBoard logger makes); the checkpoint directory is
        # fixed (checkpoint.dirpath), which is what lets `--ckpt_path last` find last.ckpt.
        _fit_in_process(cfg_killed, "--ckpt_path", "last", "--trainer.logger.init_args.version", "1")
        # The resumed run loaded and collated only the batches it trained on, not the ones before the checkpoint.
        assert len(collated) == 2 * STEPS_PER_EPOCH - step, (len(collated), step)

    _assert_same_run(straight / "checkpoints" / "last.ckpt", killed / "checkpoints" / "last.ckpt")
    # Every logged per-step metric (train losses and weights per group, validation metrics).
    _compare_metrics(_metrics(straight), _metrics(killed), step)


def _count_training_batches_collated(monkeypatch) -> list[int]:
    """From now on in this process, the size of every batch the training loader collates."""
    from grpo_lightning.data import module

    collated: list[int] = []
    make = module.training_loader

    def counting(dataset, sampler, batch_size, collate_fn, num_workers):
        def collate(rows):
            collated.append(len(rows))
            return collate_fn(rows)

        return make(dataset, sampler, batch_size, collate, num_workers)

    monkeypatch.setattr(module, "training_loader", counting)
    return collated


def _assert_loader_state_resumes_after(ckpt: dict, step: int) -> None:
    """The training loader's state in ``ckpt`` (Lightning keeps it under ``loops.fit_loop.state_dict``), loaded
    into a fresh loader of the run's data as Lightning loads it, yields exactly the batches of epoch 1 after the
    first ``step - STEPS_PER_EPOCH`` of an uninterrupted epoch."""
    from grpo_lightning.data import GeneratedOpinions, PreferenceDataModule

    states = ckpt["loops"]["fit_loop"]["state_dict"]["combined_loader"]
    assert len(states) == 1, states
    dm = PreferenceDataModule(  # the data of CONFIG
        generated=GeneratedOpinions(num_pairs=60, val_questions=0, test_questions=0),
        max_length=64, max_prompt_length=56, batch_size=8,
    )  # fmt: skip
    straight = dm.train_dataloader()
    straight.sampler.set_epoch(1)
    epoch = [b["index"].tolist() for b in straight]
    assert len(epoch) == STEPS_PER_EPOCH
    resumed = dm.train_dataloader()
    resumed.load_state_dict(states[0])
    batches = iter(resumed)  # Lightning creates the iterator before it sets the epoch
    resumed.sampler.set_epoch(1)
    assert [b["index"].tolist() for b in batches] == epoch[step - STEPS_PER_EPOCH :]


def _file_names(state):
    """``state`` with every path (a string with a folder in it, also as a dict key) cut to its file name."""
    name = lambda v: Path(v).name if isinstance(v, str) and os.sep in v else v  # noqa: E731
    if isinstance(state, dict):
        return {name(k): _file_names(v) for k, v in state.items()}
    if isinstance(state, list | tuple):
        return type(state)(_file_names(v) for v in state)
    return name(state)


def _assert_same_run(path_a: Path, path_b: Path) -> None:
    a, b = torch.load(path_a, weights_only=True), torch.load(path_b, weights_only=True)
    assert a["global_step"] == b["global_step"] == 2 * STEPS_PER_EPOCH
    # Parameters and log α, optimizer and scheduler state, callback states: bitwise.
    _assert_same_state(a["state_dict"], b["state_dict"], "state_dict")
    assert "log_alpha" in a["state_dict"]
    _assert_same_state(a["optimizer_states"], b["optimizer_states"], "optimizer_states")
    _assert_same_state(a["lr_schedulers"], b["lr_schedulers"], "lr_schedulers")
    # Every callback state the uninterrupted run saves, the resumed one saves alike, but for the checkpoint
    # files' folders (each run's own); the group-weight figure saves none: it reads the logged scalars back.
    _assert_same_state(_file_names(a["callbacks"]), _file_names(b["callbacks"]), "callbacks")
    assert not any("GroupWeightFigure" in key for key in a["callbacks"]), a["callbacks"].keys()
    _assert_same_state(a["loops"]["fit_loop"]["epoch_progress"], b["loops"]["fit_loop"]["epoch_progress"], "epochs")


def _logged_step(metrics_csv: Path) -> int:
    """The last optimizer step whose metrics row the child has written (CSV step N - 1)."""
    try:
        # One read: the logger rewrites the whole file (a new header) when a new metric appears, so a header and
        # rows from two reads may not match.
        lines = metrics_csv.read_text().splitlines()
    except FileNotFoundError:
        return 0
    header = lines[0].split(",") if lines else []
    if "step" not in header:
        return 0
    col = header.index("step")
    rows = (line.split(",") for line in lines[1:])
    # A row caught half-written may lack its step or hold part of another field there.
    return max((int(r[col]) + 1 for r in rows if len(r) == len(header) and r[col].isdigit()), default=0)


def _signal_when(proc: subprocess.Popen, metrics_csv: Path, signum: int, timeout: float, seen: dict) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if _logged_step(metrics_csv) >= KILL_AFTER_STEP:
            os.kill(proc.pid, signum)  # the child we started, by its id
            seen["sent"] = True
            return
        time.sleep(0.001)


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_mid_epoch_checkpoints_that_step_and_resume_last_equals_uninterrupted(tmp_path, signum):
    """With the CLI's default checkpoint settings (no per-step checkpoints in 12 steps): SIGTERM or
    Ctrl-C in the middle of the second epoch finishes the step in progress, writes ``last.ckpt``
    of that step and exits non-zero (128 + the signal); ``--ckpt_path last`` then resumes into a
    new log version and ends bitwise where the uninterrupted run ends."""
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    cfg_straight = _write_config(straight, DEFAULT_CONFIG)
    cfg_stopped = _write_config(stopped, DEFAULT_CONFIG)
    metrics_csv = stopped / "logs/run/version_0/metrics.csv"
    with _child_beside_straight_run(cfg_stopped, cfg_straight, _signal_when, metrics_csv, signum) as (proc, seen, err):
        assert seen.get("sent"), f"the child ended before step {KILL_AFTER_STEP}: {err}"
        assert proc.returncode == 128 + signum, (proc.returncode, err)
        last = torch.load(stopped / "logs/run/version_0/checkpoints/last.ckpt", weights_only=True)
        step = last["global_step"]
        # The step in progress when the signal came (the child may have been between two steps).
        assert KILL_AFTER_STEP <= step <= KILL_AFTER_STEP + 1, (step, err)
        _assert_loader_state_resumes_after(last, step)
        _fit_in_process(cfg_stopped, "--ckpt_path", "last")
    assert (stopped / "logs/run/version_1/checkpoints/last.ckpt").is_file()
    _assert_same_run(
        straight / "logs/run/version_0/checkpoints/last.ckpt", stopped / "logs/run/version_1/checkpoints/last.ckpt"
    )
    _compare_metrics(_metrics(straight), _metrics(stopped), step)


@pytest.mark.slow
@pytest.mark.parametrize(
    "flags",
    [[], ["--checkpoint.every_n_train_steps", str(STEPS_PER_EPOCH)], ["--trainer.val_check_interval", "0.5"]],
    ids=["epoch-end-validation", "step-trigger-on-the-last-batch", "mid-epoch-validations"],
)
def test_resume_from_an_end_of_epoch_checkpoint_equals_uninterrupted(tmp_path, flags):
    """``last.ckpt`` written at the end of epoch 0 (after its validation, when the step trigger
    falls on its last batch, or with validations in the middle of the epoch too) resumes exactly:
    a 1-epoch run leaves that checkpoint, and resuming it for a second epoch ends where a 2-epoch
    run ends (the epoch-mean loss and the logged metrics included)."""
    steps = flags
    straight, first = tmp_path / "straight", tmp_path / "first"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _fit_in_process(_write_config(straight, DEFAULT_CONFIG), *steps)
        cfg = _write_config(first, DEFAULT_CONFIG)
        _fit_in_process(cfg, "--trainer.max_epochs", "1", *steps)
        ckpt = torch.load(first / "logs/run/version_0/checkpoints/last.ckpt", weights_only=True)
        assert ckpt["global_step"] == STEPS_PER_EPOCH
        _fit_in_process(cfg, "--ckpt_path", "last", *steps)
    finally:
        torch.set_num_threads(threads)
    _assert_same_run(
        straight / "logs/run/version_0/checkpoints/last.ckpt", first / "logs/run/version_1/checkpoints/last.ckpt"
    )
    _compare_metrics(_metrics(straight), _metrics(first), STEPS_PER_EPOCH)


# The default run logged to TensorBoard (every step), as the CLI's default logger does.
TENSORBOARD_CONFIG = DEFAULT_CONFIG.replace(
    "lightning.pytorch.loggers.CSVLogger", "lightning.pytorch.loggers.TensorBoardLogger"
).replace(", flush_logs_every_n_steps: 1", "")


def _custom_scalar_layouts(run_dir: Path) -> list:
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.plugins.custom_scalar import layout_pb2

    layouts = []
    for path in sorted(run_dir.glob("events.out.tfevents.*")):
        for event in EventFileLoader(str(path)).Load():
            for value in event.summary.value:
                if value.tag == "custom_scalars__config__":
                    layouts.append(layout_pb2.Layout.FromString(value.tensor.string_val[0]))
    return layouts


@pytest.mark.slow
def test_weight_figure_of_a_resumed_run_covers_both_parts_without_checkpoint_state(tmp_path):
    """A run stopped after its first epoch and resumed with ``--ckpt_path last`` (into a new log
    version, as by default): each version holds the custom-scalar chart of every group's weight
    tag, the resumed version's figure is drawn from the scalars of both versions (every step,
    once), and no checkpoint holds state of the figure."""
    from grpo_lightning.callbacks.figures import GroupWeightFigure

    run = tmp_path / "run"
    cfg = _write_config(run, TENSORBOARD_CONFIG)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _fit_in_process(cfg, "--trainer.max_epochs", "1")
        _fit_in_process(cfg, "--ckpt_path", "last")
    finally:
        torch.set_num_threads(threads)
    first, second = run / "logs/run/version_0", run / "logs/run/version_1"
    groups = yaml.safe_load((first / "hparams.yaml").read_text())["group_names"]
    for version in (first, second):
        (layout,) = _custom_scalar_layouts(version)
        (chart,) = layout.category[0].chart
        assert chart.multiline.tag == [f"^{re.escape(f'train/group_weight/{g}')}$" for g in groups]
        ckpt = torch.load(version / "checkpoints/last.ckpt", weights_only=True)
        assert not any("GroupWeightFigure" in key for key in ckpt["callbacks"]), ckpt["callbacks"].keys()
    assert (second / GroupWeightFigure.RESUMED_FROM).read_text().strip() == str(
        (first / "checkpoints/last.ckpt").resolve()
    )
    assert ckpt["global_step"] == 2 * STEPS_PER_EPOCH
    history = GroupWeightFigure.history(second, groups)
    # Step N's scalars are logged at step N - 1 (as in the CSV); the first part logged 0-5, the second 6-11.
    for g in groups:
        assert [s for s, _ in history[g]] == list(range(2 * STEPS_PER_EPOCH)), (g, history[g])
    assert [s for s, _ in GroupWeightFigure.history(first, groups)[groups[0]]] == list(range(STEPS_PER_EPOCH))
    ea = EventAccumulator(str(second), size_guidance={"images": 0})
    ea.Reload()
    assert ea.Images("train/group_weights")[-1].step == 2 * STEPS_PER_EPOCH


def test_checkpoint_loads_with_weights_only(tmp_path, tiny_dm_factory, make_module):
    """Hyperparameters and the extra checkpoint entries are plain data: ``torch.load`` with
    ``weights_only=True`` (what Lightning 2.6 uses for local ``ckpt_path`` under torch >= 2.6)."""
    dm = tiny_dm_factory(batch_size=16)
    module = make_module(dm, weighting=RobustWeighting())
    trainer = _fit(module, dm, max_steps=1)
    trainer.save_checkpoint(tmp_path / "a.ckpt")
    ckpt = torch.load(tmp_path / "a.ckpt", weights_only=True)
    assert ckpt["group_names"] == dm.group_names and "log_alpha" in ckpt["state_dict"]
    assert isinstance(ckpt["hyper_parameters"]["policy"], dict)
    restored = type(module).load_from_checkpoint(tmp_path / "a.ckpt", tokenizer=dm.tokenizer, weights_only=True)
    assert torch.equal(restored.log_alpha, module.log_alpha)
    _fit(make_module(dm, weighting=RobustWeighting()), dm, max_steps=2, ckpt_path=tmp_path / "a.ckpt")


class _Payload:
    """Unpickling it creates a file: the sign that loading a checkpoint ran code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_remote_checkpoint_is_refused_and_a_pickled_payload_never_runs(monkeypatch, capsys, tmp_path):
    """Lightning loads an http(s) ``ckpt_path`` with ``weights_only=False``: it is refused before any load. A local
    file with a pickled object is refused by ``weights_only=True`` (by the CLI's first read and by the trainer's
    checkpoint IO), and the payload does not run."""
    line = _grpo_error(monkeypatch, capsys, tmp_path, "--ckpt_path", "http://127.0.0.1:9/evil.ckpt")
    assert line == (
        "grpo: error: --ckpt_path http://127.0.0.1:9/evil.ckpt: a remote checkpoint is not loaded; download it "
        "and pass the local file (read with weights_only=True and checked against this run)"
    )
    marker = tmp_path / "ran"
    evil = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"x": _Payload(marker)}}, evil)
    line = _grpo_error(monkeypatch, capsys, tmp_path, "--ckpt_path", str(evil))
    assert f"checkpoint {evil} holds objects other than tensors and plain data; refused" in line
    from lightning.pytorch.plugins.io import TorchCheckpointIO

    from grpo_lightning.training.checkpoints import CheckpointError, NamedCheckpointIO

    io = NamedCheckpointIO(TorchCheckpointIO())
    with pytest.raises(CheckpointError, match="holds objects other than tensors"):
        io.load_checkpoint(evil)
    with pytest.raises(CheckpointError, match="weights_only=False is refused"):
        io.load_checkpoint(evil, weights_only=False)
    with pytest.raises(CheckpointError, match="remote checkpoint is not loaded"):
        io.load_checkpoint("https://example.org/a.ckpt")
    assert not marker.exists()


def test_unreadable_checkpoint_names_the_file(monkeypatch, capsys, tmp_path):
    whole = tmp_path / "whole.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(1000)}}, whole)
    cut = tmp_path / "cut.ckpt"
    cut.write_bytes(whole.read_bytes()[:2000])  # a copy cut short
    line = _grpo_error(monkeypatch, capsys, tmp_path, "--ckpt_path", str(cut))
    assert f"checkpoint {cut} cannot be read" in line and "truncated" in line
    # The same through the trainer's checkpoint IO (a checkpoint the CLI did not read first).
    from lightning.pytorch.plugins.io import TorchCheckpointIO

    from grpo_lightning.training.checkpoints import CheckpointError, NamedCheckpointIO

    with pytest.raises(CheckpointError, match=rf"checkpoint {cut} cannot be read"):
        NamedCheckpointIO(TorchCheckpointIO()).load_checkpoint(cut)


def test_the_debug_overlay_writes_no_files(monkeypatch, tmp_path):
    """configs/debug.yaml (fast_dev_run) writes neither logs nor checkpoints: Lightning's ``on_train_end`` used to
    write ``checkpoints/last.ckpt`` into the working directory, one more ``last-vN.ckpt`` per run."""
    from grpo_lightning.cli.app import main

    monkeypatch.chdir(tmp_path)
    debug = ["--config", str(ROOT / "configs/default.yaml"), "--config", str(ROOT / "configs/debug.yaml")]
    main(["fit", *debug, *TINY_DATA_FLAGS])
    assert list(tmp_path.iterdir()) == []
