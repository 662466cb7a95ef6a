"""The training loader's order and mid-epoch resume: a per-epoch seeded shuffle and a DataLoader whose position
Lightning saves in every checkpoint."""

from __future__ import annotations

import itertools
import logging
from typing import Any

import torch
from torch.utils.data import DataLoader

log = logging.getLogger(__name__)


class SeededShuffle(torch.utils.data.Sampler[int]):
    """A fresh permutation per epoch from (seed, epoch) alone, so the order of a run does not
    depend on the global RNG and a resumed run sees the same batches (Lightning calls
    ``set_epoch``)."""

    def __init__(self, n: int, seed: int) -> None:
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return iter(torch.randperm(self.n, generator=g).tolist())

    def __len__(self) -> int:
        return self.n


class LengthGroupedShuffle(SeededShuffle):
    """The seeded per-epoch shuffle with each mega-batch sorted by length, so a batch holds pairs of similar
    length and pads less (transformers' ``group_by_length``; Lightning calls ``set_epoch``).

    Order of epoch e: the permutation of :class:`SeededShuffle` for (seed, e), cut into mega-batches of
    ``megabatch_batches × batch_size`` indices, each sorted by ``lengths`` (longest first; ties keep the
    shuffled order) and cut into batches; then the batches of the whole epoch are shuffled (a second seeded
    stream). Every pair is still seen once per epoch, and batch lengths do not follow a saw-tooth from long to
    short, which would correlate the step's length with its place in the epoch. The order depends on
    (seed, epoch) alone, so a resumed run sees the same batches, and per-pair losses do not change (only the
    padding does). Departure from transformers: it keeps the sorted order and moves the longest batch to the
    front (to fail fast on memory); here the first batch is a random one. With fewer than
    ``megabatch_batches`` batches in the data the whole epoch is one window, so batches are formed by length
    every epoch (only ties, and the batch order, vary).
    """

    def __init__(self, lengths: list[int], batch_size: int, seed: int, megabatch_batches: int = 50) -> None:
        super().__init__(len(lengths), seed)
        self.lengths = torch.as_tensor(lengths, dtype=torch.long)
        self.batch_size = batch_size
        self.megabatch = max(1, megabatch_batches) * batch_size

    def __iter__(self):
        order = torch.tensor(list(super().__iter__()), dtype=torch.long)
        batches = []
        for chunk in order.split(self.megabatch):
            ranks = torch.sort(self.lengths[chunk], descending=True, stable=True).indices
            batches.extend(chunk[ranks].split(self.batch_size))
        if not batches:
            return iter([])
        # The last batch of the epoch may be short: it stays last, so every other batch is full.
        full, last = batches[:-1], batches[-1]
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch + 7_919)
        shuffled = [full[i] for i in torch.randperm(len(full), generator=g).tolist()]
        return iter(torch.cat([*shuffled, last]).tolist())


class ResumableDataLoader(DataLoader):
    """The training DataLoader, resumable in the middle of an epoch.

    It implements ``state_dict``/``load_state_dict``, so Lightning's fit loop stores its state in
    every checkpoint (``loops.fit_loop.state_dict.combined_loader``) and hands it back when a run
    resumes mid-epoch (before the first batch is drawn). The state is the epoch and the number of
    batches already yielded in it; the resumed iterator skips exactly those batches of the same
    seeded order, so an interrupted and resumed run sees the batches of an uninterrupted one.
    Lightning draws batches without pre-fetching from a loader with a length, so "yielded" is
    "consumed by a training step".
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._yielded = 0
        self._resume: dict[str, int] | None = None

    def _epoch(self) -> int:
        return int(getattr(self.sampler, "epoch", 0))

    def __iter__(self):
        resume, self._resume = self._resume, None
        skip = 0
        if resume is not None and resume.get("epoch") == self._epoch() and 0 < resume.get("batches", 0) < len(self):
            skip = int(resume["batches"])
            log.info("resuming epoch %d of the training data after batch %d of %d", self._epoch(), skip, len(self))
        self._yielded = skip
        batches = super().__iter__()
        for batch in itertools.islice(batches, skip, None):
            self._yielded += 1
            yield batch

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self._epoch(), "batches": self._yielded}

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        self._resume = {"epoch": int(state_dict["epoch"]), "batches": int(state_dict["batches"])}
