"""The ledger's Merkle tree is RFC 9162 / RFC 6962, and its proofs are right, from memory and from storage.

Proves: the published RFC 6962 test vectors (the certificate-transparency reference tree of 8 leaves: roots
for sizes 0–8, inclusion and consistency proofs); agreement with an independent implementation (``pymerkle``)
on every root for sizes 1–1,000 and at 65,537 and 100,000 leaves, and on inclusion proofs; consistency proofs
for every pair 1 ≤ m ≤ n ≤ 64 equal a textbook transcription of RFC 6962's SUBPROOF, verify, and fail when any
hash, root or size is altered; proofs served from the database equal the in-memory ones on both backends and
read O(log n) stored nodes (no rebuild of the tree).
"""

from __future__ import annotations

import hashlib
import math
import random
from typing import Any

import orjson
import pytest
from ledger_support import run_cli
from pymerkle import InmemoryTree

from knhk.app.runtime import Runtime
from knhk.errors import IntegrityError, InvalidInputError, NotFoundError, VerificationError
from knhk.ledger import store as ledger_store
from knhk.proof import merkle
from knhk.proof.entry import EntryDraft
from knhk.proof.merkle import (
    EMPTY_ROOT,
    Frontier,
    consistency_ranges,
    inclusion_ranges,
    leaf_hash,
    range_hash,
)
from knhk.proof.merkle import proves_consistency as verify_consistency  # the bool predicates of RFC 9162
from knhk.proof.merkle import proves_inclusion as verify_inclusion

