"""Every TensorBoard tag the template writes, in one place: the module, the metrics, the callbacks, the analysis
tools (``grpo-compare``, the GOQA report), notebooks and docs read it. No other file spells a tag
(``tests/test_metrics_tags.py`` reads the code for stray ones).

Three families: training scalars (``train/…``, every logged step), evaluation values over all groups
(``<stage>/<metric>``, stage ``val`` or ``test``) and per group (``<stage>/<metric>/<group>``).
"""

from __future__ import annotations

from collections.abc import Sequence

EVAL_STAGES = ("val", "test")

#: The weighted objective Σ_g w_g L̂_g of a step (its scale depends on the weighting: not comparable across methods).
TRAIN_LOSS = "train/loss"
#: The plain mean of a step's per-pair losses, Σ_g S_g / Σ_g N_g (the same quantity for every method).
TRAIN_POOLED_LOSS = "train/pooled_loss"
#: ``train/loss`` averaged over the epoch (the progress bar's value).
TRAIN_LOSS_EPOCH = "train/loss_epoch"
#: η_α after a cut of the authors' GOQA schedule (``training/schedules.py``).
ALPHA_STEP_SIZE = "train/alpha_step_size"
#: The figure of the group weights over training (``callbacks/figures.py``).
GROUP_WEIGHTS_FIGURE = "train/group_weights"
GROUP_LOSS_PREFIX = "train/group_loss/"
GROUP_WEIGHT_PREFIX = "train/group_weight/"


def eval_tag(stage: str, metric: str) -> str:
    """A value over all groups of an evaluation stage: ``eval_tag("val", "worst_group_loss")``."""
    return f"{stage}/{metric}"


def eval_group_prefix(stage: str, metric: str) -> str:
    """What every group's tag of one metric starts with: ``eval_group_prefix("val", "loss")`` is ``val/loss/``
    (the group names of a run whose hparams are lost are read back from it)."""
    return f"{eval_tag(stage, metric)}/"


def eval_group_tag(stage: str, metric: str, group: str) -> str:
    """A group's value in an evaluation stage: ``eval_group_tag("test", "reward_acc", "Cedarholm")``."""
    return f"{eval_group_prefix(stage, metric)}{group}"


#: What the learning-rate schedules monitor by default.
VAL_LOSS = eval_tag("val", "loss")
VAL_WORST_GROUP_LOSS = eval_tag("val", "worst_group_loss")


def group_loss_tag(group: str) -> str:
    """A group's mean loss L̂_g in a training step (logged only when the step has pairs of the group)."""
    return f"{GROUP_LOSS_PREFIX}{group}"


def group_weight_tag(group: str) -> str:
    """A group's weight w_g = (1 − χ)/K + χ α_g in a training step."""
    return f"{GROUP_WEIGHT_PREFIX}{group}"


def group_weight_tags(groups: Sequence[str]) -> list[str]:
    return [group_weight_tag(g) for g in groups]


def train_tags(groups: Sequence[str]) -> list[str]:
    """``train/loss`` is the weighted objective (not comparable across weightings); ``train/pooled_loss`` the
    unweighted mean over the step's pairs (comparable)."""
    return [TRAIN_LOSS, TRAIN_POOLED_LOSS] + [group_loss_tag(g) for g in groups] + group_weight_tags(groups)


#: ``<stage>/<metric>/<group>`` of :class:`grpo_lightning.metrics.GroupPreferenceMetrics`: the group's mean loss,
#: pair count, reward accuracy, log-prob accuracy of the policy and of the reference (accuracies count ties ½).
GROUP_EVAL_METRICS = ("loss", "pairs", "reward_acc", "logp_acc", "ref_logp_acc")
#: The reference's log-prob accuracy (logged only when the reference log-probs are known).
REFERENCE_METRIC = "ref_logp_acc"
#: ``<stage>/<metric>`` over the groups present in the split: the highest group loss and the lowest accuracies.
WORST_GROUP_METRICS = {
    "loss": "worst_group_loss",
    "reward_acc": "min_group_reward_acc",
    "logp_acc": "min_group_logp_acc",
    "ref_logp_acc": "min_group_ref_logp_acc",
}


def eval_tags(stage: str, groups: Sequence[str], *, with_reference: bool = True) -> list[str]:
    """What :class:`grpo_lightning.metrics.GroupPreferenceMetrics` logs for a split where every group has pairs
    (the reference's log-prob accuracy only ``with_reference``)."""
    own = [m for m in GROUP_EVAL_METRICS if m != REFERENCE_METRIC]
    tags = [eval_tag(stage, m) for m in ("loss", *(WORST_GROUP_METRICS[m] for m in own if m != "pairs"))]
    tags.append(eval_tag(stage, "groups_covered"))
    tags += [eval_group_tag(stage, m, g) for m in own for g in groups]
    if with_reference:
        tags += [eval_group_tag(stage, REFERENCE_METRIC, g) for g in groups]
        tags.append(eval_tag(stage, WORST_GROUP_METRICS[REFERENCE_METRIC]))
    tags += [eval_tag(stage, f"rewards/{r}") for r in ("chosen", "rejected", "margins")]
    return tags


def opinion_tags(stage: str, groups: Sequence[str]) -> list[str]:
    """Opinion alignment (GOQA data only, :mod:`grpo_lightning.callbacks.opinion_alignment`)."""
    return [eval_group_tag(stage, "opinion_alignment", g) for g in groups] + [
        eval_tag(stage, "min_group_opinion_alignment")
    ]
