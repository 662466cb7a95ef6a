"""configs/ as overlays: each setting is written once, and composing the files leaves every run's settings as they were.

The merged configuration of each experiment (and of a few overlay combinations) is stored under
tests/data/merged_configs/ as the settings in which it differs from the CLI's defaults (the merged
configuration of no --config at all), flattened to dotted keys. Equal differences from the same defaults
mean equal merged configurations, so a restructuring of configs/ that passes keeps every run's settings.
Left out: ``config`` (the list of config files read, which depends on where the files are, not what they set).
Regenerate after an intended change of settings with
    PYTHONPATH=src python tests/test_config_composition.py
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SNAPSHOTS = ROOT / "tests" / "data" / "merged_configs"
# Path-dependent keys, left out of the comparison (see the module docstring).
PATH_KEYS = {"config"}
UNSET_SEED = 987654

# Each experiment on its own, and the overlay combinations the docs show.
RUNS: dict[str, tuple[str, ...]] = {
    "default": ("configs/default.yaml",),
    **{
        f"experiment.{p.stem}": (f"configs/experiment/{p.name}",)
        for p in sorted((ROOT / "configs" / "experiment").glob("*.yaml"))
    },
    "default+debug": ("configs/default.yaml", "configs/debug.yaml"),
    "default+loss.dpo": ("configs/default.yaml", "configs/loss/dpo.yaml"),
    "default+loss.cdpo": ("configs/default.yaml", "configs/loss/cdpo.yaml"),
    "default+loss.sft": ("configs/default.yaml", "configs/loss/sft.yaml"),
    "default+weighting.uniform": ("configs/default.yaml", "configs/weighting/uniform.yaml"),
    "default+weighting.cvar": ("configs/default.yaml", "configs/weighting/cvar.yaml"),
    "default+loss.dpo+weighting.importance": (
        "configs/default.yaml",
        "configs/loss/dpo.yaml",
        "configs/weighting/importance.yaml",
    ),
    "goqa_gripo+schedule.authors": ("configs/experiment/goqa_gripo.yaml", "configs/schedule/authors.yaml"),
}

# ----------------------------------------------------------------------------------------------
# Repeated settings lines
# ----------------------------------------------------------------------------------------------

# `key: value` with a value after the colon, or a list item; a bare key (`model:`, `model:  # why`) opens a block
# and sets nothing.
_SETTING = re.compile(r"^(-(\s.*)?|[^#\s-][^:]*:\s+[^#\s].*)$")


def settings_lines(path: Path) -> list[str]:
    lines = (raw.strip() for raw in path.read_text(encoding="utf-8").splitlines())
    return [s for s in lines if s and not s.startswith("#") and _SETTING.match(s)]


def repeated_share(root: Path) -> tuple[int, int, list[tuple[str, int]]]:
    """(settings lines, those whose identical stripped line is in another config file, the repeated lines
    with the number of files that hold each)."""
    files = {p: settings_lines(p) for p in sorted(root.rglob("*.yaml"))}
    holders: dict[str, set[Path]] = defaultdict(set)
    for path, lines in files.items():
        for line in lines:
            holders[line].add(path)
    total = sum(len(lines) for lines in files.values())
    repeated = sum(1 for lines in files.values() for line in lines if len(holders[line]) > 1)
    shared = sorted(((line, len(p)) for line, p in holders.items() if len(p) > 1), key=lambda x: -x[1])
    return total, repeated, shared


def test_settings_are_written_once():
    total, repeated, shared = repeated_share(ROOT / "configs")
    share = repeated / total
    assert share <= 0.20, (
        f"{repeated} of {total} settings lines under configs/ ({share:.1%}) repeat a line of another config; "
        f"move shared settings into a base (configs/base/) or an overlay. Most repeated: {shared[:10]}"
    )


def test_settings_lines_are_what_the_share_counts(tmp_path):
    config = tmp_path / "x.yaml"
    config.write_text("# a comment\nmodel:  # why\n  loss:\n    name: ipo  # why\n\n    items:\n      - a\n      - b\nk: v\n")
    assert settings_lines(config) == ["name: ipo  # why", "- a", "- b", "k: v"]


# ----------------------------------------------------------------------------------------------
# Merged configurations
# ----------------------------------------------------------------------------------------------


def _flat(value, prefix: str = "") -> dict:
    if isinstance(value, dict):
        out = {}
        for key, sub in value.items():
            out.update(_flat(sub, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: value}


def _merged(*configs: str) -> dict:
    from grpo_lightning.cli import main

    args = [a for c in configs for a in ("--config", str(ROOT / c))]
    # Without seed_everything Lightning seeds with PL_GLOBAL_SEED, else 0, and the CLI stores that seed: an
    # unlikely seed here keeps a config's own `seed_everything: 0` apart from no seed at all.
    saved_seed = os.environ.get("PL_GLOBAL_SEED")
    os.environ["PL_GLOBAL_SEED"] = str(UNSET_SEED)
    logging.disable(logging.INFO)  # the CLI logs its thread count on every parse
    try:
        cli = main(args, run=False, instantiate=False)
    finally:
        logging.disable(logging.NOTSET)
        if saved_seed is None:
            os.environ.pop("PL_GLOBAL_SEED")
        else:
            os.environ["PL_GLOBAL_SEED"] = saved_seed
    # JSON round trip: tuples become lists and paths strings, as in the stored files.
    flat = json.loads(json.dumps(_flat(cli.config.as_dict()), default=str))
    return {k: v for k, v in flat.items() if k.split(".")[0] not in PATH_KEYS}


def merged_settings(*configs: str, defaults: dict | None = None) -> dict:
    """The merged configuration of ``configs`` where it differs from the CLI's defaults (a key the
    defaults lack, or the defaults' key the run lacks, which a change of class_path can do, counts)."""
    defaults = _merged() if defaults is None else defaults
    merged = _merged(*configs)
    out = {k: v for k, v in merged.items() if k not in defaults or defaults[k] != v}
    out.update({k: "<absent>" for k in defaults if k not in merged})
    return dict(sorted(out.items()))


@pytest.fixture(scope="module")
def defaults() -> dict:
    return _merged()


@pytest.mark.parametrize("name", sorted(RUNS))
def test_merged_config_is_unchanged(name, defaults):
    stored = json.loads((SNAPSHOTS / f"{name}.json").read_text())
    assert stored["configs"] == list(RUNS[name])
    current = merged_settings(*RUNS[name], defaults=defaults)
    changed = {k: (stored["settings"].get(k), current.get(k)) for k in stored["settings"].keys() | current.keys()}
    changed = {k: v for k, v in changed.items() if v[0] != v[1]}
    assert not changed, f"{name}: (stored, now) per changed setting: {changed}"


def test_every_experiment_has_a_stored_merged_config():
    assert {p.stem for p in SNAPSHOTS.glob("*.json")} == set(RUNS)


def _write_snapshots() -> None:
    SNAPSHOTS.mkdir(parents=True, exist_ok=True)
    defaults = _merged()
    for name, configs in RUNS.items():
        data = {"configs": list(configs), "settings": merged_settings(*configs, defaults=defaults)}
        (SNAPSHOTS / f"{name}.json").write_text(json.dumps(data, indent=1) + "\n")
        print(f"{name}: {len(data['settings'])} settings")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "src"))
    _write_snapshots()
