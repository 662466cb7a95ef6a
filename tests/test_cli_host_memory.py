"""What glibc does with freed CPU buffers (host_memory.py): the policies, the CLI's choice, and their effect."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TINY_DATA_FLAGS, TINY_MODEL_FLAGS

from grpo_lightning.cli import app as cli
from grpo_lightning.cli import host_memory

ROOT = Path(__file__).resolve().parents[1]
glibc_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")


def test_auto_retains_unless_activations_are_recomputed():
    assert host_memory.resolve("auto", gradient_checkpointing=False) == "retain"
    assert host_memory.resolve("auto", gradient_checkpointing=True) == "release"
    assert host_memory.resolve("retain", gradient_checkpointing=True) == "retain"
    assert host_memory.resolve("release", gradient_checkpointing=False) == "release"
    with pytest.raises(ValueError, match="host_memory"):
        host_memory.resolve("keep", gradient_checkpointing=False)


@glibc_only
@pytest.mark.parametrize("var", host_memory.ENV_VARS)
def test_the_users_glibc_variables_win(monkeypatch, var):
    for v in host_memory.ENV_VARS:
        monkeypatch.delenv(v, raising=False)
    assert host_memory.set_host_memory("release") == "release"
    monkeypatch.setenv(var, "1048576")
    assert host_memory.set_host_memory("retain") is None
    assert "left as it is" in host_memory.describe(None)


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ([], ("auto", False)),
        (["--model.policy.init_args.gradient_checkpointing", "true"], ("auto", True)),
        (["--host_memory", "release"], ("release", False)),
    ],
)
def test_the_cli_applies_its_setting_before_building(monkeypatch, flags, expected):
    seen = []

    def record(mode, *, gradient_checkpointing=False):
        seen.append((mode, gradient_checkpointing))
        return host_memory.resolve(mode, gradient_checkpointing=gradient_checkpointing)

    monkeypatch.setattr(cli, "set_host_memory", record)
    cli.main(["--config", str(ROOT / "configs/default.yaml"), *TINY_DATA_FLAGS, *TINY_MODEL_FLAGS, *flags], run=False)
    assert seen == [expected]


@glibc_only
def test_retain_reuses_freed_buffers_and_release_returns_them():
    """Six rounds, as six training steps: 200 buffers of 8 MiB, each followed by a small block that stays live (so
    the heap cannot shrink from the top), filled, then the 200 freed. In the last round, ``release`` faults every
    page in again (≥ 200 · 2048 faults of 4 KiB pages) and the freed buffers leave the resident set (< 100 MiB
    above the start); ``retain`` reuses the heap (under a tenth of those faults; glibc's memalign pads each request, so a few
    rounds pass before every size fits a freed block) and keeps it resident (> 1000 MiB). glibc's
    default does neither fully: it keeps > 1000 MiB and still faults (its thresholds move as blocks are freed)."""
    code = """
import resource, sys, torch
from grpo_lightning.cli import host_memory
if sys.argv[1] != "default":
    assert host_memory.set_host_memory(sys.argv[1]) == sys.argv[1]
def rss():
    return int(next(l for l in open("/proc/self/status") if l.startswith("VmRSS")).split()[1]) // 1024
start, pins = rss(), []
for _ in range(6):
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    keep = []
    for _ in range(200):
        keep.append(torch.ones(2 << 20))  # 8 MiB each
        pins.append(torch.ones(1024))
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
    del keep
print(faults, rss() - start)
"""
    env = {k: v for k, v in os.environ.items() if k not in host_memory.ENV_VARS}
    out = {}
    for how in ("release", "retain", "default"):
        run = subprocess.run([sys.executable, "-c", code, how], capture_output=True, text=True, check=True, env=env)
        out[how] = tuple(int(x) for x in run.stdout.split())  # (faults of the last round, MiB resident after it)
    assert out["release"][0] >= 200 * 2048 and out["release"][1] < 100, out
    assert out["retain"][0] < 200 * 2048 // 10 and out["retain"][1] > 1000, out
    assert out["default"][0] > 200 * 2048 // 10 and out["default"][1] > 1000, out
