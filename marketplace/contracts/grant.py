"""Purpose-bound grants: a data owner's signed permission to use one dataset, and its revocation.

A `Grant` says: the owner lets the grantee do these actions with this dataset (named by id
and content hash), for these purposes, from ``not_before_ms`` until ``not_after_ms``, and
whether the grantee may pass the data on. The owner signs ``"aaex/grant/1" || 0x00 ||
canonical JSON`` (marketplace.contracts.signing); the grant's id is the sha256 of those
bytes. A `Revocation` is the owner's signature over a grant id: from then on the grant
covers nothing.

A grant is a subset of W3C ODRL 2.2 and `odrl_document` exports it as ODRL JSON-LD (an
``Agreement`` between assigner and assignee; one permission per action; constraints on
``purpose`` with ``isAnyOf`` and on ``dateTime`` with ``gteq``/``lt``; passing on is the
duty-free ``distribute`` action, prohibited outright when not granted since ODRL's ``use``
includes it). `check_use` decides a use by evaluating exactly that
export with `marketplace.contracts.odrl`, the evaluator tested against the public ODRL Test
Suite, and names the first reason it does not cover the use.

Vocabulary (documented in docs/sovereignty.md):

- actions: ``use`` (any of the others), ``read``, ``derive``, ``delete``; ``distribute``
  (passing the data on) is granted by ``transferable``, never listed in `actions`;
- purposes: ``inference``, ``training``, ``analytics``, ``research``, or a capability name
  (``forecast.demand``: the data may be used to perform that capability).
"""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from aaex_agents.identity import Identity, verify_signature

from .errors import BadContractSignature, MalformedContract
from .odrl import ODRL_CONTEXT, Request, evaluate, parse_policy, permitted
from .signing import Address, content_id, decode_wire, encode_wire, signing_bytes

GRANT_TAG = "aaex/grant/1"
REVOCATION_TAG = "aaex/grant_revocation/1"

ACTIONS = ("use", "read", "derive", "delete")
"""Actions a grant may list; ``use`` includes the others (ODRL's ``odrl:includedIn``)."""
DISTRIBUTE = "distribute"
"""The action of passing the data on: covered when the grant is `transferable`."""
PURPOSES = ("inference", "training", "analytics", "research")
"""Purposes with a fixed meaning; a capability name (``forecast.demand``) is one too."""
PURPOSE_IRI = "https://aaex.dev/purpose/"
"""Prefix of a purpose's IRI in the ODRL export."""

_CAPABILITY = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")
_HEX64 = r"^[0-9a-f]{64}$"
_DATASET_ID = r"^[A-Za-z0-9_.:/-]{1,128}$"


def is_purpose(name: str) -> bool:
    """True for a purpose of the vocabulary: one of `PURPOSES` or a capability name."""
    return name in PURPOSES or bool(_CAPABILITY.match(name))


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds") \
        .replace("+00:00", "Z")


class Grant(BaseModel):
    """What the owner signs. Sign with `SignedGrant.issue`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    owner: Address
    """The data owner (ODRL assigner); only its key can sign or revoke the grant."""
    grantee: Address
    """The agent allowed to use the data (ODRL assignee)."""
    dataset_id: str = Field(pattern=_DATASET_ID)
    """The owner's name for the dataset."""
    dataset_hash: str = Field(pattern=_HEX64)
    """sha256 (hex) of the dataset's canonical JSON (`marketplace.trade.grants.data_hash`)."""
    actions: tuple[str, ...] = Field(min_length=1, max_length=len(ACTIONS))
    """What the grantee may do with the data (see `ACTIONS`)."""
    purposes: tuple[str, ...] = Field(min_length=1, max_length=16)
    """What for (see `PURPOSES`)."""
    not_before_ms: int = Field(gt=0)
    """Unix ms from which the grant covers a use (inclusive: ODRL ``gteq``)."""
    not_after_ms: int = Field(gt=0)
    """Unix ms from which it no longer does (exclusive: ODRL ``lt``)."""
    transferable: bool = False
    """Whether the grantee may pass the data on (ODRL ``distribute``)."""
    nonce: str = Field(default_factory=lambda: os.urandom(16).hex(), pattern=r"^[0-9a-f]{32}$")
    """128 random bits: two grants of identical terms still get different ids."""

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.owner == self.grantee:
            raise ValueError("owner and grantee must be different agents")
        bad = [a for a in self.actions if a not in ACTIONS]
        if bad:
            raise ValueError(f"actions: {bad[0]!r} is not one of {', '.join(ACTIONS)} "
                             "(passing on is `transferable`)")
        bad = [p for p in self.purposes if not is_purpose(p)]
        if bad:
            raise ValueError(f"purposes: {bad[0]!r} is not one of {', '.join(PURPOSES)} "
                             "or a capability name such as forecast.demand")
        if len(set(self.actions)) != len(self.actions) or \
                len(set(self.purposes)) != len(self.purposes):
            raise ValueError("actions and purposes must not repeat")
        if self.not_after_ms <= self.not_before_ms:
            raise ValueError(f"not_after_ms ({self.not_after_ms}) must be after not_before_ms "
                             f"({self.not_before_ms})")
        return self

    @property
    def id(self) -> str:
        """Hex sha256 of the signed bytes: the grant's id in agreements and revocations."""
        return content_id(GRANT_TAG, self)


