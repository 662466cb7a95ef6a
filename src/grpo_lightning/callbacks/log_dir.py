"""Where a run writes: the log dir, read on every rank.

Lightning's ``trainer.log_dir`` is a collective (rank 0 broadcasts its logger's version), so reading it on rank 0
alone, after ``if trainer.is_global_zero``, waits forever under DDP. Callbacks that write into the log dir derive
from :class:`ReadsLogDir`, which reads it on every rank in ``setup``; later reads return the kept value."""

from __future__ import annotations

from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import Callback

_LOG_DIR_ATTR = "_grpo_log_dir"


def run_log_dir(trainer: L.Trainer) -> str | None:
    """``trainer.log_dir``, read once per trainer and kept.

    Lightning's ``trainer.log_dir`` is a collective (rank 0 broadcasts its logger's version), so a
    read on rank 0 alone, after ``if trainer.is_global_zero``, waits forever under DDP. Every
    callback that writes into the log dir reads it first in ``setup``, which all ranks run; a later
    read (on one rank) returns the kept value without a collective."""
    kept = vars(trainer)
    if _LOG_DIR_ATTR not in kept:
        kept[_LOG_DIR_ATTR] = trainer.log_dir
    return kept[_LOG_DIR_ATTR]


def log_dir_path(trainer: L.Trainer) -> Path:
    """The run's log dir, or ``trainer.default_root_dir`` without a logger."""
    return Path(run_log_dir(trainer) or trainer.default_root_dir)


class ReadsLogDir(Callback):
    """A callback that writes into the log dir: reads it on every rank at ``setup`` (see ``run_log_dir``)."""

    def setup(self, trainer, pl_module, stage: str) -> None:
        run_log_dir(trainer)
