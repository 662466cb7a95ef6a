"""Reference log-probabilities as data: computed once per data and reference model, cached, handed to the data.

The reference π_ref never trains, so log π_ref(y_w|x) and log π_ref(y_l|x) of every pair are fixed numbers: like
TRL, they are kept as data, the columns ``ref_chosen_logps``, ``ref_rejected_logps`` (``REF_COLUMNS`` of
:mod:`grpo_lightning.data.tokenization`) of each tokenised split, which the collator puts into the batch beside the
token ids. With ``model.precompute_ref_logps`` the module holds a :class:`ReferenceCache`, the one object that

* at fit start gets the splits' values (:func:`cached_reference_logps`: runs the reference over the splits once,
  batched, no grad, under DDP each rank a shard and all gather; or loads them from a cache file (safetensors) keyed
  by a fingerprint of the tokenised data and a hash of the reference weights, both stored in its metadata and
  checked on load, so a stale cache is never used),
* hands them to the data module through its one method for it, ``set_reference_logps(split, values)`` (the data
  module keeps owning its splits; this module never replaces them itself),
* frees the policy's reference copy, and answers the module's question "this batch's reference log-probs?".

Below :class:`ReferenceCache` nothing reads trainer or policy state: the caller passes the reference forward, the
splits, the collator and the ranks (:class:`Ranks`).
"""

from __future__ import annotations

import gc
import hashlib
import json
import logging
import math
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import torch

from grpo_lightning.data.tokenization import CHOSEN_KEY, PAIR_COLUMNS, REJECTED_KEY, PairCollator
from grpo_lightning.training.sharding import shards_parameters

log = logging.getLogger(__name__)

FORMAT_VERSION = "1"


class ReferenceCacheError(RuntimeError):
    """A cache file that does not belong to this data or this reference model."""


