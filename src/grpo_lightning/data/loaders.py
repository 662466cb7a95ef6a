"""The training loader's order and mid-epoch resume: torchdata's ``StatefulDataLoader`` over a seeded,
sharded, resumable per-epoch shuffle (plain, or grouped by length).

Lightning's fit loop stores the ``state_dict()`` of a stateful training loader in every checkpoint
(``loops.fit_loop.state_dict.combined_loader``) and hands it back before the first batch of a resumed run.
``StatefulDataLoader`` saves, with its own counters, the state of a sampler that has ``state_dict`` and
``load_state_dict``; the samplers here save (epoch, indices handed out), so a resumed loader starts at the next
index of the same seeded order without drawing, loading or collating the batches before it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import Dataset
from torch.utils.data.distributed import DistributedSampler
from torchdata.stateful_dataloader import StatefulDataLoader

log = logging.getLogger(__name__)


class EpochShuffle(DistributedSampler):
    """A fresh permutation of ``range(n)`` per epoch from (seed, epoch) alone, this rank's share of it, and the
    position in it, resumable.

    The order does not depend on the global RNG, so the same seed gives the same batches in every run, and a
    new order each epoch (Lightning calls ``set_epoch``). Under DDP the order is padded to a multiple of
    ``num_replicas`` with its first indices and rank ``r`` takes every ``num_replicas``-th index from ``r``, as
    :class:`~torch.utils.data.distributed.DistributedSampler` does; being one, Lightning leaves it as it is
    rather than wrapping it in another distributed sampler. With one rank the order is the permutation itself.

    ``state_dict()`` is the epoch of the iteration in progress and how many of this rank's indices it has handed
    out (``StatefulDataLoader`` saves it); ``load_state_dict`` sets that epoch, and the next iteration starts after
    those indices. A state that holds all of an epoch's indices (a checkpoint at the end of epoch e) resumes with
    epoch e + 1 from its start; a loaded position is dropped if ``set_epoch`` moves to another epoch before the
    iteration starts.
    """

    def __init__(self, n: int, seed: int, num_replicas: int = 1, rank: int = 0) -> None:
        # Explicit num_replicas/rank: the sampler is built before or without torch.distributed.
        super().__init__(range(n), num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed, drop_last=False)
        self._position = {"epoch": self.epoch, "yielded": 0}
        self._resume: dict[str, int] | None = None

    def order(self) -> list[int]:
        """All ``n`` indices in the order of the current epoch, before padding and sharding."""
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return torch.randperm(len(self.dataset), generator=g).tolist()

    def __iter__(self) -> Iterator[int]:
        # A generator, so this runs at the first index drawn: Lightning creates the loader's iterator (and this
        # one) before it calls set_epoch for the epoch, and a resumed loader loads its state before that too.
        epoch = self.epoch
        resume, self._resume = self._resume, None
        start = resume["yielded"] if resume is not None and resume["epoch"] == epoch else 0
        if start:
            log.info("resuming epoch %d of the training data after %d of %d pairs", epoch, start, self.num_samples)
        order = self.order()
        if order and len(order) < self.total_size:  # pad as DistributedSampler does
            order = (order * math.ceil(self.total_size / len(order)))[: self.total_size]
        mine = order[self.rank : self.total_size : self.num_replicas]
        self._position = {"epoch": epoch, "yielded": start}
        for index in mine[start:]:
            # Counted before the index leaves, so a state taken between two batches covers the first one.
            self._position = {"epoch": epoch, "yielded": self._position["yielded"] + 1}
            yield index

    def state_dict(self) -> dict[str, int]:
        # A loaded state not yet used is still the position (a checkpoint right after a resume).
        return dict(self._resume if self._resume is not None else self._position)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        epoch, yielded = int(state_dict["epoch"]), int(state_dict["yielded"])
        if yielded >= self.num_samples:  # a finished epoch: the next index is the first of the next epoch
            epoch, yielded = epoch + 1, 0
        # The epoch too, not only the position in it: with workers the loader draws its first batches when its
        # iterator is created, and Lightning creates a resumed loader's iterator before it calls set_epoch.
        self.set_epoch(epoch)
        self._resume = {"epoch": epoch, "yielded": yielded}


class LengthGroupedShuffle(EpochShuffle):
    """The seeded per-epoch shuffle with each mega-batch sorted by length, so a batch holds pairs of similar
    length and pads less (transformers' ``group_by_length``); sharded and resumable as :class:`EpochShuffle`.

    Order of epoch e: the permutation of :class:`EpochShuffle` for (seed, e), cut into mega-batches of
    ``megabatch_batches × batch_size × num_replicas`` indices, each sorted by ``lengths`` (longest first; ties
    keep the shuffled order) and cut into global batches of ``batch_size × num_replicas``; then the batches of
    the whole epoch are shuffled (a second seeded stream). A rank's batch of a step is its round-robin share of
    that step's global batch, so the grouping holds on every rank. Every pair is still seen once per epoch, and
    batch lengths do not follow a saw-tooth from long to short, which would correlate the step's length with its
    place in the epoch. The order depends on (seed, epoch) alone, so a resumed run sees the same batches, and
    per-pair losses do not change (only the padding does). Departure from transformers: it keeps the sorted order
    and moves the longest batch to the front (to fail fast on memory); here the first batch is a random one. With
    fewer than ``megabatch_batches`` batches in the data the whole epoch is one window, so batches are formed by
    length every epoch (only ties, and the batch order, vary).
    """

    def __init__(
        self,
        lengths: Sequence[int],
        batch_size: int,
        seed: int,
        megabatch_batches: int = 50,
        num_replicas: int = 1,
        rank: int = 0,
    ) -> None:
        super().__init__(len(lengths), seed, num_replicas=num_replicas, rank=rank)
        self.lengths = torch.as_tensor(list(lengths), dtype=torch.long)
        self.global_batch = batch_size * num_replicas  # the pairs of one step over all ranks
        self.megabatch = max(1, megabatch_batches) * self.global_batch

    def order(self) -> list[int]:
        order = torch.tensor(super().order(), dtype=torch.long)
        batches = []
        for chunk in order.split(self.megabatch):
            ranks = torch.sort(self.lengths[chunk], descending=True, stable=True).indices
            batches.extend(chunk[ranks].split(self.global_batch))
        if not batches:
            return []
        # The last batch of the epoch may be short: it stays last, so every other batch is full.
        full, last = batches[:-1], batches[-1]
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch + 7_919)
        shuffled = [full[i] for i in torch.randperm(len(full), generator=g).tolist()]
        return torch.cat([*shuffled, last]).tolist()


def training_loader(
    dataset: Dataset, sampler: EpochShuffle, batch_size: int, collate_fn: Any, num_workers: int
) -> StatefulDataLoader:
    """The training DataLoader: ``StatefulDataLoader`` (its state is the sampler's position, plus the workers'
    snapshots with ``num_workers`` > 0, so batches prefetched by workers are not counted as consumed)."""
    return StatefulDataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        collate_fn=collate_fn,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
    )