class SignedGrant(BaseModel):
    """A grant with its owner's signature; travels in calls for proposals and tasks."""

    model_config = ConfigDict(frozen=True, extra="forbid", ser_json_bytes="base64",
                              val_json_bytes="base64")

    grant: Grant
    signature: bytes = Field(min_length=64, max_length=64)

    @classmethod
    def issue(cls, grant: Grant, owner: Identity) -> SignedGrant:
        """Sign `grant` as its owner.

        Raises:
            BadContractSignature: `owner` is not the grant's owner.
        """
        if owner.address != grant.owner:
            raise BadContractSignature(f"grant names owner {grant.owner}; {owner.address} "
                                       "cannot sign it")
        return cls(grant=grant, signature=owner.sign(signing_bytes(GRANT_TAG, grant)))

    @property
    def id(self) -> str:
        """The grant's id."""
        return self.grant.id

    def verify(self) -> None:
        """Raise BadContractSignature unless the owner signed this grant."""
        if not verify_signature(self.grant.owner, signing_bytes(GRANT_TAG, self.grant),
                                self.signature):
            raise BadContractSignature(f"the owner's signature on grant {self.id[:12]} does "
                                       f"not verify against {self.grant.owner}")

    def to_wire(self) -> bytes:
        """``[tag, body, signature]`` in msgpack."""
        return encode_wire(GRANT_TAG, self.grant, [self.signature])

    @classmethod
    def from_wire(cls, data: bytes) -> SignedGrant:
        """Decode and verify a signed grant.

        Raises:
            MalformedContract: not a canonical grant.
            BadContractSignature: the owner's signature does not verify.
        """
        grant, (signature,) = decode_wire(data, GRANT_TAG, Grant, signatures=1)
        signed = cls(grant=grant, signature=signature)
        signed.verify()
        return signed

    @classmethod
    def from_json(cls, text: str | bytes) -> SignedGrant:
        """Read and verify a grant file (what `aaex grant issue` writes).

        Raises:
            MalformedContract: not a grant document.
            BadContractSignature: the owner's signature does not verify.
        """
        try:
            signed = cls.model_validate_json(text)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "(root)"
            raise MalformedContract(f"grant: {where}: {first['msg']}") from None
        signed.verify()
        return signed


class Revocation(BaseModel):
    """The owner's withdrawal of a grant, from `revoked_at_ms` on."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    grant_id: str = Field(pattern=_HEX64)
    owner: Address
    """Must be the grant's owner: anyone else's revocation revokes nothing."""
    revoked_at_ms: int = Field(gt=0)


class SignedRevocation(BaseModel):
    """A revocation with the owner's signature; a market message carries it to the grantee."""

    model_config = ConfigDict(frozen=True, extra="forbid", ser_json_bytes="base64",
                              val_json_bytes="base64")

    revocation: Revocation
    signature: bytes = Field(min_length=64, max_length=64)

    @classmethod
    def revoke(cls, grant: SignedGrant, owner: Identity, at_ms: int) -> SignedRevocation:
        """Revoke `grant` as its owner, at `at_ms`.

        Raises:
            BadContractSignature: `owner` is not the grant's owner.
        """
        if owner.address != grant.grant.owner:
            raise BadContractSignature(f"only {grant.grant.owner} can revoke grant "
                                       f"{grant.id[:12]}")
        revocation = Revocation(grant_id=grant.id, owner=owner.address, revoked_at_ms=at_ms)
        return cls(revocation=revocation,
                   signature=owner.sign(signing_bytes(REVOCATION_TAG, revocation)))

    def verify(self) -> None:
        """Raise BadContractSignature unless the named owner signed this revocation."""
        r = self.revocation
        if not verify_signature(r.owner, signing_bytes(REVOCATION_TAG, r), self.signature):
            raise BadContractSignature(f"the revocation of grant {r.grant_id[:12]} is not "
                                       f"signed by {r.owner}")

    def revokes(self, grant: SignedGrant) -> bool:
        """True when this is the owner's revocation of `grant` (signature checked)."""
        if self.revocation.grant_id != grant.id or self.revocation.owner != grant.grant.owner:
            return False
        try:
            self.verify()
        except BadContractSignature:
            return False
        return True