class Ranks(NamedTuple):
    """The processes that share the reference pass: this one's rank, how many, and the collectives
    (``all_gather``: tensor → (K, …) tensor; ``broadcast(obj, src)``). The default is one process."""

    rank: int = 0
    world_size: int = 1
    all_gather: Callable[[torch.Tensor], torch.Tensor] | None = None
    broadcast: Callable[..., Any] | None = None


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
    """Reference log-probs of each split: a table per split, row ``index`` (the pairs' ``index`` column) holding
    (chosen, rejected); what the cache file stores, and what :meth:`rows` reads out in a split's row order."""

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
        self.computed_here: int | None = None  # pairs this process ran the reference on (None: loaded from a file)

    def lookup(self, split: str, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if split not in self.tables:
            raise KeyError(f"no cached reference log-probs for split {split!r} (have {sorted(self.tables)})")
        values = self.tables[split][index]
        return values[:, 0], values[:, 1]

    def rows(self, split: str, dataset) -> tuple[torch.Tensor, torch.Tensor]:
        """(chosen, rejected), float32 ``(n,)``, for the rows of ``dataset`` (the tokenised ``split`` these values
        were computed on) in its row order."""
        index = torch.as_tensor(dataset["index"], dtype=torch.long)
        chosen, rejected = self.lookup(split, index)
        if chosen.isnan().any() or rejected.isnan().any():  # a row the cache never saw: not this data
            raise ReferenceCacheError(f"the cached reference log-probs of {split!r} miss rows of this data")
        return chosen, rejected

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


def cached_reference_logps(
    splits: Mapping[str, Any],
    reference_fn: Callable[[dict[str, torch.Tensor]], tuple[torch.Tensor, torch.Tensor]],
    *,
    reference: str,
    directory: str | os.PathLike,
    batch_size: int,
    collate: Callable,
    device: torch.device | str = "cpu",
    settings: Mapping[str, object] | None = None,
    ranks: Ranks | None = None,
) -> ReferenceLogps:
    """Reference log-probs of the tokenised ``splits`` (name → ``datasets.Dataset``): loaded from the cache file in
    ``directory`` when one exists for this data, these reference weights (``reference``, a
    :func:`weights_fingerprint`) and ``settings`` (whatever else changes the numbers: precision, averaging), else
    computed with ``reference_fn`` (a batch of ``collate`` → chosen, rejected) and saved by rank 0.

    Under DDP every rank calls this: each runs the reference on its shard of whole batches (:func:`shard_rows`),
    and ``ranks.all_gather`` gives every rank the whole table, equal bitwise to one process's."""
    from torch.utils.data import DataLoader

    ranks = ranks or Ranks()
    data = {s: data_fingerprint(ds) for s, ds in splits.items()}
    path = Path(directory) / ReferenceLogps.file_name(data, reference, settings or {})
    distributed = ranks.world_size > 1
    exists = path.exists()
    # One decision for all ranks (rank 0's), so either all load or all take part in the sharded pass.
    if distributed and ranks.broadcast is not None:
        exists = ranks.broadcast(exists, src=0)
    if exists:
        log.info("reference log-probs loaded from %s", path)
        return ReferenceLogps.load(path, data=data, reference=reference)
    values, here = {}, 0
    for split, ds in splits.items():
        ds = ds.select_columns(list(PAIR_COLUMNS))
        start, stop = shard_rows(len(ds), batch_size, ranks.world_size, ranks.rank)
        loader = DataLoader(
            ds.select(range(start, stop)) if distributed else ds, batch_size=batch_size, collate_fn=collate
        )
        local = compute_reference_logps(reference_fn, loader, device)
        here += len(local["index"])
        values[split] = gather_shards(local, ranks.all_gather, device) if distributed else local
    cache = ReferenceLogps(values, data=data, reference=reference)
    if ranks.rank == 0:
        cache.save(path)
    log.info(
        "reference log-probs computed once for %s pairs (%s)%s%s",
        "/".join(str(len(values[s]["index"])) for s in splits),
        "/".join(splits),
        f", {here} of them on this rank of {ranks.world_size}" if distributed else "",
        f", cached in {path}" if ranks.rank == 0 else "",
    )
    cache.computed_here = here
    return cache


# ---------------------------------------------------------------------------- the module's component
class ReferenceCache:
    """The reference log-probs of a run with ``model.precompute_ref_logps``: the module holds one and calls
    :meth:`setup` and :meth:`fit_start` from the Lightning hooks of the same names, and :meth:`pair_logps` for each
    batch. It computes or loads the values once (at the first fit), frees the policy's reference copy, and gives
    every data module the module meets (a second fit's, a later ``validate``/``test``/``predict``'s) the values of
    the splits they were computed on, through ``data_module.set_reference_logps``.

    Args:
        enabled: ``model.precompute_ref_logps``.
        directory: ``model.ref_cache_dir``, the directory of the cache files; ``None``:
            ``<trainer.default_root_dir>/ref_logps``. A file is reused only for the same data and reference weights.
    """

    def __init__(self, enabled: bool, directory: str | None = None) -> None:
        self.enabled, self.directory = enabled, directory
        self.logps: ReferenceLogps | None = None  # set at the first fit start

    def pair_logps(self, batch: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The batch's cached (log π_ref(y_w|x), log π_ref(y_l|x)), each ``(B,)``, or ``None`` (run the reference).
        Only this object's values are trusted: columns another run's reference left in a split are ignored."""
        if self.logps is not None and CHOSEN_KEY in batch:
            return batch[CHOSEN_KEY], batch[REJECTED_KEY]
        return None

    def setup(self, trainer, stage: str) -> None:
        """Refuses a sharded (FSDP) fit; for ``validate``/``test``/``predict`` after a fit freed the reference, gives
        the data module (perhaps a fresh one) the columns too, for the splits that are the data they were computed
        on (the Lightning hook runs before any loader is made)."""
        if trainer is None:
            return
        if stage == "fit" and self.enabled and shards_parameters(trainer.strategy):
            # The cache is keyed by a fingerprint of the reference's weights, which a rank holds only a shard of.
            raise ValueError(
                "model.precompute_ref_logps is not supported with a strategy that shards the parameters (FSDP): "
                "use DDP, or leave it off"
            )
        if stage != "fit" and self.logps is not None and hasattr(trainer.datamodule, "set_reference_logps"):
            self._hand_over(trainer.datamodule, check=True)

    def fit_start(self, trainer, policy, device: torch.device) -> None:
        """At the first fit: the values (loaded or computed), then the policy's reference copy is freed. At every
        fit: the data module gets them; a second fit of this module may bring other data, so then only the splits
        the values were computed on get them."""
        if not self.enabled:
            return
        fresh = self.logps is None
        if fresh:
            self.logps = self._load_or_compute(trainer, policy, device)
            free_reference(policy)
        self._hand_over(_data_module(trainer), check=not fresh)

    def _load_or_compute(self, trainer, policy, device: torch.device) -> ReferenceLogps:
        """The splits' reference log-probs (see :func:`cached_reference_logps`), with the trainer's precision
        context, ranks and root directory and the policy's reference forward."""
        dm = _data_module(trainer)
        if not hasattr(policy, "reference_state_dict"):
            raise ValueError(f"model.precompute_ref_logps is not supported by {type(policy).__name__}")
        splits = {s: dm.dataset(s) for s in ("train", "val", "test") if len(dm.dataset(s))}
        strategy = trainer.strategy
        was_training = policy.training
        policy.eval()
        try:
            with trainer.precision_plugin.forward_context():
                return cached_reference_logps(
                    splits,
                    policy.reference_pair_logps,
                    reference=weights_fingerprint(policy.reference_state_dict()),
                    directory=self.directory or f"{trainer.default_root_dir}/ref_logps",
                    batch_size=getattr(dm, "eval_batch_size", None) or 16,
                    collate=PairCollator(dm.tokenizer.pad_token_id),
                    device=device,
                    settings={
                        "average_log_prob": bool(policy.average_log_prob),
                        "policy": type(policy).__name__,
                        "precision": str(trainer.precision),  # bf16-mixed log-probs differ from float32 ones
                    },
                    ranks=Ranks(trainer.global_rank, trainer.world_size, strategy.all_gather, strategy.broadcast),
                )
        finally:
            policy.train(was_training)

    def _hand_over(self, dm, check: bool) -> None:
        """Gives the data module's splits the cached values. With ``check`` (a data module the values were not just
        computed for) only splits with the cached data fingerprint get them; the others lose any reference columns
        they carry, so no batch holds another run's values (and with the reference freed, the policy says so when
        asked for it)."""
        for split in self.logps.tables:
            ds = dm.dataset(split)
            if not check or data_fingerprint(ds) == self.logps.data.get(split):
                dm.set_reference_logps(split, self.logps.rows(split, ds))
            else:
                dm.set_reference_logps(split, None)


def _data_module(trainer):
    dm = trainer.datamodule
    if dm is None or not hasattr(dm, "set_reference_logps"):
        raise ValueError("model.precompute_ref_logps needs a PreferenceDataModule passed to the Trainer")
    return dm


def free_reference(policy) -> None:
    """Drops the policy's reference copy: from here on the data carries its log-probs (a LoRA policy's reference is
    the base model with the adapter off, so it has none to free)."""
    if getattr(policy, "reference", None) is None:
        return
    policy.free_reference()
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    log.info("reference model freed: training uses the cached reference log-probs")
