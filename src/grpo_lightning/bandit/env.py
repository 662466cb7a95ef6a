"""The synthetic group linear bandit of Ramesh et al. (2024), §5.1, in torch.

States x ∈ [0, 1]², 8 actions, 2 groups, features of dimension 4. With u = a/8 + 1 (so
u ∈ {1, 1.125, …, 1.875}) group 0's feature vector is

    φ(x, a, 0) = (u cos πx₁, sin πx₁ / u, u cos πx₂, sin πx₂ / u)

and group 1's depends on the feature type:

* ``same``:    φ(x, a, 1) = φ(x, a, 0);
* ``swapped``: the two entries of each pair exchanged, (sin πx₁ / u, u cos πx₁, sin πx₂ / u, u cos πx₂);
* ``flipped``: cos and sin exchanged, (u sin πx₁, cos πx₁ / u, u sin πx₂, cos πx₂ / u).

The true reward of group g is r*_g(x, a) = θ*_gᵀ φ(x, a, g) with θ*₀ = (1, 3, 1, 3) and
θ*₁ = (3, 1, 3, 1). Preferences are deterministic: the action with the higher true reward is
the chosen one.

Everything here carries a leading seed dimension ``S`` where it is cheap to do so; random
draws are made per seed with that seed's own :class:`torch.Generator`, so a seed's data does not
depend on which other seeds are in the batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

NUM_ACTIONS = 8
NUM_GROUPS = 2
STATE_DIM = 2
FEATURE_DIM = 2 * STATE_DIM
FEATURE_TYPES = ("same", "swapped", "flipped")
DTYPE = torch.float64

#: θ*_g, one row per group.
TRUE_PARAMS = torch.tensor([[1.0, 3.0, 1.0, 3.0], [3.0, 1.0, 3.0, 1.0]], dtype=DTYPE)


def feature_map(states: torch.Tensor, groups: torch.Tensor, feature_type: str) -> torch.Tensor:
    """φ(x, a, g) for every action: ``(..., 2)`` states, ``(...)`` int groups → ``(..., 8, 4)``."""
    if feature_type not in FEATURE_TYPES:
        raise ValueError(f"unknown feature type {feature_type!r}; choose one of {FEATURE_TYPES}")
    states = states.to(DTYPE)
    u = torch.arange(NUM_ACTIONS, dtype=DTYPE, device=states.device) / NUM_ACTIONS + 1.0  # (8,)
    cos = torch.cos(math.pi * states).unsqueeze(-2)  # (..., 1, 2)
    sin = torch.sin(math.pi * states).unsqueeze(-2)
    u = u.unsqueeze(-1)  # (8, 1)
    # group 0: pairs (u cos, sin / u) per state coordinate
    first0, second0 = u * cos, sin / u  # (..., 8, 2)
    if feature_type == "same":
        first1, second1 = first0, second0
    elif feature_type == "swapped":
        first1, second1 = second0, first0
    else:  # flipped
        first1, second1 = u * sin, cos / u
    is_one = (groups == 1).unsqueeze(-1).unsqueeze(-1)  # (..., 1, 1)
    first = torch.where(is_one, first1, first0)
    second = torch.where(is_one, second1, second0)
    # interleave: (first₁, second₁, first₂, second₂)
    return torch.stack((first, second), dim=-1).flatten(-2)


def true_rewards(features: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """r*_g(x, a) for every action: ``(..., 8, 4)`` features, ``(...)`` groups → ``(..., 8)``."""
    params = TRUE_PARAMS.to(features)[groups]  # (..., 4)
    return torch.einsum("...ad,...d->...a", features, params)


@dataclass(frozen=True)
class DataConfig:
    """How one scenario's data is generated."""

    weight: float  # share of group 0 in the training split
    uneven: bool  # uneven groups: group 0 compares adjacent actions, group 1 a and a + 4
    feature_type: str = "swapped"
    num_train: int = 300
    num_val: int = 1000
    num_test: int = 1000


def _group_sizes(num: int, weight: float) -> tuple[int, int]:
    n0 = int(round(weight * num))
    return n0, num - n0


