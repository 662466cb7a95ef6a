"""Tests of grpo_lightning.callbacks.progress: the progress bar's refresh rate on a terminal and off one."""

from __future__ import annotations

import sys

import pytest

from grpo_lightning.callbacks.progress import ProgressBar


class _Stderr:
    """A stderr that is, or is not, a terminal."""

    def __init__(self, tty: bool) -> None:
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty

    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass


@pytest.mark.parametrize(
    ("tty", "kwargs", "refresh_rate"),
    [
        (True, {}, 1),  # a terminal: every step
        (False, {}, 50),  # a log file or CI: every 50th step
        (True, {"refresh_rate": 3, "refresh_rate_not_tty": 20}, 3),
        (False, {"refresh_rate": 3, "refresh_rate_not_tty": 20}, 20),
    ],
)
def test_refresh_rate_depends_on_whether_stderr_is_a_terminal(monkeypatch, tty, kwargs, refresh_rate):
    monkeypatch.setattr(sys, "stderr", _Stderr(tty))
    assert ProgressBar(**kwargs).refresh_rate == refresh_rate
