"""Invariants of the LightningModule: accumulation, resuming, checkpoints, bad settings, evaluation coverage."""

from __future__ import annotations

import copy
import functools
import logging

import lightning as L
import pytest
import torch
from conftest import file_dm, fit_quietly, group_pairs, write_jsonl

from grpo_lightning.core.losses import DPO, IPO
from grpo_lightning.core.weighting import (
    CVaRWeighting,
    ImportanceWeighting,
    RobustWeighting,
    TiltedWeighting,
    UniformWeighting,
)
from grpo_lightning.policies.lora import LoraSettings

_fit = fit_quietly
_pairs, _jsonl, _dm = group_pairs, write_jsonl, file_dm


def _params(module):
    return {k: v.detach().clone() for k, v in module.policy.model.named_parameters()}


@pytest.mark.parametrize("alpha_order", ["paper", "lagged"])
@pytest.mark.parametrize("estimator", ["mean", "scaled_sum"])
def test_accumulation_1x8_equals_8x1(tiny_dm_factory, make_module, alpha_order, estimator):
    """Two optimizer steps over the same 8 + 8 pairs (several groups), each as one micro-batch of 8
    or eight of 1, give the same α and the same parameters (SGD, so a wrongly scaled gradient
    would show). Two steps, because at the first the policy equals the reference, every pair has
    the same loss and the mean-estimate α step has nothing to tell the groups apart."""
    weighting = RobustWeighting(step_size=0.5, chi=0.8, alpha_order=alpha_order, estimator=estimator)
    _check_accumulation_invariance(tiny_dm_factory, make_module, weighting)


@pytest.mark.parametrize(
    "weighting",
    [
        RobustWeighting(step_size=0.5, adjustment=2.0),
        CVaRWeighting(rho=0.5),
        TiltedWeighting(tilt=0.5),
        TiltedWeighting(tilt=0.5, alpha_order="lagged", estimator="scaled_sum"),
    ],
    ids=["robust_adjusted", "cvar", "tilted", "tilted_lagged"],
)
def test_accumulation_1x8_equals_8x1_beyond_the_paper(tiny_dm_factory, make_module, weighting):
    """The same invariance for the weightings beyond the paper: their weights come from the whole
    step's group losses (the no-grad pre-pass), not from a micro-batch's."""
    _check_accumulation_invariance(tiny_dm_factory, make_module, weighting)


def _check_accumulation_invariance(tiny_dm_factory, make_module, weighting):
    results = []
    for batch_size, accumulate in ((8, 1), (1, 8)):
        dm = tiny_dm_factory(batch_size=batch_size, accumulate_grad_batches=accumulate)
        module = make_module(
            dm,
            weighting=weighting,
            accumulate_grad_batches=accumulate,
            optimizer=functools.partial(torch.optim.SGD, lr=0.05),
            lr_scheduler=None,
        )
        before = _params(module)
        groups_in_step = next(iter(dm.train_dataloader()))["group"].unique()
        assert len(groups_in_step) >= 2, "the step must hold several groups for α to move"
        # In float64, so that what is compared is the method's arithmetic: in float32 the losses of
        # differently padded micro-batches differ in the last bits (relative 1e-6 to 3e-5 seen).
        _fit(module, dm, max_steps=2, precision="64-true")
        results.append((module.log_alpha.clone(), _params(module)))
    (alpha_a, params_a), (alpha_b, params_b) = results
    assert not torch.allclose(alpha_a, torch.full_like(alpha_a, alpha_a[0])), "α moved"
    torch.testing.assert_close(alpha_a, alpha_b, rtol=1e-10, atol=1e-12)
    assert any(not torch.equal(before[k].double(), params_a[k]) for k in before), "parameters moved"
    for k in params_a:
        torch.testing.assert_close(params_a[k], params_b[k], rtol=1e-9, atol=1e-11)


