"""glibc's mmap threshold is fixed by the CLI unless the user set it (host_memory.py)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from grpo_lightning import host_memory


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_threshold_is_set_unless_the_user_set_it(monkeypatch):
    monkeypatch.delenv(host_memory.ENV, raising=False)
    assert host_memory.cap_heap_retention() is True
    monkeypatch.setenv(host_memory.ENV, "1048576")
    assert host_memory.cap_heap_retention() is False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_freed_buffers_leave_the_resident_set():
    """200 buffers of 8 MiB allocated after one 8 MiB block was freed (which raises glibc's threshold above
    them), with small live blocks allocated after each so the heap cannot shrink from the top, then freed:
    with the fixed 4 MiB threshold each buffer was its own mapping and resident memory goes back to where it
    started; with glibc's default the heap keeps them (~1.6 GB)."""
    code = """
import sys, torch
from grpo_lightning import host_memory
if sys.argv[1] == "cap":
    assert host_memory.cap_heap_retention()
def rss():
    return int(next(l for l in open("/proc/self/status") if l.startswith("VmRSS")).split()[1]) // 1024
torch.empty(8 << 18)  # one mapped block freed: glibc raises its threshold above 8 MiB from here on
start = rss()
keep, pins = [], []
for i in range(200):
    keep.append(torch.ones(2 << 20))  # 8 MiB each
    pins.append(torch.ones(1024))  # small live blocks above them keep the heap from shrinking
del keep
print(rss() - start)
"""
    grown = {
        how: int(subprocess.run([sys.executable, "-c", code, how], capture_output=True, text=True, check=True).stdout)
        for how in ("cap", "default")
    }
    assert grown["cap"] < 100, grown  # MiB
    assert grown["default"] > 1000, grown
