"""``HeldOutScores``: at the end of ``fit``, every pair of a held-out split scored by the trained policy.

The cross-fitted GOQA experiment (scripts/goqa_experiment.py) trains on k − 1 folds of the questions and needs each pair of
the held-out fold scored one by one: its loss, implicit rewards and margin (the columns of ``grpo predict``'s
file) and, on GOQA, each (question, country) item's opinion alignment. ``grpo predict`` from the last checkpoint
gives the same numbers (the weights are those of ``last.ckpt``) but pays a second process: loading and
dequantising the model, compiling again, and the reference forward that the fit's cached log-probs already hold.
Here the fit's own process does it once its last validation is done, with the cached reference log-probs.

Writes ``<log dir>/held_out_<split>.csv`` (``index``, ``source_file``, ``source_row``, ``group``, ``prompt``,
``loss``, ``chosen_reward``, ``rejected_reward``, ``margin``) and, with GOQA data,
``<log dir>/opinion_alignment_<split>.csv``. Runs on the global-zero process only (the split is small: one fold).
"""

from __future__ import annotations

import csv
import logging
from typing import Literal

import torch

from grpo_lightning.callbacks.log_dir import ReadsLogDir, log_dir_path
from grpo_lightning.callbacks.opinion_alignment import write_item_alignments
from grpo_lightning.callbacks.predictions import PredictionCSVWriter, add_sources

log = logging.getLogger(__name__)


class HeldOutScores(ReadsLogDir):
    """Scores every pair (and GOQA item) of ``split`` when ``fit`` ends (see the module docstring).

    Args:
        split: ``test`` (the held-out fold under cross-fitting), ``val``, or ``None``: off (the CLI's default,
            ``--held_out.split``).
        batch_size: opinion-alignment prompts per forward pass.
    """

    def __init__(self, split: Literal["val", "test"] | None = None, batch_size: int = 16) -> None:
        if split not in (None, "val", "test"):
            raise ValueError(f"held_out.split must be 'val', 'test' or null, got {split!r}")
        self.split, self.batch_size = split, batch_size

    @torch.no_grad()
    def on_train_end(self, trainer, pl_module) -> None:
        dm = trainer.datamodule
        if self.split is None or trainer.interrupted or not trainer.is_global_zero or not hasattr(dm, "dataset"):
            return
        if len(dm.dataset(self.split)) == 0:
            return
        out_dir = log_dir_path(trainer)
        loader = dm.val_dataloader() if self.split == "val" else dm.test_dataloader()
        names, rows = pl_module.group_names, []
        was_training = pl_module.training
        pl_module.eval()
        try:
            with trainer.precision_plugin.forward_context():
                for i, batch in enumerate(loader):
                    batch = {k: v.to(pl_module.device) for k, v in batch.items()}
                    out = pl_module.predict_step(batch, i)
                    for j in range(len(out["index"])):
                        rows.append(
                            {"index": int(out["index"][j]), "group": names[int(out["group"][j])]}
                            | {k: float(out[k][j]) for k in ("loss", "chosen_reward", "rejected_reward", "margin")}
                        )
        finally:
            pl_module.train(was_training)
        add_sources(rows, dm, self.split)
        path = out_dir / f"held_out_{self.split}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=[*PredictionCSVWriter.FIELDS, "margin"])
            writer.writeheader()
            writer.writerows(rows)
        log.info("held-out scores of %d %s pairs written to %s", len(rows), self.split, path)
        if hasattr(dm, "opinion_items"):
            path = out_dir / f"opinion_alignment_{self.split}.csv"
            write_item_alignments(trainer, pl_module, self.split, path, self.batch_size)
