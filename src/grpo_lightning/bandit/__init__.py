"""Synthetic group linear bandit experiments (Ramesh et al., 2024, §5.1) on the pure-torch core."""

from grpo_lightning.bandit.env import DataConfig, feature_map, make_data, reward_error, true_rewards
from grpo_lightning.bandit.policy import LogLinearPolicy

__all__ = ["DataConfig", "LogLinearPolicy", "feature_map", "make_data", "reward_error", "true_rewards"]
