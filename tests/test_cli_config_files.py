"""Tests of grpo_lightning.cli.config_files: ``__base__`` composition of ``--config`` files."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import _write


def _parse(*args: str):
    from grpo_lightning.cli.app import main

    return main(list(args), run=False, instantiate=False).config


def test_bases_are_applied_first_in_order_as_several_configs(tmp_path):
    """A file's __base__ (paths relative to it, each with its own bases) is the same as giving those files as
    --config before it: later files override earlier ones key by key."""
    _write(tmp_path / "base" / "a.yaml", "seed_everything: 3\ntrainer:\n  max_epochs: 3\n  devices: 1\n")
    _write(tmp_path / "base" / "b.yaml", "__base__: a.yaml\ntrainer:\n  max_epochs: 4\n  log_every_n_steps: 7\n")
    _write(tmp_path / "base" / "c.yaml", "model:\n  loss:\n    beta: 0.5\ntrainer:\n  log_every_n_steps: 8\n")
    top = _write(
        tmp_path / "exp" / "top.yaml",
        "# why\n__base__:\n  - ../base/b.yaml\n  - ../base/c.yaml\n\ntrainer:\n  max_epochs: 5\n",
    )
    cfg = _parse("--config", top)
    assert (cfg.seed_everything, cfg.trainer.devices) == (3, 1)  # from a.yaml, through b.yaml
    assert cfg.trainer.log_every_n_steps == 8  # c.yaml after b.yaml
    assert cfg.trainer.max_epochs == 5  # the file itself last
    assert cfg.model.loss.init_args.beta == 0.5  # the shorthand `beta:` sets the loss class's init_args
    assert [Path(str(p)).name for p in cfg.config] == ["a.yaml", "b.yaml", "c.yaml", "top.yaml"]
    # The same as the four files given as --config, each without its __base__.
    b_own = _write(tmp_path / "own" / "b.yaml", "trainer:\n  max_epochs: 4\n  log_every_n_steps: 7\n")
    top_own = _write(tmp_path / "own" / "top.yaml", "trainer:\n  max_epochs: 5\n")
    files = (str(tmp_path / "base" / "a.yaml"), b_own, str(tmp_path / "base" / "c.yaml"), top_own)
    plain = _parse(*(x for f in files for x in ("--config", f)))
    assert {**plain.as_dict(), "config": None} == {**cfg.as_dict(), "config": None}
    # A flag after the config still wins, and a config after it overrides its bases' keys too.
    later = _write(tmp_path / "later.yaml", "trainer:\n  devices: 2\n")
    cfg = _parse("--config", top, "--config", later, "--trainer.max_epochs", "9")
    assert (cfg.trainer.devices, cfg.trainer.max_epochs, cfg.seed_everything) == (2, 9, 3)


def test_a_base_loop_or_a_missing_base_is_refused_naming_the_files(tmp_path):
    a = _write(tmp_path / "a.yaml", "__base__: b.yaml\ntrainer:\n  max_epochs: 1\n")
    _write(tmp_path / "b.yaml", "__base__: [a.yaml]\n")
    with pytest.raises(Exception, match=r"__base__ loop: .*a\.yaml -> .*b\.yaml -> .*a\.yaml"):
        _parse("--config", a)
    missing = _write(tmp_path / "m.yaml", "__base__: nowhere.yaml\n")
    with pytest.raises(Exception, match=r"m\.yaml: __base__ names .*nowhere\.yaml, which does not exist"):
        _parse("--config", missing)
    bad = _write(tmp_path / "bad.yaml", "__base__: a.yaml\ntrainer:\n  max_epochs: many\n")
    with pytest.raises(Exception, match=r"bad\.yaml"):
        _parse("--config", bad)
