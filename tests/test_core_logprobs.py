"""core/logprobs.py: completion_logps, the completion tokens' log-probabilities summed (or averaged), by hand."""

from __future__ import annotations

import math

import torch

from grpo_lightning.core import completion_logps


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
