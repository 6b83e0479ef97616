"""The audit trail's contracts: an entry, a signed tree head, and how a partner judges heads.

Every use of a partner's data is an `AuditEntry` appended to the node's Merkle log
(marketplace.contracts.merkle; stored by marketplace.contracts.audit_store). The log's owner,
the node's key, signs `SignedTreeHead`s: ``(log, size, root, at_ms)``. Heads leave the node
with the entries that concern a partner (marketplace.trade.audit); the partner keeps the
newest head it accepted of each log and judges every later one with `check_head`:

- ``shrunk``: fewer entries than a head it already holds: the log was truncated (or a head
  from before was sent again as if new);
- ``forked``: the same size with another root: two signed versions of one history;
- ``backdated``: signed earlier than the head it holds: heads of one log only move forward;
- ``inconsistent``: more entries, but the consistency proof from the held head fails: what
  the partner already saw was rewritten, reordered or cut and refilled.

The first three need no proof: the two signed heads contradict each other on their face. The
fourth is the log's failure to prove what an honest log always can (RFC 9162 2.1.4). Any of
them is kept as `AuditEvidence`, which `AuditEvidence.recheck` re-checks offline.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from aaex_agents.errors import UsageError
from aaex_agents.identity import Identity, verify_signature

from .errors import BadContractSignature, MalformedContract, ProofFailed
from .merkle import leaf_hash, verify_consistency
from .signing import Address, signing_bytes

ENTRY_TAG = "aaex/audit-entry/1"
"""Domain tag of an entry's leaf bytes."""
HEAD_TAG = b"aaex/audit-head/1\x00"
"""Domain tag of the log owner's signature on a tree head."""
_HEX64 = r"^[0-9a-f]{64}$"
_HEX128 = r"^[0-9a-f]{128}$"

EventKind = Literal["received", "used", "deleted", "refused"]
Outcome = Literal["first", "same", "extends", "need_proof",
                  "shrunk", "forked", "backdated", "inconsistent"]
CAUGHT: frozenset[str] = frozenset({"shrunk", "forked", "backdated", "inconsistent"})
"""The outcomes that show a log was rewritten, truncated or reordered."""


