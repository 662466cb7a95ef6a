"""The bandit through the LightningModule equals the vectorised sweep: same core, same numbers."""

from __future__ import annotations

import functools

import pytest
import torch
from conftest import fit_quietly

from grpo_lightning.bandit.env import DataConfig, make_data
from grpo_lightning.bandit.lightning import BanditDataModule, LogLinearBandit
from grpo_lightning.bandit.methods import RunSpec
from grpo_lightning.bandit.sweep import SCENARIOS
from grpo_lightning.bandit.trainer import run_family
from grpo_lightning.core.losses import DPO
from grpo_lightning.core.weighting import ImportanceWeighting, RobustWeighting, UniformWeighting
from grpo_lightning.training.module import GroupRobustPreferenceModule


@pytest.mark.parametrize(
    ("method", "weighting"),
    [
        ("gr_dpo", RobustWeighting(step_size=SCENARIOS["uneven_imbalanced"].alpha_step, estimator="mean")),
        ("dpo", UniformWeighting()),
        ("is_dpo", ImportanceWeighting(estimator="mean")),
    ],
    ids=["robust", "uniform", "importance"],
)
def test_lightning_path_equals_the_sweep(method, weighting):
    scenario, feature_type, seed, steps = "uneven_imbalanced", "swapped", 2021, 5
    s = SCENARIOS[scenario]
    dm = BanditDataModule(scenario, feature_type, seed)
    module = GroupRobustPreferenceModule(
        policy=LogLinearBandit(scenario, feature_type, seed),
        loss=DPO(beta=s.beta),
        weighting=weighting,
        group_names=dm.group_names,
        group_counts=dm.train_group_counts,
        optimizer=functools.partial(torch.optim.SGD, lr=s.lr),
        lr_scheduler=None,
    )
    fit_quietly(module, dm, max_steps=steps)

    result = run_family(
        make_data([seed], DataConfig(weight=s.weight, uneven=s.uneven, feature_type=feature_type)),
        [seed],
        [RunSpec(method)],
        loss_type="dpo",
        beta=s.beta,
        alpha_step=s.alpha_step,
        steps=steps,
        feature_type=feature_type,
        lr=s.lr,
        eval_every=steps,
    )
    theta = module.policy.policy.theta.detach()
    assert not torch.allclose(theta, LogLinearBandit(scenario, feature_type, seed).theta0), "θ moved"
    torch.testing.assert_close(theta, result.theta[0], rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(module.log_alpha, result.log_alpha[0], rtol=1e-10, atol=1e-10)
