"""The methods of the synthetic sweep (Ramesh et al., 2024, §5.1): each name is a loss and a group weighting of the
core, with the settings a run of it takes.

The paper's methods, for each loss family (DPO, IPO): the pooled mean (``dpo``, ``ipo``), importance sampling
(``is_*``, pairs weighted ∝ 1/N_g) and group-robust (``gr_*``, Algorithm 1). Beyond the paper, each family also has
three other group-robust objectives, run on the same data, steps and code path, with the α update replaced by the
registered weighting's ``update``: ``gr_*_adj`` (GR with the generalisation adjustment L̂_g + C/√N_g of Sagawa et al.
2020 in the α step), ``cvar_*`` (uniform over the worst ⌈ρK⌉ groups of the step) and ``tilted_*``
(w_g ∝ exp(t L̂_g), Li et al. 2021). Their settings, :data:`METHOD_SETTINGS`, were fixed before any run and not tuned.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

from grpo_lightning.core import WEIGHTINGS, GroupWeighting

#: method name → (the loss's short name in :data:`grpo_lightning.core.LOSSES`, the weighting's in
#: :data:`grpo_lightning.core.WEIGHTINGS`)
METHODS: dict[str, tuple[str, str]] = {
    "dpo": ("dpo", "uniform"),
    "is_dpo": ("dpo", "importance"),
    "gr_dpo": ("dpo", "robust"),
    "gr_dpo_adj": ("dpo", "robust"),
    "cvar_dpo": ("dpo", "cvar"),
    "tilted_dpo": ("dpo", "tilted"),
    "ipo": ("ipo", "uniform"),
    "is_ipo": ("ipo", "importance"),
    "gr_ipo": ("ipo", "robust"),
    "gr_ipo_adj": ("ipo", "robust"),
    "cvar_ipo": ("ipo", "cvar"),
    "tilted_ipo": ("ipo", "tilted"),
}

#: Weighting settings of the objectives beyond the paper, fixed in advance (not tuned on any run).
#: DPO values are in the units of the DPO loss (log 2 ≈ 0.69 at zero margin); the IPO values are the
#: DPO ones rescaled to IPO's loss at zero margin, (1/(2β))² = 25 for β = 0.1, i.e. × 25/log 2 ≈ 36
#: (C: 1 → 36) and × log 2/25 ≈ 0.028 (t: 10 → 0.28). C = 1 is at the low end of the grid
#: C ∈ {0, …, 5} that Sagawa et al. (2020) searched on validation data; on the imbalanced scenarios
#: (N_g = 60 and 240 of 300) it adds 1/√60 ≈ 0.13 to the small group and 0.065 to the large one.
#: ρ = 0.5 with K = 2 groups is the single worst group of each step (⌈0.5·2⌉ = 1).
#: t = 10 weighs a DPO loss gap of 0.1 by e ≈ 2.7.
METHOD_SETTINGS: dict[str, dict[str, float]] = {
    "gr_dpo_adj": {"adjustment": 1.0},
    "cvar_dpo": {"rho": 0.5},
    "tilted_dpo": {"tilt": 10.0},
    "gr_ipo_adj": {"adjustment": 36.0},
    "cvar_ipo": {"rho": 0.5},
    "tilted_ipo": {"tilt": 0.28},
}


@dataclass(frozen=True)
class RunSpec:
    """One run's method and χ (χ only matters for robust methods)."""

    method: str
    chi: float = 1.0


def build_weighting(
    spec: RunSpec, *, alpha_step: float, estimator: str, chi_scaled_step: bool = False
) -> GroupWeighting:
    """The core weighting of a run: the method's strategy with :data:`METHOD_SETTINGS`; adaptive ones
    get η_α, χ and the family's θ-objective estimator (and robust the authors' χ-scaled α step)."""
    _, strategy = METHODS[spec.method]
    kwargs: dict = dict(METHOD_SETTINGS.get(spec.method, {}))
    if WEIGHTINGS[strategy].adaptive:
        kwargs.update(step_size=alpha_step, chi=spec.chi, estimator=estimator)
    if strategy == "robust":
        kwargs["chi_scaled_step"] = chi_scaled_step
    # Each strategy takes only its own settings (cvar and tilted have no η_α or χ).
    takes = inspect.signature(WEIGHTINGS[strategy].__init__).parameters
    return WEIGHTINGS[strategy](**{k: v for k, v in kwargs.items() if k in takes})
