"""`grpo-compare`: mean ± s.e. over runs from the summary files (or the event files), the paired
difference, and the launch mode."""

from __future__ import annotations

import json
import math
import os
import shutil
import statistics
import subprocess
from pathlib import Path

import pytest
from conftest import TINY_DATA_FLAGS, TINY_MODEL_FLAGS

from grpo_lightning.analysis import compare, launch
from grpo_lightning.cli.app import main as grpo

ROOT = Path(__file__).resolve().parents[1]


def _pm(values: list[float]) -> str:
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values) / math.sqrt(len(values)):.4f}"


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """Two tiny `grpo fit` runs of one method, seeds 0 and 1, as <root>/tiny/seed_<k>."""
    root = tmp_path_factory.mktemp("compare")
    for seed in (0, 1):
        grpo(
            [
                "fit",
                "--config",
                str(ROOT / "configs/default.yaml"),
                "--seed_everything",
                str(seed),
                *TINY_DATA_FLAGS,
                "--data.init_args.batch_size",
                "16",
                *TINY_MODEL_FLAGS,
                "--trainer.max_epochs",
                "1",
                "--trainer.log_every_n_steps",
                "1",
                "--trainer.logger.init_args.save_dir",
                str(root),
                "--trainer.logger.init_args.name",
                "tiny",
                "--trainer.logger.init_args.version",
                f"seed_{seed}",
            ]
        )
    return root


def test_compare_prints_mean_and_se_of_the_summaries(two_runs, capsys, tmp_path):
    figure = tmp_path / "compare.png"
    compare.main([str(two_runs / "tiny"), "--figure", str(figure)])
    out = capsys.readouterr().out
    summaries = [json.loads((two_runs / "tiny" / f"seed_{s}" / "summary_val.json").read_text()) for s in (0, 1)]
    lines = out.splitlines()
    row = lambda label: next(line for line in lines if line.startswith(label + " "))  # noqa: E731
    assert row("runs").split()[-1] == "2" and row("seeds").split()[-1] == "0,1"
    for g in [r["group"] for r in summaries[0]["groups"]]:
        per_run = [next(r for r in s["groups"] if r["group"] == g) for s in summaries]
        losses = [r["loss"] for r in per_run if r["pairs"]]
        accs = [r["reward_acc"] for r in per_run if r["pairs"]]
        if len(losses) == 2:
            assert row(f"loss {g}").removesuffix(" <- worst").endswith(_pm(losses))
            assert row(f"reward acc {g}").endswith(_pm(accs))
        assert row(f"weight {g}").endswith(_pm([r["weight"] for r in per_run]))
    mean_loss = {
        g: sum(next(r for r in s["groups"] if r["group"] == g)["loss"] for s in summaries) / 2
        for g in [r["group"] for r in summaries[0]["groups"] if r["pairs"]]
    }
    marked = [line.split()[1] for line in lines if line.startswith("loss ") and line.endswith("<- worst")]
    assert marked == [max(mean_loss, key=mean_loss.get)]
    worst = [max(r["loss"] for r in s["groups"] if r["pairs"]) for s in summaries]
    assert row("worst-group loss").endswith(_pm(worst))
    assert row("average loss").endswith(_pm([s["loss"] for s in summaries]))
    assert figure.stat().st_size > 0

    # Without the summary files the same numbers come from the TensorBoard event files.
    copy = tmp_path / "tb_only" / "tiny"
    shutil.copytree(two_runs / "tiny", copy)
    for f in copy.rglob("summary_*.json"):
        f.unlink()
    compare.main([str(copy)])
    assert capsys.readouterr().out == out


def _summary(run_dir: Path, seed: int | None, losses: dict[str, float | None], acc: float = 0.5) -> None:
    groups = [
        {"group": g, "pairs": 0 if v is None else 4, "loss": v, "reward_acc": None if v is None else acc}
        for g, v in losses.items()
    ]
    present = [v for v in losses.values() if v is not None]
    run_dir.mkdir(parents=True)
    summary = {"split": "val", "seed": seed, "loss": sum(present) / len(present), "groups": groups}
    (run_dir / "summary_val.json").write_text(json.dumps(summary))


def test_paired_difference_wins_n1_and_no_pairs(tmp_path, capsys):
    base = {0: (1.0, 2.0), 1: (1.5, 2.5), 2: (1.0, 3.0)}
    robust = {0: (1.2, 1.8), 1: (1.6, 2.6), 2: (1.1, 2.0)}
    for method, table in (("ipo", base), ("gripo", robust)):
        for seed, (a, b) in table.items():
            _summary(tmp_path / "logs" / method / f"version_{seed}", seed, {"A": a, "B": b, "C": None})
    compare.main([str(tmp_path / "logs" / "ipo"), str(tmp_path / "logs" / "gripo")])
    out = capsys.readouterr().out
    diffs = [robust[s][1] - base[s][1] for s in base]  # worst group is B everywhere
    assert f"gripo − ipo over 3 shared seed(s): {_pm(diffs)}; gripo lower on 2/3" in out
    assert next(line for line in out.splitlines() if line.startswith("loss C")).split()[2:] == ["no", "pairs"] * 2

    # --method NAME=GLOB overrides the logger name; one run gives the mean and n=1.
    _summary(tmp_path / "one" / "version_0", None, {"A": 0.25, "B": None, "C": None})
    compare.main([str(tmp_path / "one"), "--method", "single=*one*", "--markdown"])
    out = capsys.readouterr().out
    assert "| single |" in out and "| loss A | 0.2500 (n=1) <- worst |" in out and "| loss B | no pairs |" in out
    assert "paired" not in out


