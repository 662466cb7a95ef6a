"""Splitting an optimizer step's batch into micro-batches (pure torch)."""

from __future__ import annotations

import torch


def split_pairs(batch: dict[str, torch.Tensor], parts: int) -> list[dict[str, torch.Tensor]]:
    """Split a batch of B pairs into ``parts`` micro-batches. Tensors with 2B leading rows
    (chosen stacked over rejected) are split on both halves alike."""
    n = batch["group"].shape[0]
    chunks = torch.arange(n).tensor_split(min(parts, n))
    out = []
    for idx in chunks:
        idx = idx.to(batch["group"].device)
        mb = {}
        for key, value in batch.items():
            if value.shape[0] == 2 * n and n > 0 and key not in ("group",):
                mb[key] = torch.cat([value[idx], value[idx + n]])
            else:
                mb[key] = value[idx]
        out.append(mb)
    return out
