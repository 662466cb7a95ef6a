"""The benchmark's FLOP accounting (benchmarks/flops.py) against hand-worked numbers."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from flops import Arch, Work, forward_flops, step_flops, work  # noqa: E402

# h 4, kv 2, MLP 8, one layer, vocabulary 10: projections 4·4 + 2·4·2 + 4·4 + 3·4·8 = 144 weights.
ARCH = Arch(hidden=4, kv=2, intermediate=8, layers=1, vocab=10, lora_rank=1, lora_shapes=((4, 4),))
PAIR = [(2, 1, 1)]  # prompt 2 tokens, chosen 1, rejected 1


def test_layouts_count_tokens_keys_and_logit_positions():
    assert ARCH.linear_params == 144 and ARCH.lora_params == 8
    # packed: prompt once: 2 + 1 + 1 tokens; keys 1+2 (prompt) + 2+1 (chosen) + 2+1 (rejected); logits 1 + 1 + 1
    assert work(PAIR, "packed") == Work(tokens=4, keys=9, logits=3)
    # padfree: the same tokens and keys; logits at the last prompt position only (each completion has 1 token)
    assert work(PAIR, "padfree") == Work(tokens=4, keys=9, logits=1)
    # a pair (3, 2, 4): logits at the last prompt position, chosen 0 and rejected 0..2: 1 + 1 + 3 = 5 = c + r - 1
    assert work([(3, 2, 4)], "padfree").logits == 5
    # concat: two rows of 3 tokens, keys 1+2+3 each, logits everywhere; fused: only the 2 completion positions
    assert work(PAIR, "concat") == Work(tokens=6, keys=12, logits=6)
    assert work(PAIR, "fused") == Work(tokens=6, keys=12, logits=2)


def test_step_flops_by_hand():
    w = work(PAIR, "packed")
    # linear 2·1·144·4 = 1152, LoRA 2·1·8·4 = 64, attention 4·1·4·9 = 144, head 2·4·10·3 = 240
    assert forward_flops(ARCH, w, lora=True) == {"linear": 1152, "lora": 64, "attention": 144, "head": 240}
    # full fine-tuning: 3 × (1152 + 144 + 240) = 4608; a live reference adds one forward, 1536
    assert step_flops(ARCH, w, train="full", live_reference=False) == 4608
    assert step_flops(ARCH, w, train="full", live_reference=True) == 6144
    # LoRA: frozen weights 2 × (1152 + 240) = 2784; adapters and attention 3 × (64 + 144) = 624
    assert step_flops(ARCH, w, train="lora", live_reference=False) == 3408