def test_launch_runs_each_config_and_seed_in_its_own_dir(tmp_path, monkeypatch, capsys):
    calls = []

    def fake_run(cmd, **kwargs):
        calls.append(cmd)
        args = dict(zip(cmd, cmd[1:], strict=False))
        run_dir = (
            Path(args["--trainer.logger.init_args.save_dir"])
            / args["--trainer.logger.init_args.name"]
            / args["--trainer.logger.init_args.version"]
        )
        seed = int(args["--seed_everything"])
        _summary(run_dir, seed, {"A": 1.0 + seed, "B": 2.0 + seed})
        assert kwargs["stdout"] == 2  # the runs' output to stderr: stdout holds only the comparison
        # The children run the same grpo_lightning as this process.
        assert kwargs["env"]["PYTHONPATH"].split(os.pathsep)[0] == str(launch.PACKAGE_PARENT)
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(launch.subprocess, "run", fake_run)
    argv = ["--config", "x/ipo.yaml", "--config", "y/gripo.yaml", "--seeds", "0,1", "--log-dir", str(tmp_path)]
    compare.main([*argv, "--", "--trainer.max_epochs", "2"])
    assert len(calls) == 4
    assert all(
        c[1:5] == ["-m", "grpo_lightning.cli.app", "fit", "--config"] and c[-2:] == ["--trainer.max_epochs", "2"]
        for c in calls
    )
    out = capsys.readouterr().out
    assert "gripo − ipo over 2 shared seed(s): 0.0000 ± 0.0000; gripo lower on 0/2" in out
    assert next(line for line in out.splitlines() if line.startswith("loss A")).endswith(_pm([1.0, 2.0]))

    compare.main(argv)  # finished runs are reused, not run again
    assert len(calls) == 4


def test_event_files_without_pair_counts(tmp_path, capsys):
    """Runs logged before ``<stage>/pairs/<group>`` existed: a group with a logged loss counts."""
    from torch.utils.tensorboard import SummaryWriter

    for seed, (a, b) in enumerate([(1.0, 3.0), (2.0, 5.0)]):
        writer = SummaryWriter(str(tmp_path / "old" / f"version_{seed}"))
        for tag, value in {"val/loss": (a + b) / 2, "val/loss/A": a, "val/loss/B": b, "val/reward_acc/A": 0.5}.items():
            writer.add_scalar(tag, value, 10)
        writer.close()
    compare.main([str(tmp_path / "old"), "--stage", "val"])
    lines = capsys.readouterr().out.splitlines()
    row = lambda label: next(line for line in lines if line.startswith(label + " "))  # noqa: E731
    assert row("loss A").endswith(_pm([1.0, 2.0])) and row("worst-group loss").endswith(_pm([3.0, 5.0]))
    assert row("reward acc B").endswith(" -")  # has pairs, but no accuracy was logged


def test_the_last_method_is_paired_with_every_other(tmp_path, capsys):
    """Three methods: the last given (GR-IPO after its baselines) minus each of the others, by seed."""
    worst = {"ipo": (3.0, 4.0), "isipo": (2.0, 2.5), "gripo": (2.5, 2.0)}
    for method, values in worst.items():
        for seed, b in enumerate(values):
            _summary(tmp_path / method / f"version_{seed}", seed, {"A": 1.0, "B": b})
    compare.main([str(tmp_path / m) for m in worst])
    out = capsys.readouterr().out
    assert f"gripo − ipo over 2 shared seed(s): {_pm([-0.5, -2.0])}; gripo lower on 2/2" in out
    assert f"gripo − isipo over 2 shared seed(s): {_pm([0.5, -0.5])}; gripo lower on 1/2" in out


def test_a_test_run_draws_the_weights_of_the_run_it_tested(tmp_path):
    """`grpo test --ckpt_path <fit>/checkpoints/last.ckpt` logs no training scalars: the weights panel
    reads them from the fit run named by the test run's config.yaml."""
    from torch.utils.tensorboard import SummaryWriter

    from grpo_lightning.analysis.runs import read_run

    fit, test = tmp_path / "gripo" / "seed_0", tmp_path / "gripo" / "seed_0_test"
    writer = SummaryWriter(str(fit))
    for step, (a, b) in enumerate([(0.5, 0.5), (0.4, 0.6), (0.3, 0.7)]):
        writer.add_scalar("train/group_weight/A", a, step)
        writer.add_scalar("train/group_weight/B", b, step)
    writer.close()
    _summary(test, 0, {"A": 1.0, "B": 2.0})
    (test / "config.yaml").write_text(f"seed_everything: 0\nckpt_path: {fit / 'checkpoints' / 'last.ckpt'}\n")
    run = read_run(test, "val", "gripo")
    assert run.fit_path == fit
    history = compare._weight_history(run)
    assert history["B"] == [(0, 0.5), (1, 0.6000000238418579), (2, 0.699999988079071)]
    untested = read_run(fit, "val", "gripo")
    assert untested is None or untested.fit_path == fit
