"""The LLM proposer end to end through the CLI (SPEC §5, §13): `knhk cycle` in a subprocess
configured by KNHK_LLM_URL / KNHK_LLM_MODEL / KNHK_LLM_KEY_FILE against a scripted chat-completions server;
`knhk receipts list` shows the LLM's proposal with model and prompt digest, then a timeout's
`proposer.fallback` for a second pattern of the same cycle; a key file others can read is refused with exit 2
and one line, no traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from knhk.ontology.namespaces import KNHK, OWL_CLASS, RDF_TYPE, RDFS, RDFS_CLASS, iri, literal, sector_namespace
from support.chatserver import ChatServer, Reply, chat_server

EXE = str(Path(sys.executable).with_name("knhk"))
MODEL = "cli-scripted-model"


@pytest.fixture
def chat() -> Iterator[ChatServer]:
    with chat_server() as server:
        yield server


class Cli:
    def __init__(self, tmp_path: Path, database_url: str, chat: ChatServer) -> None:
        self.key = tmp_path / "llm.key"
        self.key.write_text("sk-cli\n")
        self.key.chmod(0o600)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("KNHK_")} | {
            "KNHK_DATA_DIR": str(tmp_path / "data"), "KNHK_DATABASE_URL": database_url, "KNHK_LLM_URL": chat.url,
            "KNHK_LLM_MODEL": MODEL, "KNHK_LLM_KEY_FILE": str(self.key), "KNHK_LLM_TIMEOUT_S": "1"}
        self.cwd = tmp_path

    def run(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([EXE, *args], env=self.env | env, cwd=self.cwd, capture_output=True, text=True,
                              timeout=120, check=False)

    def ok(self, *args: str) -> Any:
        done = self.run(*args)
        assert done.returncode == 0, (args, done.stdout, done.stderr)
        return orjson.loads(done.stdout)


def lines(event_type: str, n: int = 10) -> str:
    return "\n".join(json.dumps({"event_type": event_type, "sector": "manufacturing", "id": f"{event_type}-{i}",
                                 "value": {"machine_id": f"press-{i}"}}) for i in range(n)) + "\n"


def test_knhk_cycle_with_an_llm(tmp_path: Path, chat: ChatServer) -> None:
    """Embedded SQLite, as the other CLI tests (the API test runs both backends)."""
    cli = Cli(tmp_path, f"sqlite:///{tmp_path / 'knhk.db'}", chat)
    ns = sector_namespace("manufacturing")
    cls = iri(ns + "AuditDone")
    prop = iri(ns + "AuditDone_machine_id")
    additions = [[cls, iri(RDF_TYPE), iri(RDFS_CLASS)], [cls, iri(RDF_TYPE), iri(OWL_CLASS)],
                 [cls, iri(RDFS + "subClassOf"), iri(KNHK + "Event")],
                 [cls, iri(KNHK + "eventType"), literal("audit.done")],
                 [prop, iri(RDF_TYPE), iri("http://www.w3.org/1999/02/22-rdf-syntax-ns#Property")],
                 [prop, iri(RDFS + "domain"), cls],
                 [prop, iri(RDFS + "range"), iri("http://www.w3.org/2001/XMLSchema#string")],
                 [prop, iri(KNHK + "fieldName"), literal("machine_id")]]
    late = Reply(json.dumps({"rationale": "late", "additions": [], "removals": []}), delay_s=2.0)
    good = Reply("```json\n" + json.dumps({"rationale": "declare audit.done", "additions": additions,
                                            "removals": []}) + "\n```")
    chat.answer(good, late)  # the patterns are planned in name order: audit.done, then repair.done
    (tmp_path / "a.jsonl").write_text(lines("audit.done") + lines("repair.done"))
    cli.ok("ingest", str(tmp_path / "a.jsonl"), "--json")
    record = cli.ok("cycle", "--sector", "manufacturing", "--json")
    assert record["counts"]["patterns"] == 2
    entries = cli.ok("receipts", "list", "--limit", "1000", "--json")
    created = {e["data"]["pattern"]: e for e in entries if e["kind"] == "proposal.created"}
    llm = created["schema_drift:audit.done"]["data"]
    assert llm["proposer"] == "llm"
    assert llm["llm"]["model"] == MODEL
    assert llm["llm"]["fenced"] is True
    assert len(llm["llm"]["prompt_digest"]) == 64
    assert chat.headers[0]["authorization"] == "Bearer sk-cli"
    fallbacks = [e for e in entries if e["kind"] == "proposer.fallback"]
    assert [(f["subject"], f["outcome"]) for f in fallbacks] == [("schema_drift:repair.done", "timeout")]
    assert fallbacks[0]["data"]["cycle_id"] == record["id"]
    assert created["schema_drift:repair.done"]["data"]["proposer"] == "rule"

    cli.key.chmod(0o644)
    done = cli.run("cycle", "--sector", "manufacturing", "--json")
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "0600" in done.stderr
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