def test_paper_and_lagged_orders_differ_by_one_alpha_step(tiny_dm_factory, make_module):
    """After two steps both orders hold the same α (the first update is a no-op: policy = reference,
    equal losses; the second comes from the same θ₁), but only the paper order used the second α
    for θ, so the parameters differ."""
    out = {}
    for order in ("paper", "lagged"):
        dm = tiny_dm_factory(batch_size=8)
        module = make_module(
            dm,
            weighting=RobustWeighting(step_size=1.0, alpha_order=order),
            optimizer=functools.partial(torch.optim.SGD, lr=0.5),
            lr_scheduler=None,
        )
        _fit(module, dm, max_steps=2)
        out[order] = (module.log_alpha.clone(), _params(module))
    torch.testing.assert_close(out["paper"][0], out["lagged"][0])
    assert any(not torch.allclose(out["paper"][1][k], out["lagged"][1][k]) for k in out["paper"][1])


def test_uniform_weighting_is_the_pooled_mean(tiny_dm_factory, make_module):
    """With uniform weights the θ objective equals the plain mean of per-pair losses."""
    dm = tiny_dm_factory(batch_size=8)
    module = make_module(dm, weighting=UniformWeighting())
    batch = next(iter(dm.train_dataloader()))
    out = module.pair_outputs(batch, module.batch_reference(batch))
    from grpo_lightning.core import group_counts, group_sums, weighted_objective

    k = len(dm.group_names)
    value = weighted_objective(
        group_sums(out.losses, batch["group"], k),
        group_counts(batch["group"], k).double(),
        module.group_weights(),
        estimator=module.weighting.estimator,
        train_counts=module.group_counts,
        total=len(batch["group"]),
    )
    torch.testing.assert_close(value.float(), out.losses.mean(), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    "weighting",
    [
        RobustWeighting(step_size=0.1),
        RobustWeighting(step_size=0.1, adjustment=5.0),
        TiltedWeighting(tilt=0.5, alpha_order="lagged"),
    ],
    ids=["robust", "robust_adjusted", "tilted_lagged"],
)
def test_resumed_run_equals_uninterrupted(tiny_dm_factory, make_module, tmp_path, weighting):
    """Two epochs straight vs one epoch, checkpoint, and a new process-like resume for the second:
    same α (bitwise) and same parameters. ``tilted`` with the lagged order keeps state too: the θ
    step after the resume uses the weights of the last step before it, saved as ``log_alpha``."""

    def build():
        dm = tiny_dm_factory(batch_size=16)
        return dm, make_module(dm, weighting=weighting)

    dm, straight = build()
    _fit(straight, dm, max_epochs=2)

    dm, first = build()
    trainer = _fit(first, dm, max_epochs=1)
    ckpt = tmp_path / "epoch1.ckpt"
    trainer.save_checkpoint(ckpt)
    saved = torch.load(ckpt, weights_only=True)
    torch.testing.assert_close(saved["state_dict"]["log_alpha"], first.log_alpha, rtol=0, atol=0)

    dm, resumed = build()
    _fit(resumed, dm, ckpt_path=ckpt, max_epochs=2)
    assert torch.equal(resumed.log_alpha, straight.log_alpha)
    for k, v in _params(straight).items():
        torch.testing.assert_close(_params(resumed)[k], v, rtol=0, atol=1e-7)


def test_checkpoint_from_other_groups_is_refused(tiny_dm_factory, make_module, tmp_path):
    dm = tiny_dm_factory(batch_size=16)
    module = make_module(dm, weighting=RobustWeighting())
    trainer = _fit(module, dm, max_steps=1)
    ckpt = tmp_path / "a.ckpt"
    trainer.save_checkpoint(ckpt)
    other = copy.deepcopy(module)
    other.group_names = list(reversed(module.group_names))
    checkpoint = torch.load(ckpt, weights_only=True)
    with pytest.raises(ValueError, match="trained on groups"):
        other.on_load_checkpoint(checkpoint)


