"""configs/ as a list of pieces: each run config names the pieces it uses one level deep, and composing them leaves
every run's settings as they were.

One level: an experiment (configs/experiment/*.yaml, configs/default.yaml) lists its pieces under ``__base__``; a
piece (configs/base/, loss/, weighting/, schedule/, task/) and an overlay (debug.yaml) has no ``__base__``, so a reader
sees the whole recipe in the experiment's own file.

The merged configuration of each experiment (and of a few overlay combinations) is stored under
tests/data/merged_configs/ as the settings in which it differs from the CLI's defaults (the merged
configuration of no --config at all), flattened to dotted keys. Equal differences from the same defaults
mean equal merged configurations, so a restructuring of configs/ that passes keeps every run's settings.
Left out: ``config`` (the list of config files read, which depends on where the files are, not what they set).
Regenerate after an intended change of settings with
    PYTHONPATH=src python tests/test_configs.py
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

import pytest
from conftest import _write

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
    "experiment.default_isipo+task.small_dissenting_group": (
        "configs/experiment/default_isipo.yaml",
        "configs/task/small_dissenting_group.yaml",
    ),
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
# One level of __base__
# ----------------------------------------------------------------------------------------------

# The configs that list pieces: each experiment and the default run. Every other file is a piece or an overlay.
RUN_CONFIGS = (
    "default.yaml",
    *(f"experiment/{p.name}" for p in sorted((ROOT / "configs" / "experiment").glob("*.yaml"))),
)


def deeper_than_one_level(root: Path, run_configs: tuple[str, ...]) -> list[str]:
    """What breaks the one-level rule under ``root``: a run config without pieces, a piece of a run config that has
    bases of its own, or any other file with a ``__base__``; one line per finding, naming the files."""
    from grpo_lightning.cli.config_files import config_bases

    def rel(path: Path) -> str:
        return path.resolve().relative_to(root.resolve()).as_posix()

    runs = {(root / name).resolve() for name in run_configs}
    found = []
    for path in sorted(root.rglob("*.yaml")):
        bases = config_bases(path)
        if path.resolve() not in runs:
            if bases:
                found.append(f"{rel(path)}: a piece or overlay with a __base__ ({', '.join(map(rel, bases))})")
            continue
        if not bases:
            found.append(f"{rel(path)}: lists no pieces under __base__")
        for base in bases:
            if base.is_file() and config_bases(base):
                found.append(f"{rel(path)}: its piece {rel(base)} has a __base__ of its own")
    return found


def test_every_experiment_lists_its_pieces_one_level_deep():
    """Every configs/experiment/*.yaml and configs/default.yaml has __base__ entries, none of which has a __base__;
    no other file under configs/ (debug.yaml, the pieces, the loss/weighting/schedule/task overlays) has one."""
    assert {"default.yaml", "experiment/goqa_smollm2_gripo.yaml"} <= set(RUN_CONFIGS)
    found = deeper_than_one_level(ROOT / "configs", RUN_CONFIGS)
    assert not found, "configs one level deep: name the pieces in the experiment itself\n" + "\n".join(found)


def test_a_piece_with_bases_of_its_own_breaks_the_one_level_rule(tmp_path):
    piece = "trainer:\n  max_epochs: 2\n"
    _write(tmp_path / "base" / "run.yaml", piece)
    _write(tmp_path / "base" / "model.yaml", "__base__: run.yaml\nmodel:\n  gradient_clip_val: 1.0\n")
    _write(tmp_path / "experiment" / "flat.yaml", "__base__: [../base/run.yaml]\n")
    _write(tmp_path / "experiment" / "deep.yaml", "__base__: [../base/run.yaml, ../base/model.yaml]\n")
    _write(tmp_path / "experiment" / "bare.yaml", piece)
    runs = ("experiment/flat.yaml", "experiment/deep.yaml", "experiment/bare.yaml")
    assert deeper_than_one_level(tmp_path, runs) == [
        "base/model.yaml: a piece or overlay with a __base__ (base/run.yaml)",
        "experiment/bare.yaml: lists no pieces under __base__",
        "experiment/deep.yaml: its piece base/model.yaml has a __base__ of its own",
    ]
    assert deeper_than_one_level(tmp_path, ("experiment/flat.yaml",))[0].startswith("base/model.yaml")


def test_the_loss_and_weighting_overlays_name_runs_as_method_name_yaml():
    """The loss and weighting overlays carry configs/base/method_name.yaml's log name themselves (a piece has no
    __base__): the same line, but for cDPO's own loss half."""
    import yaml

    def name(path: Path):
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        return (((loaded.get("trainer") or {}).get("logger") or {}).get("init_args") or {}).get("name")

    line = name(ROOT / "configs" / "base" / "method_name.yaml")
    _, weighting_half = line.split("}}_", 1)
    named = {
        p.relative_to(ROOT / "configs").as_posix(): name(p)
        for d in ("loss", "weighting")
        for p in sorted((ROOT / "configs" / d).glob("*.yaml"))
    }
    named = {k: v for k, v in named.items() if v is not None}
    assert {"loss/ipo.yaml", "loss/sft.yaml", "weighting/robust.yaml", "weighting/uniform.yaml"} <= set(named)
    assert named.pop("loss/cdpo.yaml") == "cdpo_" + weighting_half
    assert all(v == line for v in named.values()), named


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
    from grpo_lightning.cli.app import main

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


# ----------------------------------------------------------------------------------------------
# __base__
# ----------------------------------------------------------------------------------------------


def test_the_saved_config_is_complete_and_has_no_bases(tmp_path, capsys):
    """What LightningCLI prints and saves (config.yaml beside the logs) is the merged configuration: it holds
    no __base__ and, read back on its own, gives the run's settings."""
    from grpo_lightning.cli.app import main

    with pytest.raises(SystemExit):
        main(["--config", str(ROOT / "configs/experiment/goqa_tiny_gripo.yaml"), "--print_config"], run=False)
    printed = capsys.readouterr().out
    assert "__base__" not in printed
    saved = _write(tmp_path / "config.yaml", printed)
    assert merged_settings(saved) == merged_settings("configs/experiment/goqa_tiny_gripo.yaml")


def test_every_base_reference_in_configs_names_a_file():
    from grpo_lightning.cli.config_files import composed_files

    for path in sorted((ROOT / "configs").rglob("*.yaml")):
        for file in composed_files(path):
            assert file.is_file(), (path, file)


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
