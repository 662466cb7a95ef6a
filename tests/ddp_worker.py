"""Worker for tests/test_training_ddp.py (not a test itself).

``python ddp_worker.py ddp OUT``: 2-process DDP (gloo, CPU) training; each rank writes its α, a
parameter checksum and the ``index`` of every pair it trained on to ``OUT/rank{r}.pt``.
``python ddp_worker.py single OUT``: one process trained on the union of both ranks' pairs, step
by step (read from those files), writes ``OUT/single.pt``.
``python ddp_worker.py refcache_ddp|refcache_single OUT``: one step with ``precompute_ref_logps`` on 2 ranks or
1 process; writes the reference columns each process's data module holds (per split, (chosen, rejected) per row)
and how many pairs it ran to ``OUT/refcache_*.pt``.
``python ddp_worker.py nonfinite_ddp OUT``: 2-process DDP with ``on_nonfinite: skip`` and uniform weights, the losses
NaN on rank 1 alone in its second batch; each rank writes its step count, skipped steps and parameters to
``OUT/nonfinite_rank{r}.pt``.
"""

from __future__ import annotations

import functools
import os
import sys
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
warnings.filterwarnings("ignore")

import datasets  # noqa: E402
import lightning as L  # noqa: E402
import torch  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

from grpo_lightning.core.losses import IPO  # noqa: E402
from grpo_lightning.core.weighting import RobustWeighting, UniformWeighting  # noqa: E402
from grpo_lightning.data import GeneratedOpinions, PreferenceDataModule  # noqa: E402
from grpo_lightning.data.loaders import EpochShuffle  # noqa: E402
from grpo_lightning.data.tokenization import REF_COLUMNS, PairCollator  # noqa: E402
from grpo_lightning.policies import CausalLM, TinyLlama  # noqa: E402
from grpo_lightning.training.module import GroupRobustPreferenceModule  # noqa: E402

datasets.disable_progress_bars()
STEPS, PER_RANK = 3, 4


class _Record(L.Callback):
    def __init__(self) -> None:
        self.indices: list[list[int]] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.indices.append(batch["index"].tolist())


class _FixedBatches(PreferenceDataModule):
    def __init__(self, batches: list[list[int]], **kw) -> None:
        super().__init__(**kw)
        self.batches = batches

    def train_dataloader(self):
        ds = self.dataset("train").select_columns(["chosen_ids", "rejected_ids", "prompt_length", "group_id", "index"])
        row = {int(i): r for r, i in enumerate(ds["index"])}
        return DataLoader(
            ds,
            batch_sampler=[[row[i] for i in b] for b in self.batches],
            collate_fn=PairCollator(self.tokenizer.pad_token_id),
        )


