"""policies/causal_lm_module.py: the prefix-shared forward, gradient checkpointing and bf16 give the plain numbers."""

from __future__ import annotations

import pytest
import torch
from conftest import build_tiny_policy, fit_quietly, ragged_pair_batch

from grpo_lightning.core.losses import IPO
from grpo_lightning.core.weighting import RobustWeighting
from grpo_lightning.policies import CausalLM

_ragged_batch, _build, _fit = ragged_pair_batch, build_tiny_policy, fit_quietly


@pytest.mark.parametrize("average", [False, True])
@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_prefix_shared_logps_and_grads_equal_concatenated(average, attn):
    batch = _ragged_batch()
    plain, shared = _build(prefix_sharing="off", average_log_prob=average), _build(average_log_prob=average)
    assert shared.prefix_sharing and not plain.prefix_sharing
    for p in (plain, shared):
        p.model.config._attn_implementation = attn
        p._mask_dtype = None if attn == "sdpa" else torch.float32
    out = []
    for policy in (plain, shared):
        c, r = policy.pair_logps(batch)
        (c.sum() - 0.5 * r.sum()).backward()
        out.append((c.detach(), r.detach(), {k: p.grad for k, p in policy.model.named_parameters()}))
        out[-1] += (policy.reference_pair_logps(batch),)
    (c0, r0, g0, ref0), (c1, r1, g1, ref1) = out
    torch.testing.assert_close(c1, c0, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(r1, r0, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ref1, ref0, rtol=1e-5, atol=1e-5)
    for k in g0:
        torch.testing.assert_close(g1[k], g0[k], rtol=1e-4, atol=1e-5)


def test_prefix_sharing_switch():
    assert not _build(prefix_sharing="off").prefix_sharing
    assert _build(prefix_sharing="on").prefix_sharing
    with pytest.raises(ValueError, match="prefix_sharing"):
        CausalLM(prefix_sharing="sometimes")


def test_gradient_checkpointing_policy_only_same_grads():
    batch = _ragged_batch()
    grads = []
    for gc in (False, True):
        policy = _build(gradient_checkpointing=gc)
        policy.train()
        assert policy.model.is_gradient_checkpointing == gc
        assert not policy.reference.is_gradient_checkpointing, "the reference is never checkpointed"
        c, r = policy.pair_logps(batch)
        (c - r).sum().backward()
        grads.append({k: p.grad for k, p in policy.model.named_parameters()})
        assert all(p.grad is None for p in policy.reference.parameters())
    for k in grads[0]:
        torch.testing.assert_close(grads[1][k], grads[0][k], rtol=1e-5, atol=1e-6)


def test_bf16_mixed_runs(tiny_dm_factory, make_module):
    """The module is precision-agnostic: bf16-mixed (CPU autocast here) trains with finite α."""
    dm = tiny_dm_factory(batch_size=8)
    module = make_module(dm, loss=IPO(), weighting=RobustWeighting(step_size=0.5))
    _fit(module, dm, max_steps=2, precision="bf16-mixed")
    assert torch.isfinite(module.log_alpha).all()
    assert module.log_alpha.dtype == torch.float64
