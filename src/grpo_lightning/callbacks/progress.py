"""The progress bar: fewer refreshes when the output is not a terminal."""

from __future__ import annotations

import logging
import sys

from lightning.pytorch.callbacks import TQDMProgressBar

log = logging.getLogger(__name__)


class ProgressBar(TQDMProgressBar):
    """Lightning's tqdm bar, refreshed less often when the output is not a terminal: a log file
    or CI gets a line every ``refresh_rate_not_tty`` steps rather than one per step.

    Args:
        refresh_rate: steps between refreshes on a terminal.
        refresh_rate_not_tty: steps between refreshes when stderr is not a terminal.
    """

    def __init__(self, refresh_rate: int = 1, refresh_rate_not_tty: int = 50) -> None:
        tty = sys.stderr.isatty()
        super().__init__(refresh_rate=refresh_rate if tty else refresh_rate_not_tty)
