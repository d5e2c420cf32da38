"""Holes of issue 8 in the governed path, through the API on both backends (each test failed on the main it was
written against):

- rejected and promoted are terminal: ``POST /proposals/{id}/validate`` never revives a rejected proposal and
  never rewrites a promoted one's status;
- ``force`` never overrides a mandatory doctrine, a protected item, an immutable guard or the two-person rule;
- erasure does not reopen segregation of duties: open work of an erased subject is frozen and its votes void.
"""

from __future__ import annotations

from typing import Any

from service_support import Api

P = "/api/v1"
FIN = "https://knhk.dev/ns/finance#"
MFG = "https://knhk.dev/ns/manufacturing#"
COMMENT = "<http://www.w3.org/2000/01/rdf-schema#comment>"
KNHK = "https://knhk.dev/ns/core#"


def propose(api: Api, sector: str, additions: list[list[str]], removals: list[list[str]] | None = None, *,
            author: str = "paul@bank.example") -> str:
    r = api.client.post(f"{P}/proposals", headers=api.token("proposer", subject=author), json={
        "sector": sector, "rationale": "test change", "additions": additions, "removals": removals or []})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def comment(sector_ns: str, local: str, text: str) -> list[list[str]]:
    return [[f"<{sector_ns}{local}>", COMMENT, f'"{text}"']]


def validator(api: Api, who: str, sector: str) -> dict[str, str]:
    return api.token("validator", subject=who, sector=sector)


def status(api: Api, pid: str) -> str:
    r = api.client.get(f"{P}/proposals/{pid}", headers=api.token("observer"))
    return str(r.json()["status"])


def decide(api: Api, pid: str, headers: dict[str, str], decision: str = "approve") -> Any:
    return api.client.post(f"{P}/proposals/{pid}/approvals", json={"decision": decision}, headers=headers)


def test_rejected_is_terminal(api_any: Api) -> None:
    api = api_any
    pid = propose(api, "finance", comment(FIN, "Account", "an account"))
    assert api.client.post(f"{P}/proposals/{pid}/validate", headers=validator(api, "v@x", "finance")).json()[
        "outcome"] == "held"
    assert decide(api, pid, validator(api, "carol@bank.example", "compliance"), "reject").json()["outcome"] == \
        "rejected"
    again = api.client.post(f"{P}/proposals/{pid}/validate", headers=validator(api, "v@x", "finance"))
    assert again.status_code == 409, again.text
    assert "rejected" in again.json()["detail"]
    assert status(api, pid) == "rejected"
    # and two approvals cannot promote it
    for who, sector in (("alice@bank.example", "finance"), ("erin@bank.example", "compliance")):
        assert decide(api, pid, validator(api, who, sector)).status_code == 409
    assert status(api, pid) == "rejected"


def test_promoted_is_terminal(api_any: Api) -> None:
    api = api_any
    pid = propose(api, "manufacturing", comment(MFG, "QualityInspection", "inspections"))
    v = api.client.post(f"{P}/proposals/{pid}/validate", headers=validator(api, "v@x", "manufacturing")).json()
    assert v["outcome"] == "approved"
    snapshot = api.client.get(f"{P}/proposals/{pid}", headers=api.token("observer")).json()["candidate_snapshot_id"]
    moved = api.client.post(f"{P}/snapshots/{snapshot}/promote", json={},
                            headers=api.token("operator", subject="olga@plant.example"))
    assert moved.status_code == 200, moved.text
    assert status(api, pid) == "promoted"
    again = api.client.post(f"{P}/proposals/{pid}/validate", headers=validator(api, "v@x", "manufacturing"))
    assert again.status_code == 409
    assert status(api, pid) == "promoted"


def _force(api: Api, pid: str) -> Any:
    snapshot = api.client.get(f"{P}/proposals/{pid}", headers=api.token("observer")).json()["candidate_snapshot_id"]
    return api.client.post(f"{P}/snapshots/{snapshot}/promote", json={"force": True, "sector": None},
                           headers=api.token("administrator", subject="root@bank.example"))


def test_force_never_overrides_doctrines_immutable_guards_or_two_persons(api_any: Api) -> None:
    api = api_any
    before = api.client.get(f"{P}/snapshots/current?sector=finance", headers=api.token("observer")).json()["id"]
    protected = propose(api, "finance", [], [[f"<{FIN}approval_required>", f"<{KNHK}protected>",
                                             '"true"^^<http://www.w3.org/2001/XMLSchema#boolean>']])
    immutable = propose(api, "finance", [], [[f"<{FIN}FIN-LIMIT-001>", f"<{KNHK}hotPath>",
                                             '"true"^^<http://www.w3.org/2001/XMLSchema#boolean>']])
    held = propose(api, "finance", comment(FIN, "Account", "an account"))
    for pid in (protected, immutable, held):
        api.client.post(f"{P}/proposals/{pid}/validate", headers=validator(api, "v@x", "finance"))
    assert status(api, protected) == "rejected"
    assert status(api, immutable) == "rejected"
    assert status(api, held) == "held"
    for pid in (protected, immutable, held):
        r = _force(api, pid)
        assert r.status_code in (403, 409, 422), (pid, r.text)
    # the held one names the missing people
    assert "FIN-APPROVAL-001" in _force(api, held).json()["detail"]
    now = api.client.get(f"{P}/snapshots/current?sector=finance", headers=api.token("observer")).json()["id"]
    assert now == before
    forced = [e for e in api.runtime.ledger.entries("receipts", kind="snapshot.promoted") if e.outcome == "forced"]
    assert forced == []


