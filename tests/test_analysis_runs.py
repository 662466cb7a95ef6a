"""Tests of grpo_lightning.analysis.runs: finding the runs to compare, one per chain of resumed versions."""

from __future__ import annotations

import json
from pathlib import Path


def _version(root: Path, n: int, loss: float, *, resumed: str | None = None, ckpt: str | None = None) -> Path:
    run = root / "gr" / f"version_{n}"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.ckpt").write_bytes(b"")
    groups = [{"group": "A", "pairs": 4, "loss": loss, "reward_acc": 0.5, "logp_acc": 0.5, "weight": 1.0}]
    (run / "summary_val.json").write_text(json.dumps({"loss": loss, "seed": 0, "groups": groups}))
    if resumed:
        (run / "resumed_from").write_text(f"{resumed}\n")
    if ckpt:
        (run / "config.yaml").write_text(f"seed_everything: 0\nckpt_path: {ckpt}\n")
    return run


def test_a_chain_of_resumed_versions_counts_as_one_run(tmp_path):
    """version_0 was interrupted, version_1 resumed it (``resumed_from``) and was interrupted too, version_2 resumed
    version_1 (its config's ``ckpt_path``; e.g. a CSV logger, which writes no ``resumed_from``): one run, whose
    metrics are version_2's. version_3 is another run; a ``test`` of version_2's checkpoint (no checkpoints of its
    own) resumed nothing."""
    from grpo_lightning.analysis.runs import collect_runs

    v0 = _version(tmp_path, 0, 19.0)
    v1 = _version(tmp_path, 1, 17.0, resumed=str(v0 / "checkpoints/last.ckpt"))
    v2 = _version(tmp_path, 2, 15.0, ckpt=str(v1 / "checkpoints/last.ckpt"))
    _version(tmp_path, 3, 16.0)
    tested = tmp_path / "gr" / "version_4"
    tested.mkdir()
    (tested / "config.yaml").write_text(f"ckpt_path: {v2 / 'checkpoints/last.ckpt'}\n")
    (tested / "summary_val.json").write_text((v2 / "summary_val.json").read_text())
    runs = collect_runs([tmp_path], "val", "name", [])
    assert sorted((r.path.name, r.loss) for r in runs) == [
        ("version_2", 15.0),
        ("version_3", 16.0),
        ("version_4", 15.0),
    ]
