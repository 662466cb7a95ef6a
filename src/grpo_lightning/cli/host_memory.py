"""Host memory: what glibc does with the activation buffers a CPU step frees (``--host_memory``).

A CPU training step allocates and frees its activations every step: at SmolLM2-135M's shapes on GOQA batches of
16, a few GB in buffers of 1–10 MiB. glibc's malloc serves a request above its *mmap threshold* with a mapping of
its own, which ``free`` returns to the system, and a request below it from the heap, which keeps freed memory for
reuse and returns only what lies above its *trim threshold* at the top. Memory returned to the system comes back
zero-filled, one page fault per 4 KiB page, the next time it is touched. So there are two ends:

``release``
    mmap threshold fixed at 4 MiB: the large buffers are mappings, freed to the system at once, so the resident
    set follows what is live. Each step then faults its large buffers in again. Measured on the 2-core project
    machine (SmolLM2-135M, LoRA + cached reference, benchmarks/README.md): 0.1–2.3 million page faults and up to
    9.6 s of system time in a 5–18 s step; with gradient checkpointing, peak RSS 2.4 GB.
``retain``
    mmap threshold at glibc's maximum (32 MiB) and trim threshold at 2 GiB: the buffers come from the heap and
    are reused step after step, as a caching allocator does (CUDA's keeps what it reserved in the same way). No
    page faults after the heap has grown to the step's high-water mark; the resident set stays at that mark.
    Same step: no faults from the second epoch on, 5–11 s; with gradient checkpointing, peak RSS 3.4 GB (the heap
    keeps the high-water mark of every shape it served).
``auto`` (default)
    ``retain``, except ``release`` when the policy recomputes activations (``gradient_checkpointing``): a run
    that checkpoints has said that memory, not time, is what it lacks.

glibc's own default lies between: the mmap threshold starts at 128 KiB and rises to the size of every mapped
block that is freed, so after a few steps most buffers come from the heap, which it trims whenever 2× that
threshold is free at the top (3.8 GB peak for the checkpointed step in an earlier measurement, with faults).
``MALLOC_MMAP_THRESHOLD_`` or ``MALLOC_TRIM_THRESHOLD_`` in the environment (glibc's own variables, applied at
start-up) win: then nothing is changed. Only CPU memory is concerned; CUDA tensors have their own allocator.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys
from typing import Literal

log = logging.getLogger(__name__)

HostMemory = Literal["auto", "release", "retain"]
ENV_VARS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")  # glibc's own: when the user sets one, theirs win
# From glibc's malloc.h.
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
RELEASE_MMAP_THRESHOLD = 4 << 20
RETAIN_MMAP_THRESHOLD = 32 << 20  # glibc's largest (HEAP_MAX_SIZE / 2 on 64-bit); mallopt refuses more
RETAIN_TRIM_THRESHOLD = (1 << 31) - 1  # mallopt takes an int


def resolve(mode: HostMemory, *, gradient_checkpointing: bool) -> Literal["release", "retain"]:
    """The policy ``auto`` stands for (see the module docstring)."""
    if mode not in ("auto", "release", "retain"):
        raise ValueError(f"host_memory must be auto, release or retain, got {mode!r}")
    if mode == "auto":
        return "release" if gradient_checkpointing else "retain"
    return mode


def _mallopt():
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return None
    fn.argtypes, fn.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return fn


def set_host_memory(mode: HostMemory, *, gradient_checkpointing: bool = False) -> str | None:
    """Apply ``mode`` to glibc's malloc; returns the policy applied (``release`` or ``retain``), or ``None`` when
    nothing was changed: off glibc, or with ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_`` set."""
    policy = resolve(mode, gradient_checkpointing=gradient_checkpointing)
    if any(v in os.environ for v in ENV_VARS):
        return None
    mallopt = _mallopt()
    if mallopt is None:
        return None
    if policy == "release":
        # Setting the mmap threshold also stops glibc raising it; the trim threshold stays glibc's default.
        ok = mallopt(M_MMAP_THRESHOLD, RELEASE_MMAP_THRESHOLD) == 1
    else:
        ok = (
            mallopt(M_MMAP_THRESHOLD, RETAIN_MMAP_THRESHOLD) == 1
            and mallopt(M_TRIM_THRESHOLD, RETAIN_TRIM_THRESHOLD) == 1
        )
    return policy if ok else None


def describe(policy: str | None) -> str:
    """One log line for what :func:`set_host_memory` did."""
    if policy == "release":
        return "host memory: release (glibc mmap threshold 4 MiB: freed activation buffers go back to the system)"
    if policy == "retain":
        return "host memory: retain (glibc mmap threshold 32 MiB, trim 2 GiB: freed activation buffers are reused)"
    return f"host memory: glibc left as it is ({' / '.join(ENV_VARS)} set, or not glibc)"
