"""Canonical bytes, content ids and the wire form shared by agreements and receipts.

A contract's *body* is its canonical JSON: sorted keys, no spaces, UTF-8, produced from a
validated pydantic model that holds only strings, integers and nested models (no floats, so
no two encoders can disagree about a number). What a party signs is ``tag || 0x00 || body``;
the tag (``aaex/agreement/1``, ``aaex/receipt/1``) separates these signatures from envelope
and discovery-record signatures, so none can be lifted from one context into another. The
id of a contract is the sha256 of those same bytes: it names the content, not the
signatures, so every party and every third party computes the same id.

The wire form is the msgpack array ``[tag, body, signature, ...]``. A reader accepts it only
if re-encoding what it decoded gives back exactly the bytes it read: one content, one
encoding, so a flipped bit can never yield a different but still "valid" document.
"""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Any, TypeVar

import msgpack
from pydantic import AfterValidator, BaseModel, ValidationError

from aaex_agents.address import public_key_from_address
from aaex_agents.errors import UsageError
from aaex_agents.identity import SIGNATURE_BYTES

from .errors import MalformedContract

M = TypeVar("M", bound=BaseModel)


def _check_address(value: str) -> str:
    try:
        public_key_from_address(value)
    except UsageError as exc:
        raise ValueError(str(exc)) from None
    return value


Address = Annotated[str, AfterValidator(_check_address)]
"""An agent address (``aaex1...``), checked when a model is validated."""


def canonical_json(model: BaseModel) -> bytes:
    """The canonical body of `model`: sorted keys, compact separators, UTF-8."""
    document: dict[str, Any] = model.model_dump(mode="json")
    return json.dumps(document, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode()


def signing_bytes(tag: str, model: BaseModel) -> bytes:
    """Exactly what a party signs for `model` in the context `tag`."""
    return tag.encode() + b"\x00" + canonical_json(model)


def content_id(tag: str, model: BaseModel) -> str:
    """Hex sha256 of `signing_bytes(tag, model)`: the stable id of the content."""
    return hashlib.sha256(signing_bytes(tag, model)).hexdigest()


def sha256_hex(data: bytes) -> str:
    """Hex sha256 of `data`; how task descriptions and results are named in terms."""
    return hashlib.sha256(data).hexdigest()


def encode_wire(tag: str, model: BaseModel, signatures: list[bytes]) -> bytes:
    """The msgpack array ``[tag, body, *signatures]``."""
    packed: bytes = msgpack.packb([tag, canonical_json(model), *signatures], use_bin_type=True)
    return packed


def decode_wire(data: bytes, tag: str, cls: type[M], signatures: int) -> tuple[M, list[bytes]]:
    """Decode ``[tag, body, *signatures]`` strictly; the signatures are not checked here.

    Raises:
        MalformedContract: not msgpack, another tag, wrong arity, a body that does not
            validate as `cls`, or any encoding other than the canonical one.
    """
    try:
        outer = msgpack.unpackb(data, raw=False)
    except (ValueError, msgpack.UnpackException) as exc:
        raise MalformedContract(f"{tag}: not msgpack: {exc}") from exc
    if not (isinstance(outer, list) and len(outer) == 2 + signatures and outer[0] == tag
            and all(isinstance(part, bytes) for part in outer[1:])):
        raise MalformedContract(f"not a {tag} document ([tag, body, {signatures} signature(s)])")
    body: bytes = outer[1]
    sigs: list[bytes] = outer[2:]
    if any(len(sig) != SIGNATURE_BYTES for sig in sigs):
        raise MalformedContract(f"{tag}: a signature is not {SIGNATURE_BYTES} bytes")
    try:
        model = cls.model_validate_json(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "(root)"
        raise MalformedContract(f"{tag}: {where}: {first['msg']}") from exc
    if canonical_json(model) != body or encode_wire(tag, model, sigs) != data:
        raise MalformedContract(f"{tag}: not in canonical form")
    return model, sigs
