"""Every TensorBoard tag the template writes, in one place: callbacks, notebooks and docs read it."""

from __future__ import annotations

from collections.abc import Sequence

EVAL_STAGES = ("val", "test")


def group_weight_tags(groups: Sequence[str]) -> list[str]:
    return [f"train/group_weight/{g}" for g in groups]


def train_tags(groups: Sequence[str]) -> list[str]:
    """``train/loss`` is the weighted objective (not comparable across weightings); ``train/pooled_loss`` the
    unweighted mean over the step's pairs (comparable)."""
    return ["train/loss", "train/pooled_loss"] + [f"train/group_loss/{g}" for g in groups] + group_weight_tags(groups)


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
    """Opinion alignment (GOQA data only, :mod:`grpo_lightning.opinion_alignment`)."""
    return [f"{stage}/opinion_alignment/{g}" for g in groups] + [f"{stage}/min_group_opinion_alignment"]
