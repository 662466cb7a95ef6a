"""The method in pure torch: no Lightning, no transformers.

Everything here is a function of tensors that returns new tensors; nothing keeps hidden
state. The LightningModule, the bandit sweep and the tests all call these same functions.
"""

from grpo_lightning.core.accuracy import pair_accuracy
from grpo_lightning.core.alignment import js_distance, js_divergence, letter_distribution, opinion_alignment
from grpo_lightning.core.groups import group_counts, group_means, group_sums
from grpo_lightning.core.logprobs import completion_logps
from grpo_lightning.core.losses import LOSSES, PreferenceLoss, log_ratios, register_loss
from grpo_lightning.core.weighting import WEIGHTINGS, GroupWeighting, register_weighting
from grpo_lightning.core.weighting_functions import (
    ESTIMATORS,
    cvar_log_weights,
    exponentiated_gradient_step,
    generalization_adjustment,
    group_loss_estimate,
    mix_with_uniform,
    tilted_log_weights,
    weighted_objective,
)

__all__ = [
    "ESTIMATORS",
    "LOSSES",
    "WEIGHTINGS",
    "GroupWeighting",
    "PreferenceLoss",
    "completion_logps",
    "cvar_log_weights",
    "exponentiated_gradient_step",
    "generalization_adjustment",
    "group_counts",
    "group_loss_estimate",
    "group_means",
    "group_sums",
    "js_distance",
    "js_divergence",
    "letter_distribution",
    "log_ratios",
    "mix_with_uniform",
    "opinion_alignment",
    "pair_accuracy",
    "register_loss",
    "register_weighting",
    "tilted_log_weights",
    "weighted_objective",
]
