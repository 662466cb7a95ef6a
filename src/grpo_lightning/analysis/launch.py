"""Launching ``grpo`` runs from Python, one fresh process per run: ``grpo-compare --config`` and the cross-fitted GOQA
experiment (``scripts/goqa_experiment.py``) both launch through :class:`Launcher`.

A fresh process per run, rather than calling :func:`grpo_lightning.cli.app.main` in this one, because a run is then
the command a user would type (the recorded command line reproduces it), starts with fresh memory (no model,
compiled graph or CUDA context of the previous run left over) and cannot leave global state (seeds, torch threads,
logging) behind for the next.
"""

from __future__ import annotations

import logging
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

log = logging.getLogger(__name__)

#: The directory holding this ``grpo_lightning`` (a checkout's ``src/``, or site-packages).
PACKAGE_PARENT = Path(__file__).resolve().parents[2]


class LaunchError(RuntimeError):
    """A launched ``grpo`` run exited with an error; ``log_tail`` is the end of its output when it went to a file."""

    def __init__(self, subcommand: str, returncode: int, log_tail: str = "") -> None:
        self.subcommand, self.returncode, self.log_tail = subcommand, returncode, log_tail
        super().__init__(f"grpo {subcommand} failed (exit {returncode})" + (f":\n{log_tail}" if log_tail else ""))


def grpo_command(subcommand: str, args: Sequence[str]) -> list[str]:
    """``grpo <subcommand> <args>`` as this Python runs it (``python -m grpo_lightning.cli.app``), so the run uses
    this interpreter's environment even where the ``grpo`` console script is not on PATH."""
    return [sys.executable, "-m", "grpo_lightning.cli.app", subcommand, *args]


def child_env(**overrides: str) -> dict[str, str]:
    """This process's environment, with this ``grpo_lightning`` first on ``PYTHONPATH`` (so a run launched from a
    checkout that is not the installed one runs the checkout's code, as this process does) and ``overrides`` set."""
    path = os.pathsep.join(p for p in (str(PACKAGE_PARENT), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, **overrides, "PYTHONPATH": path}


class Launcher:
    """Runs ``grpo`` subcommands one after another, each in a fresh process.

    Args:
        env: the runs' environment (default :func:`child_env`).
        cwd: the runs' working directory (default this process's).
        commands: a shell script each command line is appended to (``grpo …``, as a user would type it).
    """

    def __init__(
        self, env: dict[str, str] | None = None, cwd: Path | None = None, commands: Path | None = None
    ) -> None:
        self.env = child_env() if env is None else env
        self.cwd = cwd
        self.commands = commands

    def run(self, subcommand: str, args: Sequence[str], log_file: Path | None = None) -> float:
        """``grpo <subcommand> <args>``; returns its wall time in seconds, raises :class:`LaunchError` if it fails.

        Its output (stdout and stderr) goes to ``log_file``, else to this process's stderr, so that this process's
        stdout holds only its own report (the table a caller prints)."""
        cmd = grpo_command(subcommand, args)
        if self.commands is not None:
            with self.commands.open("a") as f:
                f.write(shlex.join(["grpo", subcommand, *args]) + "\n")
        started = time.perf_counter()
        if log_file is None:
            # File descriptor 2, not sys.stderr (which may be replaced by an object without one, e.g. under pytest).
            returncode = subprocess.run(cmd, env=self.env, cwd=self.cwd, stdout=2).returncode
        else:
            log_file.parent.mkdir(parents=True, exist_ok=True)
            with log_file.open("w") as out:
                returncode = subprocess.run(
                    cmd, env=self.env, cwd=self.cwd, stdout=out, stderr=subprocess.STDOUT
                ).returncode
        if returncode != 0:
            tail = ""
            if log_file is not None:
                last = "".join(log_file.read_text(errors="replace").splitlines(keepends=True)[-30:])
                tail = f"end of {log_file}:\n{last}"
            raise LaunchError(subcommand, returncode, tail)
        return time.perf_counter() - started
