"""Host memory: keep glibc from holding on to freed activation buffers.

glibc's malloc serves a request above its mmap threshold with its own mapping, which ``free``
returns to the system; below it, from the heap, which keeps freed memory for reuse and returns
it only from the top. The threshold starts at 128 KiB and *rises* to the size of each mapped block
that is freed (up to 32 MiB), so after the first training step most activation buffers (a few
MiB each) come from the heap, and the heap's high-water mark, not what is live, sets the process's
resident memory. Measured with SmolLM2-135M, LoRA and gradient checkpointing on GOQA batches of
16 (benchmarks/README.md): 3.8 GB peak RSS with glibc's default, 1.6 GB with the threshold fixed at
4 MiB (fixing it also stops the rise), at the same step time within noise. Only CPU memory is
concerned; CUDA tensors have their own allocator.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys

log = logging.getLogger(__name__)

ENV = "MALLOC_MMAP_THRESHOLD_"  # glibc's own variable: when the user sets it, theirs wins
M_MMAP_THRESHOLD = -3  # from glibc's malloc.h
DEFAULT_THRESHOLD = 4 << 20


def cap_heap_retention(threshold: int = DEFAULT_THRESHOLD) -> bool:
    """Fix glibc's mmap threshold at ``threshold`` bytes (``mallopt``); ``True`` if it was set.

    Does nothing off Linux, on a C library without ``mallopt`` (musl), or when ``MALLOC_MMAP_THRESHOLD_``
    is set in the environment (glibc has then applied the user's value at start-up).
    """
    if not sys.platform.startswith("linux") or ENV in os.environ:
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return mallopt(M_MMAP_THRESHOLD, int(threshold)) == 1
