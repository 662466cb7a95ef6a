"""Predicted pairs to CSV, each with the file and row it came from."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import torch
from lightning.pytorch.callbacks import BasePredictionWriter

from grpo_lightning.callbacks.log_dir import ReadsLogDir, log_dir_path

log = logging.getLogger(__name__)


class PredictionCSVWriter(ReadsLogDir, BasePredictionWriter):
    """Writes each predicted pair to a CSV file: where it came from, its group and prompt, its loss, implicit
    rewards and margin.

    Columns: ``index`` (the pair's number within the predicted split), ``source_file`` and ``source_row`` (the
    file and 1-based data row it was read from; for a GOQA pair its question's row; for generated or hub data the
    source's name and the row's number in it), ``group``, ``prompt`` (as tokenised, chat template included),
    ``loss``, ``chosen_reward``, ``rejected_reward``, ``margin``.

    Args:
        output_path: the CSV file; default ``<log dir>/predictions.csv``.
    """

    FIELDS = ("index", "source_file", "source_row", "group", "prompt", "loss", "chosen_reward", "rejected_reward")

    def __init__(self, output_path: str | None = None) -> None:
        super().__init__(write_interval="epoch")
        self.output_path = output_path

    def write_on_epoch_end(self, trainer, pl_module, predictions, batch_indices) -> None:
        rows = []
        names = pl_module.group_names
        for batch in predictions:
            for i in range(len(batch["index"])):
                rows.append(
                    {
                        "index": int(batch["index"][i]),
                        "group": names[int(batch["group"][i])],
                        "loss": float(batch["loss"][i]),
                        "chosen_reward": float(batch["chosen_reward"][i]),
                        "rejected_reward": float(batch["rejected_reward"][i]),
                        "margin": float(batch["margin"][i]),
                    }
                )
        if trainer.world_size > 1:
            gathered = [None] * trainer.world_size
            torch.distributed.all_gather_object(gathered, rows)
            rows = sorted((r for part in gathered for r in part), key=lambda r: r["index"])
        if not trainer.is_global_zero:
            return
        add_sources(rows, trainer.datamodule)
        path = Path(self.output_path) if self.output_path else log_dir_path(trainer) / "predictions.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=[*self.FIELDS, "margin"])
            writer.writeheader()
            writer.writerows(rows)
        log.info("wrote %d predictions to %s", len(rows), path)


def add_sources(rows: list[dict], dm, split: str | None = None) -> None:
    """Source file, row and prompt of each predicted pair, looked up by its ``index`` in ``split`` (default: the
    predicted split)."""
    split = split or getattr(dm, "predict_split", None)
    if split is None or not hasattr(dm, "dataset"):
        return
    ds = dm.dataset(split)
    columns = [c for c in ("source_file", "source_row", "prompt") if c in ds.column_names]
    values = {c: ds[c] for c in columns}
    position = {int(i): k for k, i in enumerate(ds["index"])}
    for row in rows:
        k = position.get(row["index"])
        row.update({c: values[c][k] for c in columns} if k is not None else {})
