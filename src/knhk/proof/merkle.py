"""RFC 9162 §2.1 Merkle tree hashing, proofs and their verification, addressed for storage.

A tree is stored as its *perfect subtrees*: node ``(level, index)`` is the hash of leaves
``[index·2^level, (index+1)·2^level)``, written once when it becomes complete and never changed. Every
subtree hash that an RFC 9162 proof needs is either such a node or the hash of the incomplete right edge of
a range, which folds from at most log2(n) stored nodes. So a proof needs O(log n) stored nodes, which
:func:`inclusion_ranges` / :func:`consistency_ranges` plus :func:`nodes_for_ranges` name up front so a store can
fetch them in one query. The verification functions follow RFC 9162 §2.1.3.2 and §2.1.4.2 step by step:
``proves_inclusion`` / ``proves_consistency`` answer yes or no, ``verify_inclusion`` / ``verify_consistency``
raise :class:`~knhk.errors.VerificationError` saying what failed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence

from knhk.errors import InvalidInputError, VerificationError

NodeKey = tuple[int, int]  # (level, index)
Range = tuple[int, int]  # leaves [start, end)

EMPTY_ROOT = hashlib.sha256(b"").digest()


class ProofError(InvalidInputError):
    """A proof was asked for sizes, indexes or stored nodes that do not exist (a bad request, not a failed
    verification: that is :class:`~knhk.errors.VerificationError`)."""


def leaf_hash(payload: bytes) -> bytes:
    """MTH of one leaf: SHA-256(0x00 ‖ payload)."""
    return hashlib.sha256(b"\x00" + payload).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Interior node: SHA-256(0x01 ‖ left ‖ right)."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two strictly smaller than ``n`` (n ≥ 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def mth(leaf_hashes: Sequence[bytes]) -> bytes:
    """RFC 9162 Merkle Tree Hash of a list of leaf hashes (reference implementation, recursive)."""
    n = len(leaf_hashes)
    if n == 0:
        return EMPTY_ROOT
    if n == 1:
        return leaf_hashes[0]
    k = _split(n)
    return node_hash(mth(leaf_hashes[:k]), mth(leaf_hashes[k:]))


def decompose(start: int, end: int) -> list[NodeKey]:
    """The perfect subtrees covering leaves [start, end), left to right, largest first."""
    out: list[NodeKey] = []
    while start < end:
        level = (start & -start).bit_length() - 1 if start else (end - start).bit_length() - 1
        while start + (1 << level) > end:
            level -= 1
        out.append((level, start >> level))
        start += 1 << level
    return out


def fold(hashes: Sequence[bytes]) -> bytes:
    """Hash of a range from its perfect subtrees (largest first), folded from the right."""
    if not hashes:
        return EMPTY_ROOT
    acc = hashes[-1]
    for h in reversed(hashes[:-1]):
        acc = node_hash(h, acc)
    return acc


def range_hash(start: int, end: int, nodes: Mapping[NodeKey, bytes]) -> bytes:
    """MTH of leaves [start, end) from stored perfect-subtree nodes."""
    try:
        return fold([nodes[key] for key in decompose(start, end)])
    except KeyError as exc:
        raise ProofError(f"stored Merkle node {exc.args[0]} is missing") from exc


def inclusion_ranges(index: int, size: int) -> list[Range]:
    """The leaf ranges whose hashes form the RFC 9162 inclusion proof of ``index`` in a tree of ``size``."""
    if not 0 <= index < size:
        raise ProofError(f"leaf {index} is not in a tree of size {size}")
    out: list[Range] = []
    offset, m, n = 0, index, size
    while n > 1:
        k = _split(n)
        if m < k:
            out.append((offset + k, offset + n))
            n = k
        else:
            out.append((offset, offset + k))
            offset, m, n = offset + k, m - k, n - k
    out.reverse()  # RFC order: from the leaf up
    return out


def consistency_ranges(first: int, second: int) -> list[Range]:
    """The leaf ranges whose hashes form the RFC 9162 consistency proof from ``first`` to ``second``."""
    if not 0 < first <= second:
        raise ProofError(f"no consistency proof from size {first} to size {second}")
    out: list[Range] = []
    offset, m, n, whole = 0, first, second, True
    while m != n:
        k = _split(n)
        if m <= k:
            out.append((offset + k, offset + n))
            n = k
        else:
            out.append((offset, offset + k))
            offset, m, n, whole = offset + k, m - k, n - k, False
    if not whole:
        out.append((offset, offset + m))
    out.reverse()
    return out


def nodes_for_ranges(ranges: Iterable[Range]) -> set[NodeKey]:
    """Every stored node needed to hash the given ranges."""
    keys: set[NodeKey] = set()
    for start, end in ranges:
        keys.update(decompose(start, end))
    return keys


def proves_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes) -> bool:
    """RFC 9162 §2.1.3.2: does ``proof`` show that leaf hash ``leaf`` is at ``index`` of the tree ``root``?"""
    if index >= size or index < 0:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def proves_consistency(first: int, second: int, first_root: bytes, second_root: bytes,
                       proof: Sequence[bytes]) -> bool:
    """RFC 9162 §2.1.4.2: is the tree of size ``second`` an append-only extension of the one of ``first``?"""
    if first < 1 or second < first:
        return False
    if first == second:
        return len(proof) == 0 and first_root == second_root
    path = list(proof)
    if first & (first - 1) == 0:
        path.insert(0, first_root)
    if not path:
        return False
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == first_root and sr == second_root


def verify_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes) -> None:
    """Raise :class:`VerificationError` unless ``proof`` shows leaf hash ``leaf`` at ``index`` of tree ``root``."""
    if not proves_inclusion(leaf, index, size, proof, root):
        raise VerificationError(f"inclusion proof does not show leaf {index} in the {size}-entry tree of the root hash")


def verify_consistency(first: int, second: int, first_root: bytes, second_root: bytes,
                       proof: Sequence[bytes]) -> None:
    """Raise :class:`VerificationError` unless ``proof`` shows the tree of ``second`` entries extends the one
    of ``first``."""
    if not proves_consistency(first, second, first_root, second_root, proof):
        raise VerificationError(f"consistency proof does not show the {second}-entry tree extending the "
                                f"{first}-entry tree")


class Frontier:
    """The right edge of a growing tree: the perfect subtrees of [0, size), enough to append and to root.

    ``append`` returns every node the new leaf completes, which is exactly what a store must insert.
    """

    __slots__ = ("nodes", "size")

    def __init__(self, size: int = 0, nodes: Sequence[tuple[int, int, bytes]] = ()) -> None:
        expected = decompose(0, size)
        if [(lvl, idx) for lvl, idx, _ in nodes] != expected:
            raise ProofError(f"frontier nodes do not match a tree of size {size}")
        self.size = size
        self.nodes: list[tuple[int, int, bytes]] = list(nodes)

    def append(self, leaf: bytes) -> list[tuple[int, int, bytes]]:
        index = self.size
        created = [(0, index, leaf)]
        level, h = 0, leaf
        while index & 1:
            left_level, left_index, left_hash = self.nodes.pop()
            if left_level != level or left_index != index - 1:
                raise ProofError("frontier does not match the tree it is appended to")
            h = node_hash(left_hash, h)
            index >>= 1
            level += 1
            created.append((level, index, h))
        self.nodes.append((level, index, h))
        self.size += 1
        return created

    def root(self) -> bytes:
        return fold([h for _, _, h in self.nodes])

    def copy(self) -> Frontier:
        clone = Frontier.__new__(Frontier)
        clone.size = self.size
        clone.nodes = list(self.nodes)
        return clone
