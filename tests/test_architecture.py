"""The package's shape: docs/architecture.md's module tree lists every module under src/grpo_lightning once (and
nothing else); no source file over the line limit; no module loose at the package root; no import cycle."""

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


# ---------------------------------------------------------------- the package's shape (issue #22)
#: The most lines a source file may have: past it a module holds more than one concern (split it by
#: responsibility, as data/ and training/ are).
MAX_LINES = 400
#: Modules allowed directly under src/grpo_lightning/ (docs/architecture.md says why): only the package itself.
ROOT_MODULES = {"__init__.py"}


def test_no_source_file_is_over_the_line_limit():
    long = {str(p.relative_to(SRC)): n for p in SRC.rglob("*.py") if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"over {MAX_LINES} lines (split by responsibility): {long}"


def test_no_module_is_loose_at_the_package_root():
    loose = sorted(p.name for p in SRC.glob("*.py") if p.name not in ROOT_MODULES)
    assert not loose, f"modules at src/grpo_lightning/ (move each into the sub-package of its concern): {loose}"


def imports_of(path: Path, module: str) -> set[str]:
    """The grpo_lightning modules ``path`` imports, at module level or inside functions (a lazy import that closes
    a cycle is still a cycle: the two modules cannot be understood apart). ``from pkg import name`` counts as an
    import of ``pkg.name`` when that is a module, else of ``pkg``. Imports under ``if TYPE_CHECKING:`` are left out:
    they name a type for annotations and never run."""
    import ast

    tree = ast.parse(path.read_text())
    typing_only = {
        id(n)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
        for stmt in block.body
        for n in ast.walk(stmt)
    }
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("grpo_lightning"))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import: resolve against this module's package
                parts = module.split(".")[: -node.level]
                base = ".".join([*parts, base]) if base else ".".join(parts)
            if not base.startswith("grpo_lightning"):
                continue
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if module_path(sub) is not None else base)
    return found


def module_path(module: str) -> Path | None:
    rel = Path(*module.split(".")[1:])
    for candidate in (SRC / rel.with_suffix(".py"), SRC / rel / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def import_graph() -> dict[str, set[str]]:
    graph = {}
    for p in SRC.rglob("*.py"):
        parts = p.relative_to(SRC.parent).with_suffix("").parts
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        graph[module] = {m for m in imports_of(p, module) if m != module and module_path(m) is not None}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` as a path ``[a, b, ..., a]``, or ``None`` (depth-first search, three colours).
    A package's ``__init__`` re-exporting its own modules is not a cycle: edges from a module to its own parent
    package are left out (Python imports the parent first; the parent's re-exports are then already loaded)."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if node.startswith(nxt + "."):
                continue
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if state.get(nxt) is None and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if state.get(node) is None and (cycle := visit(node)):
            return cycle
    return None


def test_the_package_has_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_finder_finds_a_cycle_through_a_lazy_import(tmp_path):
    a = tmp_path / "a.py"
    a.write_text(
        "from typing import TYPE_CHECKING\nfrom grpo_lightning.core import losses\n\nif TYPE_CHECKING:\n"
        "    from grpo_lightning.data import module\n\ndef f():\n    from grpo_lightning.training import module\n"
    )
    assert imports_of(a, "grpo_lightning.x") == {"grpo_lightning.core.losses", "grpo_lightning.training.module"}
    graph = {"p.a": {"p.b"}, "p.b": {"p.c"}, "p.c": {"p.a"}, "p.d": {"p.a"}}
    assert find_cycle(graph) == ["p.a", "p.b", "p.c", "p.a"]
    assert find_cycle({"p.a": {"p.b"}, "p.b": set(), "p": {"p.a"}, "p.c": {"p"}}) is None
