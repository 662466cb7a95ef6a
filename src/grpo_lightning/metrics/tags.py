"""Every TensorBoard tag the template writes, in one place: callbacks, notebooks and docs read it."""

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


def eval_group_tag(stage: str, metric: str, group: str) -> str:
    """A group's value in an evaluation stage: ``eval_group_tag("test", "reward_acc", "Cedarholm")``."""
    return f"{stage}/{metric}/{group}"


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


def eval_tags(stage: str, groups: Sequence[str], *, with_reference: bool = True) -> list[str]:
    tags = [
        f"{stage}/loss",
        f"{stage}/worst_group_loss",
        f"{stage}/min_group_reward_acc",
        f"{stage}/min_group_logp_acc",
        f"{stage}/groups_covered",
    ]
    tags += [f"{stage}/loss/{g}" for g in groups]
    tags += [f"{stage}/pairs/{g}" for g in groups]
    tags += [f"{stage}/reward_acc/{g}" for g in groups]
    tags += [f"{stage}/logp_acc/{g}" for g in groups]
    if with_reference:
        tags += [f"{stage}/ref_logp_acc/{g}" for g in groups] + [f"{stage}/min_group_ref_logp_acc"]
    tags += [f"{stage}/rewards/chosen", f"{stage}/rewards/rejected", f"{stage}/rewards/margins"]
    return tags


def opinion_tags(stage: str, groups: Sequence[str]) -> list[str]:
    """Opinion alignment (GOQA data only, :mod:`grpo_lightning.callbacks.opinion_alignment`)."""
    return [f"{stage}/opinion_alignment/{g}" for g in groups] + [f"{stage}/min_group_opinion_alignment"]
