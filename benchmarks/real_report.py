"""Run the SmolLM2-shape modes (each in a fresh process), check their losses, count FLOPs, measure
the matmul peak and print the table and the final line of ``throughput.py --shape smollm2-135m``."""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile

import real_shape as rs
from flops import Arch, step_flops, work

LOSS_RTOL = 1e-3  # same weights, pairs and updates: only float rounding differs
# Modes that see the same batches, each compared step by step with the first of its group.
SAME_ORDER = (
    ("plain", "prefix", "prefix_cache", "bare", "trl"),
    ("lora_cache", "trl_lora", "lora_cache_padfree", "lora_cache_padfree_compiled"),
    (
        "lora_cache_grouped",
        "lora_cache_grouped_ckpt",
        "lora_cache_grouped_padfree",
        "lora_cache_grouped_padfree_compiled",
    ),
)


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(mode_name: str, n_pairs: int, epochs: int, cache_dir: str, threads: int, host_memory: str) -> None:
    import logging
    import warnings

    import torch

    from grpo_lightning.cli.host_memory import set_host_memory

    mode = rs.MODES[mode_name]
    # As the grpo CLI does (--host_memory), for every mode alike, TRL and the bare loop too.
    applied = set_host_memory(host_memory, gradient_checkpointing=mode.checkpointing)
    torch.set_num_threads(threads)
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    torch.manual_seed(0)
    rec, dm, model = rs.RUNNERS[mode.runner](mode, n_pairs, epochs, cache_dir)
    out = rs.result(mode, rec, model)
    out["host_memory"] = applied or "glibc default"
    out["lengths"] = {str(k): v for k, v in rs.pair_lengths(dm).items()}
    out["peak_mib"] = peak_mib()
    out["threads"] = torch.get_num_threads()
    print("RESULT " + json.dumps(out), flush=True)


def summarise(res: dict, warmup_epochs: int) -> dict:
    """Throughput, model FLOPs and time of one mode's run, over the steps after ``warmup_epochs`` (the warm-up
    epochs' throughput is kept as ``warmup_pairs_per_s``); losses of every step."""
    mode = rs.MODES[res["mode"]]
    a = Arch(**{k: tuple(map(tuple, v)) if k == "lora_shapes" else v for k, v in res["arch"].items()})
    lengths = {int(k): tuple(v) for k, v in res["lengths"].items()}
    warm = [s for s in res["steps"] if s["epoch"] < warmup_epochs]
    steps = [s for s in res["steps"] if s["epoch"] >= warmup_epochs] or warm  # timed: after the warm-up
    wall = [s["t1"] - s["t0"] for s in steps]
    cpu = [s["c1"] - s["c0"] for s in steps]
    flops = [
        step_flops(
            a, work([lengths[i] for i in s["index"]], mode.layout), train=mode.train, live_reference=mode.live_reference
        )
        for s in steps
    ]
    tokens = [work([lengths[i] for i in s["index"]], mode.layout).tokens for s in steps]
    pairs = sum(len(s["index"]) for s in steps)
    return {
        "pairs": pairs,
        "pairs_per_s": pairs / sum(wall),
        "pairs_per_cpu_s": pairs / sum(cpu),
        "step_s": statistics.median(wall),
        "gflop_per_step": sum(flops) / len(flops) / 1e9,
        "gflops": sum(flops) / sum(wall) / 1e9,
        "tokens_per_step": sum(tokens) / len(tokens),
        "warmup_pairs_per_s": sum(len(s["index"]) for s in warm) / sum(s["t1"] - s["t0"] for s in warm)
        if warm
        else float("nan"),
        "losses": [s["loss"] for s in res["steps"]],
        "host_memory": res["host_memory"],
        "peak_mib": res["peak_mib"],
        "threads": res["threads"],
        "arch": a,
    }


def check_losses(rows: dict[str, dict]) -> list[str]:
    """Per-step losses of the modes that see the same batches agree to ``LOSS_RTOL``.

    Step 0 proves little: every mode starts with the policy equal to the reference (LoRA's B = 0),
    so h = 0 and every IPO loss is 1/(2β)² exactly. From step 1 on the loss depends on the update each
    mode made, through its own forward, backward and optimizer code, so agreement there is the check.
    """
    lines, bad = [], []
    for group in SAME_ORDER:
        present = [m for m in group if m in rows]
        if not present:
            continue
        base = rows[present[0]]["losses"]
        for m in present[1:]:
            ls = rows[m]["losses"]
            if len(ls) != len(base):
                bad.append(f"{m}: {len(ls)} steps, {present[0]} {len(base)}")
                continue
            devs = [abs(x - y) / abs(y) for x, y in zip(ls, base, strict=True)]
            lines.append(
                f"  {m:24s} vs {present[0]:18s} losses {', '.join(f'{x:.2f}' for x in ls)}; max rel. dev {max(devs):.1e}"
            )
            if max(devs) > LOSS_RTOL:
                bad.append(f"{m}: losses {ls} differ from {present[0]}'s {base} by up to {max(devs):.1e}")
    return lines + [f"LOSS MISMATCH: {b}" for b in bad]


