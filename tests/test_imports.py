"""Imports run one way: no cycle in embedgenre's import graph, function-level imports included;
the library never imports the CLI, and only embedgenre/ann/ imports faiss."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "embedgenre"


def _modules() -> dict[str, Path]:
    mods = {}
    for f in PACKAGE.rglob("*.py"):
        parts = list(f.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = f
    return mods


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skip = set()
    for n in ast.walk(tree):
        if isinstance(n, ast.If) and "TYPE_CHECKING" in ast.unparse(n.test):
            skip |= {id(m) for b in n.body for m in ast.walk(b)}
    return skip


def import_graph() -> dict[str, set[str]]:
    """Module -> the embedgenre modules it imports anywhere in its body (TYPE_CHECKING aside)."""
    mods = _modules()

    def resolve(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {m: set() for m in mods}
    for m, f in mods.items():
        tree = ast.parse(f.read_text(encoding="utf-8"))
        skip = _type_checking_nodes(tree)
        base = m.split(".") if f.name == "__init__.py" else m.split(".")[:-1]
        for n in ast.walk(tree):
            if id(n) in skip:
                continue
            if isinstance(n, ast.Import):
                targets = [a.name for a in n.names]
            elif isinstance(n, ast.ImportFrom):
                if n.level:
                    prefix = base[: len(base) - (n.level - 1)]
                    mod = ".".join(prefix + ([n.module] if n.module else []))
                else:
                    mod = n.module or ""
                targets = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in mods else mod for a in n.names]
            else:
                continue
            for t in targets:
                r = resolve(t) if t.startswith("embedgenre") else None
                if r and r != m and not m.startswith(r + "."):  # a package's own __init__
                    graph[m].add(r)
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_embedgenre_has_no_import_cycle():
    graph = import_graph()
    assert len(graph) > 40 and sum(map(len, graph.values())) > 100  # the graph was read
    assert find_cycles(graph) == []


def test_the_library_never_imports_the_cli_or_typer():
    for m, f in _modules().items():
        text = f.read_text(encoding="utf-8")
        assert "import typer" not in text and "from cli" not in text, m


def faiss_importers() -> set[str]:
    """The embedgenre modules holding an ``import faiss`` or ``from faiss... import``, anywhere
    in their body (function-level imports included)."""
    found = set()
    for m, f in _modules().items():
        for n in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            if isinstance(n, ast.Import):
                names = [a.name for a in n.names]
            elif isinstance(n, ast.ImportFrom) and not n.level:
                names = [n.module or ""]
            else:
                continue
            if any(name == "faiss" or name.startswith("faiss.") for name in names):
                found.add(m)
    return found


def test_only_the_ann_package_imports_faiss():
    importers = faiss_importers()
    outside = sorted(m for m in importers if not (m + ".").startswith("embedgenre.ann."))
    assert outside == [], f"only embedgenre/ann/ may import faiss; these do too: {outside}"
    assert any(m.startswith("embedgenre.ann.") for m in importers)  # the search sees imports