# RFC 6962 reference data (certificate-transparency merkle_tree_test): leaves, roots of sizes 0..8,
# inclusion proofs (0-based leaf index, tree size) and consistency proofs (first size, second size).
CT_LEAVES = ["", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f"]
CT_ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
H_96A2 = "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"
H_5F08 = "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"
H_6B47 = "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"
H_BC1A = "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"
H_CA85 = "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"
H_0EBC = "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"
H_B086 = "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f"
CT_INCLUSION = [
    (0, 1, []),
    (0, 8, [H_96A2, H_5F08, H_6B47]),
    (5, 8, [H_BC1A, H_CA85, CT_ROOTS[4]]),
    (2, 3, [CT_ROOTS[2]]),
    (1, 5, [CT_ROOTS[1], H_5F08, H_BC1A]),
]
CT_CONSISTENCY = [
    (1, 1, []),
    (1, 8, [H_96A2, H_5F08, H_6B47]),
    (6, 8, [H_0EBC, H_CA85, CT_ROOTS[4]]),
    (2, 5, [H_5F08, H_BC1A]),
    (6, 7, [H_0EBC, H_B086, CT_ROOTS[4]]),
]


# -- an independent, textbook transcription of RFC 6962 §2.1 (hashlib only, no KNHK code) -----------------
def _sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _k(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def ref_mth(leaves: list[bytes]) -> bytes:
    if not leaves:
        return _sha(b"")
    if len(leaves) == 1:
        return _sha(b"\x00" + leaves[0])
    k = _k(len(leaves))
    return _sha(b"\x01" + ref_mth(leaves[:k]) + ref_mth(leaves[k:]))


def ref_path(m: int, leaves: list[bytes]) -> list[bytes]:
    if len(leaves) <= 1:
        return []
    k = _k(len(leaves))
    if m < k:
        return [*ref_path(m, leaves[:k]), ref_mth(leaves[k:])]
    return [*ref_path(m - k, leaves[k:]), ref_mth(leaves[:k])]


def ref_subproof(m: int, leaves: list[bytes], whole: bool) -> list[bytes]:
    n = len(leaves)
    if m == n:
        return [] if whole else [ref_mth(leaves)]
    k = _k(n)
    if m <= k:
        return [*ref_subproof(m, leaves[:k], whole), ref_mth(leaves[k:])]
    return [*ref_subproof(m - k, leaves[k:], False), ref_mth(leaves[:k])]


# -- an in-memory tree built with the ledger's own append path (Frontier) -----------------------------------
class MemoryTree:
    def __init__(self, payloads: list[bytes]) -> None:
        self.frontier = Frontier()
        self.nodes: dict[tuple[int, int], bytes] = {}
        self.roots = [EMPTY_ROOT]
        for payload in payloads:
            for level, idx, h in self.frontier.append(leaf_hash(payload)):
                self.nodes[(level, idx)] = h
            self.roots.append(self.frontier.root())

    def inclusion(self, index: int, size: int) -> list[bytes]:
        return [range_hash(a, b, self.nodes) for a, b in inclusion_ranges(index, size)]

    def consistency(self, first: int, second: int) -> list[bytes]:
        return [range_hash(a, b, self.nodes) for a, b in consistency_ranges(first, second)]


CT_TREE = MemoryTree([bytes.fromhex(x) for x in CT_LEAVES])


def test_rfc6962_roots() -> None:
    assert [r.hex() for r in CT_TREE.roots] == CT_ROOTS
    assert EMPTY_ROOT.hex() == CT_ROOTS[0]
    for n in range(9):
        assert merkle.mth([leaf_hash(bytes.fromhex(x)) for x in CT_LEAVES[:n]]).hex() == CT_ROOTS[n]


@pytest.mark.parametrize(("index", "size", "proof"), CT_INCLUSION)
def test_rfc6962_inclusion_proofs(index: int, size: int, proof: list[str]) -> None:
    assert [h.hex() for h in CT_TREE.inclusion(index, size)] == proof
    leaf = leaf_hash(bytes.fromhex(CT_LEAVES[index]))
    root = bytes.fromhex(CT_ROOTS[size])
    assert verify_inclusion(leaf, index, size, [bytes.fromhex(h) for h in proof], root)
    assert not verify_inclusion(leaf, index, size, [bytes.fromhex(h) for h in proof], bytes.fromhex(CT_ROOTS[8 - size]))


def test_verify_functions_raise_the_one_verification_error() -> None:
    """``verify_*`` return nothing on success and raise VerificationError (an IntegrityError: exit 1) naming
    the failed proof; the ``proves_*`` predicates answer the same question with a bool."""
    index, size, proof = CT_INCLUSION[-1]
    leaf, root = leaf_hash(bytes.fromhex(CT_LEAVES[index])), bytes.fromhex(CT_ROOTS[size])
    hashes = [bytes.fromhex(h) for h in proof]
    assert merkle.verify_inclusion(leaf, index, size, hashes, root) is None
    with pytest.raises(VerificationError, match="inclusion proof does not show leaf"):
        merkle.verify_inclusion(leaf, index, size, hashes, bytes(32))
    first, second, cproof = CT_CONSISTENCY[-1]
    r1, r2 = bytes.fromhex(CT_ROOTS[first]), bytes.fromhex(CT_ROOTS[second])
    raw = [bytes.fromhex(h) for h in cproof]
    assert merkle.verify_consistency(first, second, r1, r2, raw) is None
    with pytest.raises(VerificationError, match="consistency proof"):
        merkle.verify_consistency(first, second, r2, r1, raw)
    assert issubclass(VerificationError, IntegrityError)
    with pytest.raises(InvalidInputError):  # asking for a proof that cannot exist is a bad request, not a failure
        merkle.inclusion_ranges(5, 5)


@pytest.mark.parametrize(("first", "second", "proof"), CT_CONSISTENCY)
def test_rfc6962_consistency_proofs(first: int, second: int, proof: list[str]) -> None:
    assert [h.hex() for h in CT_TREE.consistency(first, second)] == proof
    raw = [bytes.fromhex(h) for h in proof]
    r1, r2 = bytes.fromhex(CT_ROOTS[first]), bytes.fromhex(CT_ROOTS[second])
    assert verify_consistency(first, second, r1, r2, raw)
    if first != second:
        assert not verify_consistency(first, second, r2, r1, raw)


# -- pymerkle as an oracle ----------------------------------------------------------------------------------
def _payloads(n: int, salt: str = "") -> list[bytes]:
    return [f"{salt}entry {i} ✓".encode() for i in range(n)]


@pytest.fixture(scope="module")
def tree_1000() -> tuple[list[bytes], MemoryTree, InmemoryTree]:
    payloads = _payloads(1000)
    oracle = InmemoryTree(algorithm="sha256")
    for p in payloads:
        oracle.append_entry(p)
    return payloads, MemoryTree(payloads), oracle


def test_roots_equal_pymerkle_for_every_size_up_to_1000(tree_1000: Any) -> None:
    _, ours, oracle = tree_1000
    for n in range(1, 1001):
        assert ours.roots[n] == oracle.get_root(n), n


@pytest.mark.parametrize("size", [65_537, 100_000])
def test_large_roots_equal_pymerkle(size: int) -> None:
    payloads = _payloads(size, "big")
    oracle = InmemoryTree(algorithm="sha256")
    frontier = Frontier()
    for p in payloads:
        oracle.append_entry(p)
        frontier.append(leaf_hash(p))
    assert frontier.root() == oracle.get_root(size)
    assert frontier.root() == merkle.mth([leaf_hash(p) for p in payloads])


def test_inclusion_proofs_equal_pymerkle_and_rfc_path(tree_1000: Any) -> None:
    payloads, ours, oracle = tree_1000
    rng = random.Random(6962)
    pairs = [(i, n) for n in range(1, 65) for i in range(n)]
    pairs += [(rng.randrange(n), n) for n in (rng.randrange(65, 1001) for _ in range(300))]
    for i, n in pairs:
        proof = ours.inclusion(i, n)
        # pymerkle's path starts with the leaf itself; the rest is the RFC 9162 audit path.
        assert proof == oracle.prove_inclusion(i + 1, n).path[1:], (i, n)
        assert proof == ref_path(i, payloads[:n]), (i, n)
        assert verify_inclusion(leaf_hash(payloads[i]), i, n, proof, ours.roots[n])


def test_inclusion_verification_fails_on_any_alteration() -> None:
    payloads = _payloads(64)
    tree = MemoryTree(payloads)
    for n in range(1, 65):
        root = tree.roots[n]
        for i in range(n):
            leaf = leaf_hash(payloads[i])
            proof = tree.inclusion(i, n)
            assert verify_inclusion(leaf, i, n, proof, root)
            for j in range(len(proof)):
                bad = list(proof)
                bad[j] = bytes([bad[j][0] ^ 1]) + bad[j][1:]
                assert not verify_inclusion(leaf, i, n, bad, root)
            assert not verify_inclusion(leaf_hash(payloads[i] + b"x"), i, n, proof, root)
            assert not verify_inclusion(leaf, i, n, [*proof, root], root)
            if proof:
                assert not verify_inclusion(leaf, i, n, proof[:-1], root)
            if i + 1 < n:
                assert not verify_inclusion(leaf, i + 1, n, proof, root)
            assert not verify_inclusion(leaf, i, i, proof, root)  # index must be inside the tree


def test_consistency_proofs_for_all_pairs_up_to_64() -> None:
    payloads = _payloads(64, "c")
    tree = MemoryTree(payloads)
    for n in range(1, 65):
        for m in range(1, n + 1):
            proof = tree.consistency(m, n)
            assert proof == ref_subproof(m, payloads[:n], True), (m, n)
            r1, r2 = tree.roots[m], tree.roots[n]
            assert verify_consistency(m, n, r1, r2, proof), (m, n)
            for j in range(len(proof)):
                bad = list(proof)
                bad[j] = bad[j][:31] + bytes([bad[j][31] ^ 0x80])
                assert not verify_consistency(m, n, r1, r2, bad), (m, n, j)
            flipped_first = bytes([r1[0] ^ 1]) + r1[1:]
            flipped_second = bytes([r2[0] ^ 1]) + r2[1:]
            assert not verify_consistency(m, n, flipped_first, r2, proof)
            assert not verify_consistency(m, n, r1, flipped_second, proof)
            if m < n:
                assert not verify_consistency(m, n, r1, r2, [*proof, r2])
                assert not verify_consistency(m, n, r1, r2, proof[:-1])
                assert not verify_consistency(m + 1, n, tree.roots[m + 1], r2, proof) or m + 1 == n
                assert not verify_consistency(m, n - 1, r1, tree.roots[n - 1], proof)


def test_consistency_rejects_impossible_sizes() -> None:
    tree = MemoryTree(_payloads(8))
    assert not verify_consistency(0, 8, EMPTY_ROOT, tree.roots[8], [])
    assert not verify_consistency(5, 4, tree.roots[5], tree.roots[4], [])
    assert not verify_consistency(4, 8, tree.roots[4], tree.roots[8], [])  # an empty proof proves nothing


# -- proofs from storage ------------------------------------------------------------------------------------
@pytest.fixture
def stored(runtime: Runtime) -> tuple[Runtime, list[bytes]]:
    drafts = [EntryDraft(log="audit" if i % 7 == 0 else "receipts", kind="merkle.tested", data={"i": i})
              for i in range(700)]
    runtime.ledger.append_many(drafts)
    entries = runtime.ledger.entries("receipts", limit=10_000)
    return runtime, [e.payload for e in entries]


@pytest.fixture
def node_reads(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """Counts every Merkle node the ledger asks the store for (keys requested, rows returned)."""
    calls: list[tuple[int, int]] = []
    real = ledger_store.get_nodes

    def counting(conn: Any, log: str, keys: Any) -> dict[tuple[int, int], bytes]:
        wanted = list(keys)
        out = real(conn, log, wanted)
        calls.append((len(set(wanted)), len(out)))
        return out

    monkeypatch.setattr(ledger_store, "get_nodes", counting)
    return calls


def test_proofs_from_storage_equal_in_memory_and_read_log_n_nodes(
        stored: tuple[Runtime, list[bytes]], node_reads: list[tuple[int, int]]) -> None:
    runtime, payloads = stored
    ledger = runtime.ledger
    n_total = len(payloads)
    assert n_total >= 600  # ours, plus whatever the runtime recorded when it initialised
    tree = MemoryTree(payloads)
    oracle = InmemoryTree(algorithm="sha256")
    for p in payloads:
        oracle.append_entry(p)
    rng = random.Random(9162)
    sizes = [1, 2, 3, 255, 256, 257, 511, 512, 513, n_total] + [rng.randrange(1, n_total + 1) for _ in range(20)]
    for n in sizes:
        assert ledger.root("receipts", n) == tree.roots[n] == oracle.get_root(n)
        for i in {0, n - 1, n // 2, rng.randrange(n)}:
            node_reads.clear()
            proof = ledger.inclusion_proof("receipts", i, n)
            assert proof == tree.inclusion(i, n) == oracle.prove_inclusion(i + 1, n).path[1:]
            assert verify_inclusion(leaf_hash(payloads[i]), i, n, proof, tree.roots[n])
            requested = sum(k for k, _ in node_reads)
            fetched = sum(r for _, r in node_reads)
            assert len(node_reads) == 1  # one query
            assert requested == fetched <= 2 * math.log2(n) + 2, (i, n, requested)
        for m in {1, n, max(1, n // 3), rng.randrange(1, n + 1)}:
            node_reads.clear()
            proof = ledger.consistency_proof("receipts", m, n)
            assert proof == tree.consistency(m, n) == ref_subproof(m, [payloads[j] for j in range(n)], True)
            assert verify_consistency(m, n, tree.roots[m], tree.roots[n], proof)
            requested = sum(k for k, _ in node_reads)
            assert len(node_reads) == 1
            assert requested <= 2 * math.log2(n) + 2, (m, n, requested)


def test_proof_requests_outside_the_tree_are_refused(stored: tuple[Runtime, list[bytes]]) -> None:
    ledger = stored[0].ledger
    size = len(stored[1])
    with pytest.raises(InvalidInputError):
        ledger.inclusion_proof("receipts", 10, 10)
    with pytest.raises(NotFoundError):
        ledger.inclusion_proof("receipts", 0, size + 1)
    with pytest.raises(InvalidInputError):
        ledger.consistency_proof("receipts", 0, 10)
    with pytest.raises(InvalidInputError):
        ledger.consistency_proof("receipts", 11, 10)
    with pytest.raises(NotFoundError):
        ledger.consistency_proof("receipts", 1, size + 1)
    with pytest.raises(InvalidInputError):
        ledger.inclusion_proof("nope", 0, 1)


def test_cli_consistency_proof_verifies(stored: tuple[Runtime, list[bytes]]) -> None:
    """``knhk receipts consistency`` prints a proof and both roots that an outsider can check."""
    runtime, payloads = stored
    tree = MemoryTree(payloads)
    done = run_cli(["receipts", "consistency", "100", "600", "--json"], runtime.settings.data_dir,
                   runtime.settings.resolved_database_url)
    assert done.returncode == 0, done.stderr
    out = orjson.loads(done.stdout)
    assert out["first_root"] == tree.roots[100].hex()
    assert out["second_root"] == tree.roots[600].hex()
    proof = [bytes.fromhex(h) for h in out["proof"]]
    assert verify_consistency(100, 600, tree.roots[100], tree.roots[600], proof)