def test_erasure_freezes_open_work_and_voids_votes(api_any: Api) -> None:
    api = api_any
    person = "dana@bank.example"
    identity = f"urn:knhk:local#{person}"
    admin = api.token("administrator", subject="dpo@bank.example")
    # dana authored a held proposal, and voted on paul's
    own = propose(api, "finance", comment(FIN, "Account", "dana's"), author=person)
    other = propose(api, "finance", comment(FIN, "Transaction", "paul's"))
    for pid in (own, other):
        api.client.post(f"{P}/proposals/{pid}/validate", headers=validator(api, "v@x", "finance"))
    assert decide(api, other, validator(api, person, "compliance")).json()["outcome"] == "held"
    # a manufacturing change of hers waits, validated, for an operator to promote it
    mfg = propose(api, "manufacturing", comment(MFG, "QualityInspection", "dana's mfg"), author=person)
    assert api.client.post(f"{P}/proposals/{mfg}/validate", headers=validator(api, "v@x", "manufacturing")).json()[
        "outcome"] == "approved"
    pseudonym = api.runtime.subjects.lookup(identity)
    assert api.client.post(f"{P}/subjects/{pseudonym}/erasure", headers=admin).status_code == 200
    # her open work is frozen, with a receipt
    assert status(api, own) == "frozen"
    assert status(api, mfg) == "frozen"
    frozen = api.runtime.ledger.entries("receipts", kind="proposal.frozen")
    assert {e.subject for e in frozen} == {own, mfg}
    # back with a fresh pseudonym she can approve her own work no more ...
    assert decide(api, own, validator(api, person, "compliance")).status_code == 409
    snapshot = api.client.get(f"{P}/proposals/{mfg}", headers=api.token("observer")).json()["candidate_snapshot_id"]
    r = api.client.post(f"{P}/snapshots/{snapshot}/promote", json={},
                        headers=api.token("operator", subject=person))
    assert r.status_code in (403, 409), r.text
    # ... nor vote twice: her old vote is void, the new one counts once
    assert decide(api, other, validator(api, person, "compliance")).json()["outcome"] == "held"
    proposal = api.client.get(f"{P}/proposals/{other}", headers=api.token("observer")).json()
    assert proposal["status"] == "held"
    voided = api.runtime.ledger.entries("receipts", kind="approval.voided")
    assert [e.subject for e in voided] == [other]
    assert decide(api, other, validator(api, "alice@bank.example", "finance")).json()["outcome"] == "promoted"


# -- change classes through the API ---------------------------------------------------------------------------
def test_change_classes_through_the_api(api_any: Api) -> None:
    api = api_any
    hc = "https://knhk.dev/ns/healthcare#"
    pid = propose(api, "healthcare", comment(hc, "Patient", "a patient"), author="hal@hospital.example")
    shown = api.client.get(f"{P}/proposals/{pid}", headers=api.token("observer")).json()
    assert (shown["change_class"], shown["class_reason"].split(":")[0]) == ("standard", "standard")
    v = api.client.post(f"{P}/proposals/{pid}/validate", headers=validator(api, "v@h", "healthcare")).json()
    assert (v["outcome"], v["change_class"]) == ("held", "standard")
    # a proposer may raise a class, never lower it
    raised = api.client.post(f"{P}/proposals", headers=api.token("proposer", subject="hal@hospital.example"), json={
        "sector": "healthcare", "rationale": "r", "additions": comment(hc, "MedicalRecord", "rec"),
        "change_class": "major"}).json()
    assert raised["change_class"] == "major"
    bad = api.client.post(f"{P}/proposals", headers=api.token("proposer"), json={
        "sector": "healthcare", "rationale": "r", "additions": comment(hc, "MedicalRecord", "x"),
        "change_class": "emergency"})
    assert bad.status_code == 422
    # the emergency path: an operator with MFA, a justification
    body = {"justification": "ward opening tonight"}
    no_mfa = api.token("operator", subject="olga@hospital.example", sector="healthcare", mfa=False)
    assert api.client.post(f"{P}/proposals/{pid}/emergency", json=body, headers=no_mfa).status_code == 403
    validator_only = validator(api, "vera@hospital.example", "healthcare")
    assert api.client.post(f"{P}/proposals/{pid}/emergency", json=body, headers=validator_only).status_code == 403
    olga = api.token("operator", subject="olga@hospital.example", sector="healthcare")
    done = api.client.post(f"{P}/proposals/{pid}/emergency", json=body, headers=olga)
    assert done.status_code == 200, done.text
    assert (done.json()["outcome"], done.json()["change_class"]) == ("promoted", "emergency")
    assert api.client.post(f"{P}/proposals/{raised['id']}/emergency", json=body, headers=olga).status_code == 422
    overdue = api.client.get(f"{P}/proposals?overdue=true", headers=api.token("observer")).json()["items"]
    assert overdue == []
    reviewed = api.client.post(f"{P}/proposals/{pid}/reviews", json={"verdict": "accepted"},
                               headers=validator_only)
    assert reviewed.status_code == 201, reviewed.text
    again = api.client.post(f"{P}/proposals/{pid}/reviews", json={"verdict": "accepted"},
                            headers=validator(api, "vic@hospital.example", "healthcare"))
    assert again.status_code == 409
