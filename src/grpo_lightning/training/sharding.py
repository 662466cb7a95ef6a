"""Strategies that shard the policy's parameters over ranks (FSDP): what the module and the callbacks do
differently under them. DDP and one process keep whole parameters on every rank."""

from __future__ import annotations

import torch


def shards_parameters(strategy) -> bool:
    """Whether ``strategy`` keeps only a shard of each parameter on a rank (Lightning's FSDP or
    ModelParallel strategy, DeepSpeed stage 3)."""
    from lightning.pytorch.strategies import FSDPStrategy, ModelParallelStrategy

    if isinstance(strategy, FSDPStrategy | ModelParallelStrategy):
        return True
    return type(strategy).__name__ == "DeepSpeedStrategy" and getattr(strategy, "zero_stage_3", False)


def fsdp_root(strategy) -> torch.nn.Module | None:
    """The root ``FullyShardedDataParallel`` module of an FSDP run (it alone clips gradients by their
    norm over all shards), else None."""
    from torch.distributed.fsdp import FullyShardedDataParallel

    model = getattr(strategy, "model", None)
    return model if isinstance(model, FullyShardedDataParallel) else None
