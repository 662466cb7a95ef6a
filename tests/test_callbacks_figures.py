"""The group-weight chart and figure without a TensorBoard logger: nothing to draw on, so the
callback says so once and fit goes on; its checkpoints hold no state of it. (With TensorBoard and a
resume: ``tests/test_training_checkpoints.py::test_weight_figure_of_a_resumed_run_covers_both_parts_without_checkpoint_state``.)"""

from __future__ import annotations

import logging

import lightning as L
import pytest
import torch
from lightning.pytorch.loggers import CSVLogger

from grpo_lightning.callbacks.figures import GroupWeightFigure
from grpo_lightning.core.weighting import RobustWeighting


@pytest.mark.parametrize("with_csv", [True, False], ids=["csv-logger", "no-logger"])
def test_without_tensorboard_the_figure_is_skipped_with_one_line(
    tmp_path, tiny_dm_factory, make_module, caplog, with_csv
):
    dm = tiny_dm_factory(batch_size=8)
    module = make_module(dm, weighting=RobustWeighting())
    caplog.set_level(logging.INFO, logger="grpo_lightning.callbacks.figures")
    trainer = L.Trainer(
        logger=CSVLogger(tmp_path, name="run", version=0) if with_csv else False,
        callbacks=[GroupWeightFigure()],
        default_root_dir=tmp_path,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        max_steps=2,
        log_every_n_steps=1,
        num_sanity_val_steps=0,
    )
    trainer.fit(module, dm)
    said = [r.getMessage() for r in caplog.records if "no TensorBoard logger" in r.getMessage()]
    assert said == ["no TensorBoard logger: no group-weight chart or figure"]
    assert not list(tmp_path.rglob("events.out.tfevents.*")) and not list(
        tmp_path.rglob(GroupWeightFigure.RESUMED_FROM)
    )
    trainer.save_checkpoint(tmp_path / "last.ckpt")
    ckpt = torch.load(tmp_path / "last.ckpt", weights_only=True)
    assert not any("GroupWeightFigure" in key for key in ckpt.get("callbacks", {})), ckpt.get("callbacks", {}).keys()
