"""LoRA policies: the reference is the base model with the adapter disabled (no copy)."""

from __future__ import annotations

import pytest
import torch
from conftest import fit_quietly

from grpo_lightning.policies import CausalLM, LoraSettings, TinyLlama

TINY = TinyLlama(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
LORA = LoraSettings(r=4, alpha=8, target_modules=["q_proj", "v_proj", "up_proj"])


class _Tok:
    pad_token_id, eos_token_id = 0, 1

    def __len__(self) -> int:
        return 50


def _batch():
    from grpo_lightning.data.tokenization import PairCollator

    g = torch.Generator().manual_seed(1)
    feats = []
    for i, (p, c, r) in enumerate([(7, 2, 1), (4, 1, 3), (6, 2, 2)]):
        ids = torch.randint(2, 50, (p + c + r,), generator=g).tolist()
        feats.append(
            {
                "chosen_ids": ids[: p + c],
                "rejected_ids": ids[:p] + ids[p + c :],
                "prompt_length": p,
                "group_id": 0,
                "index": i,
            }
        )
    return PairCollator(0)(feats)


def _nudge_adapters(model):
    """peft initialises B = 0 (adapter = identity); move it so disabling it matters."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)


@pytest.mark.parametrize("sharing", ["on", "off"])
def test_lora_reference_is_base_model(sharing):
    base = CausalLM(tiny=TINY, prefix_sharing=sharing).build(_Tok())
    lora = CausalLM(tiny=TINY, prefix_sharing=sharing, lora=LORA).build(_Tok())
    assert lora.reference is None and lora.adapter_reference
    _nudge_adapters(lora.model)
    batch = _batch()
    ref = lora.reference_pair_logps(batch)
    torch.testing.assert_close(ref, base.reference_pair_logps(batch), rtol=1e-5, atol=1e-5)
    policy = lora.pair_logps(batch)
    assert not torch.allclose(policy[0], ref[0]), "the adapter changes the policy"


def test_only_adapters_train_and_no_copy():
    base = CausalLM(tiny=TINY).build(_Tok())
    lora = CausalLM(tiny=TINY, lora=LORA).build(_Tok())
    trainable = dict((n, p) for n, p in lora.named_parameters() if p.requires_grad)
    assert trainable and all("lora_" in n for n in trainable)
    assert {id(p) for p in lora.trainable_parameters()} == {id(p) for p in trainable.values()}
    n_model = sum(p.numel() for p in base.model.parameters())
    n_adapter = sum(p.numel() for p in trainable.values())
    assert sum(p.numel() for p in lora.parameters()) == n_model + n_adapter, "base + adapter, no reference copy"
    assert sum(p.numel() for p in base.parameters()) == 2 * n_model


def test_lora_gradient_checkpointing_grads_flow():
    grads = []
    for gc in (False, True):
        torch.manual_seed(0)  # peft draws lora_A from the global generator
        lora = CausalLM(tiny=TINY, lora=LORA, gradient_checkpointing=gc).build(_Tok())
        _nudge_adapters(lora.model)
        lora.train()
        c, r = lora.pair_logps(_batch())
        (c - r).sum().backward()
        with torch.no_grad():
            ref = lora.reference_pair_logps(_batch())
        assert torch.isfinite(ref[0]).all()
        grads.append({n: p.grad for n, p in lora.named_parameters() if p.requires_grad})
    for n, g in grads[0].items():
        assert grads[1][n] is not None
        torch.testing.assert_close(grads[1][n], g, rtol=1e-5, atol=1e-6)


def test_lora_spec_round_trips_and_validates():
    from grpo_lightning.policies.base import PolicySpec

    spec = CausalLM(tiny=TINY, lora={"r": 2, "alpha": 4, "target_modules": ["q_proj"]})
    again = PolicySpec.from_dict(spec.to_dict())
    assert again.lora == spec.lora
    with pytest.raises(ValueError, match="lora.r"):
        LoraSettings(r=0)


def test_lora_module_trains(tiny_dm_factory):

    from grpo_lightning.core.losses import IPO
    from grpo_lightning.core.weighting import RobustWeighting
    from grpo_lightning.training.module import GroupRobustPreferenceModule

    dm = tiny_dm_factory(batch_size=8)
    module = GroupRobustPreferenceModule(
        policy=CausalLM(tiny=TINY, lora=LORA),
        loss=IPO(),
        weighting=RobustWeighting(step_size=0.5),
        group_names=dm.group_names,
        group_counts=dm.train_group_counts,
        tokenizer=dm.tokenizer,
    )
    frozen = {n: p.clone() for n, p in module.policy.named_parameters() if not p.requires_grad}
    fit_quietly(module, dm, max_steps=2)
    for n, p in module.policy.named_parameters():
        if n in frozen:
            assert torch.equal(p, frozen[n]), n


def test_continued_sft_adapter_trains_the_same_adapter_weights(tmp_path, tiny_dm_factory):
    """``adapter``: the policy keeps training the SFT adapter (the authors' code) and the reference is the SFT model."""
    from grpo_lightning.core.losses import IPO
    from grpo_lightning.core.weighting import RobustWeighting
    from grpo_lightning.training.module import GroupRobustPreferenceModule

    dm = tiny_dm_factory(batch_size=8)
    sft = CausalLM(tiny=TINY, lora=LORA).build(dm.tokenizer)
    _nudge_adapters(sft.model)
    sft.model.save_pretrained(str(tmp_path / "hf_adapter"))
    saved = {n: p.detach().clone() for n, p in sft.model.named_parameters() if "lora_" in n}

    module = GroupRobustPreferenceModule(
        policy=CausalLM(tiny=TINY, lora=LORA, adapter=str(tmp_path / "hf_adapter")),
        loss=IPO(),
        weighting=RobustWeighting(step_size=0.5),
        group_names=dm.group_names,
        group_counts=dm.train_group_counts,
        tokenizer=dm.tokenizer,
    )
    policy = module.policy
    trainable = {n: p for n, p in policy.model.named_parameters() if p.requires_grad}
    assert set(trainable) == set(saved) and all(torch.equal(trainable[n], saved[n]) for n in saved)  # same weights
    batch = _batch()
    sft_logps = sft.pair_logps(batch)
    for got, want in zip(policy.reference_pair_logps(batch), sft_logps, strict=True):
        torch.testing.assert_close(got, want)  # reference = base + SFT adapter, not the base model
    for got, want in zip(policy.pair_logps(batch), sft_logps, strict=True):
        torch.testing.assert_close(got, want)
    frozen = {n: p.clone() for n, p in policy.named_parameters() if not p.requires_grad}
    fit_quietly(module, dm, max_steps=2)
    moved = [n for n, p in policy.model.named_parameters() if n in saved and not torch.equal(p, saved[n])]
    assert moved  # the SFT adapter itself trained
    for n, p in policy.named_parameters():
        if n in frozen:
            assert torch.equal(p, frozen[n]), n  # base and reference did not
