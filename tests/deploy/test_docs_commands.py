"""Every command, route, metric, alert and recording rule that README.md, docs/*.md and docs/runbooks/*.md name
exists: `knhk <path> --help` succeeds (in-process, through typer's test runner) and every option written after
the path is one of that command's options; the route is in the OpenAPI document of the service as
``create_app`` builds it; the metric is declared in registry/ (whose live check proves it exposed); the alert
and the recording rule are in deploy/monitoring/rules. Each runbook has the five sections and an index entry,
and every alert's runbook_url names an existing runbook. The extractor itself is shown to catch each kind of
broken reference."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from docs_refs import (
    ROOT,
    alert_names,
    click_root,
    declared_metrics,
    extract,
    metric_exists,
    recording_names,
    resolve,
    route_exists,
    rules,
)
from typer.testing import CliRunner

from knhk.cli.main import app
from knhk.config import Settings
from knhk.service.app import create_app

RUNBOOKS = ROOT / "docs" / "runbooks"
SECTIONS = ("## Symptoms", "## Diagnosis", "## Resolution", "## Validation", "## Prevention")


@pytest.fixture(scope="module")
def openapi(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The service's OpenAPI document, plus the few routes it serves outside it (``/openapi.json``, ``/docs``)."""
    settings = Settings(data_dir=tmp_path_factory.mktemp("docs"), db_pool_min=1, db_pool_max=2)
    service = create_app(settings, background=False)
    document = service.openapi()
    for route in service.routes:
        path, methods = getattr(route, "path", None), getattr(route, "methods", None)
        if path and methods and path not in document["paths"]:
            document["paths"][path] = {m.lower(): {} for m in methods}
    return document


def check(refs: list[Any], openapi: dict[str, Any]) -> list[str]:
    """One line per reference that names something that does not exist."""
    root = click_root()
    declared, histograms = declared_metrics()
    alerts, recordings = alert_names(), recording_names()
    runner = CliRunner()
    helped: dict[tuple[str, ...], int] = {}
    bad: list[str] = []
    for ref in refs:
        if ref.kind == "command":
            paths, problems = resolve(root, ref.text.split()[1:])
            bad += [f"{ref.where()}: {p}" for p in problems]
            for path in paths:
                key = tuple(path)
                if key not in helped:
                    helped[key] = runner.invoke(app, [*path, "--help"]).exit_code
                if helped[key] != 0:
                    bad.append(f"{ref.where()}: `knhk {' '.join(path)} --help` exits {helped[key]}")
        elif ref.kind == "route":
            method, path = ref.text.split(" ", 1)
            if not route_exists(method, path, openapi):
                bad.append(f"{ref.where()}: no such route in the OpenAPI document")
        elif ref.kind == "metric" and not metric_exists(ref.text, declared, histograms):
            bad.append(f"{ref.where()}: metric not declared in registry/")
        elif ref.kind == "alert" and ref.text not in alerts:
            bad.append(f"{ref.where()}: no such alert in deploy/monitoring/rules")
        elif ref.kind == "recording" and ref.text not in recordings:
            bad.append(f"{ref.where()}: no such recording rule in deploy/monitoring/rules")
    return bad


def test_every_reference_in_the_docs_exists(openapi: dict[str, Any]) -> None:
    refs = extract()
    kinds = {k: sum(1 for r in refs if r.kind == k) for k in ("command", "route", "metric", "alert", "recording")}
    # the docs do name things of every kind (an extractor that finds nothing would pass vacuously)
    minimum = {"command": 150, "route": 30, "metric": 80, "alert": 8, "recording": 5}
    assert all(kinds[k] >= n for k, n in minimum.items()), kinds
    bad = check(refs, openapi)
    assert not bad, "\n".join(bad)


def test_the_extractor_catches_each_kind_of_broken_reference(tmp_path: Path, openapi: dict[str, Any]) -> None:
    doc = tmp_path / "bad.md"
    doc.write_text(
        "Run `knhk receipts verfy` or `knhk receipts verify --lgo all`, then\n\n"
        "```sh\nTOKEN=$(knhk token mint --role ingestor) && knhk backup restore BACKUP --forse\n```\n\n"
        "`GET /api/v1/nothing`, `POST /health`, `knhk_no_such_metric_total`, `KnhkNoSuchAlert`, "
        "`knhk:nothing:rate5m`.\n\n"
        "Fine: `knhk receipts verify --log all --json`, `GET /receipts/{seq}/proof`, `GET /proposals[/{id}]`, "
        "`knhk_request_duration_seconds_bucket`, `KnhkServiceDown`, `knhk:http_error_ratio:rate5m`, "
        "`knhk sigma list/show`, `knhk guards approve|reject ID --approver …`.\n")
    bad = check(extract([doc]), openapi)
    assert len(bad) == 8, "\n".join(bad)
    for needle in ("no sub-command 'verfy'", "has no option --lgo", "has no option --forse", "/api/v1/nothing",
                   "POST /health", "knhk_no_such_metric_total", "KnhkNoSuchAlert", "knhk:nothing:rate5m"):
        assert any(needle in b for b in bad), (needle, bad)


def test_every_runbook_has_its_sections_and_an_index_entry_and_every_alert_a_runbook() -> None:
    index = (RUNBOOKS / "README.md").read_text()
    books = sorted(p for p in RUNBOOKS.glob("*.md") if p.name != "README.md")
    assert len(books) >= 10
    for book in books:
        text = book.read_text()
        for section in SECTIONS:
            assert section in text, f"{book.name} lacks {section}"
        assert f"({book.name})" in index, f"{book.name} is not in docs/runbooks/README.md"
    for rule in rules():
        if "alert" in rule:
            url = rule["annotations"]["runbook_url"]
            assert (ROOT / url).is_file(), f"{rule['alert']}: {url} does not exist"
            assert f"`{rule['alert']}`" in index, f"{rule['alert']} is not in docs/runbooks/README.md"
