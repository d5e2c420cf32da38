"""A ``knhk`` command imports what it uses (start-up cost; bench/bench_cli_start.py times it): help screens load
none of the heavy libraries, a ledger verification on the embedded store loads no SHACL engine, JWT library,
HTTP client or PostgreSQL driver, and minting a token loads the JWT library alone. Each command runs in a fresh
interpreter, as a user starts it, and reports the top-level packages it loaded; its exit code and output are
checked too, so a command that stopped working cannot pass for a light one.

Before this was set up, ``knhk --help`` imported every one of these (about 1.5 s of imports)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

#: what the command runs in a fresh interpreter: the CLI as the ``knhk`` script runs it, then the loaded packages
_PROBE = """
import json, sys
sys.argv = ["knhk", *json.loads(sys.argv[1])]
from knhk.cli.main import main
try:
    main()
except SystemExit as exc:
    code = exc.code
else:
    code = 0
with open({report!r}, "w") as out:
    json.dump({{"code": code, "packages": sorted({{m.split(".")[0] for m in sys.modules}})}}, out)
"""

#: a web framework, the SHACL engine and RDF library, JWT/JOSE, HTTP clients, database drivers, Redis, tracing
HEAVY = frozenset({"pyshacl", "rdflib", "authlib", "jwt", "httpx", "psycopg", "psycopg_pool", "redis",
                   "pybreaker", "opentelemetry", "fastapi", "starlette", "uvicorn"})
#: on a store: the breakers' library is part of the storage layer (and imports Redis, which imports OpenTelemetry)
STORE_HEAVY = HEAVY - {"pybreaker", "redis", "opentelemetry"}


def _run(args: list[str], data_dir: Path, tmp_path: Path) -> tuple[int, set[str], str]:
    report = tmp_path / "loaded.json"
    env = {**os.environ, "KNHK_DATA_DIR": str(data_dir), "COLUMNS": "120"}
    done = subprocess.run([sys.executable, "-c", _PROBE.format(report=str(report)), json.dumps(args)],
                          capture_output=True, text=True, env=env, timeout=120, check=False)
    assert report.is_file(), done.stderr
    loaded = json.loads(report.read_text())
    return loaded["code"], set(loaded["packages"]), done.stdout


@pytest.mark.parametrize("args", [["--help"], ["receipts", "--help"], ["audit", "--help"], ["backup", "--help"],
                                  ["token", "mint", "--help"], ["preflight", "--help"]],
                         ids=" ".join)
def test_help_loads_no_heavy_library(args: list[str], tmp_path: Path) -> None:
    code, packages, out = _run(args, tmp_path / "data", tmp_path)
    assert code == 0
    assert "Usage: knhk" in out
    assert packages & HEAVY == set()


def test_verifying_the_embedded_ledger_loads_no_shacl_jwt_http_or_postgres(tmp_path: Path) -> None:
    data = tmp_path / "data"
    code, _, out = _run(["init"], data, tmp_path)
    assert code == 0
    assert "initialised" in out
    code, packages, out = _run(["receipts", "verify"], data, tmp_path)
    assert code == 0
    assert "VERIFIED log receipts" in out
    assert packages & STORE_HEAVY == set()


def test_minting_a_token_loads_the_jwt_library_alone(tmp_path: Path) -> None:
    code, packages, out = _run(["token", "mint", "--role", "observer"], tmp_path / "data", tmp_path)
    assert code == 0
    assert out.count(".") == 2  # the token alone: header.claims.signature
    assert packages & HEAVY == {"jwt"}
