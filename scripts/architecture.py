#!/usr/bin/env python3
"""The shape of ``src/knhk`` in numbers and as a diagram, read from the code (grimp import graph and AST).

    .venv/bin/python scripts/architecture.py measure [--json]   # cycles, upward imports, wiring chains, …
    .venv/bin/python scripts/architecture.py diagram            # the mermaid layer diagram of docs/architecture.md
    .venv/bin/python scripts/architecture.py diagram --check    # exit 1 when docs/architecture.md is stale
    .venv/bin/python scripts/architecture.py diagram --write    # rewrite the diagram block in docs/architecture.md

``measure`` reports: the package-level import cycles (strongly connected components of the graph of
``knhk.<package>`` → ``knhk.<package>`` imports), the imports that run against the tier order below, the
distinct ``runtime.X.Y`` chains the faces (``knhk.cli``, ``knhk.service``, ``knhk.console``) use to reach
into the wiring, the face modules that import ``knhk.storage``, and the ten longest functions.

The tiers are the coarse layers of the architecture (docs/architecture.md); the import-linter contracts in
pyproject.toml enforce them and the finer order inside the domain tier. A new top-level package must be given
a tier here and a place in those contracts.
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import sys
import tomllib
from collections import defaultdict
from collections.abc import Iterable, Iterator
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src" / "knhk"
DOC = ROOT / "docs" / "architecture.md"

#: Top tier first. An import from a lower tier into a higher one runs against the layer order.
TIERS: dict[str, tuple[str, ...]] = {
    "faces": ("knhk.cli", "knhk.service", "knhk.console"),
    "application": ("knhk.app", "knhk.runtime"),
    "domain": ("knhk.loop", "knhk.governance", "knhk.validation", "knhk.detection", "knhk.proposals",
               "knhk.observations", "knhk.ontology", "knhk.sectors", "knhk.audit", "knhk.ledger",
               "knhk.identity"),
    "foundation": ("knhk.proof", "knhk.storage"),
    "kernel": ("knhk.ops", "knhk.config", "knhk.errors", "knhk"),
}
FACES = TIERS["faces"]
TIER_OF = {pkg: rank for rank, (_, pkgs) in enumerate(TIERS.items()) for pkg in pkgs}
BEGIN = "<!-- architecture.py diagram: begin (generated; run scripts/architecture.py diagram --write) -->"
END = "<!-- architecture.py diagram: end -->"


def package_of(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 else module


def tier_of(package: str) -> int:
    if package not in TIER_OF:
        sys.exit(f"architecture.py: package {package} is in no tier; add it to TIERS in scripts/architecture.py "
                 "and to the import-linter contracts in pyproject.toml")
    return TIER_OF[package]


def build_graph() -> grimp.ImportGraph:
    sys.path.insert(0, str(ROOT / "src"))
    return grimp.build_graph("knhk", cache_dir=None)


def imports(graph: grimp.ImportGraph) -> Iterator[tuple[str, str]]:
    """Every (importer module, imported module) inside knhk."""
    for importer in sorted(graph.modules):
        for imported in sorted(graph.find_modules_directly_imported_by(importer)):
            if imported.startswith("knhk"):
                yield importer, imported


def package_edges(graph: grimp.ImportGraph) -> dict[tuple[str, str], int]:
    edges: dict[tuple[str, str], int] = defaultdict(int)
    for importer, imported in imports(graph):
        a, b = package_of(importer), package_of(imported)
        if a != b and a != "knhk" and b != "knhk":
            edges[(a, b)] += 1
    return dict(edges)


def cycles(edges: Iterable[tuple[str, str]]) -> list[list[str]]:
    """Strongly connected components with more than one package (Tarjan)."""
    succ: dict[str, set[str]] = defaultdict(set)
    nodes: set[str] = set()
    for a, b in edges:
        succ[a].add(b)
        nodes |= {a, b}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(succ[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            scc = []
            while True:
                w = stack.pop()
                on.discard(w)
                scc.append(w)
                if w == v:
                    break
            if len(scc) > 1:
                out.append(sorted(scc))

    for v in sorted(nodes):
        if v not in index:
            visit(v)
    return sorted(out)


def upward(graph: grimp.ImportGraph) -> list[tuple[str, str]]:
    return [(a, b) for a, b in imports(graph)
            if tier_of(package_of(b)) < tier_of(package_of(a))]


# -- runtime.X.Y chains in the faces -----------------------------------------------------------------------
def _chain(node: ast.expr) -> tuple[ast.expr, list[str]]:
    attrs: list[str] = []
    while isinstance(node, ast.Attribute):
        attrs.append(node.attr)
        node = node.value
    return node, attrs[::-1]


def _runtime_path(node: ast.expr, aliases: dict[str, list[str]]) -> list[str] | None:
    """The attribute path after the runtime, when ``node`` is a chain rooted at the wiring."""
    base, attrs = _chain(node)
    if "runtime" in attrs:  # st.runtime.x.y, state_of(request).runtime.x.y
        return attrs[attrs.index("runtime") + 1:]
    if isinstance(base, ast.Call) and isinstance(base.func, ast.Name) and base.func.id == "runtime":
        return attrs  # runtime(ctx).x.y
    if isinstance(base, ast.Name):
        if base.id in ("rt", "runtime"):
            return attrs
        if base.id in aliases:
            return aliases[base.id] + attrs
    return None


def runtime_chains(paths: Iterable[Path]) -> dict[str, list[str]]:
    """Distinct runtime.X.Y chains (and the files using each)."""
    found: dict[str, set[str]] = defaultdict(set)
    for path in paths:
        tree = ast.parse(path.read_text(), str(path))
        for func in ast.walk(tree):
            if not isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef | ast.Module):
                continue
            aliases: dict[str, list[str]] = {}
            for node in ast.walk(func):
                if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                    path_ = _runtime_path(node.value, aliases)
                    if path_ is not None:
                        aliases[node.targets[0].id] = path_
            for node in ast.walk(func):
                if isinstance(node, ast.Attribute):
                    path_ = _runtime_path(node, aliases)
                    if path_ is not None and len(path_) >= 2:
                        found["runtime." + ".".join(path_[:2])].add(str(path.relative_to(ROOT)))
    return {k: sorted(v) for k, v in sorted(found.items())}


def face_files() -> list[Path]:
    out: list[Path] = []
    for face in FACES:
        folder = SRC / face.split(".")[1]
        if folder.is_dir():
            out.extend(sorted(folder.rglob("*.py")))
    return out


def faces_importing_storage(graph: grimp.ImportGraph) -> list[str]:
    return sorted({a for a, b in imports(graph)
                   if package_of(a) in FACES and package_of(b) == "knhk.storage"})


def longest_functions(n: int = 10) -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []
    for path in sorted(SRC.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        stack: list[tuple[ast.AST, str]] = [(tree, "")]
        while stack:
            node, prefix = stack.pop()
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                    name = f"{prefix}{child.name}"
                    if not isinstance(child, ast.ClassDef):
                        lines = (child.end_lineno or child.lineno) - child.lineno + 1
                        found.append((lines, f"{path.relative_to(SRC)}:{name}"))
                    stack.append((child, name + "."))
    return sorted(found, key=lambda x: (-x[0], x[1]))[:n]


def measure() -> dict[str, object]:
    graph = build_graph()
    edges = package_edges(graph)
    chains = runtime_chains(face_files())
    return {
        "package_cycles": cycles(edges),
        "upward_imports": [f"{a} -> {b}" for a, b in upward(graph)],
        "runtime_chains": chains,
        "face_files_importing_storage": faces_importing_storage(graph),
        "longest_functions": [f"{lines:4d}  {name}" for lines, name in longest_functions()],
    }


def print_measure(data: dict[str, object]) -> None:
    cyc = data["package_cycles"]
    assert isinstance(cyc, list)
    print(f"package-level import cycles: {len(cyc)}")
    for scc in cyc:
        print(f"  {' <-> '.join(p.removeprefix('knhk.') for p in scc)}")
    for key, title in (("upward_imports", "imports against the tier order"),
                       ("face_files_importing_storage", "face modules importing knhk.storage")):
        items = data[key]
        assert isinstance(items, list)
        print(f"{title}: {len(items)}")
        for item in items:
            print(f"  {item}")
    chains = data["runtime_chains"]
    assert isinstance(chains, dict)
    print(f"distinct runtime.X.Y chains in the faces: {len(chains)}")
    for chain in chains:
        print(f"  {chain}")
    print("longest functions (lines):")
    for line in data["longest_functions"]:  # type: ignore[attr-defined]
        print(f"  {line}")


# -- diagram -----------------------------------------------------------------------------------------------
KERNEL = ("knhk.errors", "knhk.config", "knhk.ops")  # imported from everywhere; left out of the drawing


def layers_contract() -> tuple[list[list[str]], set[tuple[str, str]]]:
    """The ``layers`` import-linter contract of pyproject.toml: its layers, top first, as package names, and
    the imports it ignores (importer, imported)."""
    with (ROOT / "pyproject.toml").open("rb") as handle:
        config = tomllib.load(handle)
    contracts = config["tool"]["importlinter"]["contracts"]
    (layers,) = [c for c in contracts if c.get("id") == "layers"]
    prefix = "".join(f"{c}." for c in layers.get("containers", []))
    ignored = {tuple(part.strip() for part in item.split("->")) for item in layers.get("ignore_imports", [])}
    return ([[prefix + name.strip().strip("()") for name in re.split(r"[|:]", line)] for line in layers["layers"]],
            {(a, b) for a, b in ignored})


def reduce(edges: set[tuple[str, str]]) -> set[tuple[str, str]]:
    """The transitive reduction of an acyclic graph: an edge is kept only when no longer path joins its ends."""
    succ: dict[str, set[str]] = defaultdict(set)
    for a, b in edges:
        succ[a].add(b)

    def reachable(start: str, skip: tuple[str, str]) -> set[str]:
        seen: set[str] = set()
        stack = [start]
        while stack:
            node = stack.pop()
            for nxt in succ[node]:
                if (node, nxt) != skip and nxt not in seen:
                    seen.add(nxt)
                    stack.append(nxt)
        return seen

    return {(a, b) for a, b in edges if b not in reachable(a, (a, b))}


def _node(pkg: str) -> str:
    return pkg.replace(".", "_")


def diagram() -> str:
    """A mermaid flowchart: the contract's layers top to bottom, and the package imports between them (the
    kernel, the contract's ignored imports and transitively implied imports left out)."""
    graph = build_graph()
    present = {package_of(m) for m in graph.modules} - {"knhk"}
    layers, ignored = layers_contract()
    placed = {p for layer in layers for p in layer}
    if present - placed:
        sys.exit(f"architecture.py: packages in no layer of the contract: {', '.join(sorted(present - placed))}")
    edges = {(package_of(a), package_of(b)) for a, b in imports(graph) if (a, b) not in ignored}
    edges = {(a, b) for a, b in edges if a != b and "knhk" not in (a, b) and a not in KERNEL and b not in KERNEL}
    lines = ["```mermaid", "flowchart TB"]
    for n, layer in enumerate(layers):
        members = [p for p in layer if p in present and p not in KERNEL]
        if not members:
            continue
        lines.append(f"  subgraph L{n}[\" \"]")
        lines.extend(f"    {_node(p)}[{p.removeprefix('knhk.')}]" for p in members)
        lines.append("  end")
    lines.extend(f"  {_node(a)} --> {_node(b)}" for a, b in sorted(reduce(edges)))
    lines.append("```")
    return "\n".join(lines)


def _replace_block(text: str, block: str) -> str:
    pattern = re.compile(re.escape(BEGIN) + r".*?" + re.escape(END), re.S)
    if not pattern.search(text):
        sys.exit(f"architecture.py: {DOC} has no generated diagram block ({BEGIN} … {END})")
    return pattern.sub(lambda _: f"{BEGIN}\n{block}\n{END}", text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    m = sub.add_parser("measure")
    m.add_argument("--json", action="store_true")
    d = sub.add_parser("diagram")
    d.add_argument("--check", action="store_true")
    d.add_argument("--write", action="store_true")
    args = parser.parse_args()
    if args.command == "measure":
        data = measure()
        if args.json:
            print(json.dumps(data, indent=2))
        else:
            print_measure(data)
        return 0
    block = diagram()
    if not (args.check or args.write):
        print(block)
        return 0
    current = DOC.read_text()
    updated = _replace_block(current, block)
    if args.write:
        DOC.write_text(updated)
        return 0
    if updated != current:
        print(f"{DOC.relative_to(ROOT)}: the layer diagram is stale; run "
              "'.venv/bin/python scripts/architecture.py diagram --write'", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
