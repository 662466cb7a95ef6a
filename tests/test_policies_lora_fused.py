"""The fused LoRA linear layer gives peft's values and gradients (policies/lora_fused.py)."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from test_policies_lora import TINY, _batch, _nudge_adapters, _Tok

from grpo_lightning.policies import CausalLM, LoraSettings
from grpo_lightning.policies.lora_fused import FusedLoraLinear, _MergedLoraMatmul

LORA = LoraSettings(
    r=4, alpha=8, target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
)


def test_merged_matmul_by_hand():
    """x = [1, 2], W = [[1, 0], [0, 1]], A = [[1, 1]] (r 1), B = [[2], [0]], s = 0.5:
    W' = W + s·B A = [[2, 1], [0, 1]], y = x W'ᵀ = [4, 2]. With g = ∂L/∂y = [1, 1]:
    ∂x = g W' = [2, 2]; ∂A = s·(g B)ᵀ x = 0.5·2·[1, 2] = [[1, 2]]; ∂B = s·gᵀ (x Aᵀ) = 0.5·3·[1, 1]ᵀ = [[1.5], [1.5]]."""
    x = torch.tensor([[1.0, 2.0]], requires_grad=True)
    w = torch.eye(2)
    a = torch.tensor([[1.0, 1.0]], requires_grad=True)
    b = torch.tensor([[2.0], [0.0]], requires_grad=True)
    y = _MergedLoraMatmul.apply(x, w, None, a, b, 0.5)
    assert y.tolist() == [[4.0, 2.0]]
    y.sum().backward()
    assert x.grad.tolist() == [[2.0, 2.0]]
    assert a.grad.tolist() == [[1.0, 2.0]]
    assert b.grad.tolist() == [[1.5], [1.5]]


def _close(got: torch.Tensor, want: torch.Tensor, name: str) -> None:
    # float32 sums associated differently: entries near 0 of a gradient with entries ~10 differ by ~1e-6 of its max.
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5 * float(want.abs().max()), msg=name)


def _pair(sharing: str, **lora):
    fused = CausalLM(tiny=TINY, prefix_sharing=sharing, lora=dataclasses.replace(LORA, fused=True, **lora)).build(
        _Tok()
    )
    plain = CausalLM(tiny=TINY, prefix_sharing=sharing, lora=dataclasses.replace(LORA, fused=False, **lora)).build(
        _Tok()
    )
    _nudge_adapters(fused.model)
    plain.model.load_state_dict(fused.model.state_dict())
    return fused, plain


@pytest.mark.parametrize("sharing", ["on", "off"])
def test_fused_lora_gives_peft_values_and_gradients(sharing):
    fused, plain = _pair(sharing)
    n = sum(isinstance(m, FusedLoraLinear) for m in fused.model.modules())
    assert n == 7 * TINY.num_hidden_layers
    assert not any(isinstance(m, FusedLoraLinear) for m in plain.model.modules())
    batch = _batch()
    outs = []
    for policy in (fused, plain):
        c, r = policy.pair_logps(batch)
        (c.sum() - 2 * r.sum()).backward()
        grads = {k: p.grad.clone() for k, p in policy.model.named_parameters() if p.requires_grad}
        outs.append((c.detach(), r.detach(), grads))
    torch.testing.assert_close(outs[0][:2], outs[1][:2], rtol=1e-5, atol=1e-5)
    assert outs[0][2].keys() == outs[1][2].keys() and len(outs[0][2]) == 2 * n
    for k in outs[0][2]:
        _close(outs[0][2][k], outs[1][2][k], k)
    # The reference (adapter disabled) takes peft's path in both.
    torch.testing.assert_close(fused.reference_pair_logps(batch), plain.reference_pair_logps(batch))


def test_fused_lora_under_gradient_checkpointing():
    fused = CausalLM(tiny=TINY, lora=LORA, gradient_checkpointing=True).build(_Tok())
    plain = CausalLM(tiny=TINY, lora=dataclasses.replace(LORA, fused=False)).build(_Tok())
    _nudge_adapters(fused.model)
    plain.model.load_state_dict(fused.model.state_dict())
    fused.model.train(), plain.model.train()
    grads = []
    for policy in (fused, plain):
        c, r = policy.pair_logps(_batch())
        (c - r).pow(2).sum().backward()
        grads.append({k: p.grad for k, p in policy.model.named_parameters() if p.requires_grad})
    for k in grads[1]:
        _close(grads[0][k], grads[1][k], k)


def test_dropout_takes_peft_path():
    """With adapter dropout the fused kernel would be wrong (it merges the weights): peft's forward runs."""
    fused, plain = _pair("on", dropout=0.5)
    layer = next(m for m in fused.model.modules() if isinstance(m, FusedLoraLinear))
    x = torch.randn(3, layer.in_features)
    assert layer._fused_adapter(x, (), {}) is None
    fused.model.eval(), plain.model.eval()  # dropout off: the two paths agree
    torch.testing.assert_close(fused.pair_logps(_batch()), plain.pair_logps(_batch()), rtol=1e-5, atol=1e-5)
