"""Signed checkpoints of a ledger's head: what a node's books said, carried off the node.

The hash chain (marketplace.contracts.chain) finds any edit that leaves the rest of the file
as it was. It cannot find a consistent forgery by whoever holds the file: the newest entries
cut off, an entry appended with a correct hash, or every hash re-computed after an edit. A
`Checkpoint` closes that gap once it has left the node: the ledger's owner (the node's key)
signs ``(seq, hash, entries)`` of its head, and whoever holds the checkpoint later checks
the file against it (`Ledger.verify(against=...)`, ``aaex ledger verify --against``):

- the checkpoint's entry is missing: the newest entries were cut;
- the entry at the checkpoint's `seq` has another hash: history up to it was rewritten;
- the checkpoint's signature does not verify: the checkpoint itself is forged.

Checkpoints leave a node in the statements its agents answer partners with
(marketplace.trade.statements), with every receipt a buyer sends a seller
(marketplace.trade.selling keeps the newest per partner node), and as a file written by
``aaex ledger checkpoint``. A node that holds its own key can sign a checkpoint of a forged
file too: a checkpoint proves what the books said when it left the node, to whoever kept it.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from aaex_agents.errors import UsageError
from aaex_agents.identity import Identity, verify_signature

from .errors import BadContractSignature, MalformedContract
from .signing import Address

CHECKPOINT_TAG = b"aaex/ledger-checkpoint/1\x00"
"""Domain tag of the owner's signature on a checkpoint."""
_HEX64 = r"^[0-9a-f]{64}$"
_HEX128 = r"^[0-9a-f]{128}$"
MAX_CHECKPOINT_BYTES = 4096
"""A checkpoint file is a few hundred bytes; a larger one is refused before parsing."""


class Checkpoint(BaseModel):
    """The head of a ledger, signed by the ledger's owner. Make one with `Ledger.checkpoint`."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    ledger: Address
    """The ledger's owner (the node's address), who signed this."""
    seq: int = Field(ge=0)
    """Sequence number of the head entry (0: the ledger was empty)."""
    hash: str = Field(pattern=_HEX64)
    """Hex hash of the head entry (the ledger's genesis when empty)."""
    entries: int = Field(ge=0)
    """How many entries the ledger held; every later file must hold at least as many."""
    at_ms: int = Field(ge=0)
    """When it was signed (the owner's clock), milliseconds since the epoch."""
    signature: str = Field(pattern=_HEX128)
    """The owner's Ed25519 signature (hex) of `signing_bytes`."""

    @classmethod
    def create(cls, owner: Identity, *, seq: int, hash: str, entries: int,
               at_ms: int) -> Checkpoint:
        """Sign the head `(seq, hash)` of `owner`'s ledger.

        Raises:
            UsageError: a field is out of range (a negative seq, a hash that is not hex).
        """
        fields: dict[str, object] = {"ledger": owner.address, "seq": seq, "hash": hash,
                                     "entries": entries, "at_ms": at_ms}
        signature = owner.sign(_signing_bytes(fields)).hex()
        try:
            return cls.model_validate({**fields, "signature": signature})
        except ValidationError as exc:
            raise UsageError(f"checkpoint: {_first_problem(exc)}") from None

    def signing_bytes(self) -> bytes:
        """Exactly what the owner signs: the tag, then every field but the signature."""
        return _signing_bytes(self.model_dump(exclude={"signature"}))

    def verify(self, owner: str | None = None) -> None:
        """Check the signature, and that `owner` (when given) is the one who signed.

        Raises:
            BadContractSignature: the signature does not verify against `ledger`, or the
                checkpoint is of another node's ledger than `owner`'s.
        """
        if owner is not None and self.ledger != owner:
            raise BadContractSignature(f"the checkpoint is of the ledger of {self.ledger}, not "
                                       f"of this ledger's owner {owner}")
        if not verify_signature(self.ledger, self.signing_bytes(),
                                bytes.fromhex(self.signature)):
            raise BadContractSignature(f"the checkpoint of entry {self.seq} is not signed by "
                                       f"{self.ledger} (forged or edited)")

    def to_json(self) -> str:
        """The checkpoint as one line of JSON (what ``aaex ledger checkpoint`` writes)."""
        return json.dumps(self.model_dump(), sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes) -> Checkpoint:
        """Parse a checkpoint written by `to_json`; the signature is not checked here.

        Raises:
            MalformedContract: not JSON, a missing or extra field, or a value out of range.
        """
        if len(text) > MAX_CHECKPOINT_BYTES:
            raise MalformedContract(f"not a checkpoint: {len(text)} bytes, more than "
                                    f"{MAX_CHECKPOINT_BYTES}")
        try:
            return cls.model_validate_json(text)
        except ValidationError as exc:
            raise MalformedContract(f"not a checkpoint: {_first_problem(exc)}") from None

    @classmethod
    def load(cls, path: str | Path) -> Checkpoint:
        """Read a checkpoint file.

        Raises:
            UsageError: the file cannot be read.
            MalformedContract: it is not a checkpoint.
        """
        source = Path(path)
        try:
            with source.open("rb") as handle:
                data = handle.read(MAX_CHECKPOINT_BYTES + 1)
        except OSError as exc:
            raise UsageError(f"cannot read checkpoint {source}: {exc.strerror}") from None
        return cls.from_json(data)


def _signing_bytes(fields: dict[str, object]) -> bytes:
    return CHECKPOINT_TAG + json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()


def _first_problem(exc: ValidationError) -> str:
    first = exc.errors(include_url=False)[0]
    where = ".".join(str(part) for part in first["loc"]) or "(root)"
    return f"{where}: {first['msg']}"
