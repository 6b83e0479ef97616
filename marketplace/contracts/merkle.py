"""An append-only Merkle tree as RFC 9162 (Certificate Transparency 2.0) defines it.

    leaf hash  = SHA-256(0x00 || leaf)
    node hash  = SHA-256(0x01 || left || right)
    MTH({})    = SHA-256()
    MTH(D[n])  = node(MTH(D[0:k]), MTH(D[k:n])), k the largest power of two below n

`MerkleTree` keeps the hash of every complete, aligned subtree (level 0 holds the leaf
hashes), so appending costs O(log n) hashes and the root of any earlier size, an inclusion
proof (RFC 9162 2.1.3.1) or a consistency proof (2.1.4.1) costs O(log² n) at most. The
verifiers (`verify_inclusion`, `verify_consistency`) follow the RFC's algorithms in 2.1.3.2
and 2.1.4.2 step by step, and take the same edge cases as transparency-dev/merkle (whose
vectors tests/data/merkle_vectors.json holds): a consistency proof from the empty tree, or
between a size and a smaller one, proves nothing and fails.

Pure: no I/O, no clock. The tree's memory is about two hashes (64 bytes) per leaf.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

from aaex_agents.errors import UsageError

from .errors import ProofFailed

HASH_BYTES = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()
"""MTH of the empty tree."""


def leaf_hash(leaf: bytes) -> bytes:
    """SHA-256(0x00 || leaf): the hash of one entry's bytes."""
    return hashlib.sha256(b"\x00" + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 || left || right): the hash of an interior node."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than `n` (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


class MerkleTree:
    """The tree of an append-only log of leaf hashes; see the module docstring."""

    def __init__(self, leaf_hashes: Iterable[bytes] = ()) -> None:
        self._levels: list[list[bytes]] = [[]]
        for digest in leaf_hashes:
            self.append(digest)

    @property
    def size(self) -> int:
        """How many leaves the tree holds."""
        return len(self._levels[0])

    def append(self, digest: bytes) -> int:
        """Add the leaf whose hash is `digest`; returns its index.

        Raises:
            UsageError: `digest` is not 32 bytes.
        """
        if len(digest) != HASH_BYTES:
            raise UsageError(f"a leaf hash is {HASH_BYTES} bytes, got {len(digest)}")
        index = len(self._levels[0])
        self._levels[0].append(digest)
        level, position = 0, index
        while position % 2 == 1:  # this leaf completed a subtree: hash it one level up
            below = self._levels[level]
            if len(self._levels) == level + 1:
                self._levels.append([])
            self._levels[level + 1].append(node_hash(below[position - 1], below[position]))
            level, position = level + 1, position // 2
        return index

    def leaf(self, index: int) -> bytes:
        """The hash of leaf `index`."""
        return self._levels[0][index]

    def root(self, size: int | None = None) -> bytes:
        """MTH of the first `size` leaves (default: all of them).

        Raises:
            UsageError: `size` is negative or beyond the tree.
        """
        size = self._check_size(size)
        return self._hash(0, size)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """PATH(index, D[size]): the audit path of leaf `index` in the tree of `size` leaves.

        Raises:
            UsageError: `index` is not below `size`, or `size` is beyond the tree.
        """
        size = self._check_size(size)
        if not 0 <= index < size:
            raise UsageError(f"inclusion proof: leaf {index} is not in a tree of {size}")
        return self._path(index, 0, size)

    def consistency_proof(self, first: int, second: int | None = None) -> list[bytes]:
        """PROOF(first, D[second]): what shows the tree of `first` leaves is a prefix.

        Raises:
            UsageError: not 0 < first <= second <= size.
        """
        second = self._check_size(second)
        if not 0 < first <= second:
            raise UsageError(f"consistency proof: needs 0 < first <= second, got {first} "
                             f"and {second}")
        return self._subproof(first, 0, second, True)

    # -- the RFC's recursions, over absolute leaf ranges [start, end) ----------------------

    def _check_size(self, size: int | None) -> int:
        if size is None:
            return self.size
        if not 0 <= size <= self.size:
            raise UsageError(f"the tree holds {self.size} leaves, not {size}")
        return size

    def _hash(self, start: int, end: int) -> bytes:
        """MTH(D[start:end]); `start` is aligned as the RFC's recursion leaves it."""
        n = end - start
        if n == 0:
            return EMPTY_ROOT
        if n & (n - 1) == 0 and start % n == 0:  # a complete subtree: kept, not recomputed
            level = n.bit_length() - 1
            return self._levels[level][start >> level]
        k = _split(n)
        return node_hash(self._hash(start, start + k), self._hash(start + k, end))

    def _path(self, index: int, start: int, end: int) -> list[bytes]:
        n = end - start
        if n == 1:
            return []
        k = _split(n)
        if index < start + k:
            return [*self._path(index, start, start + k), self._hash(start + k, end)]
        return [*self._path(index, start + k, end), self._hash(start, start + k)]

    def _subproof(self, m: int, start: int, end: int, whole: bool) -> list[bytes]:
        n = end - start
        if m == n:
            return [] if whole else [self._hash(start, end)]
        k = _split(n)
        if m <= k:
            return [*self._subproof(m, start, start + k, whole), self._hash(start + k, end)]
        return [*self._subproof(m - k, start + k, end, False), self._hash(start, start + k)]


