"""A LoRA linear layer that runs as one matmul with the merged weight (peft's adapter, our kernel).

peft computes a LoRA layer as ``y = x Wᵀ + s · (x Aᵀ) Bᵀ`` (A: r × in, B: out × r, s = α / r):
besides the base matmul it writes the (tokens × out) adapter output, scales it and adds it, three
passes over an activation-sized tensor per layer, and as many again in the backward pass. On a
CPU these memory-bound passes cost as much as a third of a LoRA step (SmolLM2-135M with adapters
on all seven projections: benchmarks/README.md). Here the forward is one matmul with the merged
weight, and the backward reads the output gradient g (tokens × out) for the input's gradient and
for the adapters' gradients only:

    W' = W + s · B A                           (out × in, recomputed, never stored)
    y  = x W'ᵀ + bias
    ∂x = g W'
    ∂A = s · (g B)ᵀ x                           (r × in)
    ∂B = s · gᵀ (x Aᵀ)                          (out × r)

which are the gradients of peft's expression (W and the bias are frozen). The values equal peft's
up to float rounding (the sum is associated differently); tests/test_policies_lora_fused.py pins outputs
and gradients against peft's own forward.

The fused path is taken only where it is exact: one active adapter, plain LoRA (no DoRA or other
variant), no dropout, a frozen ``nn.Linear`` base, all in one dtype, not merged, no per-call
adapter names. Anything else (the adapter disabled for the reference, dropout > 0, a 4-bit base,
mixed dtypes) runs peft's forward unchanged.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from peft.tuners.lora.layer import Linear as LoraLinear
from torch import nn


class _MergedLoraMatmul(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, a, b, scaling: float):  # noqa: D102 - see the module docstring
        ctx.save_for_backward(x, weight, a, b)
        ctx.scaling = scaling
        return F.linear(x, torch.addmm(weight, b, a, alpha=scaling), bias)

    @staticmethod
    def backward(ctx, grad):  # noqa: D102
        x, weight, a, b = ctx.saved_tensors
        s = ctx.scaling
        g = grad.reshape(-1, grad.shape[-1])
        x2 = x.reshape(-1, x.shape[-1])
        dx = (g @ torch.addmm(weight, b, a, alpha=s)).view_as(x) if ctx.needs_input_grad[0] else None
        da = (g @ b).t() @ x2 * s if ctx.needs_input_grad[3] else None
        db = g.t() @ (x2 @ a.t()) * s if ctx.needs_input_grad[4] else None
        return dx, None, None, da, db, None


class FusedLoraLinear(LoraLinear):
    """peft's ``lora.Linear`` whose forward runs :class:`_MergedLoraMatmul` where that is exact."""

    def _fused_adapter(self, x: torch.Tensor, args: tuple, kwargs: dict) -> str | None:
        if args or kwargs or self.disable_adapters or self.merged or not isinstance(self.base_layer, nn.Linear):
            return None
        active = [name for name in self.active_adapters if name in self.lora_A]
        if len(active) != 1 or active[0] in self.lora_variant:
            return None
        name = active[0]
        if not isinstance(self.lora_dropout[name], nn.Identity):
            return None
        base, a = self.base_layer, self.lora_A[name].weight
        if base.weight.requires_grad or (base.bias is not None and base.bias.requires_grad):
            return None
        if not (x.dtype == base.weight.dtype == a.dtype == self.lora_B[name].weight.dtype):
            return None
        return name

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        name = self._fused_adapter(x, args, kwargs)
        if name is None:
            return super().forward(x, *args, **kwargs)
        base = self.base_layer
        return _MergedLoraMatmul.apply(
            x, base.weight, base.bias, self.lora_A[name].weight, self.lora_B[name].weight, float(self.scaling[name])
        )


def fuse_lora_linears(model: nn.Module) -> int:
    """Switch every peft ``lora.Linear`` of ``model`` to :class:`FusedLoraLinear` (same state, same
    parameters: only the forward changes); returns how many were switched."""
    n = 0
    for module in model.modules():
        if type(module) is LoraLinear:
            module.__class__ = FusedLoraLinear
            n += 1
    return n
