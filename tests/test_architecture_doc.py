"""docs/architecture.md's module tree lists every module under src/grpo_lightning once, and nothing else."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "grpo_lightning"


def documented_modules(text: str) -> list[str]:
    """Paths of the ``*.py`` entries in the doc's ``src/grpo_lightning/`` tree (directories by indentation)."""
    block = text.split("```\nsrc/grpo_lightning/\n", 1)[1].split("```", 1)[0]
    stack: list[tuple[int, str]] = []
    found = []
    for line in block.splitlines():
        m = re.match(r"^( *)([\w.]+(?:/|\.py))(?:\s|$)", line)
        if not m:
            continue  # a continuation line
        indent, name = len(m.group(1)), m.group(2)
        stack = [(i, d) for i, d in stack if i < indent]
        if name.endswith("/"):
            stack.append((indent, name))
        else:
            found.append("".join(d for _, d in stack) + name)
    return found


def test_the_architecture_tree_matches_the_source_files():
    listed = documented_modules((ROOT / "docs" / "architecture.md").read_text())
    actual = sorted(str(p.relative_to(SRC)) for p in SRC.rglob("*.py") if p.name != "__init__.py")
    assert len(listed) == len(set(listed)), f"listed twice: {sorted({m for m in listed if listed.count(m) > 1})}"
    missing, stale = sorted(set(actual) - set(listed)), sorted(set(listed) - set(actual))
    assert not missing and not stale, (
        f"docs/architecture.md: add {missing} to the module tree; remove {stale} (no such file under src/)"
    )


def test_the_parser_reads_nested_directories():
    text = "```\nsrc/grpo_lightning/\n  a/   x\n    b.py  y\n    c/\n      d.py\n  e.py z\n```\n"
    assert documented_modules(text) == ["a/b.py", "a/c/d.py", "e.py"]
