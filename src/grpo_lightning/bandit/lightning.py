"""The bandit as a policy/data pair for the LightningModule (`grpo fit` runs one scenario).

The same :class:`~grpo_lightning.training.module.GroupRobustPreferenceModule` that trains a causal LM
trains the log-linear policy here: full-batch steps (one batch = the 300 training pairs), SGD
with the scenario's η_θ, and the core's losses and weightings. ``tests/test_bandit_lightning.py``
checks that this path and the vectorised sweep give the same θ and α.
"""

from __future__ import annotations

import math

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from grpo_lightning.bandit.env import FEATURE_TYPES, NUM_ACTIONS, DataConfig, make_seed_data
from grpo_lightning.bandit.policy import LogLinearPolicy
from grpo_lightning.bandit.sweep import SCENARIOS
from grpo_lightning.policies.base import PolicySpec, PreferencePolicy


def _scenario_data(scenario: str, feature_type: str, seed: int) -> dict:
    if scenario not in SCENARIOS:
        raise ValueError(f"scenario must be one of {sorted(SCENARIOS)}, got {scenario!r}")
    if feature_type not in FEATURE_TYPES:
        raise ValueError(f"feature_type must be one of {FEATURE_TYPES}, got {feature_type!r}")
    s = SCENARIOS[scenario]
    return make_seed_data(seed, DataConfig(weight=s.weight, uneven=s.uneven, feature_type=feature_type))


class BanditPolicyModule(PreferencePolicy):
    """The log-linear policy and its uniform reference (log π_ref = −log 8 for every action)."""

    def __init__(self, theta0: torch.Tensor) -> None:
        super().__init__()
        self.policy = LogLinearPolicy(theta0)

    def pair_logps(self, batch):
        return self.policy.pair_logps(batch)

    @torch.no_grad()
    def reference_pair_logps(self, batch):
        const = torch.full_like(batch["chosen"], -math.log(NUM_ACTIONS), dtype=self.policy.theta.dtype)
        return const, const.clone()


class LogLinearBandit(PolicySpec):
    """The paper's log-linear bandit policy, θ⁰ ~ U[0, 5]⁴ drawn from the seed's generator (the
    same draw as the sweep's, so both paths start from the same θ).

    Args:
        scenario: ``even_imbalanced``, ``uneven_balanced`` or ``uneven_imbalanced``.
        feature_type: ``same``, ``swapped`` or ``flipped``.
        seed: the data seed (the paper uses 2021–2040).
    """

    def __init__(self, scenario: str = "uneven_imbalanced", feature_type: str = "swapped", seed: int = 2021) -> None:
        super().__init__(scenario=scenario, feature_type=feature_type, seed=seed)
        self.theta0 = _scenario_data(scenario, feature_type, seed)["theta0"]

    def build(self, tokenizer=None) -> BanditPolicyModule:
        return BanditPolicyModule(self.theta0)


class _Pairs(Dataset):
    def __init__(self, split: dict[str, torch.Tensor]) -> None:
        self.split = {k: split[k] for k in ("features", "chosen", "rejected", "group")}

    def __len__(self) -> int:
        return len(self.split["group"])

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {**{k: v[i] for k, v in self.split.items()}, "index": torch.tensor(i)}


class BanditDataModule(L.LightningDataModule):
    """One seed of a bandit scenario: 300 training pairs in one full batch, 1000 validation pairs
    with equal group shares (also used by ``test``).

    Args:
        scenario, feature_type, seed: as for :class:`LogLinearBandit` (use the same values).
    """

    group_names = ["group_0", "group_1"]
    tokenizer = None
    accumulate_grad_batches = 1

    def __init__(self, scenario: str = "uneven_imbalanced", feature_type: str = "swapped", seed: int = 2021) -> None:
        super().__init__()
        data = _scenario_data(scenario, feature_type, seed)
        self.train, self.val = _Pairs(data["train"]), _Pairs(data["val"])
        self.train_group_counts = torch.bincount(data["train"]["group"], minlength=2).tolist()

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train, batch_size=len(self.train), shuffle=False)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val, batch_size=len(self.val), shuffle=False)

    test_dataloader = val_dataloader
    predict_dataloader = val_dataloader
