"""``knhk demo``: the main job, run on a fresh embedded store.

Until the closed loop lands, the demo is a walkthrough of the receipt ledger: it generates keys, records
decisions, issues a checkpoint, proves one entry, verifies the proof offline, rotates the key, verifies the
whole ledger and says what each step proved.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from knhk.cli.output import print_json, say
from knhk.config import Settings
from knhk.ledger.bundle import verify_bundle
from knhk.ledger.entry import EntryDraft
from knhk.runtime import Runtime


def run_demo(data_dir: Path | None, *, as_json: bool = False) -> int:
    if data_dir is None:
        data_dir = Path(tempfile.mkdtemp(prefix="knhk-demo-"))
    data_dir.mkdir(parents=True, exist_ok=True)
    settings = Settings(data_dir=data_dir, database_url=f"sqlite:///{data_dir / 'knhk.db'}")
    steps: list[dict[str, Any]] = []

    def step(title: str, proved: str, **facts: Any) -> None:
        steps.append({"step": title, "proved": proved, **facts})
        if not as_json:
            say(f"[bold]{len(steps)}. {title}[/bold]\n   {proved}")
            for key, value in facts.items():
                say(f"   {key}: {value}")

    if not as_json:
        say(f"KNHK ledger walkthrough in {data_dir}\n")
    with Runtime.open(settings) as rt:
        key_id = rt.keyring.active_key_id()
        step("Generated the ledger signing key", "Ed25519 key, private half stored 0600, never printed.",
             key_id=key_id)
        drafts = [EntryDraft(log="receipts", kind="demo.decision", sector="finance", subject=f"decision-{i}",
                             outcome="approved" if i % 3 else "rejected", data={"n": i}) for i in range(200)]
        entries = rt.ledger.append_many(drafts)
        step("Recorded 200 decisions", "Each entry is canonical JSON, signed, chained to its parent and a leaf "
             "of an RFC 9162 Merkle tree, durable before acknowledgement.", last_seq=entries[-1].seq)
        rt.audit.record("demo-operator@example.org", "demo.ran", "ledger/receipts", reason="walkthrough")
        cp = rt.ledger.checkpoint("receipts")
        step("Issued a checkpoint", "A signed C2SP note commits to the tree of all 200 entries.",
             tree_size=cp.tree_size, root_hash=cp.root_hash.hex())
        bundle = rt.ledger.prove("receipts", 42)
        bundle_path = data_dir / "bundle-42.json"
        bundle_path.write_text(__import__("orjson").dumps(bundle, option=1).decode())
        result = verify_bundle(bundle)
        step("Proved entry 42 offline", "The bundle alone (no database) shows the entry is authentic and "
             "included in the checkpointed tree.", bundle=str(bundle_path), checks=len(result["proved"]))
        old, new = rt.ledger.rotate_key()
        rt.audit.record("demo-operator@example.org", "key.rotated", f"key/{new.key_id}",
                        metadata={"previous_key_id": old or ""})
        rt.ledger.append_many(drafts[:10])
        step("Rotated the signing key", "New entries use the new key; old entries still verify with theirs.",
             previous_key_id=old, key_id=new.key_id)
        receipts = rt.ledger.verify("receipts")
        audit = rt.ledger.verify("audit")
        step("Verified the whole ledger", "Every id, signature, parent link, timestamp, Merkle node and "
             "checkpoint was recomputed from storage.", receipts_ok=receipts.ok, audit_ok=audit.ok,
             root_hash=receipts.root_hash)
    ok = receipts.ok and audit.ok
    if as_json:
        print_json({"data_dir": str(data_dir), "steps": steps,
                    "ledger": {**receipts.to_json(), "audit": audit.to_json()}})
    else:
        say(f"\nLedger verdict: {'VERIFIED' if ok else 'FAILED'}; receipts root {receipts.root_hash}")
    return 0 if ok else 1
