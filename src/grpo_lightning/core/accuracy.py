"""Pairwise accuracy with ties counted ½: the one definition behind every accuracy the template logs."""

from __future__ import annotations

import torch


def pair_accuracy(h: torch.Tensor) -> torch.Tensor:
    """Per-pair accuracy credit of a score difference ``h`` (chosen − rejected): 1 if h > 0, ½ if h = 0, 0 if h < 0.

    ``h``: ``(B,)`` (any shape); returns a tensor of the same shape and dtype (float), whose mean is the accuracy.
    A NaN difference gets 0, as a strict comparison would give it.

    Reward accuracy uses h = r_w − r_l, the implicit rewards r = β (log π(y|x) − log π_ref(y|x)) of the chosen and
    the rejected completion (Rafailov et al. 2023, eq. 5; the reward accuracy Ramesh et al. 2024 report in Figure 3);
    log-prob accuracy uses h = log π(y_w|x) − log π(y_l|x), of the policy or of the reference. Log-prob ties are
    rarer (two different completions seldom get bit-identical log-probs) but happen for the same reason, a model
    that cannot tell the completions apart (one uniform over its outputs, as the bandit's reference, or identical
    completions), so they count ½ too and every accuracy the template logs has one definition.

    Why ties count ½: a tie means the model does not tell the two completions apart, so it is right with
    probability ½ under a coin flip, the chance level of a pairwise comparison (the Wilcoxon–Mann–Whitney / AUC
    convention). Counting a tie as wrong makes a model that knows nothing read 0, not chance: a start model equal to
    its reference has r_w = r_l = 0 for *every* pair, so a strict ``>`` reads 0.000 and ½ reads 0.500. TRL's
    ``DPOTrainer`` (``rewards/accuracies``) and the authors' code (rsshyam/GRPO, ``trainers/grouptrainer.py``) use
    ``(chosen_rewards > rejected_rewards)``, so they read 0 at the start; the two definitions differ only on pairs
    with h exactly 0, which after training are rare.

    Hand-worked example: h = (1, 0, −2, 0) gives credits (1, ½, 0, ½), sum 2, accuracy 2/4 = 0.5 (a strict ``>``
    gives 1/4 = 0.25); h = (0, 0, 0) (a model equal to its reference) gives (½, ½, ½), accuracy 0.5.
    """
    dtype = h.dtype if h.is_floating_point() else torch.get_default_dtype()
    return (h > 0).to(dtype) + 0.5 * (h == 0).to(dtype)
