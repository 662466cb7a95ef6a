"""Policy loading: tiny from a config, a local directory, an unreachable hub id."""

from __future__ import annotations

import pytest
import torch

from grpo_lightning.policies import CausalLM, PolicySpec, TinyLlama


def _batch(tokenizer):
    text = [
        "Opinion of people in Avalon on: tea?\nA. Yes\nB. No A",
        "Opinion of people in Avalon on: tea?\nA. Yes\nB. No B",
    ]
    enc = tokenizer(text, return_tensors="pt", padding=True)
    labels = enc["input_ids"].clone()
    labels[:, :-1] = -100
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"], "labels": labels}


def test_tiny_is_seeded_and_reference_is_a_frozen_copy(tiny_dm_factory):
    dm = tiny_dm_factory()
    spec = CausalLM(tiny=TinyLlama(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64))
    a, b = spec.build(dm.tokenizer), spec.build(dm.tokenizer)
    for (k, v), (_, w) in zip(a.model.state_dict().items(), b.model.state_dict().items(), strict=True):
        assert torch.equal(v, w), k
    batch = _batch(dm.tokenizer)
    torch.testing.assert_close(a.pair_logps(batch), a.reference_pair_logps(batch))
    assert all(not p.requires_grad for p in a.reference.parameters())
    assert a.trainable_parameters() and all(p.requires_grad for p in a.trainable_parameters())


def test_spec_round_trips_through_plain_data():
    spec = CausalLM(tiny=TinyLlama(hidden_size=48, num_attention_heads=4), average_log_prob=True)
    again = PolicySpec.from_dict(spec.to_dict())
    assert isinstance(again, CausalLM) and again.to_dict() == spec.to_dict()
    assert spec.to_dict()["init_args"]["tiny"]["hidden_size"] == 48


def test_local_directory_loads_the_same_model(tiny_dm_factory, tmp_path):
    dm = tiny_dm_factory()
    tiny = CausalLM(tiny=TinyLlama(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64))
    built = tiny.build(dm.tokenizer)
    built.model.save_pretrained(tmp_path / "m")
    dm.tokenizer.save_pretrained(tmp_path / "m")
    loaded = CausalLM(name_or_path=str(tmp_path / "m")).build(dm.tokenizer)
    batch = _batch(dm.tokenizer)
    torch.testing.assert_close(loaded.pair_logps(batch), built.pair_logps(batch))


def test_unreachable_hub_model_says_offline():
    with pytest.raises(OSError, match="HF_HUB_OFFLINE"):
        CausalLM(name_or_path="nobody/no-such-model-xyz").build(None)


def test_bad_policy_settings():
    with pytest.raises(ValueError, match="divisible"):
        TinyLlama(hidden_size=30, num_attention_heads=4)
    with pytest.raises(ValueError, match="dtype"):
        CausalLM(dtype="float8")


def test_four_bit_needs_lora_and_cuda():
    with pytest.raises(ValueError, match="load_in_4bit.*lora"):
        CausalLM(name_or_path="x", load_in_4bit=True)
    if not torch.cuda.is_available():
        from grpo_lightning.policies.causal_lm import _four_bit_config

        with pytest.raises(RuntimeError, match="CUDA"):
            _four_bit_config(torch.bfloat16)
