"""Offline proof bundles prove one entry to anyone, with no database, and nothing in them can be altered.

Proves: ``knhk receipts prove SEQ [--log L]`` prints exactly the fields ``log, entry, leaf_index, tree_size,
inclusion_proof, checkpoint, public_key`` (entry = every payload field + id + sig), on both backends;
``knhk receipts verify-bundle FILE`` (or ``-``) exits 0 with an unreachable database configured; an outsider
with only ``rfc8785``, ``hashlib`` and ``cryptography`` can check a bundle too; and, as a Hypothesis
property, altering any field of a bundle (any entry field, any proof hash, leaf_index, tree_size, any
character of the checkpoint, the public key; or dropping/adding proof hashes or fields) makes
verification fail — ``verify-bundle`` exits 1.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import sys
import tempfile
from collections.abc import Callable
from copy import deepcopy
from pathlib import Path
from typing import Any, Literal

import orjson
import pytest
import rfc8785
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ledger_support import NOBODY_DB, open_runtime, run_cli, sample_drafts

from knhk.cli.main import main as knhk_main
from knhk.errors import IntegrityError
from knhk.proof.bundle import BUNDLE_FIELDS, verify_bundle
from knhk.proof.entry import PAYLOAD_FIELDS


def outsider_check(bundle: dict[str, Any]) -> None:
    """Check a bundle without any KNHK code: RFC 8785, SHA-256, Ed25519 (OpenSSL) and RFC 9162 §2.1.3.2."""
    entry = dict(bundle["entry"])
    entry_id, sig = entry.pop("id"), bytes.fromhex(entry.pop("sig"))
    payload = rfc8785.dumps(entry)
    assert hashlib.sha256(payload).hexdigest() == entry_id
    public = Ed25519PublicKey.from_public_bytes(bytes.fromhex(bundle["public_key"]))
    public.verify(sig, payload)
    body, _, line = bundle["checkpoint"].partition("\n\n")
    origin, size, root_b64 = body.split("\n")
    raw = base64.b64decode(line.rstrip("\n").split(" ")[2])
    public.verify(raw[4:], (body + "\n").encode())
    assert int(size) == bundle["tree_size"]
    fn, sn = bundle["leaf_index"], bundle["tree_size"] - 1
    r = hashlib.sha256(b"\x00" + payload).digest()
    for p in (bytes.fromhex(h) for h in bundle["inclusion_proof"]):
        assert sn != 0
        if fn & 1 or fn == sn:
            r = hashlib.sha256(b"\x01" + p + r).digest()
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = hashlib.sha256(b"\x01" + r + p).digest()
        fn >>= 1
        sn >>= 1
    assert sn == 0
    assert r == base64.b64decode(root_b64)
    assert origin.endswith("knhk/" + bundle["log"])


def test_cli_prove_and_offline_verify(tmp_path: Path, database_url: str) -> None:
    data = tmp_path / "data"
    rt = open_runtime(database_url, data, checkpoint_every_entries=16)
    try:
        rt.ledger.append_many(sample_drafts(40))
        rt.ledger.append_many(sample_drafts(9, log="audit"))
    finally:
        rt.close()
    bundles = {}
    for seq, log in ((0, "receipts"), (23, "receipts"), (39, "receipts"), (8, "audit")):
        done = run_cli(["receipts", "prove", str(seq), "--log", log], data, database_url)
        assert done.returncode == 0, done.stderr
        bundles[(seq, log)] = bundle = orjson.loads(done.stdout)
        assert list(bundle) == list(BUNDLE_FIELDS)
        assert set(bundle["entry"]) == set(PAYLOAD_FIELDS) | {"id", "sig"}
        assert bundle["log"] == log
        assert bundle["leaf_index"] == bundle["entry"]["seq"] == seq
        assert bundle["tree_size"] > seq
        outsider_check(bundle)
    path = tmp_path / "bundle.json"
    path.write_text(orjson.dumps(bundles[(23, "receipts")]).decode())
    offline = run_cli(["receipts", "verify-bundle", str(path)], tmp_path / "nowhere", NOBODY_DB)
    assert offline.returncode == 0, offline.stderr
    assert "VALID entry 23 of log receipts" in offline.stdout
    from_stdin = run_cli(["receipts", "verify-bundle", "-", "--json"], tmp_path / "nowhere", NOBODY_DB,
                         stdin=orjson.dumps(bundles[(8, "audit")]).decode())
    assert from_stdin.returncode == 0, from_stdin.stderr
    assert orjson.loads(from_stdin.stdout)["seq"] == 8
    assert not (tmp_path / "nowhere").exists()  # verify-bundle made no data directory either

    missing = run_cli(["receipts", "prove", "4000"], data, database_url)
    assert missing.returncode == 2
    assert missing.stderr.strip() == "error: log receipts has no entry 4000"


# -- the property ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    base = tmp_path_factory.mktemp("bundles")
    rt = open_runtime(f"sqlite:///{base / 'knhk.db'}", base / "data", checkpoint_every_entries=1000)
    try:
        rt.ledger.append_many(sample_drafts(77))
        rt.ledger.checkpoint("receipts")
        out = [orjson.loads(orjson.dumps(rt.ledger.prove("receipts", seq))) for seq in (0, 1, 36, 64, 76)]
    finally:
        rt.close()
    for bundle in out:
        verify_bundle(bundle)
        outsider_check(bundle)
    return out


def _differs(a: Any, b: Any) -> bool:
    return json.dumps(a, sort_keys=True) != json.dumps(b, sort_keys=True)


_hexchars = "0123456789abcdefABCDEF "
NO_SURROGATES: tuple[Literal["Cs"]] = ("Cs",)


@st.composite
def other_value(draw: st.DrawFn, value: Any) -> Any:
    """A JSON value that is not ``value``: a small edit of the same kind, or something else entirely."""
    new: Any
    if draw(st.integers(0, 3)) == 0:
        new = draw(st.one_of(st.none(), st.booleans(), st.integers(-3, 10**6), st.text(max_size=5),
                             st.lists(st.integers(), max_size=2)))
    elif isinstance(value, bool) or value is None:
        new = draw(st.sampled_from([True, False, None, 0, 1, ""]))
    elif isinstance(value, int):
        new = value + draw(st.integers(-5, 5))
    elif isinstance(value, str) and value:
        i = draw(st.integers(0, len(value) - 1))
        how = draw(st.sampled_from(["replace", "delete", "insert", "case"]))
        if how == "case":
            new = value[:i] + value[i].swapcase() + value[i + 1:]
        elif how == "delete":
            new = value[:i] + value[i + 1:]
        else:
            ch = draw(st.sampled_from(_hexchars) | st.characters(exclude_categories=NO_SURROGATES))
            new = value[:i] + ch + value[i + (how == "replace"):]
    elif isinstance(value, list):
        new = [*value, draw(st.integers())] if not value or draw(st.booleans()) else value[:-1]
    elif isinstance(value, dict):
        new = {**value, draw(st.text(min_size=1, max_size=3)): draw(st.integers())}
    else:
        new = draw(st.text(max_size=3))
    return new


def _alter(draw: Callable[..., Any], bundle: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    changed = deepcopy(bundle)
    where = draw(st.sampled_from(["entry", "inclusion_proof", "leaf_index", "tree_size", "checkpoint",
                                  "public_key", "log", "drop"]))
    if where == "entry":
        name = draw(st.sampled_from(sorted(changed["entry"])))
        changed["entry"][name] = draw(other_value(changed["entry"][name]))
        where = f"entry.{name}"
    elif where == "inclusion_proof" and changed["inclusion_proof"] and draw(st.booleans()):
        i = draw(st.integers(0, len(changed["inclusion_proof"]) - 1))
        changed["inclusion_proof"][i] = draw(other_value(changed["inclusion_proof"][i]))
        where = f"inclusion_proof[{i}]"
    elif where == "drop":
        name = draw(st.sampled_from([*BUNDLE_FIELDS, "entry.id", "entry.sig", "entry.ts_us"]))
        if name.startswith("entry."):
            del changed["entry"][name[6:]]
        else:
            del changed[name]
        where = f"drop {name}"
    else:
        changed[where] = draw(other_value(changed[where]))
    return where, changed


def _cli_exit_code(bundle: dict[str, Any]) -> tuple[int, str]:
    """Run ``knhk receipts verify-bundle`` in this process (the very code the installed command runs)."""
    with tempfile.NamedTemporaryFile("wb", suffix=".json", delete=False) as handle:
        handle.write(json.dumps(bundle).encode())  # json: the alterations may hold integers beyond 64 bits
    argv, out, err = sys.argv, sys.stdout, sys.stderr
    sys.argv = ["knhk", "receipts", "verify-bundle", handle.name]
    capture_err = tempfile.TemporaryFile("w+")  # noqa: SIM115
    sys.stdout, sys.stderr = open(os.devnull, "w"), capture_err  # noqa: SIM115
    try:
        knhk_main()
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    finally:
        sys.stdout.close()
        sys.argv, sys.stdout, sys.stderr = argv, out, err
        os.unlink(handle.name)
    capture_err.seek(0)
    return code, capture_err.read()


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_altering_any_field_of_a_bundle_makes_it_fail(bundles: list[dict[str, Any]], data: st.DataObject) -> None:
    bundle = data.draw(st.sampled_from(bundles), label="bundle")
    where, changed = _alter(data.draw, bundle)
    if not _differs(changed, bundle):
        return
    with pytest.raises(IntegrityError):
        verify_bundle(changed)
    code, err = _cli_exit_code(changed)
    assert code == 1, (where, err)
    assert err.startswith("error: "), err
    assert len(err.strip().splitlines()) == 1


def test_the_unaltered_bundles_pass_the_same_cli_path(bundles: list[dict[str, Any]]) -> None:
    for bundle in bundles:
        assert _cli_exit_code(bundle) == (0, "")
