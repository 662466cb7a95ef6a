"""``model.policy.compile``: the decoder layers compiled in place give eager's log-probs and gradients, with LoRA
(the adapter-disabled reference too) and padding-free rows, and leave parameter names and state unchanged."""

from __future__ import annotations

import pytest
import torch

from grpo_lightning.policies import CausalLM, LoraSettings
from grpo_lightning.policies.compile import compile_decoder_layers

pytestmark = pytest.mark.slow  # an inductor compilation (~10–30 s on 2 cores)

from test_policies_prefix_sharing import TINY, _batch, _nudge_adapters, _Tok  # noqa: E402

LORA = LoraSettings(r=4, alpha=8, target_modules=["q_proj", "v_proj", "up_proj", "down_proj"])


def _policy(compile_: bool, **kw):
    torch.manual_seed(0)
    policy = CausalLM(tiny=TINY, compile=compile_, **kw).build(_Tok())
    _nudge_adapters(policy.model)
    return policy


def _run(policy, batch):
    policy.train()
    c, r = policy.pair_logps(batch)
    (c.sum() - 0.5 * r.sum()).backward()
    grads = {k: p.grad.clone() for k, p in policy.model.named_parameters() if p.requires_grad}
    return (c.detach(), r.detach()), grads, policy.reference_pair_logps(batch)


@pytest.mark.parametrize("padding_free", [False, True])
def test_compiled_layers_give_eagers_values_and_gradients(padding_free):
    eager, compiled = (_policy(flag, lora=LORA, padding_free=padding_free) for flag in (False, True))
    layers = compiled.model.get_decoder().layers
    assert all(layer._compiled_call_impl is not None for layer in layers)
    assert all(layer._compiled_call_impl is None for layer in eager.model.get_decoder().layers)
    assert list(compiled.model.state_dict()) == list(eager.model.state_dict())  # names unchanged (in place)
    for seed in (0, 1):  # two batch widths: the dynamic graph serves both
        batch = _batch(seed=seed) if seed == 0 else _batch([(4, 2, 1), (7, 1, 3), (3, 2, 2)], seed=seed)
        (want_lp, want_g, want_ref), (got_lp, got_g, got_ref) = _run(eager, batch), _run(compiled, batch)
        for got, want in zip((*got_lp, *got_ref), (*want_lp, *want_ref), strict=True):
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
        assert want_g.keys() == got_g.keys() and want_g
        for k in want_g:
            torch.testing.assert_close(got_g[k], want_g[k], rtol=1e-4, atol=1e-5)
        for p in (*eager.model.parameters(), *compiled.model.parameters()):
            p.grad = None


def test_compiling_a_model_without_decoder_layers_names_the_setting():
    with pytest.raises(ValueError, match="model.policy.compile"):
        compile_decoder_layers(torch.nn.Linear(2, 2))
