"""Every loss against numbers worked out by hand; each loss class checks its own settings, naming them, and
round-trips through its checkpoint form; a config chooses a loss by class (the by-name form of earlier versions is
refused: test_training_hparams.py)."""

from __future__ import annotations

import argparse
import logging
import math

import pytest
import torch

from grpo_lightning.core import LOSSES
from grpo_lightning.core.losses import DPO, IPO, SFT, PreferenceLoss
from grpo_lightning.training.hparams import loss_from_data

# Two pairs, β = 0.5.
#   pair 1: log π(y_w)=-1, log π(y_l)=-3, log π_ref(y_w)=log π_ref(y_l)=-2
#           h = (-1+2) - (-3+2) = 1 - (-1) = 2,   βh = 1
#   pair 2: log π(y_w)=-2, log π(y_l)=-1, refs -2
#           h = 0 - 1 = -1,                       βh = -0.5
POLICY_C = torch.tensor([-1.0, -2.0])
POLICY_R = torch.tensor([-3.0, -1.0])
REF_C = torch.tensor([-2.0, -2.0])
REF_R = torch.tensor([-2.0, -2.0])
BETA = 0.5


def sig(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


EXPECTED = {
    # −log σ(βh): log(1+e^{-1}) = 0.313262, log(1+e^{0.5}) = 0.974077
    "dpo": [math.log1p(math.exp(-1.0)), math.log1p(math.exp(0.5))],
    # (h − 1/(2β))² with 1/(2β) = 1: (2−1)² = 1, (−1−1)² = 4
    "ipo": [1.0, 4.0],
    # max(0, 1 − βh): max(0, 0) = 0, 1 + 0.5 = 1.5
    "hinge": [0.0, 1.5],
    # exp(−βh): e^{-1} = 0.367879, e^{0.5} = 1.648721
    "exponential": [math.exp(-1.0), math.exp(0.5)],
    # max(0, 1 − βh)²: 0, 1.5² = 2.25
    "truncated_quadratic": [0.0, 2.25],
    # σ(−βh)²: σ(−1)² = 0.268941² = 0.072329, σ(0.5)² = 0.622459² = 0.387456
    "savage": [sig(-1.0) ** 2, sig(0.5) ** 2],
    # −log π(y_w|x): 1, 2
    "sft": [1.0, 2.0],
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_loss_values_by_hand(name):
    losses, chosen, rejected = LOSSES[name](beta=BETA).pair_losses(POLICY_C, POLICY_R, REF_C, REF_R)
    torch.testing.assert_close(losses, torch.tensor(EXPECTED[name]), atol=1e-6, rtol=0)


def test_every_registered_loss_is_pinned():
    assert set(LOSSES) == set(EXPECTED)


def test_cdpo_label_smoothing_by_hand():
    """cDPO, ε = 0.1, pair 1 (βh = 1):
    0.9·(−log σ(1)) + 0.1·(−log σ(−1)) = 0.9·0.313262 + 0.1·1.313262 = 0.413262."""
    losses, _, _ = DPO(beta=BETA, label_smoothing=0.1).pair_losses(POLICY_C, POLICY_R, REF_C, REF_R)
    assert losses[0].item() == pytest.approx(0.9 * math.log1p(math.exp(-1)) + 0.1 * math.log1p(math.exp(1)), abs=1e-6)


def test_implicit_rewards_by_hand():
    """Rewards β(log π − log π_ref): pair 1 chosen 0.5·(−1+2)=0.5, rejected 0.5·(−3+2)=−0.5;
    pair 2 chosen 0.5·0 = 0, rejected 0.5·(−1+2) = 0.5."""
    _, chosen, rejected = IPO(beta=BETA).pair_losses(POLICY_C, POLICY_R, REF_C, REF_R)
    torch.testing.assert_close(chosen, torch.tensor([0.5, 0.0]))
    torch.testing.assert_close(rejected, torch.tensor([-0.5, 0.5]))
    assert not chosen.requires_grad


def test_dpo_gradient_by_hand():
    """d/d log π(y_w) of −log σ(βh) = −β σ(−βh): pair 1: −0.5·σ(−1) = −0.134471."""
    pc = POLICY_C.clone().requires_grad_(True)
    losses, _, _ = DPO(beta=BETA).pair_losses(pc, POLICY_R, REF_C, REF_R)
    losses[0].backward()
    assert pc.grad[0].item() == pytest.approx(-0.5 * sig(-1.0), abs=1e-6)
    assert pc.grad[1].item() == 0.0


def test_unknown_loss_and_bad_beta():
    with pytest.raises(ValueError, match="model.loss: 'nope' is not a PreferenceLoss"):
        loss_from_data({"class_path": "nope"})
    with pytest.raises(ValueError, match="beta"):
        DPO(beta=0.0)


def test_hand_values():
    """The formula alone, at h = 0: IPO (0 − 1/(2·0.1))² = 25; DPO −log σ(0) = log 2."""
    h, zero = torch.tensor([0.0]), torch.tensor([0.0])
    assert IPO(beta=0.1)(h, zero).item() == pytest.approx(25.0)
    assert DPO(beta=0.1, label_smoothing=0.0)(h, zero).item() == pytest.approx(0.693147, abs=1e-6)


def test_sft_needs_no_reference():
    """SFT reads no reference (the module keeps none): its loss is −log π(y_w|x) whatever π_ref, and its rewards are
    β log π (β = 1 by default: the log-probabilities)."""
    losses, chosen, rejected = SFT().pair_losses(POLICY_C, POLICY_R, None, None)
    torch.testing.assert_close(losses, torch.tensor([1.0, 2.0]))
    torch.testing.assert_close(chosen, POLICY_C)
    torch.testing.assert_close(rejected, POLICY_R)
    assert not SFT.needs_reference and all(LOSSES[n].needs_reference for n in LOSSES if n != "sft")


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_loss_round_trips_through_its_checkpoint_form(name):
    loss = LOSSES[name](beta=0.3, **({"label_smoothing": 0.2} if name == "dpo" else {}))
    assert loss_from_data(loss.to_dict()) == loss
    assert loss.to_dict()["class_path"] == f"grpo_lightning.core.losses.{type(loss).__name__}"
    # a built-in class also resolves by its bare name
    assert loss_from_data({"class_path": type(loss).__name__, "init_args": loss.to_dict()["init_args"]}) == loss


@pytest.mark.parametrize(
    ("build", "setting"),
    [
        (lambda: IPO(beta=0.0), "model.loss.beta"),
        (lambda: DPO(beta=float("nan")), "model.loss.beta"),
        (lambda: DPO(label_smoothing=0.5), "model.loss.label_smoothing"),
        (lambda: SFT(beta=-1.0), "model.loss.beta"),
    ],
)
def test_each_loss_checks_its_own_settings_by_name(build, setting):
    with pytest.raises(ValueError, match=setting.replace(".", r"\.")):
        build()


def test_a_loss_takes_only_its_own_settings():
    with pytest.raises(TypeError, match="label_smoothing"):
        IPO(beta=0.1, label_smoothing=0.1)
    assert isinstance(loss_from_data({"class_path": "IPO", "init_args": {"beta": 0.2}}), PreferenceLoss)


def _parse(tmp_path, text: str):
    from grpo_lightning.cli.app import main

    cfg = tmp_path / "config.yaml"
    cfg.write_text(text)
    logging.disable(logging.INFO)
    try:
        return main(["--config", str(cfg)], run=False, instantiate=False).config.model
    finally:
        logging.disable(logging.NOTSET)


def test_a_config_chooses_the_loss_and_the_weighting_by_class(tmp_path):
    model = _parse(
        tmp_path,
        "model:\n  loss: {class_path: DPO, init_args: {beta: 0.5, label_smoothing: 0.1}}\n"
        "  weighting: {class_path: CVaRWeighting, init_args: {rho: 0.3}}\n",
    )
    assert model.loss.class_path == "grpo_lightning.core.losses.DPO"
    assert model.loss.init_args.as_dict() == {"beta": 0.5, "label_smoothing": 0.1}
    assert model.weighting.class_path == "grpo_lightning.core.weighting.CVaRWeighting"
    assert model.weighting.init_args.rho == 0.3
    # a setting another weighting uses is refused, naming it
    with pytest.raises(argparse.ArgumentError, match="rho"):
        _parse(tmp_path, "model:\n  weighting: {class_path: RobustWeighting, init_args: {rho: 0.3}}\n")
