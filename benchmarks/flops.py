"""FLOPs of one training step of a Llama-family decoder, per layout of the pairs (for MFU).

A pair has p prompt tokens and c, r completion tokens (chosen, rejected; the EOS included).
Padding is not counted: these are the FLOPs the step needs, so MFU = FLOPs / (time × peak)
charges padding to the mode that pads. A multiply-add is 2 FLOPs.

Forward, per token that goes through the decoder (``Arch`` with hidden h, key/value width
kv = n_kv_heads · head_dim, MLP width I, L layers, vocabulary V):

    linear     2 · L · (h·h + 2·h·kv + h·h + 3·h·I)       q, k, v, o, gate, up, down
    LoRA       2 · L · Σ_adapted r · (in + out)            A then B of each adapted projection
    attention  4 · L · h · (keys the token attends to)      Q·Kᵀ and P·V, all query heads
    LM head    2 · h · V per position whose logits are computed

Layouts (how a mode lays a pair out):

    concat     two rows, prompt + chosen and prompt + rejected: 2p + c + r tokens; keys
               T(T + 1)/2 per row of T tokens; logits at every position (plain Hugging Face)
    fused      the same rows, logits only at the c + r positions that predict a completion
               token (TRL 1.16's fused LM head)
    packed     one row, prompt once, both completions attend to it and not to each other
               (prefix sharing): p + c + r tokens; keys p(p+1)/2 + c·p + c(c+1)/2 + r·p + r(r+1)/2;
               logits at the last prompt position and the completion positions: 1 + c + r
    padfree    packed, several pairs to a row without padding (``padding_free``): the same tokens and keys;
               logits only at the positions that predict a completion token (the last prompt position, once
               for both completions, and all but the last of each completion): c + r − 1

Backward: a trained weight costs 2× its forward (gradient of the input and of the weight), a
frozen one 1× (the input's gradient only, as LoRA needs it to reach earlier adapters); attention
has no weights and costs 2× its forward. So a full fine-tuning step is 3× the forward and a LoRA
step about 2× (plus 3× on the adapters). A live reference adds 1× the forward without LoRA.
Recomputation under gradient checkpointing is not model FLOPs and is not counted (MFU, not HFU).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Layout = Literal["concat", "fused", "packed", "padfree"]


@dataclass(frozen=True)
class Arch:
    hidden: int
    kv: int
    intermediate: int
    layers: int
    vocab: int
    lora_rank: int = 0
    # (in, out) of each adapted projection of one layer; empty without LoRA.
    lora_shapes: tuple[tuple[int, int], ...] = ()

    @property
    def linear_params(self) -> int:
        """Weights of the projections of one layer."""
        h, kv, i = self.hidden, self.kv, self.intermediate
        return h * h + 2 * h * kv + h * h + 3 * h * i

    @property
    def lora_params(self) -> int:
        return sum(self.lora_rank * (a + b) for a, b in self.lora_shapes)


@dataclass(frozen=True)
class Work:
    """Token, attended-key and logit-position counts of a set of pairs in one layout."""

    tokens: int
    keys: int
    logits: int


def _tri(n: int) -> int:
    return n * (n + 1) // 2


def work(pairs: list[tuple[int, int, int]], layout: Layout) -> Work:
    """Counts for pairs ``(p, c, r)`` laid out as ``layout`` (see the module docstring)."""
    tokens = keys = logits = 0
    for p, c, r in pairs:
        if layout in ("packed", "padfree"):
            tokens += p + c + r
            keys += _tri(p) + c * p + _tri(c) + r * p + _tri(r)
            logits += 1 + c + r if layout == "packed" else c + r - 1
        else:
            tokens += 2 * p + c + r
            keys += _tri(p + c) + _tri(p + r)
            logits += 2 * p + c + r if layout == "concat" else c + r
    return Work(tokens, keys, logits)


def forward_flops(arch: Arch, w: Work, *, lora: bool) -> dict[str, int]:
    """Forward FLOPs by part (``lora`` adds the adapters' matmuls)."""
    return {
        "linear": 2 * arch.layers * arch.linear_params * w.tokens,
        "lora": 2 * arch.layers * arch.lora_params * w.tokens if lora else 0,
        "attention": 4 * arch.layers * arch.hidden * w.keys,
        "head": 2 * arch.hidden * arch.vocab * w.logits,
    }


def step_flops(arch: Arch, w: Work, *, train: Literal["full", "lora"], live_reference: bool) -> int:
    """Model FLOPs of a training step over ``w``: policy forward + backward, and a reference
    forward when the reference runs in the step (not cached)."""
    f = forward_flops(arch, w, lora=train == "lora")
    if train == "full":
        total = 3 * (f["linear"] + f["attention"] + f["head"])
    else:  # frozen weights: forward + the input's gradient; adapters: 3×; attention: 3×
        total = 2 * (f["linear"] + f["head"]) + 3 * (f["lora"] + f["attention"])
    if live_reference:
        total += f["linear"] + f["attention"] + f["head"]
    return total