class AuditEntry(BaseModel):
    """One use of data, as the node that used it recorded it."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    at_ms: int = Field(ge=0)
    """When (the recording node's clock), milliseconds since the epoch."""
    agent: str = Field(min_length=1, max_length=256)
    """The agent that accessed the data (an address on this node)."""
    owner: str = Field(default="", max_length=256)
    """The data owner or counterparty (an agent address); empty: the node's own data."""
    dataset: str = Field(min_length=1, max_length=512)
    """Which data: a dataset id or path."""
    content_hash: str = Field(default="", pattern=r"^([0-9a-f]{64})?$")
    """Hex SHA-256 of the content used, when known."""
    grant: str = Field(default="", max_length=256)
    """The grant that allowed it (empty until grants exist)."""
    purpose: str = Field(min_length=1, max_length=512)
    """What it was used for."""
    event: EventKind = "used"
    """received, used (by a task), deleted, or refused."""
    agreement_id: str = Field(default="", max_length=128)
    """The agreement the use served, if any."""

    def leaf(self) -> bytes:
        """The leaf bytes: the tag, 0x00, the canonical JSON."""
        return signing_bytes(ENTRY_TAG, self)

    def leaf_hash(self) -> bytes:
        """SHA-256(0x00 || leaf)."""
        return leaf_hash(self.leaf())

    @classmethod
    def from_leaf(cls, leaf: bytes) -> AuditEntry:
        """Parse leaf bytes written by `leaf`.

        Raises:
            MalformedContract: another tag, not JSON, or a field out of range.
        """
        prefix = ENTRY_TAG.encode() + b"\x00"
        if not leaf.startswith(prefix):
            raise MalformedContract(f"not an audit entry (no {ENTRY_TAG} tag)")
        try:
            return cls.model_validate_json(leaf[len(prefix):])
        except ValidationError as exc:
            raise MalformedContract(f"audit entry: {_first_problem(exc)}") from None


class SignedTreeHead(BaseModel):
    """The size and root of a node's audit log, signed by the node's key."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    log: Address
    """The log's owner (the node's address), who signed this."""
    size: int = Field(ge=0)
    """How many entries the log held."""
    root: str = Field(pattern=_HEX64)
    """Hex RFC 9162 root hash of those entries."""
    at_ms: int = Field(ge=0)
    """When it was signed (never before the log's previous head)."""
    signature: str = Field(pattern=_HEX128)
    """The owner's Ed25519 signature (hex) of `signing_bytes`."""

    @classmethod
    def create(cls, owner: Identity, *, size: int, root: bytes, at_ms: int) -> SignedTreeHead:
        """Sign the head `(size, root)` of `owner`'s log at `at_ms`.

        Raises:
            UsageError: a field is out of range.
        """
        fields: dict[str, object] = {"log": owner.address, "size": size, "root": root.hex(),
                                     "at_ms": at_ms}
        try:
            return cls.model_validate({**fields,
                                       "signature": owner.sign(_head_bytes(fields)).hex()})
        except ValidationError as exc:
            raise UsageError(f"tree head: {_first_problem(exc)}") from None

    @property
    def root_bytes(self) -> bytes:
        """The root hash as bytes."""
        return bytes.fromhex(self.root)

    def signing_bytes(self) -> bytes:
        """Exactly what the owner signs: the tag, then every field but the signature."""
        return _head_bytes(self.model_dump(exclude={"signature"}))

    def verify(self, log: str | None = None) -> None:
        """Check the signature, and that `log` (when given) is whose log it is.

        Raises:
            BadContractSignature: forged or edited, or the head of another log.
        """
        if log is not None and self.log != log:
            raise BadContractSignature(f"the tree head is of the log of {self.log}, not {log}")
        if not verify_signature(self.log, self.signing_bytes(), bytes.fromhex(self.signature)):
            raise BadContractSignature(f"the tree head of size {self.size} is not signed by "
                                       f"{self.log} (forged or edited)")


@dataclass(frozen=True)
class HeadCheck:
    """What a partner concludes from a new head of a log it holds a head of."""

    outcome: Outcome
    detail: str

    @property
    def caught(self) -> bool:
        """True when the two heads show the log was rewritten, truncated or reordered."""
        return self.outcome in CAUGHT


def check_head(held: SignedTreeHead | None, new: SignedTreeHead, first: int | None,
               proof: Sequence[bytes]) -> HeadCheck:
    """Judge `new` against `held`, the newest head of the same log accepted before.

    `proof` is the log's consistency proof from size `first` to ``new.size``. Both heads'
    signatures must have been checked (`SignedTreeHead.verify`). Outcomes ``first``,
    ``same`` and ``extends`` accept `new`; ``need_proof`` asks for a proof from
    ``held.size``; the others are in `CAUGHT`.
    """
    if held is None:
        return HeadCheck("first", "the first head of this log")
    if new.log != held.log:
        raise UsageError("check_head: the two heads are of different logs")
    if new.size < held.size:
        return HeadCheck("shrunk", f"a head of {new.size} entries after one of {held.size}: "
                                   "the log was truncated")
    if new.size == held.size and new.root != held.root:
        return HeadCheck("forked", f"two roots for the same {new.size} entries: the log was "
                                   "rewritten")
    if new.at_ms < held.at_ms:
        return HeadCheck("backdated", f"signed at {new.at_ms} ms, before the head of "
                                      f"{held.size} signed at {held.at_ms} ms")
    if new.size == held.size:
        return HeadCheck("same", "no new entries")
    if first != held.size:
        return HeadCheck("need_proof", f"send a consistency proof from {held.size}")
    try:
        verify_consistency(held.size, new.size, held.root_bytes, new.root_bytes, proof)
    except ProofFailed as exc:
        return HeadCheck("inconsistent", f"the log of {new.size} does not extend the log of "
                                         f"{held.size}: {exc}")
    return HeadCheck("extends", f"{new.size - held.size} new entries")


class AuditEvidence(BaseModel):
    """Two heads of one log that cannot both be honest, and the proof that failed."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    outcome: str
    """One of `CAUGHT`."""
    detail: str
    held: SignedTreeHead
    """The head the partner had accepted."""
    new: SignedTreeHead
    """The head that contradicts it."""
    proof: tuple[str, ...] = ()
    """The consistency proof (hex) the log sent from ``held.size``, if any."""
    first: int | None = None
    """The size the proof started from."""
    sender: str = ""
    """The log's agent that sent `new`."""
    at_ms: int = 0
    """When the partner found it (its clock)."""

    def recheck(self) -> HeadCheck:
        """Re-run the checks: both signatures, then `check_head` (offline).

        Raises:
            BadContractSignature: a head is not signed by its log, or they are of two logs.
            MalformedContract: the heads do not contradict each other (not evidence).
        """
        self.held.verify()
        self.new.verify(self.held.log)
        found = check_head(self.held, self.new, self.first,
                           [bytes.fromhex(p) for p in self.proof])
        if not found.caught:
            raise MalformedContract(f"not evidence: the two heads agree ({found.outcome})")
        return found


def _head_bytes(fields: dict[str, object]) -> bytes:
    return HEAD_TAG + json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()


def _first_problem(exc: ValidationError) -> str:
    first = exc.errors(include_url=False)[0]
    where = ".".join(str(part) for part in first["loc"]) or "(root)"
    return f"{where}: {first['msg']}"
