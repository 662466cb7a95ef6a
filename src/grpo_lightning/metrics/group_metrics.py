"""Epoch-level per-group metrics as torchmetrics states, so they are exact across DDP ranks."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchmetrics import Metric

from grpo_lightning.core.accuracy import pair_accuracy
from grpo_lightning.core.groups import group_counts, group_sums
from grpo_lightning.metrics.tags import WORST_GROUP_METRICS, eval_group_tag, eval_tag


class GroupPreferenceMetrics(Metric):
    """Per-group loss, reward accuracy and log-prob accuracy, plus mean implicit rewards.

    Accuracies count a pair 1 if chosen > rejected, ½ on a tie, 0 otherwise
    (:func:`grpo_lightning.core.accuracy.pair_accuracy`), so a start model equal to its reference reads 0.5.

    ``compute`` returns the tags of :func:`grpo_lightning.metrics.tags.eval_tags`. Worst-group
    and minimum-group values range over the groups present in the evaluated split; a group with
    no pair there gets no per-group value (rather than a made-up 0), only its pair count 0.
    ``<stage>/groups_covered`` says how many groups they range over.
    """

    full_state_update = False
    higher_is_better = None

    def __init__(self, group_names: Sequence[str], prefix: str) -> None:
        super().__init__()
        self.group_names = list(group_names)
        self.prefix = prefix
        k = len(self.group_names)
        for name in ("count", "loss", "reward_correct", "logp_correct", "ref_logp_correct"):
            self.add_state(name, default=torch.zeros(k, dtype=torch.float64), dist_reduce_fx="sum")
        for name in ("chosen_reward", "rejected_reward"):
            self.add_state(name, default=torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(
        self,
        losses: torch.Tensor,
        chosen_rewards: torch.Tensor,
        rejected_rewards: torch.Tensor,
        policy_chosen: torch.Tensor,
        policy_rejected: torch.Tensor,
        reference_chosen: torch.Tensor | None,
        reference_rejected: torch.Tensor | None,
        group: torch.Tensor,
    ) -> None:
        k = len(self.group_names)
        as64 = lambda t: t.detach().to(torch.float64)  # noqa: E731
        self.count += group_counts(group, k).to(self.count)
        self.loss += group_sums(as64(losses), group, k)
        # Ties (h = 0) count ½ (core/accuracy.py): a model equal to its reference reads 0.5, not 0.
        credit = lambda c, r: group_sums(pair_accuracy(as64(c) - as64(r)), group, k)  # noqa: E731
        self.reward_correct += credit(chosen_rewards, rejected_rewards)
        self.logp_correct += credit(policy_chosen, policy_rejected)
        if reference_chosen is not None and reference_rejected is not None:
            self.ref_logp_correct += credit(reference_chosen, reference_rejected)
        self.chosen_reward += as64(chosen_rewards).sum()
        self.rejected_reward += as64(rejected_rewards).sum()

    def compute(self) -> dict[str, torch.Tensor]:
        p = self.prefix
        present = self.count > 0
        total = self.count.sum().clamp(min=1)
        per = {
            "loss": self.loss / self.count.clamp(min=1),
            "reward_acc": self.reward_correct / self.count.clamp(min=1),
            "logp_acc": self.logp_correct / self.count.clamp(min=1),
            "ref_logp_acc": self.ref_logp_correct / self.count.clamp(min=1),
        }
        out: dict[str, torch.Tensor] = {
            eval_tag(p, "loss"): self.loss.sum() / total,
            eval_tag(p, "groups_covered"): present.sum(),
        }
        # Every group, 0 included: the summary and grpo-compare tell "no pairs" from a missing log.
        for g, name in enumerate(self.group_names):
            out[eval_group_tag(p, "pairs", name)] = self.count[g]
        for metric, values in per.items():
            for g, name in enumerate(self.group_names):
                if present[g]:
                    out[eval_group_tag(p, metric, name)] = values[g]
        if present.any():
            # The worst group: the highest loss, the lowest accuracies (over the groups with pairs).
            for metric, overall in WORST_GROUP_METRICS.items():
                values = per[metric][present]
                out[eval_tag(p, overall)] = values.max() if metric == "loss" else values.min()
        out[eval_tag(p, "rewards/chosen")] = self.chosen_reward / total
        out[eval_tag(p, "rewards/rejected")] = self.rejected_reward / total
        out[eval_tag(p, "rewards/margins")] = (self.chosen_reward - self.rejected_reward) / total
        return {k: v.float() for k, v in out.items()}


class GroupOpinionAlignment(Metric):
    """Per-group mean opinion alignment, 1 − Jensen–Shannon distance (base 2) between the model's letter
    distribution and the group's survey distribution (:func:`grpo_lightning.core.alignment.opinion_alignment`),
    averaged over the (question, group) items of a split, as Durmus et al. (2023) average over questions.

    ``compute`` returns ``<prefix>/opinion_alignment/<group>`` for each group with an item and
    ``<prefix>/min_group_opinion_alignment``, the minimum over those groups.
    """

    full_state_update = False
    higher_is_better = True

    def __init__(self, group_names: Sequence[str], prefix: str) -> None:
        super().__init__()
        self.group_names = list(group_names)
        self.prefix = prefix
        k = len(self.group_names)
        self.add_state("count", default=torch.zeros(k, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("alignment", default=torch.zeros(k, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, alignment: torch.Tensor, group: torch.Tensor) -> None:
        """``alignment``: ``(B,)`` per-item values; ``group``: ``(B,)`` group ids."""
        k = len(self.group_names)
        self.count += group_counts(group, k).to(self.count)
        self.alignment += group_sums(alignment.detach().to(torch.float64), group, k)

    def compute(self) -> dict[str, torch.Tensor]:
        p = self.prefix
        present = self.count > 0
        mean = self.alignment / self.count.clamp(min=1)
        out = {
            eval_group_tag(p, "opinion_alignment", name): mean[g]
            for g, name in enumerate(self.group_names)
            if present[g]
        }
        if present.any():
            out[eval_tag(p, "min_group_opinion_alignment")] = mean[present].min()
        return {k: v.float() for k, v in out.items()}
