"""Guard relaxations on the command line (SPEC §7, §13) as an installation that trusts an identity provider
runs them: every ``knhk guards`` command acts as the ``--token``'s subject, authorized like the API; a typed
``--approver`` is refused (exit 2); the author cannot approve their own request; the quorum grants the window;
revoke ends it; an immutable guard is refused; ``list`` shows the outcome; every transition is a receipt."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import orjson

from knhk.app.access import LocalAccess
from knhk.app.application import Application
from knhk.identity.local import LocalIssuer

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "ledger"))

from ledger_support import make_settings, run_cli, run_cli_many


def test_guards_commands_act_as_the_token_subject(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'knhk.db'}"
    data = tmp_path / "data"
    idp = LocalIssuer.from_settings(make_settings(url, tmp_path / "idp"))
    idp.key()
    issuers = [{"issuer": "urn:knhk:local", "audience": "urn:knhk:api", "roles_claim": "roles",
                "group_roles": {r: [r] for r in ("validator", "operator", "administrator", "observer")},
                "jwks_file": str(idp.jwks_file), "algorithms": ["EdDSA"]}]
    env = {"KNHK_OIDC_ISSUERS": orjson.dumps(issuers).decode()}
    admin = idp.mint(["administrator"], subject="ann@plant.example", mfa=True).token
    validator = idp.mint(["validator"], subject="bob@plant.example", sector="logistics").token
    operator = idp.mint(["operator"], subject="otto@plant.example", mfa=True).token

    def cli(*args: str) -> tuple[int, Any, str]:
        done = run_cli(list(args), data, url, env=env)
        out = orjson.loads(done.stdout) if done.returncode == 0 and "--json" in args else done.stdout
        assert "Traceback" not in done.stderr
        return done.returncode, out, done.stderr

    code, r, err = cli("--token", admin, "guards", "relax", "LOG-WEIGHT-001", "--sector", "logistics", "--for", "2h",
                       "--reason", "oversize crane shipment", "--json")
    assert code == 0, err
    assert (r["state"], r["quorum"], r["min_review_s"], r["criticality"]) == ("pending", 1, 3600, "medium")
    rid = r["id"]

    typed, own, immutable = run_cli_many([  # independent refusals, run at once
        ["guards", "approve", rid, "--approver", "carol@plant.example", "--approver-role", "validator"],
        ["--token", admin, "guards", "approve", rid],
        ["--token", admin, "guards", "relax", "FIN-LIMIT-001", "--sector", "finance", "--for", "1h", "--reason",
         "year end"]], data, url, env=env)
    assert typed.returncode == 2, typed.stderr
    assert "typed identities are refused" in typed.stderr
    assert own.returncode == 1, own.stderr
    assert "author" in own.stderr
    assert immutable.returncode == 1, immutable.stderr
    assert "immutable" in immutable.stderr
    assert all("Traceback" not in d.stderr for d in (typed, own, immutable))
    code, r, err = cli("--token", validator, "guards", "approve", rid, "--comment", "checked the crane", "--json")
    assert code == 0, err
    assert r["status"] == "granted"
    assert r["state"] == "scheduled"  # the 1 h minimum review of a medium guard runs from the request
    assert r["approvals"] == 1
    assert r["ends_us"] - r["starts_us"] == 2 * 3600 * 1_000_000
    code, r, err = cli("--token", operator, "guards", "revoke", rid, "--reason", "crane cancelled", "--json")
    assert code == 0, err
    assert r["state"] == "revoked"

    code, rows, err = cli("--token", validator, "guards", "list", "--sector", "logistics", "--json")
    assert code == 0, err
    assert [(x["id"], x["state"]) for x in rows] == [(rid, "revoked")]

    with Application.open(make_settings(url, data, oidc_issuers=issuers), access=LocalAccess()) as app:
        ledger = app.runtime.ledger
        kinds = [e.kind for e in ledger.entries("receipts", limit=10_000) if e.subject == rid]
        assert kinds == ["relaxation.requested", "relaxation.refused", "relaxation.decided", "relaxation.granted",
                         "relaxation.revoked"]  # refused: the author's own approval
        requested = next(e for e in ledger.entries("receipts", kind="relaxation.requested", limit=10))
        ann = app.runtime.subjects.lookup("urn:knhk:local#ann@plant.example")
        assert ann is not None
        assert ann in orjson.dumps(requested.to_json()).decode()  # the token's subject, as a pseudonym
        refused = ledger.entries("receipts", kind="relaxation.refused", limit=10)
        assert sorted(e.subject for e in refused) == sorted([rid, "FIN-LIMIT-001"])
