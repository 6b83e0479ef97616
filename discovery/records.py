"""Signed, expiring discovery records: the agent record and the service ad.

Wire form: the msgpack array ``[kind_tag, body, signature]``, where `body` is the record's
canonical JSON (sorted keys, no spaces) and the Ed25519 signature covers ``kind_tag || 0 ||
body``. The tag separates record signatures from envelope signatures and from each other,
so no signature can be replayed in another context. Expiry lives inside the signed body
(py-libp2p keeps DHT values 24 h whatever we want), and every reader re-verifies.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, ClassVar, Literal, TypeVar

import msgpack
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from aaex_agents.address import public_key_from_address
from aaex_agents.errors import UsageError
from aaex_agents.identity import Identity, verify_signature
from aaex_agents.interop.binding import AddressBinding
from aaex_agents.money import NonNegativeCredits

from .errors import BadRecordSignature, MalformedRecord, RecordExpired
from .schema import MAX_SCHEMA_BYTES, schema_bytes

R = TypeVar("R", bound="SignedRecord")

AttributeValue = str | int | float | bool | list[str] | list[int] | list[float]


class SignedRecord(BaseModel):
    """Base of records an agent signs: `address` signs, `seq` orders, `expires_at` ends."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    kind: ClassVar[str]
    omit_when_none: ClassVar[frozenset[str]] = frozenset()
    """Optional fields added later, left out of the signed body while None.

    Records signed before such a field existed keep their canonical form and signatures.
    """

    address: str
    """The signing agent."""
    seq: int = Field(ge=0)
    """Sequence number; of two valid records for one key, the higher wins."""
    expires_at: float
    """Unix time after which the record is void."""

    def signing_bytes(self) -> bytes:
        """Exactly what the signature covers."""
        return self.kind.encode() + b"\x00" + _canonical(self)

    def sign(self, identity: Identity) -> bytes:
        """Return the wire form of this record, signed by `identity`.

        Raises:
            UsageError: `identity` is not the record's agent.
        """
        if identity.address != self.address:
            raise UsageError(f"{self.kind} for {self.address} cannot be signed by "
                             f"{identity.address}")
        wire: bytes = msgpack.packb(
            [self.kind, _canonical(self), identity.sign(self.signing_bytes())])
        return wire

    @classmethod
    def verify(cls: type[R], data: bytes, *, now: float) -> R:
        """Decode and check a wire record: structure, signature and expiry.

        Raises:
            MalformedRecord, BadRecordSignature, RecordExpired
        """
        try:
            outer = msgpack.unpackb(data, raw=False)
        except (ValueError, msgpack.UnpackException) as exc:
            raise MalformedRecord(f"{cls.kind}: not msgpack: {exc}") from exc
        if not (isinstance(outer, list) and len(outer) == 3 and outer[0] == cls.kind
                and isinstance(outer[1], bytes) and isinstance(outer[2], bytes)):
            raise MalformedRecord(f"not a {cls.kind} record")
        _, body, signature = outer
        try:
            record = cls.model_validate_json(body)
            public_key_from_address(record.address)
        except (ValueError, ValidationError, UsageError) as exc:
            raise MalformedRecord(f"{cls.kind}: {exc}") from exc
        if body != _canonical(record):
            raise MalformedRecord(f"{cls.kind}: body is not in canonical form")
        if not verify_signature(record.address, record.signing_bytes(), signature):
            raise BadRecordSignature(f"{cls.kind} of {record.address} has a bad signature")
        if record.expires_at < now:
            raise RecordExpired(f"{cls.kind} of {record.address} expired "
                                f"{now - record.expires_at:.0f} s ago")
        return record


class ProofOfRepresentation(BaseModel):
    """The agent's signed statement that a node (libp2p peer id) speaks for it.

    Valid until `expires_at`. (Fetch.ai's ACN signs only this binding; we also sign every
    message.)
    """

    model_config = ConfigDict(frozen=True, extra="forbid")
    peer_id: str
    expires_at: float
    signature: str
    """Hex of the agent's Ed25519 signature over `statement(...)`."""

    @staticmethod
    def statement(address: str, peer_id: str, expires_at: float) -> bytes:
        """The bytes the agent signs."""
        return f"aaex/representation\x00{address}\x00{peer_id}\x00{expires_at!r}".encode()

    @classmethod
    def create(cls, identity: Identity, peer_id: str, expires_at: float) -> ProofOfRepresentation:
        """Sign that `peer_id` represents `identity` until `expires_at`."""
        return cls(peer_id=peer_id, expires_at=expires_at,
                   signature=identity.sign(
                       cls.statement(identity.address, peer_id, expires_at)).hex())

    def holds_for(self, address: str, peer_id: str, now: float) -> bool:
        """True when this is `address`'s valid, unexpired proof for `peer_id`."""
        try:
            signature = bytes.fromhex(self.signature)
        except ValueError:
            return False
        return (self.peer_id == peer_id and self.expires_at >= now and verify_signature(
            address, self.statement(address, peer_id, self.expires_at), signature))


