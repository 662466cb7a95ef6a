"""training/step.py: a non-finite loss stops the run (or skips the step) before any update."""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import lightning as L
import pytest
import torch
from conftest import fit_quietly

from grpo_lightning.core.weighting import RobustWeighting, UniformWeighting

_fit = fit_quietly


class _PoisonAt(L.Callback):
    """Makes the policy's losses NaN on the batch that starts optimizer step ``step``, and
    records the state around it."""

    def __init__(self, step: int, ckpt: Path | None = None) -> None:
        self.step, self.ckpt, self.before, self.after, self.ckpt_bytes = step, ckpt, None, None, None

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        poisoned = trainer.global_step == self.step and self.before is None
        if poisoned:
            self.before = (module.log_alpha.clone(), module.group_weights().clone(), _params(module))
            self.ckpt_bytes = self.ckpt.read_bytes() if self.ckpt else None
        original = type(module).pair_outputs

        def pair_outputs(mod, b, ref):
            out = original(mod, b, ref)
            return out._replace(losses=out.losses * float("nan")) if poisoned else out

        module.pair_outputs = functools.partial(pair_outputs, module)

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        if self.before is not None and self.after is None:
            self.after = (module.log_alpha.clone(), module.group_weights().clone(), _params(module))


def _params(module):
    return {k: v.detach().clone() for k, v in module.policy.model.named_parameters()}


@pytest.mark.parametrize("weighting", ["robust", "uniform"])
def test_nonfinite_loss_stops_and_leaves_the_last_checkpoint_untouched(
    tmp_path, tiny_dm_factory, make_module, weighting
):
    from lightning.pytorch.callbacks import ModelCheckpoint

    dm = tiny_dm_factory(batch_size=8)
    built = RobustWeighting(step_size=0.1) if weighting == "robust" else UniformWeighting()
    module = make_module(dm, weighting=built)
    last = tmp_path / "last.ckpt"
    poison = _PoisonAt(3, last)
    checkpoint = ModelCheckpoint(dirpath=tmp_path, every_n_train_steps=1, save_last=True, save_top_k=0)
    with pytest.raises(FloatingPointError, match=r"non-finite .* at optimizer step 3, batch 3") as err:
        _fit(module, dm, callbacks=[checkpoint, poison], max_steps=6)
    assert ("group loss of [" if weighting == "robust" else "(groups [") in str(err.value)
    assert poison.ckpt_bytes is not None and last.read_bytes() == poison.ckpt_bytes
    assert torch.load(last, weights_only=True)["global_step"] == 3
    alpha, _, params = poison.before
    assert torch.equal(module.log_alpha, alpha)
    assert all(torch.equal(v, params[k]) for k, v in _params(module).items())


def test_nonfinite_loss_skip_leaves_alpha_and_weights_and_continues(tiny_dm_factory, make_module, caplog):
    dm = tiny_dm_factory(batch_size=8)
    module = make_module(dm, weighting=RobustWeighting(step_size=0.1), on_nonfinite="skip")
    poison = _PoisonAt(2)
    with caplog.at_level(logging.WARNING):
        trainer = _fit(module, dm, callbacks=[poison], max_steps=5)
    alpha, weights, params = poison.before
    alpha_after, weights_after, params_after = poison.after
    assert torch.equal(alpha, alpha_after) and torch.equal(weights, weights_after)
    assert all(torch.equal(v, params_after[k]) for k, v in params.items())
    assert any("at optimizer step 2, batch 2" in m and "skipping this optimizer step" in m for m in caplog.messages)
    assert trainer.global_step == 5 and not torch.equal(module.log_alpha, alpha)
    assert all(torch.isfinite(p).all() for p in module.parameters())
