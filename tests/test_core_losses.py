"""Every loss and the log-prob reduction against numbers worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch

from grpo_lightning.core import LOSSES, completion_logps, preference_loss

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
    losses, chosen, rejected = preference_loss(POLICY_C, POLICY_R, REF_C, REF_R, loss_type=name, beta=BETA)
    torch.testing.assert_close(losses, torch.tensor(EXPECTED[name]), atol=1e-6, rtol=0)


def test_every_registered_loss_is_pinned():
    assert set(LOSSES) == set(EXPECTED)


def test_cdpo_label_smoothing_by_hand():
    """cDPO, ε = 0.1, pair 1 (βh = 1):
    0.9·(−log σ(1)) + 0.1·(−log σ(−1)) = 0.9·0.313262 + 0.1·1.313262 = 0.413262."""
    losses, _, _ = preference_loss(POLICY_C, POLICY_R, REF_C, REF_R, loss_type="dpo", beta=BETA, label_smoothing=0.1)
    assert losses[0].item() == pytest.approx(0.9 * math.log1p(math.exp(-1)) + 0.1 * math.log1p(math.exp(1)), abs=1e-6)


def test_implicit_rewards_by_hand():
    """Rewards β(log π − log π_ref): pair 1 chosen 0.5·(−1+2)=0.5, rejected 0.5·(−3+2)=−0.5;
    pair 2 chosen 0.5·0 = 0, rejected 0.5·(−1+2) = 0.5."""
    _, chosen, rejected = preference_loss(POLICY_C, POLICY_R, REF_C, REF_R, loss_type="ipo", beta=BETA)
    torch.testing.assert_close(chosen, torch.tensor([0.5, 0.0]))
    torch.testing.assert_close(rejected, torch.tensor([-0.5, 0.5]))
    assert not chosen.requires_grad


def test_dpo_gradient_by_hand():
    """d/d log π(y_w) of −log σ(βh) = −β σ(−βh): pair 1: −0.5·σ(−1) = −0.134471."""
    pc = POLICY_C.clone().requires_grad_(True)
    losses, _, _ = preference_loss(pc, POLICY_R, REF_C, REF_R, loss_type="dpo", beta=BETA)
    losses[0].backward()
    assert pc.grad[0].item() == pytest.approx(-0.5 * sig(-1.0), abs=1e-6)
    assert pc.grad[1].item() == 0.0


def test_unknown_loss_and_bad_beta():
    with pytest.raises(ValueError, match="unknown loss 'nope'"):
        preference_loss(POLICY_C, POLICY_R, REF_C, REF_R, loss_type="nope", beta=0.1)
    with pytest.raises(ValueError, match="beta"):
        preference_loss(POLICY_C, POLICY_R, REF_C, REF_R, loss_type="dpo", beta=0.0)


def test_completion_logps_by_hand():
    """Vocabulary of 2, sequence of 3. Row 0 labels [-100, 0, 1]: token 1 (id 0) is predicted by
    logits[0] = [0, 0] → log ½ = −0.693147; token 2 (id 1) by logits[1] = [ln 3, 0] →
    log(1/(3+1)) = −1.386294. Sum = log(1/8) = −2.079442, mean = −1.039721.
    Row 1 is all masked: sum 0 and mean 0 (never NaN)."""
    logits = torch.zeros(2, 3, 2)
    logits[0, 1, 0] = math.log(3.0)
    labels = torch.tensor([[-100, 0, 1], [-100, -100, -100]])
    total, n = completion_logps(logits, labels)
    torch.testing.assert_close(total, torch.tensor([math.log(1 / 8), 0.0]))
    torch.testing.assert_close(n, torch.tensor([2, 0]))
    mean, _ = completion_logps(logits, labels, average=True)
    torch.testing.assert_close(mean, torch.tensor([math.log(1 / 8) / 2, 0.0]))


def test_completion_logps_ignores_padding_values():
    """Changing logits at masked positions changes nothing."""
    torch.manual_seed(0)
    logits = torch.randn(1, 5, 7)
    labels = torch.tensor([[-100, -100, 3, 4, -100]])
    before, _ = completion_logps(logits, labels)
    logits[0, 0] += 100.0  # predicts a prompt token
    logits[0, 4] -= 50.0  # predicts past the end
    after, _ = completion_logps(logits, labels)
    torch.testing.assert_close(before, after)