def agent_iri(address: str) -> str:
    """An agent's identifier in ODRL documents."""
    return f"urn:aaex:agent:{address}"


def dataset_iri(grant: Grant) -> str:
    """The dataset's identifier in ODRL documents: its id and content hash together."""
    return f"urn:aaex:dataset:{grant.dataset_id}#sha256={grant.dataset_hash}"


def odrl_document(signed: SignedGrant) -> dict[str, Any]:
    """The grant as an ODRL 2.2 ``Agreement`` in compacted JSON-LD.

    The owner's signature rides along as ``aaex:signature`` (hex), outside ODRL's meaning.
    """
    grant = signed.grant
    constraints = [
        {"leftOperand": "purpose", "operator": "isAnyOf",
         "rightOperand": [{"@id": PURPOSE_IRI + p} for p in grant.purposes]},
        {"leftOperand": "dateTime", "operator": "gteq",
         "rightOperand": {"@value": _iso(grant.not_before_ms), "@type": "xsd:dateTime"}},
        {"leftOperand": "dateTime", "operator": "lt",
         "rightOperand": {"@value": _iso(grant.not_after_ms), "@type": "xsd:dateTime"}},
    ]
    parties = {"target": dataset_iri(grant), "assigner": agent_iri(grant.owner),
               "assignee": agent_iri(grant.grantee)}
    actions = list(grant.actions) + ([DISTRIBUTE] if grant.transferable else [])
    permissions = [{"uid": f"urn:aaex:grant:{signed.id}:{action}", **parties,
                    "action": action, "constraint": constraints} for action in actions]
    document: dict[str, Any] = {
        "@context": [ODRL_CONTEXT, {"aaex": "https://aaex.dev/ns#",
                                    "xsd": "http://www.w3.org/2001/XMLSchema#"}],
        "@type": "Agreement", "uid": f"urn:aaex:grant:{signed.id}",
        "permission": permissions, "aaex:signature": signed.signature.hex()}
    if not grant.transferable:  # `use` includes `distribute` in ODRL: say no explicitly
        document["prohibition"] = [{"uid": f"urn:aaex:grant:{signed.id}:no-{DISTRIBUTE}",
                                    **parties, "action": DISTRIBUTE}]
    return document


def check_use(signed: SignedGrant, *, user: str, action: str, purpose: str,
              dataset_hash: str, now_ms: int,
              revocation: SignedRevocation | None = None) -> str | None:
    """Why `signed` does not cover `user` doing `action` for `purpose` now; None if it does.

    The reason is one line starting with a stable word: ``bad signature``, ``revoked``,
    ``not the grantee``, ``dataset hash mismatch``, ``outside action``, ``outside purpose``
    or ``outside window``. The decision is the ODRL evaluation of `odrl_document`.
    """
    grant = signed.grant
    try:
        signed.verify()
    except BadContractSignature as exc:
        return f"bad signature: {exc}"
    if revocation is not None and revocation.revokes(signed) and \
            revocation.revocation.revoked_at_ms <= now_ms:
        return (f"revoked: grant {signed.id[:12]} was revoked by its owner at "
                f"{_iso(revocation.revocation.revoked_at_ms)}")
    request = Request(assignee=agent_iri(user), action=action,
                      target=f"urn:aaex:dataset:{grant.dataset_id}#sha256={dataset_hash}",
                      at=datetime.fromtimestamp(now_ms / 1000, UTC),
                      purpose=PURPOSE_IRI + purpose)
    reports = evaluate(parse_policy(odrl_document(signed)), request)
    if permitted(reports):
        return None
    if any(r.active for r in reports if r.rule.kind == "prohibition"):
        return (f"outside action: grant {signed.id[:12]} does not let the data be passed on "
                f"({action!r})")
    reports = [r for r in reports if r.rule.kind == "permission"]
    failed = {name for r in reports for name in r.failed()}
    if "party" in failed:
        return f"not the grantee: grant {signed.id[:12]} is for {grant.grantee}, not {user}"
    if "target" in failed:
        return (f"dataset hash mismatch: the data hashes to {dataset_hash[:12]}, grant "
                f"{signed.id[:12]} covers {grant.dataset_id} ({grant.dataset_hash[:12]})")
    if all("action" in r.failed() for r in reports):
        allowed = list(grant.actions) + ([DISTRIBUTE] if grant.transferable else [])
        return f"outside action: {action!r} is not granted (granted: {', '.join(allowed)})"
    if purpose not in grant.purposes:
        return (f"outside purpose: {purpose!r} is not granted (granted: "
                f"{', '.join(grant.purposes)})")
    return (f"outside window: the grant covers {_iso(grant.not_before_ms)} to "
            f"{_iso(grant.not_after_ms)}, not {_iso(now_ms)}")
