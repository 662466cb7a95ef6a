"""The authors' GOQA schedule (rsshyam/GRPO): plateau patience in examples, η_α halved at each cut, stop at min_lr."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from grpo_lightning.core.weighting import RobustWeighting
from grpo_lightning.training.schedules import AuthorsPlateauSchedule, PlateauState, improves, plateau_update


def test_improvement_test_and_the_authors_sign():
    # rel, τ = 1e-3, best 10: the usual test needs v < 10·(1 − 0.001) = 9.99; the authors' (max mode on −v) only
    # v < 10·(1 + 0.001) = 10.01, so 10.005 (worse than the best) still "improves" there.
    kw = {"threshold": 1e-3, "threshold_mode": "rel"}
    assert improves(9.98, 10.0, authors_sign=False, **kw)
    assert not improves(9.995, 10.0, authors_sign=False, **kw)
    assert improves(10.005, 10.0, authors_sign=True, **kw)
    assert not improves(10.02, 10.0, authors_sign=True, **kw)
    assert improves(9.4, 10.0, threshold=0.5, threshold_mode="abs", authors_sign=False)
    assert not improves(9.6, 10.0, threshold=0.5, threshold_mode="abs", authors_sign=False)


def test_patience_counts_examples_since_the_last_improvement():
    # 100 examples between evaluations, patience 250 examples (the authors' 2.5 evaluations):
    # v:        10 (best)  9.995 (bad: 100)  9.0 (best, reset)  9.5 (100)  9.5 (200)  9.5 (300 > 250: cut, reset)
    state, cuts = PlateauState(), []
    for v in (10.0, 9.995, 9.0, 9.5, 9.5, 9.5):
        state, cut = plateau_update(state, v, 100, patience_examples=250)
        cuts.append(cut)
    assert cuts == [False, False, False, False, False, True]
    assert state == PlateauState(best=9.0, bad_examples=0, cuts=1)
    # The authors' GOQA numbers: patience 3840 examples, an evaluation every 960: the 5th bad evaluation cuts
    # (num_bad_epochs = 5 > patience = 10·(192/960)·2 = 4), as in ReduceLROnPlateau.
    state, cuts = PlateauState(best=1.0), []
    for _ in range(5):
        state, cut = plateau_update(state, 2.0, 960, patience_examples=3840)
        cuts.append(cut)
    assert cuts == [False, False, False, False, True]


def _fake_run(lr: float, step_size: float, metric: float):
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([param], lr=lr)
    trainer = SimpleNamespace(
        sanity_checking=False,
        state=SimpleNamespace(fn="fit"),
        callback_metrics={"val/worst_group_loss": torch.tensor(metric)},
        optimizers=[opt],
        lr_scheduler_configs=[],
        loggers=[],
        global_step=0,
        world_size=1,
        should_stop=False,
    )
    module = SimpleNamespace(weighting=RobustWeighting(step_size=step_size))
    return trainer, module, opt


def test_callback_halves_alpha_step_at_a_cut_and_stops_at_min_lr():
    # lr 6e-5, η_α 8e-6, 16 pairs per step, an evaluation every step, patience 16 examples, loss never improves:
    # eval 1 sets the best; eval 2: 16 bad examples (not > 16); eval 3: 32 > 16: cut → lr 6e-6, η_α 4e-6.
    sched = AuthorsPlateauSchedule(patience_examples=16, min_lr=1e-8)
    trainer, module, opt = _fake_run(6e-5, 8e-6, 5.0)
    sched.on_fit_start(trainer, module)
    batch = {"group": torch.zeros(16, dtype=torch.long)}
    lrs, steps = [], []
    for _ in range(3):
        sched.on_train_batch_end(trainer, module, None, batch, 0)
        sched.on_validation_end(trainer, module)
        lrs.append(opt.param_groups[0]["lr"])
        steps.append(module.weighting.step_size)
    assert lrs == pytest.approx([6e-5, 6e-5, 6e-6])
    assert steps == pytest.approx([8e-6, 8e-6, 4e-6])
    assert not trainer.should_stop
    # Cuts every 2 further evaluations: 6e-7 (η_α 2e-6), 6e-8 (1e-6), 6e-9 (5e-7) < 1e-8 · 1.001: stop.
    for _ in range(6):
        sched.on_train_batch_end(trainer, module, None, batch, 0)
        sched.on_validation_end(trainer, module)
    assert opt.param_groups[0]["lr"] == pytest.approx(6e-9)
    assert module.weighting.step_size == pytest.approx(5e-7)
    assert trainer.should_stop and sched.state.cuts == 4
    # Resuming restores η_α (the rate is in the optimizer's own state).
    resumed = AuthorsPlateauSchedule(patience_examples=16)
    resumed.load_state_dict(sched.state_dict())
    trainer2, module2, _ = _fake_run(6e-9, 8e-6, 5.0)
    resumed.on_fit_start(trainer2, module2)
    assert module2.weighting.step_size == pytest.approx(5e-7)


def test_callback_refuses_a_second_scheduler():
    trainer, module, _ = _fake_run(1e-3, 1e-2, 1.0)
    trainer.lr_scheduler_configs = [SimpleNamespace(scheduler=object())]
    with pytest.raises(ValueError, match="lr_scheduler: null"):
        AuthorsPlateauSchedule().on_fit_start(trainer, module)


@pytest.mark.parametrize("name", ["CVaRWeighting", "TiltedWeighting"])
def test_a_cut_leaves_a_weighting_without_a_step_size_alone(name):
    """CVaR and tilted weightings are adaptive but have no η_α: a cut changes the learning rate only (it set a
    ``step_size`` attribute on them, which nothing reads)."""
    from grpo_lightning.core import weighting as weightings

    trainer, module, opt = _fake_run(1e-3, 1e-2, 1.0)
    module.weighting = getattr(weightings, name)()
    sched = AuthorsPlateauSchedule(patience_examples=0)
    sched.on_fit_start(trainer, module)
    batch = {"group": torch.zeros(16, dtype=torch.long)}
    for _ in range(3):
        sched.on_train_batch_end(trainer, module, None, batch, 0)
        sched.on_validation_end(trainer, module)
    assert sched.state.cuts >= 1 and opt.param_groups[0]["lr"] < 1e-3
    assert not hasattr(module.weighting, "step_size") and sched.alpha_step_size is None
