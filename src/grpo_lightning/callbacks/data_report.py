"""``DataReportWriter``: the data report of ``grpo data`` (:mod:`grpo_lightning.data.report`), written beside a
run's logs as ``<log dir>/data_report.json`` when ``fit`` starts, so what a run trained and evaluated on (rows skipped
by reason, groups with N_g, pairs per split, token lengths, too-small groups) stays with its results."""

from __future__ import annotations

import logging

from grpo_lightning.callbacks.log_dir import ReadsLogDir, log_dir_path, run_log_dir
from grpo_lightning.data.report import data_report, write_report

log = logging.getLogger(__name__)


class DataReportWriter(ReadsLogDir):
    """Args:
    enabled: write ``data_report.json`` when ``fit`` starts (rank 0; nothing without a logger or for a data
        module that is not a :class:`~grpo_lightning.data.module.PreferenceDataModule`, e.g. the bandit's).
    """

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled

    def on_fit_start(self, trainer, pl_module) -> None:
        from grpo_lightning.data.module import PreferenceDataModule

        dm = trainer.datamodule
        if not (self.enabled and trainer.is_global_zero and isinstance(dm, PreferenceDataModule)):
            return
        if run_log_dir(trainer) is None:
            return
        path = write_report(data_report(dm), log_dir_path(trainer) / "data_report.json")
        log.info("wrote the data report to %s", path)
