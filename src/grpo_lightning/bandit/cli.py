"""`grpo-bandit`: the synthetic bandit sweep of Ramesh et al. (2024), §5.1, from the command line."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import torch

from grpo_lightning.analysis.stats import format_mean_se
from grpo_lightning.bandit.methods import METHODS
from grpo_lightning.bandit.report import (
    CSV_COLUMNS,
    chi_rows,
    format_table,
    plot_bars,
    plot_chi,
    plot_history,
    result_rows,
    write_csv,
)
from grpo_lightning.bandit.sweep import FIRST_SEED, SCENARIOS, run_chi_sweep, run_scenario
from grpo_lightning.bandit.trainer import IPO_WEIGHTING_ESTIMATOR

log = logging.getLogger(__name__)


def _init_worker(threads: int) -> None:
    torch.set_num_threads(threads)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _task(kind: str, name: str, methods: list[str], seeds: list[int], kwargs: dict):
    """One unit of work for a worker process: a scenario's loss family, or the χ sweep."""
    if kind == "chi":
        return kind, name, run_chi_sweep(methods, seeds, **kwargs)
    return kind, name, run_scenario(name, methods, seeds, **kwargs)[kind]


def run_tasks(tasks: list[tuple], workers: int, threads: int) -> list[tuple]:
    """Run ``(kind, name, methods, seeds, kwargs)`` tasks, in ``workers`` processes if > 1.

    Each scenario's DPO and IPO families, and the χ sweep, are independent tasks; the longest
    go first. Torch's intra-op threads are set to ``threads`` in each process: with tensors this
    small, one process per core beats one process with several threads by far.
    """
    if workers <= 1:
        _init_worker(threads)
        return [_task(*t) for t in tasks]
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    ctx = mp.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker, initargs=(threads,)) as pool:
        futures = [pool.submit(_task, *t) for t in tasks]
        return [f.result() for f in futures]


def _cost(task: tuple) -> float:
    kind, name, methods, seeds, kwargs = task
    if kind == "chi":
        return SCENARIOS["uneven_imbalanced"].steps * len(methods)
    sc = SCENARIOS[name]
    return sc.steps * len(methods) if kind == "dpo" else sc.ipo_steps * len(methods)


# ----------------------------------------------------------------------------------------------
# Reporting
# ----------------------------------------------------------------------------------------------


def _float_list(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="grpo-bandit",
        description="Synthetic group linear bandit experiments of group-robust preference optimization.",
    )
    p.add_argument("--scenario", default="all", choices=[*SCENARIOS, "all", "none"])
    p.add_argument("--methods", default=",".join(METHODS), help="comma-separated subset of " + ",".join(METHODS))
    p.add_argument("--seeds", type=int, default=20, help="number of seeds, starting at --first-seed")
    p.add_argument("--first-seed", type=int, default=FIRST_SEED)
    p.add_argument("--feature-type", default="swapped", choices=["same", "swapped", "flipped"])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--chi", type=_float_list, default=None, help="also run the χ ablation, e.g. 0,0.2,0.4,0.6,0.8,1")
    p.add_argument(
        "--ipo-weighting",
        default="objective",
        choices=list(IPO_WEIGHTING_ESTIMATOR),
        help="closed-form GR-IPO: objective (group means), paper (per-pair w_g), code (paper + the authors' code's "
        "double division of the alpha-step group loss by N_g)",
    )
    p.add_argument(
        "--chi-scaled-alpha-step",
        action="store_true",
        help="alpha step exp(eta_alpha * chi * L) as the authors' bandit code (the paper: exp(eta_alpha * L))",
    )
    p.add_argument("--ipo-steps", type=int, default=None, help="α steps of the IPO family (default 100)")
    p.add_argument("--max-steps", type=int, default=None, help="cap on gradient steps (for smoke tests)")
    p.add_argument("--eval-every", type=int, default=100)
    p.add_argument("--no-compile", dest="compile", action="store_false", help="run eagerly instead of torch.compile")
    p.add_argument("--workers", type=int, default=2, help="worker processes (1: run in this process)")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads per process")
    return p


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise SystemExit(f"unknown methods {unknown}; choose from {list(METHODS)}")
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    args.out.mkdir(parents=True, exist_ok=True)
    scenarios = list(SCENARIOS) if args.scenario == "all" else [] if args.scenario == "none" else [args.scenario]

    common = {
        "feature_type": args.feature_type,
        "max_steps": args.max_steps,
        "eval_every": args.eval_every,
        "compile": args.compile,
        "chi_scaled_alpha_step": args.chi_scaled_alpha_step,
    }
    tasks = []
    for name in scenarios:
        for family in ("dpo", "ipo"):
            fam_methods = [m for m in methods if METHODS[m][0] == family]
            if fam_methods:
                kw = {**common, "ipo_weighting": args.ipo_weighting, "ipo_steps": args.ipo_steps}
                tasks.append((family, name, fam_methods, seeds, kw))
    if args.chi:  # split the χ values over the workers
        chunks = [args.chi[i :: max(args.workers, 1)] for i in range(max(args.workers, 1))]
        tasks.extend(("chi", f"chi_{i}", chunk, seeds, common) for i, chunk in enumerate(chunks) if chunk)
    tasks.sort(key=_cost, reverse=True)
    started = time.perf_counter()
    done = run_tasks(tasks, args.workers, args.threads)
    log.info("all runs finished in %.1fs", time.perf_counter() - started)

    rows: list[dict] = []
    for name in scenarios:
        families = {kind: res for kind, nm, res in done if nm == name and kind != "chi"}
        families = {k: families[k] for k in ("dpo", "ipo") if k in families}
        for res in families.values():
            rows.extend(result_rows(name, res))
        plot_history(args.out / f"val_loss_{name}.png", name, families)
    if rows:
        write_csv(args.out / "results.csv", rows, CSV_COLUMNS)
        plot_bars(args.out / "final_metrics.png", rows)
        sys.stdout.write(format_table(rows) + "\n")

    chi_done = [res for kind, _, res in done if kind == "chi"]
    if chi_done:
        crow = sorted((r for res in chi_done for r in chi_rows(res)), key=lambda r: r["chi"])
        write_csv(args.out / "chi_results.csv", crow, list(crow[0]))
        plot_chi(args.out / "chi_tradeoff.png", crow)
        # The tables are the command's output (stdout); progress goes to the log.
        lines = [f"\n{'chi':>5} {'avg val loss':>20} {'worst val loss':>20}"]
        lines += [
            f"{r['chi']:>5.2f} {format_mean_se(r['avg_val_loss_mean'], r['avg_val_loss_se'], widths=(11, 6))}"
            f" {format_mean_se(r['worst_val_loss_mean'], r['worst_val_loss_se'], widths=(11, 6))}"
            for r in crow
        ]
        sys.stdout.write("\n".join(lines) + "\n")
    log.info("wrote results to %s", args.out)


if __name__ == "__main__":
    main()
