"""Log-linear policy of the bandit: π_θ(a | x, g) = softmax_a θᵀφ(x, a, g), one shared θ.

The reference policy is uniform over the 8 actions, so log π_ref = −log 8 for every action and
the DPO log-ratio margin is h = θᵀ(φ(x, y_w, g) − φ(x, y_l, g)).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from grpo_lightning.bandit.env import DTYPE, FEATURE_DIM, NUM_ACTIONS


class LogLinearPolicy(nn.Module):
    """π_θ(a | x, g) ∝ exp(θᵀφ(x, a, g)).

    ``theta`` has shape ``(*R, d)``: with ``R`` empty it is the single policy the LightningModule
    trains; the sweep uses ``R = (runs,)`` to train many independent policies at once, in which
    case every tensor of the batch carries the same leading ``R`` dimensions.

    Args:
        theta: initial parameters, ``(*R, d)``; default zeros of shape ``(d,)``.
        num_actions: size of the action set (for the uniform reference).
    """

    def __init__(self, theta: torch.Tensor | None = None, num_actions: int = NUM_ACTIONS) -> None:
        super().__init__()
        if theta is None:
            theta = torch.zeros(FEATURE_DIM, dtype=DTYPE)
        self.theta = nn.Parameter(theta.detach().clone())
        self.num_actions = num_actions

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        """θᵀφ for every action: ``(*R, B, A, d)`` → ``(*R, B, A)``."""
        theta = self.theta.to(features.dtype)
        *lead, b, a, d = features.shape
        # one (B·A, d) @ (d, 1) product per run: much faster than a broadcast einsum
        flat = features.reshape(*lead, b * a, d) @ theta.unsqueeze(-1)
        return flat.reshape(*lead, b, a)

    def log_probs(self, features: torch.Tensor) -> torch.Tensor:
        """log π_θ(a | x, g) for every action, ``(*R, B, A)``."""
        return torch.log_softmax(self.logits(features), dim=-1)

    def pair_logps(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """log π_θ(y_w | x, g) and log π_θ(y_l | x, g), each ``(*R, B)``.

        ``batch``: ``features (*R, B, A, d)`` float, ``chosen (*R, B)`` and ``rejected (*R, B)``
        long actions, ``group (*R, B)`` long (already folded into the features).
        """
        logps = self.log_probs(batch["features"])
        chosen = logps.gather(-1, batch["chosen"].unsqueeze(-1)).squeeze(-1)
        rejected = logps.gather(-1, batch["rejected"].unsqueeze(-1)).squeeze(-1)
        return chosen, rejected

    def pair_scores(
        self, chosen_features: torch.Tensor, rejected_features: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """θᵀφ(x, y_w, g) and θᵀφ(x, y_l, g), each ``(*R, B)``, from ``(*R, B, d)`` features.

        These are :meth:`pair_logps` plus log Z(x, g), the same log-normaliser for both
        actions of a pair, so log-ratio margins h (and hence every loss of
        :mod:`grpo_lightning.core.losses` except ``sft``) are identical; with the uniform
        reference, h = θᵀ(φ(x, y_w, g) − φ(x, y_l, g)). The sweep uses this fast path: it
        skips the softmax over all actions, which dominates the cost of a step.
        """
        theta = self.theta.to(chosen_features.dtype).unsqueeze(-1)
        return (chosen_features @ theta).squeeze(-1), (rejected_features @ theta).squeeze(-1)

    def reference_pair_logps(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """The uniform reference: −log A for both actions, each shaped like ``batch["chosen"]``."""
        const = torch.full(batch["chosen"].shape, -math.log(self.num_actions), dtype=batch["features"].dtype)
        return const.to(batch["features"].device), const.clone().to(batch["features"].device)
