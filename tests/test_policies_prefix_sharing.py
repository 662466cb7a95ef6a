"""Padding-free rows (``model.policy.padding_free``) give the numbers of the concatenated and the packed
prefix-shared forward: log-probs, gradients, LoRA with the adapter-disabled reference, gradient checkpointing,
eager attention; and the packed and padding-free layouts, checked by hand."""

from __future__ import annotations

import logging

import pytest
import torch
from conftest import ragged_pair_batch

from grpo_lightning.data.tokenization import PairCollator
from grpo_lightning.policies import CausalLM, LoraSettings, TinyLlama
from grpo_lightning.policies import causal_lm as causal_lm_module
from grpo_lightning.policies.base import PolicySpec
from grpo_lightning.policies.causal_lm import CausalLMPolicyModule
from grpo_lightning.policies.prefix_sharing import (
    IGNORE_INDEX,
    first_fit_decreasing,
    pack_pairs,
    pack_pairs_padding_free,
)

TINY = TinyLlama(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
LORA = LoraSettings(r=4, alpha=8, target_modules=["q_proj", "v_proj", "up_proj"])
_ragged_batch = ragged_pair_batch

# (prompt, chosen, rejected) lengths: prompts of 2..12 tokens, completions of 1..4, chosen and rejected of
# different lengths. Segments 17, 6, 13, 4, 7, 14 in rows of width 17, first-fit decreasing:
# row 0 = [pair 0], row 1 = [pair 5], row 2 = [pair 2, pair 3], row 3 = [pair 4, pair 1]: R = 4 < B = 6.
PAIRS = [(12, 2, 3), (3, 1, 2), (8, 4, 1), (2, 1, 1), (5, 1, 1), (9, 3, 2)]


class _Tok:
    """Just enough of a tokenizer for ``CausalLM.build`` (vocabulary size, pad, eos)."""

    pad_token_id, eos_token_id = 0, 1

    def __len__(self) -> int:
        return 50


def _batch(pairs=PAIRS, seed=0):
    g = torch.Generator().manual_seed(seed)
    feats = []
    for i, (p, c, r) in enumerate(pairs):
        ids = torch.randint(2, 50, (p + c + r,), generator=g).tolist()
        feats.append(
            {
                "chosen_ids": ids[: p + c],
                "rejected_ids": ids[:p] + ids[p + c :],
                "prompt_length": p,
                "group_id": i % 2,
                "index": i,
            }
        )
    return PairCollator(pad_token_id=0)(feats)


def _build(attn="sdpa", **kw):
    torch.manual_seed(0)  # peft draws lora_A from the global generator
    policy = CausalLM(tiny=TINY, **kw).build(_Tok())
    policy.model.config._attn_implementation = attn
    policy._mask_dtype = None if attn == "sdpa" else torch.float32
    return policy


def _nudge_adapters(model):
    """peft initialises B = 0 (adapter = identity); move it (the same way in every model) so disabling it matters."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)


def _run(policy, batch):
    """Policy log-probs, the gradients of (chosen - 0.5 rejected) and the reference log-probs."""
    policy.train()
    c, r = policy.pair_logps(batch)
    (c.sum() - 0.5 * r.sum()).backward()
    grads = {k: p.grad for k, p in policy.model.named_parameters() if p.requires_grad}
    return (c.detach(), r.detach()), grads, policy.reference_pair_logps(batch)


def _assert_same(got, want, grad_tol=1e-4):
    (logps1, grads1, ref1), (logps0, grads0, ref0) = got, want
    torch.testing.assert_close(logps1, logps0, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ref1, ref0, rtol=1e-5, atol=1e-5)
    assert grads0 and set(grads1) == set(grads0)
    for k, g in grads0.items():
        assert grads1[k] is not None, k
        torch.testing.assert_close(grads1[k], g, rtol=grad_tol, atol=1e-5)


def test_the_test_batch_shares_rows():
    packed = pack_pairs_padding_free(_batch())
    assert packed.rows.tolist() == [0, 3, 2, 2, 3, 1]
    assert packed.offsets.tolist() == [0, 7, 0, 13, 0, 0]
    assert packed.input_ids.shape == (4, 17), "R = 4 rows for B = 6 pairs"


@pytest.mark.parametrize("average", [False, True])
@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_padding_free_equals_concatenated_and_packed(average, attn):
    """Per-pair log-probs (sum and mean) and gradients, policy and reference, against the concatenated forward
    and the packed prefix-shared one; eager attention takes the additive float mask."""
    batch = _batch()
    plain = _build(attn, prefix_sharing="off", average_log_prob=average)
    packed = _build(attn, prefix_sharing="on", average_log_prob=average)
    free = _build(attn, prefix_sharing="on", padding_free=True, average_log_prob=average)
    assert free.padding_free and not packed.padding_free
    if attn == "eager":
        assert pack_pairs_padding_free(batch, mask_dtype=free._mask_dtype).attention_mask.dtype == torch.float32
    want = _run(plain, batch)
    _assert_same(_run(free, batch), want)
    torch.testing.assert_close(_run(free, batch)[0], _run(packed, batch)[0], rtol=1e-5, atol=1e-5)


def test_lora_adapter_reference():
    """LoRA: the policy has the adapter, the reference disables it (``disable_adapter`` around the decoder)."""
    batch = _batch()
    runs = []
    for kw in ({"prefix_sharing": "off"}, {"prefix_sharing": "on", "padding_free": True}):
        policy = _build(lora=LORA, **kw)
        assert policy.adapter_reference and policy.reference is None
        _nudge_adapters(policy.model)
        runs.append(_run(policy, batch))
    _assert_same(runs[1], runs[0])
    logps, _, ref = runs[1]
    assert not torch.allclose(logps[0], ref[0]), "the adapter changes the policy, the reference is without it"


@pytest.mark.parametrize("lora", [None, LORA], ids=["full", "lora"])
def test_gradient_checkpointing(lora):
    batch = _batch()
    plain = _build(prefix_sharing="off", lora=lora)
    free = _build(prefix_sharing="on", padding_free=True, gradient_checkpointing=True, lora=lora)
    assert free.model.is_gradient_checkpointing
    for p in (plain, free):
        if lora is not None:
            _nudge_adapters(p.model)
    _assert_same(_run(free, batch), _run(plain, batch))


def test_hand_checked_layout():
    """Pairs C (p=1, c=1, r=1), A (4, 2, 2), B (2, 1, 1) in that batch order: segments of 3, 8, 4, W = 8.

    First-fit decreasing places A (8) in row 0, then B (4) in a new row 1 (8 + 4 > 8), then C (3) in row 1
    after B (4 + 3 <= 8): rows (C, A, B) = (1, 0, 1), offsets (4, 0, 0); column 7 of row 1 is padding.

        row 0: A prompt 0..3 | A chosen 4,5 | A rejected 6,7    positions 0 1 2 3 4 5 4 5
        row 1: B prompt 0,1 | B chosen 2 | B rejected 3 | C prompt 4 | C chosen 5 | C rejected 6 | pad 7
                                                                 positions 0 1 2 2 0 1 1 0

    Predicting positions (flat row * 8 + column), in pair order: C's last prompt 12; A's last prompt 3, its
    chosen column 4 (predicts chosen token 1), its rejected column 6 (predicts rejected token 1); B's last
    prompt 9. So predict = [12, 3, 4, 6, 9]; A's chosen tokens are read from slots 1, 2 and its rejected ones
    from 1, 3.
    """
    batch = _batch([(1, 1, 1), (4, 2, 2), (2, 1, 1)], seed=3)
    packed = pack_pairs_padding_free(batch)
    assert packed.rows.tolist() == [1, 0, 1] and packed.offsets.tolist() == [4, 0, 0]
    assert packed.position_ids.tolist() == [[0, 1, 2, 3, 4, 5, 4, 5], [0, 1, 2, 2, 0, 1, 1, 0]]
    ids = batch["input_ids"]  # chosen rows 0..2 then rejected rows 3..5
    assert packed.input_ids[0].tolist() == ids[1, :6].tolist() + ids[4, 4:6].tolist()
    assert packed.input_ids[1].tolist() == ids[2, :3].tolist() + ids[5, 2:3].tolist() + ids[0, :2].tolist() + [
        ids[3, 1].item(),
        0,
    ]
    m = packed.attention_mask[:, 0]
    assert m.shape == (2, 8, 8) and m.dtype == torch.bool
    assert m[0, 5, 4] and not m[0, 4, 5], "causal within a segment"
    assert m[0, 6, 3] and not m[0, 6, 4] and not m[0, 7, 5] and m[0, 7, 6], "rejected sees prompt, never chosen"
    assert m[1, 3, 1] and not m[1, 3, 2], "B's rejected sees B's prompt, not B's chosen"
    assert not m[1, 4, :4].any() and m[1, 6, 4] and not m[1, 6, 5], "C sees only C"
    assert m[1, 7].tolist() == [False] * 7 + [True] and not m[1, :7, 7].any(), "padding sees itself only"
    assert packed.predict.tolist() == [12, 3, 4, 6, 9]
    assert packed.chosen_index[1].tolist() == [1, 2] and packed.rejected_index[1].tolist() == [1, 3]
    assert packed.chosen_labels[0].tolist() == [ids[0, 1].item(), IGNORE_INDEX]
    additive = pack_pairs_padding_free(batch, mask_dtype=torch.float32).attention_mask[:, 0]
    assert torch.equal(additive == 0, m) and additive.min() == torch.finfo(torch.float32).min


def test_first_fit_decreasing_ties_in_batch_order():
    assert first_fit_decreasing([3, 5, 2, 3, 2]) == ([1, 0, 1, 2, 2], [0, 0, 3, 0, 3])
    assert first_fit_decreasing([4]) == ([0], [0])


def test_padding_free_needs_prefix_sharing():
    with pytest.raises(ValueError, match=r"model\.policy\.padding_free .*prefix_sharing"):
        CausalLM(prefix_sharing="off", padding_free=True)
    with pytest.raises(ValueError, match="padding_free"):
        CausalLMPolicyModule(torch.nn.Linear(2, 2), None, average_log_prob=False, padding_free=True)


def test_unused_where_auto_finds_prefix_sharing_unsupported(monkeypatch, caplog):
    monkeypatch.setattr(causal_lm_module, "prefix_sharing_support", lambda model: (False, "not here"))
    with caplog.at_level(logging.INFO, logger=causal_lm_module.__name__):
        policy = _build(prefix_sharing="auto", padding_free=True)
    assert not policy.prefix_sharing and not policy.padding_free
    assert "padding_free unused" in caplog.text


def test_init_args_carry_it():
    spec = CausalLM(tiny=TINY, padding_free=True)
    assert spec.to_dict()["init_args"]["padding_free"] is True
    assert PolicySpec.from_dict(spec.to_dict()).build(_Tok()).padding_free
    assert CausalLM(tiny=TINY).init_args["padding_free"] is False


def test_head_post_processing_of_granite():
    """The LM head runs outside ``ForCausalLM.forward``: Granite's ``logits_scaling`` is applied by hand."""
    from transformers import AutoModelForCausalLM, GraniteConfig

    cfg = GraniteConfig(
        vocab_size=50,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        intermediate_size=64,
        logits_scaling=4.0,
        pad_token_id=0,
        bos_token_id=None,
        eos_token_id=1,
    )
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(cfg).eval()
    model.config._attn_implementation = "sdpa"
    batch = _batch()
    plain = CausalLMPolicyModule(model, None, average_log_prob=False).pair_logps(batch)
    free = CausalLMPolicyModule(model, None, average_log_prob=False, prefix_sharing=True, padding_free=True)
    torch.testing.assert_close(free.pair_logps(batch), plain, rtol=1e-5, atol=1e-5)


def test_empty_answer_and_empty_prompt():
    """An empty completion gets log-prob 0, as in the concatenated forward; an empty prompt is refused."""
    batch = _batch([(3, 0, 2), (4, 2, 0), (2, 1, 1)])
    for average in (False, True):
        want = _build(prefix_sharing="off", average_log_prob=average).pair_logps(batch)
        got = _build(prefix_sharing="on", padding_free=True, average_log_prob=average).pair_logps(batch)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="prompt of at least one token"):
        pack_pairs_padding_free(_batch([(0, 2, 2), (3, 1, 1)]))


def test_packed_layout_hides_chosen_from_rejected():
    batch = _ragged_batch()
    packed = pack_pairs(batch)
    mask = packed.attention_mask[:, 0]
    p_max, cc = 9, 4
    assert packed.input_ids.shape == (4, 9 + 4 + 4) and packed.keep == 1 + 4 + 4
    assert not mask[:, p_max + cc :, p_max : p_max + cc].any(), "rejected never attends chosen"
    # Row 1 (prompt 3): positions restart at the prompt length for the rejected completion.
    assert packed.position_ids[1, p_max - 1] == 2 and packed.position_ids[1, p_max] == 3
    assert packed.position_ids[1, p_max + cc] == 3
