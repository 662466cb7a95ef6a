"""DDP (2 CPU processes, gloo): α is identical on every rank and equal to one process trained on
the same global batches; so are the parameters."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

WORKER = Path(__file__).with_name("ddp_worker.py")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(mode: str, out: Path) -> None:
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port()), "OMP_NUM_THREADS": "1"}
    src = str(Path(__file__).resolve().parents[1] / "src")
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    for k in ("LOCAL_RANK", "NODE_RANK", "WORLD_SIZE", "RANK"):
        env.pop(k, None)
    proc = subprocess.run(
        [sys.executable, str(WORKER), mode, str(out)], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, f"{mode} run failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"


@pytest.mark.distributed
def test_ddp_alpha_equal_across_ranks_and_to_single_process(tmp_path):
    _run("ddp", tmp_path)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert r0["indices"].shape == r1["indices"].shape == (3, 4)
    assert not set(r0["indices"].flatten().tolist()) & set(r1["indices"].flatten().tolist()), "ranks see other pairs"
    for rank, r in enumerate((r0, r1)):
        assert r["sampler"] == ["EpochShuffle", 2, rank]
        assert torch.equal(r["indices"], r["expected_indices"])
    assert torch.equal(r0["log_alpha"], r1["log_alpha"])
    assert torch.equal(r0["checksum"], r1["checksum"])
    alpha = r0["log_alpha"]
    assert not torch.allclose(alpha, torch.full_like(alpha, alpha[0])), "α moved"

    _run("single", tmp_path)
    single = torch.load(tmp_path / "single.pt", weights_only=True)
    # Same global pairs; the float32 log-probs differ only by rounding (other batch shapes and
    # padding widths), so α (float64, from those losses) agrees to ~1e-6, not bitwise.
    torch.testing.assert_close(single["log_alpha"], alpha, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(single["params"], r0["params"], rtol=1e-5, atol=1e-6)


@pytest.mark.distributed
def test_reference_cache_is_computed_sharded_and_equals_the_single_process_cache(tmp_path):
    """With ``precompute_ref_logps`` under 2 gloo ranks each rank runs the reference on its shard of whole eval
    batches, then both hold the full tables, equal bitwise to one process's (same batches, so same padding and
    arithmetic). The split (by prompt hash) is 82/6/12 pairs; in eval batches of 3 that is 28 batches (the last of
    1), 2 and 4. Rank 0 takes the first 14, 1 and 2 batches: 42 + 3 + 6 = 51 pairs; rank 1 the other 14, 1 and 2:
    40 + 3 + 6 = 49."""
    _run("refcache_ddp", tmp_path)
    _run("refcache_single", tmp_path)
    single = torch.load(tmp_path / "refcache_single.pt", weights_only=True)
    ranks = [torch.load(tmp_path / f"refcache_ddp_rank{r}.pt", weights_only=True) for r in (0, 1)]
    total = sum(len(t) for t in single["tables"].values())
    assert single["computed_here"] == total == 100
    assert {k: len(t) for k, t in single["tables"].items()} == {"train": 82, "val": 6, "test": 12}
    assert [r["computed_here"] for r in ranks] == [51, 49]
    for rank in ranks:
        assert rank["tables"].keys() == single["tables"].keys() == {"train", "val", "test"}
        for split, table in single["tables"].items():
            assert not table.isnan().any()
            assert torch.equal(rank["tables"][split], table), split


@pytest.mark.distributed
def test_a_nonfinite_loss_on_one_rank_is_skipped_on_every_rank(tmp_path):
    """``on_nonfinite: skip`` with a NaN loss on rank 1 alone: the decision is all-reduced before any backward, so
    both ranks skip the same step (a rank that skipped alone would leave the other waiting in the gradient
    all-reduce) and end with the same parameters."""
    _run("nonfinite_ddp", tmp_path)
    r0, r1 = (torch.load(tmp_path / f"nonfinite_rank{r}.pt", weights_only=True) for r in (0, 1))
    assert r0["global_step"] == r1["global_step"] == 3  # a skipped batch is no optimizer step
    assert r0["skipped"] == r1["skipped"] == 1
    assert torch.equal(r0["params"], r1["params"])
    assert torch.isfinite(r0["params"]).all()