def verify_inclusion(index: int, size: int, digest: bytes, proof: Sequence[bytes],
                     root: bytes) -> None:
    """Check that leaf hash `digest` is leaf `index` of the tree of `size` with `root`.

    RFC 9162 2.1.3.2, step by step.

    Raises:
        ProofFailed: it is not; the message says which check failed.
    """
    if not 0 <= index < size:
        raise ProofFailed(f"leaf {index} cannot be in a tree of {size}")
    if len(digest) != HASH_BYTES:
        raise ProofFailed(f"a leaf hash is {HASH_BYTES} bytes, got {len(digest)}")
    fn, sn, r = index, size - 1, digest
    for p in proof:
        if sn == 0:
            raise ProofFailed("the inclusion proof is longer than the tree is deep")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise ProofFailed("the inclusion proof is shorter than the tree is deep")
    if r != root:
        raise ProofFailed(f"leaf {index} is not in the tree of {size} with that root")


def verify_consistency(first: int, second: int, first_root: bytes, second_root: bytes,
                       proof: Sequence[bytes]) -> None:
    """Check that the tree of `first` leaves is a prefix of the tree of `second` leaves.

    `first_root` and `second_root` are their roots. RFC 9162 2.1.4.2, step by step, after
    transparency-dev/merkle's edge cases: equal sizes need an empty proof and equal roots; a
    first size of 0 proves nothing.

    Raises:
        ProofFailed: it is not; the message says which check failed.
    """
    if second < first:
        raise ProofFailed(f"a tree of {second} cannot extend one of {first}")
    if first == 0:
        raise ProofFailed("a consistency proof from the empty tree proves nothing")
    if first == second:
        if proof:
            raise ProofFailed("equal sizes take an empty consistency proof")
        if first_root != second_root:
            raise ProofFailed(f"two different roots for the same size {first}")
        return
    if not proof:
        raise ProofFailed(f"no consistency proof from {first} to {second}")
    path = list(proof)
    if first & (first - 1) == 0:
        path.insert(0, first_root)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofFailed("the consistency proof is longer than the tree is deep")
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise ProofFailed("the consistency proof is shorter than the tree is deep")
    if fr != first_root:
        raise ProofFailed(f"the tree of {first} is not a prefix of the tree of {second}: "
                          "history up to it was rewritten")
    if sr != second_root:
        raise ProofFailed(f"the consistency proof does not lead to the root of the tree of "
                          f"{second}")
