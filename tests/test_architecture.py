"""The architecture of docs/architecture.md holds where imports cannot show it (the import contracts themselves
are checked by ``lint-imports`` in ``make test``):

- every face (CLI, service, console) goes through the application layer — none reaches into the wiring or the
  database, so authorization, audit and validation are the same whatever face a person uses;
- the receipt catalogue of ``ledger/receipts.py`` and the operations of ``app/access.py`` are the ones the
  document lists, so a newcomer reading it finds every kind of receipt and every operation there is.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from knhk.app import access
from knhk.ledger import receipts

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src" / "knhk"
DOC = (ROOT / "docs" / "architecture.md").read_text()
FACES = ("cli", "service", "console")


def face_modules() -> list[Path]:
    return sorted(p for face in FACES if (SRC / face).is_dir() for p in (SRC / face).rglob("*.py"))


@pytest.mark.parametrize("path", face_modules(), ids=lambda p: str(p.relative_to(SRC)))
def test_no_face_reaches_into_the_wiring_or_the_database(path: Path) -> None:
    tree = ast.parse(path.read_text(), str(path))
    reaches = [f"line {node.lineno}: .{node.attr}" for node in ast.walk(tree)
               if isinstance(node, ast.Attribute) and node.attr in ("runtime", "_runtime")]
    imports = [f"line {node.lineno}: {name}" for node in ast.walk(tree)
               for name in ([a.name for a in node.names] if isinstance(node, ast.Import)
                            else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
               if name.startswith(("knhk.storage", "knhk.app.runtime"))]
    assert not reaches, f"{path.name} reaches into the application's wiring: {reaches}"
    assert not imports, f"{path.name} imports the wiring or the database: {imports}"


def _rows_after(heading: str) -> list[list[str]]:
    """The cells (backticks removed) of every body row of the first table after ``heading``."""
    section = DOC.split(heading, 1)[1]
    rows: list[list[str]] = []
    for line in section.splitlines():
        if line.startswith("|"):
            rows.append([cell.strip().strip("`") for cell in line.split("|")[1:-1]])
        elif rows:
            break
    return rows[2:]  # without the header and its rule


def test_the_receipt_table_lists_exactly_the_catalogue() -> None:
    rows = _rows_after("## The receipt catalogue")
    assert [row[0] for row in rows] == list(receipts.KINDS)
    documented = {name for row in rows for name in re.findall(r"[a-z_]+", row[1])}
    constructors = {name for name, value in vars(receipts).items()
                    if callable(value) and getattr(value, "__module__", "") == receipts.__name__
                    and not name.startswith("_") and name not in ("validates", "pointer_kind", "audit_event")}
    assert documented == constructors


def test_the_operation_table_lists_exactly_the_catalogue() -> None:
    operations = [v for v in vars(access).values() if isinstance(v, access.Operation)]
    rows = _rows_after("## The operations")
    assert [row[0] for row in rows] == [op.name for op in operations]
    assert [row[1] for row in rows] == [op.permission or "local" for op in operations]
