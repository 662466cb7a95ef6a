"""The paper's synthetic scenarios (Ramesh et al., 2024, §5.1) and the sweeps over them: every requested method of a
scenario (:func:`run_scenario`), and GR-DPO over χ (:func:`run_chi_sweep`), each loss family trained at once by the
vectorised trainer (:mod:`grpo_lightning.bandit.trainer`).

The scenarios' settings (η_θ, β, η_α, steps) are those of the authors' run scripts
(``experiments/run_group_linear_bandit_*.py`` and their sweeps), not read off Table 1 of the paper.
"""

from __future__ import annotations

from dataclasses import dataclass

from grpo_lightning.bandit.env import DataConfig, make_data
from grpo_lightning.bandit.methods import METHODS, RunSpec
from grpo_lightning.bandit.trainer import FamilyResult, run_family

FIRST_SEED = 2021


@dataclass(frozen=True)
class Scenario:
    """A data setting and the authors' optimisation settings for it (from their run scripts, not the paper's table)."""

    weight: float
    uneven: bool
    lr: float  # η_θ (DPO family)
    beta: float  # β (DPO family)
    alpha_step: float  # η_α (GR-DPO)
    steps: int  # full-batch gradient steps (DPO family)
    ipo_beta: float = 0.1
    ipo_alpha_step: float = 0.01
    ipo_steps: int = 100


SCENARIOS: dict[str, Scenario] = {
    "even_imbalanced": Scenario(weight=0.2, uneven=False, lr=0.5, beta=1.0, alpha_step=0.9, steps=10_000),
    "uneven_balanced": Scenario(weight=0.5, uneven=True, lr=5.0, beta=2.0, alpha_step=0.01, steps=5_000),
    "uneven_imbalanced": Scenario(weight=0.2, uneven=True, lr=0.9, beta=1.0, alpha_step=0.5, steps=20_000),
}


def run_scenario(
    name: str,
    methods: list[str],
    seeds: list[int],
    *,
    feature_type: str = "swapped",
    ipo_weighting: str = "objective",
    max_steps: int | None = None,
    ipo_steps: int | None = None,
    eval_every: int = 100,
    compile: bool = False,
    chi_scaled_alpha_step: bool = False,
) -> dict[str, FamilyResult]:
    """All requested methods of one scenario; returns one :class:`FamilyResult` per loss family."""
    sc = SCENARIOS[name]
    data = make_data(seeds, DataConfig(weight=sc.weight, uneven=sc.uneven, feature_type=feature_type))
    out: dict[str, FamilyResult] = {}
    dpo_specs = [RunSpec(mth) for mth in methods if METHODS[mth][0] == "dpo"]
    ipo_specs = [RunSpec(mth) for mth in methods if METHODS[mth][0] == "ipo"]
    if dpo_specs:
        steps = sc.steps if max_steps is None else min(sc.steps, max_steps)
        out["dpo"] = run_family(
            data, seeds, dpo_specs, loss_type="dpo", beta=sc.beta, lr=sc.lr, alpha_step=sc.alpha_step,
            steps=steps, feature_type=feature_type, eval_every=eval_every, compile=compile,
            chi_scaled_alpha_step=chi_scaled_alpha_step,
        )  # fmt: skip
    if ipo_specs:
        steps = sc.ipo_steps if ipo_steps is None else ipo_steps
        out["ipo"] = run_family(
            data, seeds, ipo_specs, loss_type="ipo", beta=sc.ipo_beta, alpha_step=sc.ipo_alpha_step, steps=steps,
            feature_type=feature_type, closed_form=True, ipo_weighting=ipo_weighting, eval_every=1,
            chi_scaled_alpha_step=chi_scaled_alpha_step,
        )  # fmt: skip
    return out


def run_chi_sweep(
    chis: list[float],
    seeds: list[int],
    *,
    feature_type: str = "swapped",
    max_steps: int | None = None,
    eval_every: int = 100,
    compile: bool = False,
    chi_scaled_alpha_step: bool = False,
) -> FamilyResult:
    """GR-DPO on uneven-imbalanced data for each χ (w = (1 − χ)/K + χα), all χ and seeds batched."""
    sc = SCENARIOS["uneven_imbalanced"]
    data = make_data(seeds, DataConfig(weight=sc.weight, uneven=sc.uneven, feature_type=feature_type))
    steps = sc.steps if max_steps is None else min(sc.steps, max_steps)
    return run_family(
        data, seeds, [RunSpec("gr_dpo", chi=c) for c in chis], loss_type="dpo", beta=sc.beta, lr=sc.lr,
        alpha_step=sc.alpha_step, steps=steps, feature_type=feature_type, eval_every=eval_every, compile=compile,
        chi_scaled_alpha_step=chi_scaled_alpha_step,
    )  # fmt: skip
