"""Runs the worked examples of docs/extending.md: the ``python`` blocks of each ``##`` section, in order, in one
namespace, from a scratch directory that links the repository's configs/. What the docs show is therefore what runs."""

from __future__ import annotations

import argparse
import inspect
import re
import sys
from pathlib import Path

import pytest

from grpo_lightning.core import LOSSES, WEIGHTINGS
from grpo_lightning.policies import CausalLM

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "extending.md"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)
# A block (python or yaml) whose first line is `# file: NAME` is a file of the example, written to the scratch dir.
FILE_BLOCK = re.compile(r"^```(?:python|yaml)\n# file: (\S+)\n(.*?)^```", re.MULTILINE | re.DOTALL)
HAS_LORA = "lora" in inspect.signature(CausalLM.__init__).parameters


def sections() -> tuple[dict[str, list[str]], dict[str, dict[str, str]]]:
    """``## title`` → the python code blocks under it to run, and ``## title`` → {file name: text} of its file blocks."""
    out: dict[str, list[str]] = {}
    files: dict[str, dict[str, str]] = {}
    for part in re.split(r"^## ", DOC.read_text(encoding="utf-8"), flags=re.MULTILINE)[1:]:
        title, _, body = part.partition("\n")
        blocks = [b for b in BLOCK.findall(body) if not b.startswith("# file: ")]
        if blocks:
            out[title.strip()] = blocks
        files[title.strip()] = {name: text for name, text in FILE_BLOCK.findall(body)}
    return out, files


SECTIONS, FILES = sections()


def test_every_example_section_is_covered():
    assert set(SECTIONS) == {
        "Add a dataset with groups",
        "Add a loss",
        "Add a weighting strategy",
        "Swap the model for a hub id with LoRA",
    }


@pytest.fixture()
def clean_registries():
    """The examples register a loss and a weighting; restore the registries afterwards."""
    losses, weightings = dict(LOSSES), dict(WEIGHTINGS)
    yield
    LOSSES.clear()
    LOSSES.update(losses)
    WEIGHTINGS.clear()
    WEIGHTINGS.update(weightings)


def _run(title: str, monkeypatch, tmp_path: Path) -> dict:
    # A scratch working directory that sees the repository's configs/: runs with fast_dev_run have no log
    # directory, so the callbacks write next to the working directory (e.g. ./tokenizer), never into the repo.
    (tmp_path / "configs").symlink_to(ROOT / "configs", target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for name, text in FILES[title].items():  # the example's own files, importable from the working directory
        (tmp_path / name).write_text(text, encoding="utf-8")
        if name.endswith(".py"):
            monkeypatch.delitem(sys.modules, name[:-3], raising=False)
    monkeypatch.syspath_prepend(str(tmp_path))
    slug = re.sub(r"\W+", "_", title.lower())
    namespace: dict = {"__name__": f"extending_{slug}"}
    try:
        for i, code in enumerate(SECTIONS[title]):
            exec(compile(code, f"{DOC.name}[{title}#{i}]", "exec"), namespace)  # noqa: S102 - the docs' own code
    finally:
        for name in FILES[title]:  # the next test's scratch dir has its own copy
            sys.modules.pop(name.removesuffix(".py"), None)
    return namespace


def test_dataset_example(monkeypatch, tmp_path, clean_registries):
    ns = _run("Add a dataset with groups", monkeypatch, tmp_path)
    assert ns["model"].log_alpha.shape == (2,)


def test_loss_example(monkeypatch, tmp_path, clean_registries):
    """A loss with a hyperparameter of its own (the margin), added through one file and a YAML overlay only: the
    docs' block trains one step per margin and checks the logged loss against log(1 + e^γ)."""
    assert set(FILES["Add a loss"]) == {"margin_loss.py", "margin.yaml"}
    before = dict(LOSSES)
    ns = _run("Add a loss", monkeypatch, tmp_path)
    assert before == LOSSES  # no registry entry, no globals
    assert ns["cli"].model.loss_fn.margin == 2.0
    assert ns["cli"].model.hparams.loss == {
        "class_path": "margin_loss.DPOMargin",
        "init_args": {"beta": 0.1, "margin": 2.0},
    }


def test_a_loss_refuses_a_setting_it_does_not_take(monkeypatch, tmp_path):
    from grpo_lightning.cli.app import main

    monkeypatch.chdir(tmp_path)
    with pytest.raises(argparse.ArgumentError, match="label_smoothing"):  # named by the parser
        main(["fit", "--config", str(ROOT / "configs/default.yaml"), "--model.loss.label_smoothing", "0.1"], run=False)


def test_weighting_example(monkeypatch, tmp_path, clean_registries):
    _run("Add a weighting strategy", monkeypatch, tmp_path)
    assert "loss_softmax" in WEIGHTINGS


@pytest.mark.skipif(not HAS_LORA, reason="CausalLM has no `lora` argument on this branch yet")
def test_lora_example(monkeypatch, tmp_path, clean_registries):
    ns = _run("Swap the model for a hub id with LoRA", monkeypatch, tmp_path)
    assert 0 < ns["trainable"] < ns["total"]


def test_every_config_is_documented():
    """docs/configs.md lists every YAML file under configs/."""
    text = (ROOT / "docs" / "configs.md").read_text(encoding="utf-8")
    missing = [
        str(p.relative_to(ROOT))
        for p in sorted((ROOT / "configs").rglob("*.yaml"))
        if f"`{p.relative_to(ROOT)}`" not in text
    ]
    assert not missing, f"add these to docs/configs.md: {missing}"
