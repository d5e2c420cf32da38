"""The CLI acts as an authenticated subject (issue 8): ``--token`` / ``KNHK_TOKEN`` from the configured issuer,
authorized like the API; typed identities (``--approver …``) only in dev mode (no KNHK_OIDC_ISSUERS); a forced
promotion needs an administrator with MFA, an emergency one an operator with MFA — on both backends. Each check
failed on the main it was written against (the typed approver was recorded; ``--force`` needed nobody)."""

from __future__ import annotations

import sys
from pathlib import Path

import orjson

from knhk.app.access import SYSTEM, LocalAccess
from knhk.app.application import Application
from knhk.identity.local import LocalIssuer

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "ledger"))

from ledger_support import make_settings, run_cli

MFG = "https://knhk.dev/ns/manufacturing#"
FIN = "https://knhk.dev/ns/finance#"
COMMENT = "<http://www.w3.org/2000/01/rdf-schema#comment>"


def _propose(data: Path, url: str, sector: str, ns: str, local: str, **settings: object) -> tuple[str, str]:
    """A person's proposal, made in-process (the CLI has no create command); (id, candidate snapshot)."""
    with Application.open(make_settings(url, data, **settings), access=LocalAccess()) as app:
        author = SYSTEM.__class__(identity="paul@example.org", issuer="urn:knhk:terminal", subject="paul",
                                  roles=frozenset())
        made = app.create_proposal(author, sector, "document it", additions=[[f"<{ns}{local}>", COMMENT, '"doc"']],
                                   removals=[])
        app.validate_proposal(SYSTEM, made.proposal.id)
        return made.proposal.id, made.proposal.candidate_id


def test_dev_mode_tokens_typed_identities_and_force(tmp_path: Path, database_url: str) -> None:
    data = tmp_path / "data"
    pid, snapshot = _propose(data, database_url, "manufacturing", MFG, "QualityInspection")
    issuer = LocalIssuer.from_settings(make_settings(database_url, data))

    def cli(*args: str) -> tuple[int, str, str]:
        done = run_cli(list(args), data, database_url)
        return done.returncode, done.stdout, done.stderr

    validator = issuer.mint(["validator"], subject="carol@example.org").token
    code, out, err = cli("--token", validator, "proposals", "approve", pid, "--approver", "x@example.org")
    assert code == 2, (out, err)
    assert "drop the typed identity" in err
    # forced: not without a token, not with a token lacking MFA, yes for an administrator with MFA
    code, _, err = cli("sigma", "promote", snapshot, "--sector", "manufacturing", "--force")
    assert code == 1, err
    assert "administrator" in err
    no_mfa = issuer.mint(["administrator"], subject="root@example.org").token
    code, _, err = cli("--token", no_mfa, "sigma", "promote", snapshot, "--sector", "manufacturing", "--force")
    assert code == 1, err
    admin = issuer.mint(["administrator"], subject="root@example.org", mfa=True).token
    code, out, err = cli("--token", admin, "sigma", "promote", snapshot, "--sector", "manufacturing", "--force",
                         "--json")
    assert code == 0, err
    assert orjson.loads(out)["forced"] is True
    with Application.open(make_settings(database_url, data), access=LocalAccess()) as app:
        audit = [e for e in app.runtime.audit.events(limit=1000) if e.action == "snapshot.promoted"]
        assert audit[-1].outcome == "success"
        root = app.runtime.subjects.lookup("urn:knhk:local#root@example.org")
        assert audit[-1].actor == root  # the token's subject, not a typed name