def test_reference_stays_frozen_and_in_eval(tiny_dm_factory, make_module):
    dm = tiny_dm_factory(batch_size=16)
    module = make_module(dm, weighting=RobustWeighting())
    ref_before = {k: v.clone() for k, v in module.policy.reference.state_dict().items()}
    trainer = _fit(module, dm, max_steps=2)
    assert not module.policy.reference.training
    assert all(not p.requires_grad for p in module.policy.reference.parameters())
    for k, v in module.policy.reference.state_dict().items():
        assert torch.equal(v, ref_before[k])
    opt_params = {id(p) for g in trainer.optimizers[0].param_groups for p in g["params"]}
    assert not opt_params & {id(p) for p in module.policy.reference.parameters()}


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: IPO(beta=0.0), "beta"),
        (lambda: IPO(beta=-1.0), "beta"),
        (lambda: RobustWeighting(chi=1.1), "chi"),
        (lambda: RobustWeighting(step_size=-0.1), "step_size"),
        (lambda: RobustWeighting(alpha_order="later"), "alpha_order"),
    ],
)
def test_bad_settings_name_the_setting(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_nonfinite_loss_stops_before_any_update(tiny_dm_factory, make_module):
    dm = tiny_dm_factory(batch_size=8)
    module = make_module(dm, weighting=RobustWeighting(step_size=0.1))
    before, alpha = _params(module), module.log_alpha.clone()
    with torch.no_grad():
        module.policy.model.get_input_embeddings().weight[0, 0] = float("nan")
        before = _params(module)
    with pytest.raises(FloatingPointError, match="non-finite.*at optimizer step 0, batch 0"):
        _fit(module, dm, max_steps=1)
    assert torch.equal(module.log_alpha, alpha)
    for k, v in _params(module).items():
        assert torch.equal(v.nan_to_num(123.0), before[k].nan_to_num(123.0))


def test_split_pairs_keeps_chosen_and_rejected_together():
    """B = 3 pairs, 2B = 6 stacked rows (chosen 0..2, rejected 3..5), split in 2: the first
    micro-batch holds pairs (0, 1) → rows (0, 1, 3, 4), the second pair 2 → rows (2, 5)."""
    from grpo_lightning.training.step import split_pairs

    batch = {"input_ids": torch.arange(6).unsqueeze(-1), "group": torch.tensor([0, 1, 0]), "index": torch.arange(3)}
    first, second = split_pairs(batch, 2)
    assert first["input_ids"].flatten().tolist() == [0, 1, 3, 4] and first["group"].tolist() == [0, 1]
    assert second["input_ids"].flatten().tolist() == [2, 5] and second["index"].tolist() == [2]


@pytest.mark.parametrize("accumulate", [1, 4])
def test_logged_training_group_losses_are_the_group_means_of_the_steps_pair_losses(
    tiny_dm_factory, make_module, accumulate
):
    """``train/group_loss/<g>`` of step 1 = mean over the group's pairs in the whole step (all micro-batches) of the
    per-pair loss at the starting weights, computed here directly from the policy, without the module's sums;
    ``train/pooled_loss`` = the plain mean over all the step's pairs."""
    dm = tiny_dm_factory(batch_size=4, accumulate_grad_batches=accumulate)
    module = make_module(dm, loss=IPO(beta=0.1), accumulate_grad_batches=accumulate)
    loader = dm.train_dataloader()
    loader.sampler.set_epoch(0)
    batch = next(iter(loader))
    with torch.no_grad():
        chosen, rejected = module.policy.pair_logps(batch)
        ref_c, ref_r = module.policy.reference_pair_logps(batch)
        losses = IPO(beta=0.1).pair_losses(chosen, rejected, ref_c, ref_r)[0]
    trainer = fit_quietly(module, dm, max_steps=1, log_every_n_steps=1)
    logged = trainer.logged_metrics
    for g, name in enumerate(dm.group_names):
        mask = batch["group"] == g
        key = f"train/group_loss/{name}"
        if mask.any():
            torch.testing.assert_close(logged[key], losses[mask].mean().float(), rtol=1e-5, atol=1e-6)
        else:
            assert key not in logged
    torch.testing.assert_close(logged["train/pooled_loss"], losses.mean().float(), rtol=1e-5, atol=1e-6)


def test_pooled_loss_is_train_loss_only_under_uniform_weighting(tiny_dm_factory, make_module):
    """``train/loss`` is the weighted objective; ``train/pooled_loss`` the plain mean over the step's pairs.
    Under ``uniform`` they are the same number; under ``importance`` (w_g = 1/K on group means) they differ once
    the pairs' losses do (step 2: at step 1 the policy equals its reference and every pair has the same loss)."""
    logged = {}
    for name, weighting in (("uniform", UniformWeighting()), ("importance", ImportanceWeighting())):
        dm = tiny_dm_factory(batch_size=8)
        module = make_module(dm, weighting=weighting, optimizer=functools.partial(torch.optim.SGD, lr=0.5))
        logged[name] = fit_quietly(module, dm, max_steps=2, log_every_n_steps=1).logged_metrics
    torch.testing.assert_close(logged["uniform"]["train/pooled_loss"], logged["uniform"]["train/loss"])
    assert not torch.isclose(logged["importance"]["train/pooled_loss"], logged["importance"]["train/loss"])


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: IPO(beta=float("inf")), "beta"),
        (lambda: IPO(beta=float("nan")), "beta"),
        (lambda: DPO(label_smoothing=0.5), "label_smoothing"),
        (lambda: RobustWeighting(chi=-0.1), "chi"),
        (lambda: RobustWeighting(chi=float("nan")), "chi"),
        (lambda: RobustWeighting(step_size=float("inf")), "step_size"),
        (lambda: RobustWeighting(step_size=float("nan")), "step_size"),
        (lambda: RobustWeighting(estimator="median"), "estimator"),
        (lambda: ImportanceWeighting(weights=[1.0, float("nan")]), "weighting.weights"),
        (lambda: ImportanceWeighting(weights=[1.0, float("inf")]), "weighting.weights"),
        (lambda: DPO(label_smoothing=float("nan")), "label_smoothing"),
        (lambda: LoraSettings(alpha=float("nan")), "lora.alpha"),
    ],
)
def test_out_of_range_model_settings_name_the_setting(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_gradient_clip_val_is_refused(tiny_dm_factory, make_module, value):
    dm = tiny_dm_factory(batch_size=8)
    with pytest.raises(ValueError, match=rf"model.gradient_clip_val must be a finite number > 0, got {value}"):
        make_module(dm, gradient_clip_val=value)


def test_resuming_with_other_groups_is_refused_naming_the_difference(tmp_path, tiny_dm_factory, make_module):
    dm = tiny_dm_factory(batch_size=16)
    module = make_module(dm, weighting=RobustWeighting())
    trainer = _fit(module, dm, max_steps=1)
    ckpt = tmp_path / "a.ckpt"
    trainer.save_checkpoint(ckpt)
    dm2 = tiny_dm_factory(batch_size=16, groups=dm.group_names[:3])
    other = make_module(dm2, weighting=RobustWeighting())
    with pytest.raises(ValueError, match=r"only in the checkpoint: \['Dunmore', 'Eastvale'\]; only in this run: \[\]"):
        _fit(other, dm2, max_steps=2, ckpt_path=ckpt)


def test_worst_group_metric_says_which_groups_it_covers(tmp_path, caplog, make_module):
    rows = _pairs("A", 20) + _pairs("B", 3) + _pairs("C", 2)
    dm = _dm(_jsonl(tmp_path / "d.jsonl", rows))
    module = make_module(dm)
    trainer = L.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False, accelerator="cpu")
    with caplog.at_level(logging.WARNING):
        trainer.validate(module, dm, verbose=False)
        trainer.validate(module, dm, verbose=False)
    assert trainer.logged_metrics["val/groups_covered"] == 2
    assert "val/loss/C" not in trainer.logged_metrics
    warned = [m for m in caplog.messages if "val/worst_group_loss" in m and "cover 2 of 3 groups" in m]
    assert len(warned) == 1 and "no val pairs of ['C']" in warned[0]
