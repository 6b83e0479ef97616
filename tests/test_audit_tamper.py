"""1,000 random rewrites, truncations and reorders of a partner's audit log, all caught.

The partner (the data owner) holds a signed head of the log's first S entries, as it would
after a trade. The log's owner then tampers with its own log (rewrites an entry, cuts it and
perhaps refills it, or reorders entries, always touching the first S), maybe appends honest
new entries, and presents a new signed head with the consistency proof its tampered tree
gives from S. `check_head` must catch every one, and the kept evidence must re-check
offline. The same steps without the tampering must pass, so the test cannot pass vacuously.
"""

from __future__ import annotations

import random

from aaex_agents.identity import Identity
from marketplace.contracts.audit_log import (
    AuditEntry,
    AuditEvidence,
    SignedTreeHead,
    check_head,
)
from marketplace.contracts.merkle import MerkleTree

LOG_OWNER = Identity.generate()
PARTNER = Identity.generate().address
TRIALS = 1_000


def entry(n: int, forged: bool = False) -> bytes:
    """The leaf hash of the n-th entry (a forged one differs in its purpose)."""
    return AuditEntry(at_ms=1_750_000_000_000 + n, agent=LOG_OWNER.address, owner=PARTNER,
                      dataset=f"sales/{n}.parquet", purpose="forged" if forged else "forecast",
                      event="used").leaf_hash()


HONEST = [entry(n) for n in range(120)]
FORGED = [entry(n, forged=True) for n in range(120)]


def head(tree: MerkleTree, at_ms: int) -> SignedTreeHead:
    return SignedTreeHead.create(LOG_OWNER, size=tree.size, root=tree.root(), at_ms=at_ms)


def tamper(rng: random.Random, log: list[bytes], seen: int) -> tuple[str, list[bytes]]:
    """One random rewrite, truncation or reorder that changes the first `seen` entries."""
    kind = rng.choice(("rewrite", "truncate", "reorder"))
    changed = list(log)
    if kind == "rewrite":
        at = rng.randrange(seen)
        changed[at] = FORGED[at]
    elif kind == "truncate":
        cut = rng.randrange(seen)
        refill = rng.randrange(0, seen + 5)
        changed = changed[:cut] + FORGED[cut:cut + refill]
    else:
        first = rng.randrange(seen)
        second = rng.choice([i for i in range(len(changed)) if i != first])
        if rng.random() < 0.5:
            changed[first], changed[second] = changed[second], changed[first]
        else:  # move one entry elsewhere
            moved = changed.pop(first)
            changed.insert(second, moved)
    return kind, changed


def present(rng: random.Random, log: list[bytes], held: SignedTreeHead,
            new_entries: list[bytes]) -> tuple[SignedTreeHead, int | None, list[bytes]]:
    """What the log's owner sends next: a fresh head and its proof from the held size."""
    tree = MerkleTree(log + new_entries)
    at_ms = held.at_ms + rng.randrange(1, 10_000)
    if tree.size < held.size:
        return head(tree, at_ms), None, []  # no proof from a size it no longer has
    proof = tree.consistency_proof(held.size) if held.size < tree.size else []
    return head(tree, at_ms), held.size, proof


def test_a_thousand_tampered_logs_are_all_caught_by_the_partner() -> None:
    rng = random.Random(20261207)  # noqa: S311 - which tampering, not cryptography
    caught: dict[str, int] = {}
    kinds: dict[str, int] = {}
    for trial in range(TRIALS):
        seen = rng.randint(1, 40)
        log = HONEST[:max(2, seen + rng.randint(0, 10))]
        earlier = rng.randint(1, seen)
        # The partner accepted a head of `earlier` entries, then one of `seen`.
        first = head(MerkleTree(log[:earlier]), 1_000 * trial)
        held = head(MerkleTree(log[:seen]), first.at_ms + 1)
        assert check_head(None, first, None, []).outcome == "first"
        extended = check_head(first, held, earlier,
                              MerkleTree(log[:seen]).consistency_proof(earlier)
                              if earlier < seen else [])
        assert extended.outcome in ("extends", "same")
        appended = HONEST[len(log):len(log) + rng.randint(0, 5)]  # used since the trade

        honest = check_head(held, *present(rng, log, held, appended))
        assert honest.outcome in ("extends", "same"), (trial, honest)

        kind, tampered = tamper(rng, log, seen)
        assert tampered[:seen] != log[:seen]
        new, proof_from, proof = present(rng, tampered, held, appended)
        new.verify(LOG_OWNER.address)
        found = check_head(held, new, proof_from, proof)
        assert found.caught, (trial, kind, found)
        evidence = AuditEvidence(outcome=found.outcome, detail=found.detail, held=held,
                                 new=new, proof=tuple(p.hex() for p in proof),
                                 first=proof_from)
        assert evidence.recheck().outcome == found.outcome
        kinds[kind] = kinds.get(kind, 0) + 1
        caught[found.outcome] = caught.get(found.outcome, 0) + 1
    assert sum(caught.values()) == TRIALS
    assert all(kinds.get(k, 0) > 250 for k in ("rewrite", "truncate", "reorder")), kinds
    assert caught.get("inconsistent", 0) > 500 and caught.get("shrunk", 0) > 50, caught
