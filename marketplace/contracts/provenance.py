"""Provenance of a delivery: which inputs, which model and which code produced a result.

The seller signs ``"aaex/provenance/1" || 0x00 || canonical JSON`` of a `Provenance` when it
delivers: the agreement, the result's hash, the inputs (the task's hash, and for data used
under a grant the data's hash with the grant's id), the model (a name and the hash of the
file that holds it: a GGUF file's sha256 for a language model, the agent module's source
otherwise) and the code version. It travels with the result, and anyone holding the result
and the seller's address checks it offline (`problems`, ``aaex provenance verify``).
"""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Mapping
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from aaex_agents.identity import Identity, verify_signature

from .delivery import result_hash
from .errors import BadContractSignature, MalformedContract
from .signing import Address, content_id, signing_bytes

PROVENANCE_TAG = "aaex/provenance/1"

_HEX64 = r"^[0-9a-f]{64}$"


def _unset(value: object) -> bool:
    return value is None


class InputRef(BaseModel):
    """One input of the work: its content hash, and the grant it was used under (if any)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    hash: str = Field(pattern=_HEX64)
    """sha256 (hex) of the input's canonical JSON."""
    role: str = Field(pattern=r"^(task|data)$")
    """``task``: the whole task as the agreement names it; ``data``: the granted data in it."""
    grant_id: str | None = Field(default=None, pattern=_HEX64, exclude_if=_unset)
    """The grant the data was used under; None for the task itself."""


class ModelRef(BaseModel):
    """The model that produced the result: a name and the hash of the file holding it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    file_hash: str = Field(pattern=_HEX64)


class Provenance(BaseModel):
    """What the seller signs about how a result was produced."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    agreement_id: str = Field(pattern=_HEX64)
    seller: Address
    result_hash: str = Field(pattern=_HEX64)
    inputs: tuple[InputRef, ...] = Field(min_length=1, max_length=16)
    model: ModelRef
    code_version: str = Field(min_length=1, max_length=200)
    """The package version and the hash of the agent's module source (``0.1.0+src.1a2b...``)."""
    produced_at_ms: int = Field(gt=0)

    @property
    def id(self) -> str:
        """Hex sha256 of the signed bytes."""
        return content_id(PROVENANCE_TAG, self)


class SignedProvenance(BaseModel):
    """A provenance record with the seller's signature; the ``provenance`` of a delivery."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    provenance: Provenance
    signature: str = Field(pattern=r"^[0-9a-f]{128}$")
    """The seller's Ed25519 signature (hex)."""

    @classmethod
    def sign(cls, provenance: Provenance, seller: Identity) -> SignedProvenance:
        """Sign `provenance` as its seller.

        Raises:
            BadContractSignature: `seller` is not the record's seller.
        """
        if seller.address != provenance.seller:
            raise BadContractSignature(f"the provenance names seller {provenance.seller}; "
                                       f"{seller.address} cannot sign it")
        return cls(provenance=provenance,
                   signature=seller.sign(signing_bytes(PROVENANCE_TAG, provenance)).hex())

    def verify(self) -> None:
        """Raise BadContractSignature unless the named seller signed this record."""
        p = self.provenance
        if not verify_signature(p.seller, signing_bytes(PROVENANCE_TAG, p),
                                bytes.fromhex(self.signature)):
            raise BadContractSignature(f"the provenance of agreement {p.agreement_id[:12]} is "
                                       f"not signed by {p.seller}")

    @classmethod
    def parse(cls, document: Any) -> SignedProvenance:
        """A record from its JSON document (not verified).

        Raises:
            MalformedContract: not a provenance document.
        """
        try:
            return cls.model_validate(document)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "(root)"
            raise MalformedContract(f"provenance: {where}: {first['msg']}") from None


def problems(signed: SignedProvenance, *, result: Mapping[str, Any] | None = None,
             task_hash: str | None = None, seller: str | None = None,
             agreement_id: str | None = None, grant_id: str | None = None) -> list[str]:
    """What is wrong with `signed` for this delivery, first problem first; [] when nothing.

    Each given fact must match: the seller signed it (always checked), the result hashes to
    the signed digest, the task hash is among the inputs, and so on.
    """
    p = signed.provenance
    found: list[str] = []
    try:
        signed.verify()
    except BadContractSignature as exc:
        found.append(f"signature: {exc}")
    if seller is not None and p.seller != seller:
        found.append(f"seller: the record names {p.seller}, the delivery came from {seller}")
    if agreement_id is not None and p.agreement_id != agreement_id:
        found.append(f"agreement: the record is for {p.agreement_id[:12]}, not "
                     f"{agreement_id[:12]}")
    if result is not None and result_hash(result) != p.result_hash:
        found.append(f"result: it hashes to {result_hash(result)[:12]}, the record signs "
                     f"{p.result_hash[:12]}")
    if task_hash is not None and not any(i.role == "task" and i.hash == task_hash
                                         for i in p.inputs):
        found.append(f"inputs: the task sent ({task_hash[:12]}) is not among the signed inputs")
    if grant_id is not None and not any(i.grant_id == grant_id for i in p.inputs):
        found.append(f"inputs: grant {grant_id[:12]} is not among the signed inputs")
    return found


def file_sha256(path: Path) -> str:
    """sha256 (hex) of a file, read in 1 MiB blocks (a model file can be gigabytes)."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def code_model(cls: type) -> tuple[ModelRef, str]:
    """The model and code version of an agent class that runs no model file.

    The model is the class (module and name) with the sha256 of its module's source; the
    code version is the package version with the first 12 hex of that hash.
    """
    try:
        source = inspect.getsource(inspect.getmodule(cls) or cls).encode()
    except (OSError, TypeError):
        source = f"{cls.__module__}.{cls.__qualname__}".encode()
    digest = hashlib.sha256(source).hexdigest()
    return (ModelRef(name=f"{cls.__module__}.{cls.__qualname__}", file_hash=digest),
            f"{package_version()}+src.{digest[:12]}")


def package_version() -> str:
    """The installed aaex-agents version, or ``unknown``."""
    try:
        return version("aaex-agents")
    except PackageNotFoundError:
        return "unknown"