class AgentRecord(SignedRecord):
    """Where and how to reach an agent; stored in the DHT under `agent_record_key(address)`."""

    kind: ClassVar[str] = "aaex/agent-record/1"
    peer_id: str
    """The libp2p peer id of the node hosting the agent."""
    peer_addrs: list[str] = []
    """Dialable multiaddrs of that node, each ending in /p2p/<peer id>."""
    http_endpoints: list[str] = []
    """HTTP envelope endpoints of the node, if it serves HTTP."""
    protocols: list[str] = []
    """Protocol names the agent speaks."""
    proof: ProofOfRepresentation
    """The agent's signed binding to `peer_id`."""
    uagents: AddressBinding | None = None
    """The agent's uAgents address (``agent1...``), bound by both keys; None when the node
    does not serve uAgents. Left out of the signed body while None (see `omit_when_none`)."""

    encryption_key: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    """Hex of the agent's X25519 public key, which peers seal envelopes to (see
    `aaex_agents.sealing`); bound to the agent by this record's signature. None in records
    signed before keys were published, and left out of the signed body while None."""

    omit_when_none: ClassVar[frozenset[str]] = frozenset({"uagents", "encryption_key"})

    def check_proof(self, now: float) -> None:
        """Raise BadRecordSignature unless the record's bindings hold.

        The proof must bind this agent to `peer_id` now; a uAgents address binding, when
        present, must name this agent and be signed by both keys.
        """
        if not self.proof.holds_for(self.address, self.peer_id, now):
            raise BadRecordSignature(f"agent record of {self.address}: the proof of "
                                     f"representation does not bind it to {self.peer_id}")
        if self.uagents is not None and (self.uagents.aaex != self.address
                                         or not self.uagents.holds()):
            raise BadRecordSignature(f"agent record of {self.address}: its uAgents address "
                                     "binding is not signed by both of its keys")

    def endpoints(self) -> list[str]:
        """Every envelope endpoint, fastest transport first (HTTP on a LAN beats libp2p)."""
        return [*self.http_endpoints, *self.peer_addrs]


class PriceModel(BaseModel):
    """How the seller charges."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    kind: Literal["fixed", "per_unit", "per_1k_tokens"] = "fixed"
    amount: NonNegativeCredits
    """Price per task, per unit or per 1,000 tokens, in `currency` (integer micro-credits
    on the wire)."""
    currency: str = "credit"


class SlaOffer(BaseModel):
    """What the seller promises."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    p50_ms: float = Field(ge=0)
    p95_ms: float = Field(ge=0)
    deadline_s: float = Field(gt=0)
    """Longest time from award to delivery."""
    availability: float = Field(ge=0, le=1)


class AccessPolicy(BaseModel):
    """Who may buy: anyone, or only listed agents or organisations."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    open: bool = True
    agents: list[str] = []
    organisations: list[str] = []


class ServiceAd(SignedRecord):
    """One capability an agent sells, with price, SLA and attributes."""

    kind: ClassVar[str] = "aaex/service-ad/2"
    """Version 2: `PriceModel.amount` is integer micro-credits (version 1 had a float);
    a version-1 ad is refused as not a record of this kind."""
    capability: str = Field(pattern=r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")
    """Dotted capability name, e.g. ``forecast.demand``."""
    capability_version: int = Field(default=1, ge=1)
    price: PriceModel
    sla: SlaOffer
    attributes: dict[str, AttributeValue] = {}
    """Region, model name, quantization, GPU, measured tokens/s, queue depth, ..."""
    access: AccessPolicy = AccessPolicy()
    withdrawn: bool = False
    """A signed tombstone: the seller stopped offering this capability."""
    task_schema: dict[str, Any] | None = None
    """The JSON Schema of the task the seller takes (see discovery.schema); None: unstated.
    Left out of the signed body while None, as `result_schema` is."""
    result_schema: dict[str, Any] | None = None
    """The JSON Schema of the result the seller delivers; None: unstated."""

    omit_when_none: ClassVar[frozenset[str]] = frozenset({"task_schema", "result_schema"})

    @field_validator("task_schema", "result_schema")
    @classmethod
    def _schema_fits(cls, schema: dict[str, Any] | None) -> dict[str, Any] | None:
        if schema is not None and schema_bytes(schema) > MAX_SCHEMA_BYTES:
            raise ValueError(f"a schema of {schema_bytes(schema)} bytes, over the "
                             f"{MAX_SCHEMA_BYTES} an ad may carry")
        return schema


def _canonical(record: BaseModel) -> bytes:
    omitted = {name for name in getattr(record, "omit_when_none", ())
               if getattr(record, name) is None}
    document: dict[str, Any] = record.model_dump(mode="json", exclude=omitted)
    return json.dumps(document, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode()


AGENT_NAMESPACE = "aaex"


def agent_record_key(address: str) -> str:
    """DHT key of an agent record: short, because FIND_NODE refuses long plain keys."""
    digest = hashlib.sha256(public_key_from_address(address)).hexdigest()[:32]
    return f"/{AGENT_NAMESPACE}/{digest}"


def capability_shard_key(capability: str, shard: int) -> bytes:
    """Kademlia key (a sha2-256 multihash) of one shard of a capability's index."""
    return b"\x12\x20" + hashlib.sha256(f"aaex/cap/{capability}/{shard}".encode()).digest()


def shard_of(address: str, shards: int) -> int:
    """The index shard an agent's ads live in: spread evenly, stable per agent."""
    return int.from_bytes(hashlib.sha256(address.encode()).digest()[:8], "big") % shards
