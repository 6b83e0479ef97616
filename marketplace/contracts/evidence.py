"""A dispute's evidence bundle: everything a third party needs to check it, offline.

`aaex dispute export` writes one JSON file: the agreement both parties signed, the dispute
its raiser signed (with the receipt it refuses, or what the buyer observed), the seller's
signed delivery, the resolution when there is one, and the exporting node's signature over
all of it (tag ``aaex/evidence/1``), so a copy cannot be trimmed unnoticed. `verify_evidence`
(``aaex dispute verify FILE``) needs nothing but the file: every signature is checked against
the addresses inside, and the conflicts the dispute states are recomputed from the signed
facts (marketplace.contracts.dispute).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from aaex_agents.identity import Identity, verify_signature

from .agreement import SignedAgreement
from .dispute import Conflict, SignedDispute, SignedResolution, check_dispute
from .errors import BadContractSignature, MalformedContract
from .signing import Address, signing_bytes

EVIDENCE_TAG = "aaex/evidence/1"


class EvidenceBody(BaseModel):
    """What the exporting node signs."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    format: str = Field(default=EVIDENCE_TAG, pattern=r"^aaex/evidence/1$")
    agreement: str = Field(pattern=r"^[0-9a-f]+$")
    """The signed agreement's wire form, hex."""
    dispute: str = Field(pattern=r"^[0-9a-f]+$")
    """The signed dispute's wire form, hex."""
    delivery: dict[str, Any] | None
    """The seller's signed delivery (None: it delivered nothing)."""
    resolution: dict[str, Any] | None = None
    exported_by: Address
    exported_at_ms: int = Field(gt=0)


class Evidence(BaseModel):
    """An evidence bundle: the body and the exporting node's signature (hex)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    body: EvidenceBody
    signature: str = Field(pattern=r"^[0-9a-f]{128}$")


@dataclass(frozen=True, slots=True)
class CheckedEvidence:
    """What `verify_evidence` established."""

    signed: SignedAgreement
    dispute: SignedDispute
    conflicts: tuple[Conflict, ...]
    resolution: SignedResolution | None
    delivery: dict[str, Any] | None = None
    """The seller's signed delivery the bundle carries (checked with the dispute)."""


def export_evidence(signed: SignedAgreement, dispute: SignedDispute,
                    delivery: dict[str, Any] | None, resolution: SignedResolution | None, *,
                    exporter: Identity, now_ms: int) -> Evidence:
    """The bundle for one dispute, signed by `exporter` (the node's key)."""
    body = EvidenceBody(agreement=signed.to_wire().hex(), dispute=dispute.to_wire().hex(),
                        delivery=delivery, exported_by=exporter.address,
                        exported_at_ms=now_ms,
                        resolution=None if resolution is None
                        else resolution.model_dump(mode="json"))
    return Evidence(body=body, signature=exporter.sign(signing_bytes(EVIDENCE_TAG, body)).hex())


def verify_evidence(document: object) -> CheckedEvidence:
    """Check a bundle as a third party: every signature, and that the conflicts follow.

    Raises:
        MalformedContract: not an evidence bundle.
        BadContractSignature, ReceiptMismatch: a signature fails, or the dispute states
            conflicts its evidence does not give, or the resolution does not verify.
    """
    try:
        evidence = Evidence.model_validate(document)
        body = evidence.body
        signed = SignedAgreement.from_wire(bytes.fromhex(body.agreement))
        dispute = SignedDispute.from_wire(bytes.fromhex(body.dispute))
        resolution = (None if body.resolution is None
                      else SignedResolution.model_validate(body.resolution))
    except (ValidationError, ValueError) as exc:
        raise MalformedContract(f"not an AAEX evidence bundle: {exc}") from None
    if not verify_signature(body.exported_by, signing_bytes(EVIDENCE_TAG, body),
                            bytes.fromhex(evidence.signature)):
        raise BadContractSignature(f"the bundle's signature does not verify against its "
                                   f"exporter {body.exported_by}: it was changed after export")
    check_dispute(signed, dispute, body.delivery)
    if resolution is not None:
        resolution.verify_against(signed)
    return CheckedEvidence(signed, dispute, dispute.dispute.conflicts, resolution,
                           body.delivery)