def test_outside_dev_mode_typed_identities_are_refused(tmp_path: Path, database_url: str) -> None:
    data = tmp_path / "data"
    # the configured identity provider: an issuer with its own key (its JWK Set as a file)
    idp = LocalIssuer.from_settings(make_settings(database_url, tmp_path / "idp"))
    idp.key()
    issuers = [{"issuer": "urn:knhk:local", "audience": "urn:knhk:api", "roles_claim": "roles",
                "group_roles": {r: [r] for r in ("validator", "operator", "administrator", "observer")},
                "jwks_file": str(idp.jwks_file), "algorithms": ["EdDSA"]}]
    env = {"KNHK_OIDC_ISSUERS": orjson.dumps(issuers).decode()}
    pid, _ = _propose(data, database_url, "finance", FIN, "Account", oidc_issuers=issuers)
    local = LocalIssuer.from_settings(make_settings(database_url, data))  # the installation's own dev issuer

    def cli(*args: str) -> tuple[int, str, str]:
        done = run_cli(list(args), data, database_url, env=env)
        return done.returncode, done.stdout, done.stderr

    code, _, err = cli("proposals", "approve", pid, "--approver", "carol@example.org", "--approver-sector",
                       "compliance", "--approver-role", "validator")
    assert code == 2, err
    assert "typed identities are refused" in err
    code, _, err = cli("proposals", "approve", pid)
    assert code == 1, err
    assert "--token" in err
    dev_token = local.mint(["validator"], subject="carol@example.org", sector="compliance").token
    code, _, err = cli("--token", dev_token, "proposals", "approve", pid)
    assert code == 1, err  # the local dev issuer is not trusted outside dev mode: 401
    carol = idp.mint(["validator"], subject="carol@example.org", sector="compliance").token
    code, out, err = cli("--token", carol, "proposals", "approve", pid, "--json")
    assert code == 0, err
    assert orjson.loads(out)["outcome"] == "held"
    code, _, err = cli("--token", carol, "proposals", "approve", pid)
    assert code == 1  # the same person twice is not a quorum
    observer = idp.mint(["observer"], subject="olly@example.org").token
    code, _, err = cli("--token", observer, "proposals", "approve", pid)
    assert code == 1
    assert "missing permission proposals:approve" in err


def test_emergency_and_overdue_reviews_on_the_cli(tmp_path: Path, database_url: str) -> None:
    data = tmp_path / "data"
    hc = "https://knhk.dev/ns/healthcare#"
    env = {"KNHK_CHANGE_CLASSES": orjson.dumps({"healthcare": {"emergency_review_s": 0}}).decode()}
    pid, _ = _propose(data, database_url, "healthcare", hc, "Patient", change_classes={
        "healthcare": {"emergency_review_s": 0}})
    issuer = LocalIssuer.from_settings(make_settings(database_url, data))

    def cli(*args: str) -> tuple[int, str, str]:
        done = run_cli(list(args), data, database_url, env=env)
        return done.returncode, done.stdout, done.stderr

    code, _, err = cli("proposals", "emergency", pid, "--justification", "tonight")
    assert code == 1, err  # not without an operator's token with MFA
    operator = issuer.mint(["operator"], subject="olga@hospital.example", sector="healthcare", mfa=True).token
    code, out, err = cli("--token", operator, "proposals", "emergency", pid, "--justification", "tonight", "--json")
    assert code == 0, err
    assert (orjson.loads(out)["outcome"], orjson.loads(out)["change_class"]) == ("promoted", "emergency")
    code, out, err = cli("proposals", "show", pid)
    assert "class emergency: emergency: tonight (was standard)" in out, out
    code, out, _ = cli("cycle", "--sector", "healthcare", "--json")
    assert code in (0, 1)
    code, out, err = cli("proposals", "list", "--overdue", "--json")
    assert [p["id"] for p in orjson.loads(out)] == [pid], err
    alerts = [e for e in orjson.loads(cli("receipts", "list", "--kind", "alert.raised", "--json")[1])]
    assert any((a.get("data") or {}).get("source") == "review" for a in alerts), alerts
    vera = issuer.mint(["validator"], subject="vera@hospital.example", sector="healthcare").token
    code, _, err = cli("--token", vera, "proposals", "review", pid, "--verdict", "accepted")
    assert code == 0, err
    code, out, _ = cli("proposals", "list", "--overdue", "--json")
    assert orjson.loads(out) == []