def _tiny_ipo_module(dm: PreferenceDataModule, **settings) -> GroupRobustPreferenceModule:
    """A one-layer tiny Llama with IPO (β 0.1), uniform weights and SGD at 0.01, seeded; ``settings`` add to it."""
    L.seed_everything(0)
    return GroupRobustPreferenceModule(
        policy=CausalLM(
            tiny=TinyLlama(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
        ),
        loss=IPO(beta=0.1),
        weighting=UniformWeighting(),
        group_names=dm.group_names,
        group_counts=dm.train_group_counts,
        tokenizer=dm.tokenizer,
        optimizer=functools.partial(torch.optim.SGD, lr=0.01),
        lr_scheduler=None,
        **settings,
    )


def reference_cache(mode: str, out: str) -> None:
    ddp = mode == "refcache_ddp"
    # 100 generated pairs: 82/6/12 with eval batches of 3 → 28, 2 and 4 batches, the last train batch of 1.
    dm = PreferenceDataModule(
        generated=GeneratedOpinions(num_pairs=100, val_questions=0, test_questions=0),
        max_length=64, max_prompt_length=56, batch_size=4, eval_batch_size=3,
    )  # fmt: skip
    module = _tiny_ipo_module(dm, precompute_ref_logps=True, ref_cache_dir=os.path.join(out, f"cache_{mode}"))
    trainer = L.Trainer(
        accelerator="cpu", devices=2 if ddp else 1, strategy="ddp" if ddp else "auto", max_steps=1, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
    )  # fmt: skip
    trainer.fit(module, dm)
    # What training reads: the columns of the tokenised splits (not the module's cache object).
    tables = {
        split: torch.tensor([dm.dataset(split)[c] for c in REF_COLUMNS], dtype=torch.float32).T
        for split in ("train", "val", "test")
    }
    name = f"{mode}_rank{trainer.global_rank}.pt" if ddp else f"{mode}.pt"
    torch.save({"tables": tables, "computed_here": module.reference_cache.logps.computed_here}, os.path.join(out, name))


class _PoisonOneRank(L.Callback):
    """NaN losses on rank 1 only, in its second batch; counts the skipped steps on each rank."""

    def __init__(self) -> None:
        self.skipped = 0

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        self.step_before = trainer.global_step
        # By batch: a skipped step does not advance global_step.
        poisoned = trainer.global_rank == 1 and trainer.current_epoch == 0 and batch_idx == 1
        original = type(module).pair_outputs

        def pair_outputs(mod, b, ref):
            out = original(mod, b, ref)
            return out._replace(losses=out.losses * float("nan")) if poisoned else out

        module.pair_outputs = functools.partial(pair_outputs, module)

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        self.skipped += trainer.global_step == self.step_before


def nonfinite(out: str) -> None:
    dm = PreferenceDataModule(
        generated=GeneratedOpinions(num_pairs=100, val_questions=2, test_questions=2),
        max_length=64, max_prompt_length=56, batch_size=PER_RANK,
    )  # fmt: skip
    module = _tiny_ipo_module(dm, on_nonfinite="skip")
    poison = _PoisonOneRank()
    trainer = L.Trainer(
        accelerator="cpu", devices=2, strategy="ddp", max_steps=STEPS, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0, callbacks=[poison],
    )  # fmt: skip
    trainer.fit(module, dm)
    params = torch.cat([p.detach().double().flatten() for p in module.policy.model.parameters()])
    result = {"global_step": trainer.global_step, "skipped": poison.skipped, "params": params}
    torch.save(result, os.path.join(out, f"nonfinite_rank{trainer.global_rank}.pt"))


def main(mode: str, out: str) -> None:
    if mode.startswith("refcache"):
        return reference_cache(mode, out)
    if mode == "nonfinite_ddp":
        return nonfinite(out)
    data = {
        "generated": GeneratedOpinions(num_pairs=100, val_questions=2, test_questions=2),
        "max_length": 64,
        "max_prompt_length": 56,
    }
    if mode == "ddp":
        dm = PreferenceDataModule(batch_size=PER_RANK, **data)
    else:
        ranks = [torch.load(os.path.join(out, f"rank{r}.pt"), weights_only=True)["indices"].tolist() for r in (0, 1)]
        dm = _FixedBatches([a + b for a, b in zip(*ranks, strict=True)], batch_size=2 * PER_RANK, **data)
    L.seed_everything(0)
    module = GroupRobustPreferenceModule(
        policy=CausalLM(
            tiny=TinyLlama(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
        ),
        loss=IPO(beta=0.1),
        weighting=RobustWeighting(step_size=0.1),
        group_names=dm.group_names,
        group_counts=dm.train_group_counts,
        tokenizer=dm.tokenizer,
        optimizer=functools.partial(torch.optim.SGD, lr=0.01),
        lr_scheduler=None,
    )
    record = _Record()
    trainer = L.Trainer(
        accelerator="cpu",
        devices=2 if mode == "ddp" else 1,
        strategy="ddp" if mode == "ddp" else "auto",
        max_steps=STEPS,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        callbacks=[record],
    )
    trainer.fit(module, dm)
    params = torch.cat([p.detach().double().flatten() for p in module.policy.model.parameters()])
    result = {
        "log_alpha": module.log_alpha.detach().cpu(),
        "checksum": torch.stack([params.sum(), (params * torch.arange(len(params), dtype=torch.float64)).sum()]),
        "params": params,
        "indices": torch.tensor(record.indices),
    }
    if mode == "ddp":
        # The training loader's own sampler shards the seeded order (Lightning did not wrap it): this rank's
        # pairs are its round-robin share of the epoch's order.
        sampler = trainer.train_dataloader.sampler
        result["sampler"] = [type(sampler).__name__, sampler.num_replicas, sampler.rank]
        shard = EpochShuffle(len(dm.dataset("train")), dm.seed, num_replicas=2, rank=trainer.global_rank)
        index = dm.dataset("train")["index"]
        result["expected_indices"] = torch.tensor([index[i] for i in shard][: STEPS * PER_RANK]).view(STEPS, PER_RANK)
    name = f"rank{trainer.global_rank}.pt" if mode == "ddp" else "single.pt"
    torch.save(result, os.path.join(out, name))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
