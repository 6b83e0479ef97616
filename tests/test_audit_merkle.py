"""The audit log's Merkle tree against RFC 6962/9162 vectors and an independent recursion.

tests/data/merkle_vectors.json gathers, unchanged, the leaves, roots and the inclusion and
consistency proof vectors (happy paths and every corruption of them) of
transparency-dev/merkle (Apache-2.0; the file names the commit). The property tests compare
`MerkleTree` with the RFC's recursive definitions written out naively below, for every size
up to 200, and flip single bits of every proof.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from marketplace.contracts.errors import ProofFailed
from marketplace.contracts.merkle import (
    EMPTY_ROOT,
    MerkleTree,
    leaf_hash,
    verify_consistency,
    verify_inclusion,
)

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).parent / "data" / "merkle_vectors.json").read_text())
LEAVES = [bytes.fromhex(x) for x in VECTORS["leaf_inputs"]]


def b64(value: str | None) -> bytes:
    return base64.b64decode(value or "")


def proof_of(vector: dict[str, Any]) -> list[bytes]:
    return [b64(p) for p in vector.get("proof") or []]


# -- the RFC's definitions, written out naively (no shared code with MerkleTree) -----------

def mth(leaves: list[bytes]) -> bytes:
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return hashlib.sha256(b"\x01" + mth(leaves[:k]) + mth(leaves[k:])).digest()


def path(m: int, leaves: list[bytes]) -> list[bytes]:
    n = len(leaves)
    if n == 1:
        return []
    k = 1
    while k * 2 < n:
        k *= 2
    if m < k:
        return [*path(m, leaves[:k]), mth(leaves[k:])]
    return [*path(m - k, leaves[k:]), mth(leaves[:k])]


def subproof(m: int, leaves: list[bytes], whole: bool) -> list[bytes]:
    n = len(leaves)
    if m == n:
        return [] if whole else [mth(leaves)]
    k = 1
    while k * 2 < n:
        k *= 2
    if m <= k:
        return [*subproof(m, leaves[:k], whole), mth(leaves[k:])]
    return [*subproof(m - k, leaves[k:], False), mth(leaves[:k])]


# -- known vectors ---------------------------------------------------------------------------

def test_roots_of_the_rfc_leaves_match_the_vectors() -> None:
    tree = MerkleTree(leaf_hash(leaf) for leaf in LEAVES)
    assert [tree.root(n).hex() for n in range(9)] == VECTORS["root_hashes"]
    assert tree.root(0) == EMPTY_ROOT


@pytest.mark.parametrize("vector", VECTORS["inclusion"], ids=lambda v: v["file"])
def test_inclusion_vectors(vector: dict[str, Any]) -> None:
    def check() -> None:
        verify_inclusion(vector["leafIdx"], vector["treeSize"], b64(vector["leafHash"]),
                         proof_of(vector), b64(vector["root"]))
    if vector["wantErr"]:
        with pytest.raises(ProofFailed):
            check()
        return
    check()
    tree = MerkleTree(leaf_hash(leaf) for leaf in LEAVES)
    if vector["treeSize"] <= tree.size and tree.root(vector["treeSize"]) == b64(vector["root"]):
        assert tree.inclusion_proof(vector["leafIdx"], vector["treeSize"]) == proof_of(vector)


@pytest.mark.parametrize("vector", VECTORS["consistency"], ids=lambda v: v["file"])
def test_consistency_vectors(vector: dict[str, Any]) -> None:
    def check() -> None:
        verify_consistency(vector["size1"], vector["size2"], b64(vector["root1"]),
                           b64(vector["root2"]), proof_of(vector))
    if vector["wantErr"]:
        with pytest.raises(ProofFailed):
            check()
        return
    check()
    tree = MerkleTree(leaf_hash(leaf) for leaf in LEAVES)
    first, second = vector["size1"], vector["size2"]
    if 0 < first and second <= tree.size and tree.root(second) == b64(vector["root2"]):
        assert tree.consistency_proof(first, second) == proof_of(vector)


def test_the_vectors_cover_failures_and_successes() -> None:
    for kind in ("inclusion", "consistency"):
        wanted = [v["wantErr"] for v in VECTORS[kind]]
        assert wanted.count(True) > 50 and wanted.count(False) >= 5


# -- properties ------------------------------------------------------------------------------

def leaves_of(n: int, salt: int) -> list[bytes]:
    return [f"{salt}:{i}".encode() for i in range(n)]


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 200), salt=st.integers(0, 10**6), data=st.data())
def test_every_proof_verifies_and_matches_the_naive_recursion(n: int, salt: int,
                                                              data: st.DataObject) -> None:
    leaves = leaves_of(n, salt)
    tree = MerkleTree(leaf_hash(leaf) for leaf in leaves)
    for size in range(1, n + 1):
        root = tree.root(size)
        assert root == mth(leaves[:size])
        for index in {0, size - 1, data.draw(st.integers(0, size - 1))}:
            proof = tree.inclusion_proof(index, size)
            assert proof == path(index, leaves[:size])
            verify_inclusion(index, size, leaf_hash(leaves[index]), proof, root)
        first = data.draw(st.integers(1, size))
        proof = tree.consistency_proof(first, size)
        assert proof == subproof(first, leaves[:size], True)
        verify_consistency(first, size, tree.root(first), root, proof)


def test_every_pair_of_sizes_up_to_64_is_consistent() -> None:
    leaves = leaves_of(64, 7)
    tree = MerkleTree(leaf_hash(leaf) for leaf in leaves)
    for second in range(1, 65):
        for first in range(1, second + 1):
            verify_consistency(first, second, tree.root(first), tree.root(second),
                               tree.consistency_proof(first, second))
        for index in range(second):
            verify_inclusion(index, second, tree.leaf(index),
                             tree.inclusion_proof(index, second), tree.root(second))


def flip(value: bytes, bit: int) -> bytes:
    changed = bytearray(value)
    changed[bit // 8] ^= 1 << (bit % 8)
    return bytes(changed)


@settings(max_examples=80, deadline=None)
@given(n=st.integers(2, 200), data=st.data())
def test_any_single_bit_change_fails_the_proof(n: int, data: st.DataObject) -> None:
    tree = MerkleTree(leaf_hash(leaf) for leaf in leaves_of(n, n))
    second = data.draw(st.integers(2, n))
    first = data.draw(st.integers(1, second - 1))
    index = data.draw(st.integers(0, second - 1))
    roots = (tree.root(first), tree.root(second))
    consistency = tree.consistency_proof(first, second)
    inclusion = tree.inclusion_proof(index, second)
    bit = data.draw(st.integers(0, 255))
    at = data.draw(st.integers(0, max(len(consistency), len(inclusion)) + 1))

    bad_consistency = [flip(p, bit) if i == at % len(consistency) else p
                       for i, p in enumerate(consistency)]
    with pytest.raises(ProofFailed):
        verify_consistency(first, second, *roots, bad_consistency)
    with pytest.raises(ProofFailed):
        verify_consistency(first, second, flip(roots[0], bit), roots[1], consistency)
    with pytest.raises(ProofFailed):
        verify_consistency(first, second, roots[0], flip(roots[1], bit), consistency)
    if inclusion:
        bad_inclusion = [flip(p, bit) if i == at % len(inclusion) else p
                         for i, p in enumerate(inclusion)]
        with pytest.raises(ProofFailed):
            verify_inclusion(index, second, tree.leaf(index), bad_inclusion, roots[1])
    with pytest.raises(ProofFailed):
        verify_inclusion(index, second, flip(tree.leaf(index), bit), inclusion, roots[1])
    with pytest.raises(ProofFailed):
        verify_inclusion(index, second, tree.leaf(index), inclusion, flip(roots[1], bit))