def main(args) -> None:
    import torch

    modes = [m for m in args.modes if m in rs.MODES]
    unknown = [m for m in args.modes if m not in rs.MODES]
    if unknown:
        raise SystemExit(f"unknown modes {unknown}; choose from {list(rs.MODES)}")
    if _missing("trl"):
        print("note: trl is not installed (pip install -e '.[bench]'): no TRL rows", flush=True)
        modes = [m for m in modes if rs.MODES[m].runner != "trl"]
    if args.pairs % rs.BATCH:
        # TRL is handed our epochs one after the other as one epoch: a short last batch would merge two epochs.
        raise SystemExit(f"--pairs must be a multiple of the batch size {rs.BATCH}, got {args.pairs}")
    src = rs.source()
    print(
        f"model: {src['model']}; data: {src['data']}, {args.pairs} training pairs; {args.threads} torch thread(s); "
        f"{args.warmup_epochs} warm-up epoch(s) + 1 timed; host memory {args.host_memory}",
        flush=True,
    )
    runs: dict[str, dict] = {}
    cache_root = tempfile.mkdtemp(prefix="grpo_bench_ref_")
    for mode in modes:
        cmd = [sys.executable, os.path.join(os.path.dirname(__file__), "throughput.py"), "--shape", "smollm2-135m"]
        cmd += ["--child", mode, "--pairs", str(args.pairs), "--threads", str(args.threads)]
        cmd += ["--epochs", str(args.warmup_epochs + 1), "--host-memory", args.host_memory]
        cmd += ["--cache-dir", os.path.join(cache_root, mode)]  # a fresh cache per mode: computed in-run
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if proc.returncode or not lines:
            print(f"{mode} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}", file=sys.stderr, flush=True)
            continue
        runs[mode] = summarise(json.loads(lines[-1][7:]), args.warmup_epochs)
        r = runs[mode]
        print(
            f"  {mode:24s} {r['pairs_per_s']:6.3f} pairs/s  step {r['step_s']:6.2f} s  {r['gflops']:6.1f} GFLOP/s  "
            f"peak {r['peak_mib']:6.0f} MiB",
            flush=True,
        )
    if not runs:
        raise SystemExit("no mode ran")
    a = next(iter(runs.values()))["arch"]
    lora_modes = [m for m in runs if rs.MODES[m].train == "lora" and rs.MODES[m].runner == "ours"]
    tokens = round(statistics.mean(runs[m]["tokens_per_step"] for m in lora_modes) if lora_modes else 1440)
    peaks = rs.measure_peak(args.threads, tokens, a)
    peak = max(peaks.values())
    trl_rows = [m for m in runs if rs.MODES[m].runner == "trl"]
    trl_best = max((runs[m]["pairs_per_s"] for m in trl_rows), default=float("nan"))
    bare = runs.get("bare", {}).get("pairs_per_s", float("nan"))

    print(
        f"\nmachine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, {args.threads} torch thread(s), "
        f"torch {torch.__version__}; {src['model']}; {src['data']}: {args.pairs} pairs, batch {rs.BATCH}, float32, IPO; "
        f"rates over the epoch after {args.warmup_epochs} warm-up epoch(s) (warm-up: its pairs/s)"
    )
    print(
        f"matmul peak ({tokens} rows, float32, {args.threads} thread(s)): "
        + ", ".join(f"{k} {v:.1f}" for k, v in peaks.items())
        + f" GFLOP/s; peak = {peak:.1f}"
    )
    head = (
        f"{'mode':24s} {'pairs/s':>8s} {'step s':>7s} {'pairs/CPU-s':>11s} {'GFLOP/step':>10s} {'GFLOP/s':>8s} "
        f"{'MFU':>5s} {'peak MiB':>9s} {'vs TRL best':>11s} {'vs bare':>8s} {'warm-up':>8s} {'host mem':>8s}"
    )
    print(head)
    print("-" * len(head))
    for m, r in runs.items():
        print(
            f"{m:24s} {r['pairs_per_s']:8.3f} {r['step_s']:7.2f} {r['pairs_per_cpu_s']:11.3f} {r['gflop_per_step']:10.1f} "
            f"{r['gflops']:8.1f} {r['gflops'] / peak:5.2f} {r['peak_mib']:9.0f} {r['pairs_per_s'] / trl_best:10.2f}x "
            f"{r['pairs_per_s'] / bare:7.2f}x {r['warmup_pairs_per_s']:8.3f} {r['host_memory']:>8s}"
        )
    print(f"losses per step (IPO; modes with the same batches, rel. tolerance {LOSS_RTOL}):")
    for line in check_losses(runs):
        print(line)
    ours = [m for m in runs if rs.MODES[m].runner == "ours"]
    best = max((runs[m]["pairs_per_s"] for m in ours), default=float("nan"))
    fastest_lora = max(lora_modes, key=lambda m: runs[m]["pairs_per_s"]) if lora_modes else None
    mfu = runs[fastest_lora]["gflops"] / peak if fastest_lora else float("nan")
    ckpt = runs.get("lora_cache_grouped_ckpt", {}).get("peak_mib", float("nan"))
    print(f"best_vs_trl_best={best / trl_best:.2f} mfu={mfu:.2f} lora_ckpt_peak_mib={ckpt:.0f}")


def _missing(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is None
