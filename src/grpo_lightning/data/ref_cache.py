"""Reference log-probabilities computed once per dataset and reference model.

The reference π_ref never trains, so log π_ref(y_w|x) and log π_ref(y_l|x) of every pair are
fixed numbers. :func:`compute_reference_logps` runs the reference over a split once (batched, no
grad); :class:`ReferenceLogps` holds them by the pair's ``index`` column and adds them to batches
as ``reference_chosen_logps`` / ``reference_rejected_logps``. A cache file (safetensors) is keyed
by a fingerprint of the tokenised data and a hash of the reference weights, both stored in its
metadata and checked on load, so a stale cache is never used.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch

log = logging.getLogger(__name__)

CHOSEN_KEY, REJECTED_KEY = "reference_chosen_logps", "reference_rejected_logps"
PAIR_COLUMNS = ("chosen_ids", "rejected_ids", "prompt_length", "group_id", "index")
FORMAT_VERSION = "1"


class ReferenceCacheError(RuntimeError):
    """A cache file that does not belong to this data or this reference model."""


def data_fingerprint(dataset) -> str:
    """SHA-256 of the tokenised pair columns of a ``datasets.Dataset`` (content, not object id)."""
    import pyarrow as pa

    h = hashlib.sha256()
    table = dataset.with_format("arrow")[:]
    for name in PAIR_COLUMNS:
        if name not in table.column_names:
            continue
        col = table.column(name).combine_chunks()
        h.update(name.encode())
        if pa.types.is_list(col.type) or pa.types.is_large_list(col.type):
            offsets = col.offsets.to_numpy()
            h.update((offsets - offsets[0]).astype("int64").tobytes())
            h.update(col.flatten().to_numpy(zero_copy_only=False).astype("int64").tobytes())
        else:
            h.update(col.to_numpy(zero_copy_only=False).astype("int64").tobytes())
    return h.hexdigest()


def weights_fingerprint(state_dict: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 of a state dict: names, dtypes, shapes and bytes."""
    h = hashlib.sha256()
    for name in sorted(state_dict):
        t = state_dict[name].detach()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
        h.update(t.cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


@torch.no_grad()
def compute_reference_logps(
    reference_fn, batches: Iterable[dict[str, torch.Tensor]], device
) -> dict[str, torch.Tensor]:
    """Run ``reference_fn(batch) -> (chosen, rejected)`` over ``batches``; returns tensors
    ``index``, ``chosen``, ``rejected`` (float32, on CPU), one entry per pair."""
    out: dict[str, list[torch.Tensor]] = {"index": [], "chosen": [], "rejected": []}
    for batch in batches:
        batch = {k: v.to(device) for k, v in batch.items()}
        chosen, rejected = reference_fn(batch)
        out["index"].append(batch["index"].cpu())
        out["chosen"].append(chosen.float().cpu())
        out["rejected"].append(rejected.float().cpu())
    return {k: torch.cat(v) if v else torch.zeros(0) for k, v in out.items()}


def shard_rows(n: int, batch_size: int, world_size: int, rank: int) -> tuple[int, int]:
    """Rows ``[start, stop)`` of an ``n``-row split that ``rank`` of ``world_size`` runs the reference on.

    Shards are contiguous runs of whole batches (⌈n/B⌉ batches, rank r takes batches ⌊r·b/K⌋ … ⌊(r+1)·b/K⌋), so
    every batch is the batch the single process forms (same rows, same padding): the gathered table equals
    the single-process one exactly, not just up to the rounding of another padding.
    """
    batches = math.ceil(n / batch_size) if n else 0
    first, last = rank * batches // world_size, (rank + 1) * batches // world_size
    return min(first * batch_size, n), min(last * batch_size, n)


def gather_shards(local: Mapping[str, torch.Tensor], all_gather, device) -> dict[str, torch.Tensor]:
    """Concatenate every rank's ``{"index", "chosen", "rejected"}`` (rank order) with ``all_gather``
    (tensor → (K, …) tensor; equal shapes, so each shard is padded to the longest with index −1)."""
    n = torch.tensor([len(local["index"])], device=device)
    size = int(all_gather(n).max())
    padded_index = torch.full((size,), -1, dtype=torch.long, device=device)
    padded_index[: int(n)] = local["index"].to(device)
    values = torch.zeros(size, 2, dtype=torch.float32, device=device)
    values[: int(n), 0], values[: int(n), 1] = local["chosen"].to(device), local["rejected"].to(device)
    index, values = all_gather(padded_index).reshape(-1).cpu(), all_gather(values).reshape(-1, 2).cpu()
    keep = index >= 0
    return {"index": index[keep], "chosen": values[keep, 0], "rejected": values[keep, 1]}


class ReferenceLogps:
    """Reference log-probs of each split, looked up by the pairs' ``index`` column."""

    def __init__(self, splits: Mapping[str, Mapping[str, torch.Tensor]], *, data: Mapping[str, str], reference: str):
        self.data, self.reference = dict(data), reference
        self.tables: dict[str, torch.Tensor] = {}
        for split, values in splits.items():
            index = values["index"].long()
            size = int(index.max()) + 1 if index.numel() else 0
            table = torch.full((size, 2), float("nan"), dtype=torch.float32)
            table[index, 0] = values["chosen"].float()
            table[index, 1] = values["rejected"].float()
            self.tables[split] = table
        self._device_tables: dict[tuple[str, torch.device], torch.Tensor] = {}
        self.computed_here: int | None = None  # pairs this process ran the reference on (None: loaded from a file)

    def lookup(self, split: str, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if split not in self.tables:
            raise KeyError(f"no cached reference log-probs for split {split!r} (have {sorted(self.tables)})")
        key = (split, index.device)
        table = self._device_tables.get(key)
        if table is None:
            table = self._device_tables[key] = self.tables[split].to(index.device)
        values = table[index]
        return values[:, 0], values[:, 1]

    def add_to_batch(self, split: str, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        batch[CHOSEN_KEY], batch[REJECTED_KEY] = self.lookup(split, batch["index"])
        return batch

    # ------------------------------------------------------------------ files
    @staticmethod
    def file_name(data: Mapping[str, str], reference: str, settings: Mapping[str, object]) -> str:
        key = json.dumps({"data": dict(data), "reference": reference, "settings": dict(settings)}, sort_keys=True)
        return f"ref_logps-{hashlib.sha256(key.encode()).hexdigest()[:24]}.safetensors"

    def save(self, path: str | os.PathLike) -> Path:
        from safetensors.torch import save_file

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {"format": FORMAT_VERSION, "data": json.dumps(self.data, sort_keys=True), "reference": self.reference}
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        save_file({f"split/{s}": t.contiguous() for s, t in self.tables.items()}, str(tmp), metadata=meta)
        os.replace(tmp, path)  # atomic: another rank never reads half a file
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, *, data: Mapping[str, str], reference: str) -> ReferenceLogps:
        """Load a cache file; raises :class:`ReferenceCacheError` unless it was computed from
        exactly this data (fingerprints per split) and these reference weights."""
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            if meta.get("format") != FORMAT_VERSION:
                raise ReferenceCacheError(f"{path}: unknown reference cache format {meta.get('format')!r}")
            if meta.get("reference") != reference:
                raise ReferenceCacheError(
                    f"{path} was computed with another reference model (weights hash "
                    f"{meta.get('reference', '?')[:12]}…, this one {reference[:12]}…); refusing a stale cache"
                )
            saved = json.loads(meta.get("data", "{}"))
            if saved != dict(data):
                raise ReferenceCacheError(f"{path} was computed on other data (fingerprints differ); refusing it")
            tables = {k.removeprefix("split/"): f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
        obj = cls({}, data=data, reference=reference)
        obj.tables = tables
        return obj


def precompute_reference(module, trainer, cache_dir: str | None = None) -> ReferenceLogps:
    """Reference log-probs of the data module's train/val/test splits, from the cache file when
    one exists for this data and these reference weights, else computed (and saved by rank 0).
    The policy's reference copy is freed afterwards (a LoRA policy has none to free)."""
    import gc

    from torch.utils.data import DataLoader

    from grpo_lightning.data.tokenization import PairCollator

    dm, policy = trainer.datamodule, module.policy
    if dm is None or not hasattr(dm, "dataset"):
        raise ValueError("model.precompute_ref_logps needs a PreferenceDataModule passed to the Trainer")
    if not hasattr(policy, "reference_state_dict"):
        raise ValueError(f"model.precompute_ref_logps is not supported by {type(policy).__name__}")
    splits = [s for s in ("train", "val", "test") if len(dm.dataset(s))]
    data = {s: data_fingerprint(dm.dataset(s)) for s in splits}
    reference = weights_fingerprint(policy.reference_state_dict())
    settings = {
        "average_log_prob": bool(policy.average_log_prob),
        "policy": type(policy).__name__,
        "precision": str(getattr(trainer, "precision", "")),  # bf16-mixed log-probs differ from float32 ones
    }
    directory = Path(cache_dir) if cache_dir else Path(trainer.default_root_dir) / "ref_logps"
    path = directory / ReferenceLogps.file_name(data, reference, settings)
    # One decision for all ranks (rank 0's), so either all load or all take part in the sharded pass.
    if trainer.strategy.broadcast(path.exists(), src=0):
        cache = ReferenceLogps.load(path, data=data, reference=reference)
        log.info("reference log-probs loaded from %s", path)
    else:
        values, here = {}, 0
        was_training = policy.training
        policy.eval()
        world, rank = trainer.world_size, trainer.global_rank
        batch_size = getattr(dm, "eval_batch_size", None) or 16
        for split in splits:
            ds = dm.dataset(split).select_columns(list(PAIR_COLUMNS))
            # Under DDP each rank runs its shard of the split, then all ranks gather the whole table.
            start, stop = shard_rows(len(ds), batch_size, world, rank)
            loader = DataLoader(
                ds.select(range(start, stop)) if world > 1 else ds,
                batch_size=batch_size,
                collate_fn=PairCollator(dm.tokenizer.pad_token_id),
            )
            local = compute_reference_logps(policy.reference_pair_logps, loader, module.device)
            here += len(local["index"])
            values[split] = gather_shards(local, trainer.strategy.all_gather, module.device) if world > 1 else local
        policy.train(was_training)
        cache = ReferenceLogps(values, data=data, reference=reference)
        if trainer.is_global_zero:
            cache.save(path)
        log.info(
            "reference log-probs computed once for %s pairs (%s)%s%s",
            "/".join(str(len(values[s]["index"])) for s in splits),
            "/".join(splits),
            f", {here} of them on this rank of {world}" if world > 1 else "",
            f", cached in {path}" if trainer.is_global_zero else "",
        )
        cache.computed_here = here
    if getattr(policy, "reference", None) is not None:
        policy.free_reference()
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        log.info("reference model freed: training uses the cached reference log-probs")
    return cache