def sample_pairs(
    num: int, weight: float, *, uneven: bool, feature_type: str, generator: torch.Generator
) -> dict[str, torch.Tensor]:
    """One seed's preference pairs: exactly round(weight·num) pairs of group 0, shuffled.

    Even groups: two distinct actions uniformly at random. Uneven groups: a₁ uniform; group 0
    compares a₁ with a neighbour (a₁ ± 1 with probability ½ each, reflected at the ends),
    group 1 compares a₁ with (a₁ + 4) mod 8. The chosen action has the higher true reward.

    Returns a dict of ``states (n, 2)``, ``group (n,)``, ``chosen (n,)``, ``rejected (n,)``,
    ``features (n, 8, 4)`` and ``rewards (n, 8)`` (true rewards of every action).
    """
    n0, n1 = _group_sizes(num, weight)
    groups = torch.cat((torch.zeros(n0, dtype=torch.long), torch.ones(n1, dtype=torch.long)))
    groups = groups[torch.randperm(num, generator=generator)]
    states = torch.rand(num, STATE_DIM, generator=generator, dtype=DTYPE)
    first = torch.randint(NUM_ACTIONS, (num,), generator=generator)
    if uneven:
        step = 2 * torch.randint(2, (num,), generator=generator) - 1  # ±1
        neighbour = first + step
        neighbour = torch.where(neighbour >= NUM_ACTIONS, first - 1, neighbour)
        neighbour = torch.where(neighbour < 0, first + 1, neighbour)
        opposite = (first + NUM_ACTIONS // 2) % NUM_ACTIONS
        second = torch.where(groups == 0, neighbour, opposite)
    else:
        offset = torch.randint(1, NUM_ACTIONS, (num,), generator=generator)
        second = (first + offset) % NUM_ACTIONS
    features = feature_map(states, groups, feature_type)
    rewards = true_rewards(features, groups)
    r_first = rewards.gather(-1, first.unsqueeze(-1)).squeeze(-1)
    r_second = rewards.gather(-1, second.unsqueeze(-1)).squeeze(-1)
    first_wins = r_first > r_second
    return {
        "states": states,
        "group": groups,
        "chosen": torch.where(first_wins, first, second),
        "rejected": torch.where(first_wins, second, first),
        "features": features,
        "rewards": rewards,
    }


def make_seed_data(seed: int, config: DataConfig, param_limit: float = 5.0) -> dict:
    """All of one seed's data: ``train``, ``val`` (equal group shares), ``test_states``, ``theta0``.

    Draws, in this order, from one generator seeded with ``seed``: θ⁰ ~ U[0, param_limit]⁴,
    the training pairs, the validation pairs, the test states.
    """
    gen = torch.Generator().manual_seed(int(seed))
    theta0 = torch.rand(FEATURE_DIM, generator=gen, dtype=DTYPE) * param_limit
    common = {"uneven": config.uneven, "feature_type": config.feature_type, "generator": gen}
    train = sample_pairs(config.num_train, config.weight, **common)
    val = sample_pairs(config.num_val, 0.5, **common)
    test_states = torch.rand(config.num_test, STATE_DIM, generator=gen, dtype=DTYPE)
    return {"train": train, "val": val, "test_states": test_states, "theta0": theta0}


def stack_seeds(per_seed: list[dict]) -> dict:
    """Stack per-seed data (nested dicts of tensors) along a new leading seed dimension."""
    first = per_seed[0]
    if isinstance(first, dict):
        return {k: stack_seeds([d[k] for d in per_seed]) for k in first}
    return torch.stack(per_seed)


def make_data(seeds: list[int], config: DataConfig, param_limit: float = 5.0) -> dict:
    """:func:`make_seed_data` for each seed, stacked: every tensor gets a leading ``S`` dimension."""
    return stack_seeds([make_seed_data(s, config, param_limit) for s in seeds])


def reward_error(theta: torch.Tensor, test_states: torch.Tensor, feature_type: str) -> torch.Tensor:
    """Per-group relative reward error of the greedy (argmax) policy.

    For group g, R*_g = mean over test states of max_a r*_g(x, a), R_g(π) = mean of
    r*_g(x, argmax_a θᵀφ(x, a, g)), and the error is (R*_g − R_g(π)) / R*_g.

    Args:
        theta: ``(..., 4)`` policy parameters.
        test_states: ``(..., T, 2)`` (broadcastable leading dims with ``theta``).

    Returns:
        ``(..., 2)`` errors, one per group.
    """
    errors = []
    for g in range(NUM_GROUPS):
        groups = torch.full(test_states.shape[:-1], g, dtype=torch.long, device=test_states.device)
        feats = feature_map(test_states, groups, feature_type)  # (..., T, 8, 4)
        rewards = true_rewards(feats, groups)  # (..., T, 8)
        logits = torch.einsum("...tad,...d->...ta", feats, theta.to(feats))
        greedy = logits.argmax(-1, keepdim=True)
        achieved = rewards.gather(-1, greedy).squeeze(-1).mean(-1)
        best = rewards.max(-1).values.mean(-1)
        errors.append((best - achieved) / best)
    return torch.stack(errors, dim=-1)
