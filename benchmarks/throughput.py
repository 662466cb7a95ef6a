"""Training throughput of the preference step: our modes vs TRL's DPOTrainer and a bare loop.

Every mode trains the same tiny Llama (hidden 256, 4 layers, tied embeddings) with IPO (β 0.1),
AdamW (lr 1e-4, constant), batch 16 pairs, on the same GOQA-shaped generated pairs (prompts of
~40–80 tokens, answers of one letter + EOS), for ``--warmup`` + ``--steps`` optimizer steps, each
mode in a fresh process (so ``ru_maxrss`` is that mode's peak memory). Our modes run through the
real ``GroupRobustPreferenceModule`` and a Lightning ``Trainer`` (logging/checkpointing off):

    plain         concatenated forward (prefix_sharing=off), live reference copy
    prefix        prefix-shared forward (each prompt once for both answers)
    prefix_cache  prefix-shared + precompute_ref_logps (reference run once, then freed)
    lora          LoRA r=8 on q/k/v/o + prefix-shared; reference = adapter disabled
    lora_alone    the same LoRA policy with a reference-free loss (sft): the policy alone,
                  the denominator of lora_ref_mem_ratio
    bare          hand-written PyTorch loop: concatenated policy fwd+bwd, reference fwd (no
                  grad), IPO, AdamW
    trl           TRL DPOTrainer, loss_type=ipo (only when trl is installed: ``pip install .[bench]``)

Usage: ``python benchmarks/throughput.py [--steps 30] [--warmup 5] [--repeats 2] [--threads 1] [--modes ...]``
Step time = wall time between consecutive optimizer-step ends (data loading included), median
over the steps after warm-up; pairs/s = 16 × steps / their total time. Memory: peak RSS of the
process, and its rise over the RSS just before the models are built ("Δpeak"). On a shared
machine wall time depends on other users' load, so the CPU time of the process per pair
(pairs/CPU-s, single-threaded) is reported too.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

MODES = ("plain", "prefix", "prefix_cache", "lora", "lora_alone", "bare", "trl")
BATCH, LR, BETA = 16, 1e-4, 0.1
TINY = {"hidden_size": 256, "num_hidden_layers": 4, "num_attention_heads": 4, "intermediate_size": 688}


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_data():
    import datasets

    from grpo_lightning.data import GeneratedOpinions, PreferenceDataModule

    datasets.disable_progress_bars()
    dm = PreferenceDataModule(
        generated=GeneratedOpinions(num_pairs=1200, seed=0),
        max_length=256,
        max_prompt_length=192,
        batch_size=BATCH,
        tokenizer_vocab_size=512,
    )
    dm.setup("fit")
    return dm


def run_ours(mode: str, steps: int, warmup: int, cache_dir: str) -> dict:
    import lightning as L
    import torch

    from grpo_lightning.core.losses import IPO, SFT
    from grpo_lightning.core.weighting import UniformWeighting
    from grpo_lightning.policies import CausalLM, LoraSettings, TinyLlama
    from grpo_lightning.training.module import GroupRobustPreferenceModule

    dm = make_data()
    base = rss_mib()
    lora = LoraSettings(r=8, alpha=16) if mode.startswith("lora") else None
    module = GroupRobustPreferenceModule(
        policy=CausalLM(tiny=TinyLlama(**TINY), prefix_sharing="off" if mode == "plain" else "on", lora=lora),
        loss=(SFT if mode == "lora_alone" else IPO)(beta=BETA),
        weighting=UniformWeighting(),
        group_names=dm.group_names,
        group_counts=dm.train_group_counts,
        tokenizer=dm.tokenizer,
        optimizer=lambda params: torch.optim.AdamW(params, lr=LR),
        lr_scheduler=None,
        precompute_ref_logps=mode == "prefix_cache",
        ref_cache_dir=cache_dir,
    )
    ends: list[tuple[float, float]] = []

    class Clock(L.Callback):
        def on_train_batch_end(self, *args, **kwargs) -> None:
            ends.append((time.perf_counter(), time.process_time()))

    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=warmup + steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        callbacks=[Clock()],
    )
    trainer.fit(module, dm)
    return {"ends": ends, "base_mib": base}


def ipo_loss(pc, pr, rc, rr, beta=BETA):
    return (((pc - pr) - (rc - rr)) - 1 / (2 * beta)).pow(2).mean()


def run_bare(steps: int, warmup: int) -> dict:
    """The hand-written reference loop: what one would write without any framework."""
    import copy

    import torch
    import torch.nn.functional as F

    from grpo_lightning.policies import CausalLM, TinyLlama

    dm = make_data()
    base = rss_mib()
    model = CausalLM(tiny=TinyLlama(**TINY)).load_model(dm.tokenizer)
    model.train()
    reference = copy.deepcopy(model).eval().requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=LR)

    def logps(m, batch):
        logits = m(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False).logits
        labels = batch["labels"][:, 1:]
        nll = F.cross_entropy(
            logits[:, :-1].reshape(-1, logits.size(-1)).float(), labels.reshape(-1), ignore_index=-100, reduction="none"
        )
        return (-nll.view_as(labels).sum(-1)).chunk(2)

    ends: list[tuple[float, float]] = []
    it = iter(dm.train_dataloader())
    for _ in range(warmup + steps):
        batch = next(it)
        pc, pr = logps(model, batch)
        with torch.no_grad():
            rc, rr = logps(reference, batch)
        loss = ipo_loss(pc, pr, rc, rr)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        ends.append((time.perf_counter(), time.process_time()))
    return {"ends": ends, "base_mib": base}


def run_trl(steps: int, warmup: int) -> dict:
    import copy

    import datasets
    from real_shape import trl_ipo_config
    from transformers import TrainerCallback
    from trl import DPOTrainer

    from grpo_lightning.policies import CausalLM, TinyLlama

    dm = make_data()
    train = dm.dataset("train")
    rows = datasets.Dataset.from_dict({k: train[k] for k in ("prompt", "chosen", "rejected")})
    base = rss_mib()
    model = CausalLM(tiny=TinyLlama(**TINY)).load_model(dm.tokenizer)
    ends: list[tuple[float, float]] = []

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            ends.append((time.perf_counter(), time.process_time()))

    import tempfile

    with tempfile.TemporaryDirectory() as out:
        config = trl_ipo_config(out, batch=BATCH, lr=LR, beta=BETA, max_length=256, max_steps=warmup + steps)
        reference = copy.deepcopy(model)  # TRL would reload it from the hub id otherwise
        trainer = DPOTrainer(
            model=model,
            ref_model=reference,
            args=config,
            train_dataset=rows,
            processing_class=dm.tokenizer,
            callbacks=[Clock()],
        )
        trainer.train()
    return {"ends": ends, "base_mib": base}


def child(mode: str, steps: int, warmup: int, cache_dir: str, threads: int) -> None:
    import logging

    import torch

    torch.set_num_threads(threads)

    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    torch.manual_seed(0)
    if mode == "bare":
        out = run_bare(steps, warmup)
    elif mode == "trl":
        out = run_trl(steps, warmup)
    else:
        out = run_ours(mode, steps, warmup, cache_dir)
    wall = [w for w, _ in out["ends"]]
    cpu = [c for _, c in out["ends"]]
    diffs = [b - a for a, b in zip(wall[warmup - 1 : -1], wall[warmup:], strict=True)]
    result = {
        "mode": mode,
        "steps": len(diffs),
        "step_s": statistics.median(diffs),
        "pairs_per_s": BATCH * len(diffs) / (wall[-1] - wall[warmup - 1]),
        "pairs_per_cpu_s": BATCH * len(diffs) / (cpu[-1] - cpu[warmup - 1]),
        "peak_mib": peak_mib(),
        "delta_peak_mib": peak_mib() - out["base_mib"],
        "threads": torch.get_num_threads(),
    }
    print("RESULT " + json.dumps(result), flush=True)


def trl_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("trl") is not None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=2, help="runs of every mode, interleaved; medians reported")
    ap.add_argument("--modes", nargs="*", default=list(MODES))
    ap.add_argument(
        "--threads", type=int, default=1, help="torch threads per run (1: stable timings on a shared machine)"
    )
    ap.add_argument(
        "--shape",
        choices=("tiny", "smollm2-135m"),
        default="tiny",
        help="tiny: the toy Llama (hidden 256, 4 layers, vocab 512); smollm2-135m: SmolLM2-135M on GOQA batches "
        "(real_shape.py: its own modes; --steps/--warmup/--repeats do not apply: every mode trains --warmup-epochs "
        "untimed epochs of --pairs, then one timed)",
    )
    ap.add_argument("--pairs", type=int, default=64, help="smollm2-135m: training pairs (one epoch) per mode")
    ap.add_argument(
        "--warmup-epochs",
        type=int,
        default=1,
        help="smollm2-135m: untimed epochs before the timed one (first touches of memory, lazy set-up)",
    )
    ap.add_argument(
        "--host-memory",
        choices=("auto", "release", "retain"),
        default="auto",
        help="smollm2-135m: the CLI's --host_memory for every mode (auto: release with gradient checkpointing)",
    )
    ap.add_argument("--epochs", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--cache-dir", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.shape == "smollm2-135m":
        import real_report

        if args.modes == list(MODES):
            args.modes = list(real_report.rs.MODES)
        if args.child:
            real_report.child(args.child, args.pairs, args.epochs, args.cache_dir, args.threads, args.host_memory)
        else:
            real_report.main(args)
        return
    if args.child:
        child(args.child, args.steps, args.warmup, args.cache_dir, args.threads)
        return
    import tempfile

    modes = [m for m in args.modes if m != "trl" or trl_available()]
    if "trl" in args.modes and "trl" not in modes:
        print("trl is not installed (pip install '.[bench]'): skipping the TRL mode")
    runs: dict[str, list[dict]] = {m: [] for m in modes}
    cache_dir = tempfile.mkdtemp(prefix="grpo_bench_ref_")
    for r in range(args.repeats):
        for mode in modes:
            cmd = [sys.executable, __file__, "--child", mode, "--steps", str(args.steps), "--warmup", str(args.warmup)]
            cmd += [
                "--threads",
                str(args.threads),
                "--cache-dir",
                os.path.join(cache_dir, str(r)),
            ]  # a fresh cache per repeat: computed in-run
            env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
            lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
            if proc.returncode or not lines:
                print(f"{mode} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}", file=sys.stderr)
                continue
            res = json.loads(lines[-1][7:])
            runs[mode].append(res)
            print(
                f"  repeat {r} {mode:13s} {res['pairs_per_s']:8.1f} pairs/s  step {1000 * res['step_s']:7.1f} ms",
                flush=True,
            )

    def med(mode, key):
        return statistics.median(x[key] for x in runs[mode]) if runs.get(mode) else float("nan")

    def spread(mode):
        v = [x["pairs_per_s"] for x in runs.get(mode, [])]
        return (max(v) - min(v)) / statistics.median(v) if len(v) > 1 else 0.0

    import torch

    print(
        f"\nmachine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs "
        f"({runs[modes[0]][0]['threads'] if runs[modes[0]] else '?'} torch threads), torch {torch.__version__}; "
        f"{args.steps} steps after {args.warmup} warm-up, {args.repeats} repeat(s), batch {BATCH}, IPO"
    )
    head = (
        f"{'mode':13s} {'pairs/s':>8s} {'spread':>7s} {'step ms':>8s} {'peak MiB':>9s} {'Δpeak MiB':>10s} "
        f"{'vs TRL':>7s} {'vs bare':>8s} {'pairs/CPU-s':>12s} {'vs TRL':>7s} {'vs bare':>8s}"
    )
    print(head)
    print("-" * len(head))
    trl, bare = med("trl", "pairs_per_s"), med("bare", "pairs_per_s")
    trl_cpu, bare_cpu = med("trl", "pairs_per_cpu_s"), med("bare", "pairs_per_cpu_s")
    for mode in modes:
        if not runs[mode]:
            continue
        p = med(mode, "pairs_per_s")
        print(
            f"{mode:13s} {p:8.1f} {100 * spread(mode):6.1f}% {1000 * med(mode, 'step_s'):8.1f} "
            f"{med(mode, 'peak_mib'):9.0f} {med(mode, 'delta_peak_mib'):10.1f} {p / trl:6.2f}x {p / bare:7.2f}x "
            f"{(c := med(mode, 'pairs_per_cpu_s')):12.1f} {c / trl_cpu:6.2f}x {c / bare_cpu:7.2f}x"
        )
    ours = [m for m in ("plain", "prefix", "prefix_cache", "lora") if runs.get(m)]
    best = max((med(m, "pairs_per_s") for m in ours), default=float("nan"))
    mem = med("lora", "delta_peak_mib") / med("lora_alone", "delta_peak_mib")
    best_cpu = max((med(m, "pairs_per_cpu_s") for m in ours), default=float("nan"))
    print(
        f"CPU-time ratios (insensitive to other users' load): best_vs_trl={best_cpu / trl_cpu:.2f} "
        f"plain_vs_bare={med('plain', 'pairs_per_cpu_s') / bare_cpu:.2f}"
    )
    print(
        f"raw-peak lora/lora_alone = {med('lora', 'peak_mib') / med('lora_alone', 'peak_mib'):.3f}; "
        "spread = (max-min)/median of pairs/s over repeats"
    )
    print(
        f"best_vs_trl={best / trl:.2f} plain_vs_bare={med('plain', 'pairs_per_s') / bare:.2f} lora_ref_mem_ratio={mem:.3f}"
    )


if __name__ == "__main__":
    main()
