"""Checkpoints, in one place: ``RunCheckpoint`` writes them during training (every N steps, after each validation,
at each epoch end, and of the step in progress on SIGTERM/SIGINT, with a non-zero exit status); reading one is
``weights_only=True`` always (``read_checkpoint``, ``NamedCheckpointIO``), a remote one is refused, and a file that
cannot be read is a ``CheckpointError`` naming it."""

from __future__ import annotations

import logging
import os
import pickle
import re
import signal
import threading
import zipfile
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins import CheckpointIO
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities.exceptions import SIGTERMException

log = logging.getLogger(__name__)


class RunCheckpoint(ModelCheckpoint):
    """Lightning's ``ModelCheckpoint`` that keeps ``last.ckpt`` current during training and when a
    run is stopped by a signal, so ``--ckpt_path last`` resumes exactly where it stopped.

    * ``last.ckpt`` is written every ``every_n_train_steps`` steps (the CLI's default: 100), after
      every validation and at the end of every epoch. ``ModelCheckpoint`` takes one trigger (steps
      or epochs) and, with ``save_top_k: 0``, writes ``last.ckpt`` only with a top-k file; the
      validation and epoch-end saves are added here.
    * SIGTERM: Lightning's signal connector lets the current optimizer step finish and raises
      ``SIGTERMException`` between steps; with ``save_on_exception`` ``last.ckpt`` then holds that
      step. Other exceptions are not checkpointed: they can come in the middle of a step (α moved,
      θ not yet), and such a state would not resume exactly.
    * SIGINT (Ctrl-C) during ``fit`` is handed to the same path (the process sends itself SIGTERM),
      so it stops between steps too; a second Ctrl-C stops at once, without a checkpoint. Python's
      default Ctrl-C handler is replaced only while training; an ignored or custom one is kept.
    * A run stopped by a signal exits with the shell's status for it (130 for SIGINT, 143 for
      SIGTERM): Lightning's ``SIGTERMException`` is a bare ``SystemExit``, status 0.
    * Several processes (DDP): Lightning 2.6's SIGTERM handler runs a collective (a broadcast from
      rank 0) inside the signal handler of the rank that got the signal, which the other ranks do
      not join at that moment, so the run hung. From the sanity check (or the first step) on, the
      handler here only notes the request; after every training step all ranks all-reduce it
      (``strategy.reduce_boolean_decision``) and, when any rank got a signal, every rank sets the
      trainer's ``received_sigterm`` at once. Lightning then stops every rank at the same point,
      after that step, and ``last.ckpt`` is written collectively. A signal to the launching process
      alone (rank 0; the ranks it started may never get one) or to any other rank stops them all.
    """

    _sigint_previous = None
    _sigint_received = False
    _sigterm_previous = None
    _stop_requested = False

    def on_sanity_check_start(self, trainer, pl_module) -> None:
        self._take_over_sigterm(trainer)

    def on_train_start(self, trainer, pl_module) -> None:
        self._take_over_sigterm(trainer)
        self._sigint_received = False
        # Not on Windows, where Lightning installs no SIGTERM handler (a SIGTERM would just end the process).
        if (
            os.name != "nt"
            and threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGINT) is signal.default_int_handler
        ):
            self._sigint_previous = signal.signal(signal.SIGINT, self._on_sigint)

    def _on_sigint(self, signum, frame) -> None:
        if self._sigint_received:
            raise KeyboardInterrupt
        self._sigint_received = True
        log.warning("SIGINT: stopping after this step with a checkpoint (Ctrl-C again stops at once, without one)")
        os.kill(os.getpid(), signal.SIGTERM)

    def _restore_sigint(self) -> None:
        if self._sigint_previous is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, self._sigint_previous)
            self._sigint_previous = None

    def _take_over_sigterm(self, trainer) -> None:
        # Only with several processes; one process keeps Lightning's handler (no collective there). Lightning
        # installs its handler just before the sanity check, so it is replaced at the first hook after that.
        if (
            trainer.world_size > 1
            and self._sigterm_previous is None
            and os.name != "nt"
            and threading.current_thread() is threading.main_thread()
        ):
            self._stop_requested = False
            self._sigterm_previous = signal.signal(signal.SIGTERM, self._on_sigterm)

    def _on_sigterm(self, signum, frame) -> None:
        # No collective and no I/O but a log line: the ranks agree on stopping after the next step.
        if not self._stop_requested:
            log.warning("SIGTERM (pid %d): all ranks stop after this step with a checkpoint", os.getpid())
        self._stop_requested = True

    def _restore_sigterm(self) -> None:
        if self._sigterm_previous is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._sigterm_previous)
            self._sigterm_previous = None

    def _agree_on_stop(self, trainer) -> None:
        # Every rank reaches this after every training step (one step is one batch here), so the all-reduce is
        # collective; the decision is the same on every rank, and Lightning raises SIGTERMException on every
        # rank at the end of this step. Lightning has no public setter for the flag its loops read.
        if self._sigterm_previous is not None and trainer.strategy.reduce_boolean_decision(
            self._stop_requested, all=False
        ):
            trainer._signal_connector.received_sigterm = True

    def on_train_end(self, trainer, pl_module) -> None:
        self._restore_sigint()
        self._restore_sigterm()
        # Lightning's on_train_end writes last.ckpt even under fast_dev_run (which suppresses every other save),
        # into <default_root_dir>/checkpoints, one more last-vN.ckpt per run.
        if not trainer.fast_dev_run:
            super().on_train_end(trainer, pl_module)

    def teardown(self, trainer, pl_module, stage: str) -> None:
        self._restore_sigint()
        self._restore_sigterm()
        super().teardown(trainer, pl_module, stage)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._agree_on_stop(trainer)
        # An epoch's last step is saved at the epoch's end instead (below): Lightning resumes a
        # checkpoint written between the last batch and the epoch's end without calling the next
        # epoch's start hooks, so its loop progress would differ from an uninterrupted run's.
        if not trainer.fit_loop.epoch_loop.batch_progress.is_last_batch:
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def on_validation_end(self, trainer, pl_module) -> None:
        super().on_validation_end(trainer, pl_module)
        # A validation that ends an epoch is saved at the epoch's end (as ModelCheckpoint does).
        if not self._should_save_on_train_epoch_end(trainer):
            self._save_last_now(trainer)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if self._should_skip_saving_checkpoint(trainer):
            return
        candidates = self._monitor_candidates(trainer)
        if self._every_n_train_steps >= 1 and trainer.global_step % self._every_n_train_steps == 0:
            self._save_topk_checkpoint(trainer, candidates)  # the step trigger's, deferred from the last batch
        if self.save_last:
            self._save_last_checkpoint(trainer, candidates)

    def _save_last_now(self, trainer) -> None:
        # Nothing to do when this step is saved already.
        if self.save_last and not self._should_skip_saving_checkpoint(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        self._restore_sigint()
        if not isinstance(exception, SIGTERMException):
            self._restore_sigterm()
            return
        if trainer.state.fn == "fit" and self._should_save_on_exception(trainer):
            if self.save_last:
                self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
            else:
                super().on_exception(trainer, pl_module, exception)
        if trainer.state.fn == "fit":
            log.warning(
                "stopped by a signal after step %d; checkpoint: %s", trainer.global_step, self._last_checkpoint_saved
            )
        # Restored after the save: a second SIGTERM during it must not reach Lightning's collective handler.
        self._restore_sigterm()
        if exception.code in (None, 0):
            exception.code = 128 + (signal.SIGINT if self._sigint_received else signal.SIGTERM)


class CheckpointError(ValueError):
    """A checkpoint file that cannot be read (truncated, or not a checkpoint): the message names it."""


#: What ``torch.load`` raises for a file that is not a whole checkpoint (a truncated zip archive is
#: a ``RuntimeError`` of its reader; a cut pickle an ``EOFError`` or ``UnpicklingError``).
CHECKPOINT_READ_ERRORS = (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile)


def unreadable_checkpoint(path: Any, err: BaseException) -> CheckpointError:
    if isinstance(err, pickle.UnpicklingError) and "weights only load failed" in str(err).lower():
        # torch's advice (load with weights_only=False) is what must not be done with a file of unknown origin.
        return CheckpointError(
            f"checkpoint {path} holds objects other than tensors and plain data; refused: checkpoints are "
            "loaded with weights_only=True only (unpickling them could run code)"
        )
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return CheckpointError(
        f"checkpoint {path} cannot be read ({type(err).__name__}: {first}); it may be truncated "
        "(a full disk or an interrupted copy) or not a Lightning checkpoint"
    )


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """A Lightning checkpoint's contents, memory-mapped (tensors are read only when touched) and
    with ``weights_only=True`` (our checkpoints hold plain data besides tensors)."""

    return torch.load(path, map_location="cpu", weights_only=True, mmap=True)


def is_remote(path: Any) -> bool:
    """Whether a checkpoint path is a URL (``http://``, ``https://``, ``s3://``, ...) rather than a local file."""
    return isinstance(path, str | os.PathLike) and re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", str(path)) is not None


def refuse_remote(path: Any) -> None:
    """A remote checkpoint is not loaded: Lightning unpickles an http(s) one with ``weights_only=False`` (any code
    in it runs), and the run-identity checks (method, groups, tokenizer) read local files only."""
    if is_remote(path) and not str(path).startswith("file://"):
        raise CheckpointError(
            f"--ckpt_path {path}: a remote checkpoint is not loaded; download it and pass the local file "
            "(read with weights_only=True and checked against this run)"
        )


class NamedCheckpointIO(CheckpointIO):
    """The strategy's checkpoint IO, with a load that names the file it could not read, and reads it with
    ``weights_only=True`` always (tensors and plain data only: nothing in the file can run code).

    torch reports a truncated checkpoint (a full disk, a copy cut short) as ``PytorchStreamReader
    failed reading zip archive: failed finding central directory``, without the path; this wrapper
    re-raises such errors as :class:`CheckpointError` naming the file. Saving and removing are
    passed through unchanged.
    """

    def __init__(self, base: CheckpointIO) -> None:
        self.base = base

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        self.base.save_checkpoint(checkpoint, path, storage_options=storage_options)

    def remove_checkpoint(self, path: Any) -> None:
        self.base.remove_checkpoint(path)

    def teardown(self) -> None:
        self.base.teardown()

    def load_checkpoint(
        self, path: Any, map_location: Any | None = None, weights_only: bool | None = None
    ) -> dict[str, Any]:
        refuse_remote(path)
        if weights_only is False:
            raise CheckpointError(
                f"checkpoint {path}: weights_only=False is refused (it unpickles arbitrary objects); "
                "our checkpoints load with weights_only=True"
            )
        try:
            return self.base.load_checkpoint(path, map_location=map_location, weights_only=True)
        except CHECKPOINT_READ_ERRORS as err:
            raise unreadable_checkpoint(path, err) from err
