"""Runs the worked examples of docs/extending.md: the ``python`` blocks of each ``##`` section, in order, in one
namespace, from a scratch directory that links the repository's configs/. What the docs show is therefore what runs."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from grpo_lightning.core import LOSSES, WEIGHTINGS
from grpo_lightning.policies import CausalLM

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "extending.md"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)
HAS_LORA = "lora" in inspect.signature(CausalLM.__init__).parameters


def sections() -> dict[str, list[str]]:
    """``## title`` → the python code blocks under it."""
    out: dict[str, list[str]] = {}
    for part in re.split(r"^## ", DOC.read_text(encoding="utf-8"), flags=re.MULTILINE)[1:]:
        title, _, body = part.partition("\n")
        blocks = BLOCK.findall(body)
        if blocks:
            out[title.strip()] = blocks
    return out


SECTIONS = sections()


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
    slug = re.sub(r"\W+", "_", title.lower())
    namespace: dict = {"__name__": f"extending_{slug}"}
    for i, code in enumerate(SECTIONS[title]):
        exec(compile(code, f"{DOC.name}[{title}#{i}]", "exec"), namespace)  # noqa: S102 - the docs' own code
    return namespace


def test_dataset_example(monkeypatch, tmp_path, clean_registries):
    ns = _run("Add a dataset with groups", monkeypatch, tmp_path)
    assert ns["model"].log_alpha.shape == (2,)


def test_loss_example(monkeypatch, tmp_path, clean_registries):
    _run("Add a loss", monkeypatch, tmp_path)
    assert "dpo_margin" in LOSSES


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
