"""The configurable loss and weighting classes: thin wrappers of the core functions, each with only its own
settings, checked by name; the legacy by-name form (config files, checkpoints) still builds the same objects."""

from __future__ import annotations

import argparse
import logging

import pytest
import torch

from grpo_lightning.core import preference_loss
from grpo_lightning.core.loss_classes import BUILTIN_LOSSES, DPO, IPO, SFT, PreferenceLoss, loss_from_dict
from grpo_lightning.core.weighting import CVaRWeighting, RobustWeighting, TiltedWeighting, UniformWeighting
from grpo_lightning.training.legacy_config import LossConfig, WeightingConfig, weighting_from_dict


def _pairs():
    g = torch.Generator().manual_seed(0)
    return [torch.randn(6, generator=g) - 5 for _ in range(4)]


@pytest.mark.parametrize("name", sorted(BUILTIN_LOSSES))
def test_every_loss_class_is_its_core_function(name):
    pairs = _pairs()
    extra = {"label_smoothing": 0.2} if name == "dpo" else {}
    cls = BUILTIN_LOSSES[name]
    loss = cls(beta=0.3, **extra)
    refs = (None, None) if not cls.needs_reference else pairs[2:]
    got = loss.pair_losses(pairs[0], pairs[1], *refs)
    want = preference_loss(pairs[0], pairs[1], *refs, loss_type=name, beta=0.3, **extra)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b)
    assert loss_from_dict(loss.to_dict()) == loss  # the checkpoint form round-trips


def test_hand_values():
    h, zero = torch.tensor([0.0]), torch.tensor([0.0])
    assert IPO(beta=0.1)(h, zero).item() == pytest.approx(25.0)  # (0 − 1/(2·0.1))²
    assert DPO(beta=0.1, label_smoothing=0.0)(h, zero).item() == pytest.approx(0.693147, abs=1e-6)  # log 2


@pytest.mark.parametrize(
    ("build", "setting"),
    [
        (lambda: IPO(beta=0.0), "model.loss.beta"),
        (lambda: DPO(beta=float("nan")), "model.loss.beta"),
        (lambda: DPO(label_smoothing=0.5), "model.loss.label_smoothing"),
        (lambda: SFT(beta=-1.0), "model.loss.beta"),
        (lambda: RobustWeighting(chi=1.5), "model.weighting.chi"),
        (lambda: RobustWeighting(step_size=-1.0), "model.weighting.step_size"),
        (lambda: RobustWeighting(alpha_order="later"), "model.weighting.alpha_order"),
        (lambda: CVaRWeighting(rho=0.0), "model.weighting.rho"),
        (lambda: TiltedWeighting(tilt=-1.0), "model.weighting.tilt"),
        (lambda: TiltedWeighting(estimator="median"), "model.weighting.estimator"),
    ],
)
def test_each_class_checks_its_own_settings_by_name(build, setting):
    with pytest.raises(ValueError, match=setting.replace(".", r"\.")):
        build()


def test_a_class_takes_only_its_own_settings():
    with pytest.raises(TypeError, match="label_smoothing"):
        IPO(beta=0.1, label_smoothing=0.1)
    with pytest.raises(TypeError, match="rho"):
        RobustWeighting(rho=0.5)
    with pytest.raises(TypeError):
        UniformWeighting(estimator="mean")


def test_the_legacy_form_builds_the_same_objects():
    assert loss_from_dict({"name": "dpo", "beta": 0.5, "label_smoothing": 0.1}) == DPO(beta=0.5, label_smoothing=0.1)
    assert LossConfig(name="sft", beta=0.1).build().to_dict() == SFT(beta=0.1).to_dict()
    robust = weighting_from_dict({"name": "robust", "step_size": 0.5, "chi": 0.8, "alpha_order": "lagged"})
    assert robust.to_dict() == RobustWeighting(step_size=0.5, chi=0.8, alpha_order="lagged").to_dict()
    assert WeightingConfig(name="cvar", rho=0.3).build().to_dict() == CVaRWeighting(rho=0.3).to_dict()
    assert type(WeightingConfig(name="uniform", estimator="mean").build()) is UniformWeighting
    assert isinstance(loss_from_dict({"class_path": "IPO", "init_args": {"beta": 0.2}}), PreferenceLoss)


def _parse(tmp_path, text: str):
    from grpo_lightning.cli.app import main

    cfg = tmp_path / "legacy.yaml"
    cfg.write_text(text)
    logging.disable(logging.INFO)
    try:
        return main(["--config", str(cfg)], run=False, instantiate=False).config.model
    finally:
        logging.disable(logging.NOTSET)


def test_config_files_keep_the_by_name_form(tmp_path):
    model = _parse(
        tmp_path,
        "model:\n  loss: {name: dpo, beta: 0.5, label_smoothing: 0.1}\n  weighting: {name: cvar, rho: 0.3}\n",
    )
    assert model.loss.class_path == "grpo_lightning.core.loss_classes.DPO"
    assert model.loss.init_args.as_dict() == {"beta": 0.5, "label_smoothing": 0.1}
    assert model.weighting.class_path == "grpo_lightning.core.weighting.CVaRWeighting"
    assert model.weighting.init_args.rho == 0.3
    # a setting another weighting uses is refused, naming it
    with pytest.raises(argparse.ArgumentError, match="rho"):
        _parse(tmp_path, "model:\n  weighting: {name: robust, rho: 0.3}\n")
