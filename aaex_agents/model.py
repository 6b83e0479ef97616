"""Typed messages whose wire identity is a name chosen on purpose, with a version.

    class QuoteRequest(Message, type="market.quote_request/1"):
        item: str
        \"\"\"What the buyer wants priced.\"\"\"

The type name travels in the envelope, not in the payload, and is never derived from the
schema: editing a docstring or adding a description cannot break peers (uAgents hashes the
schema JSON). Change a field's meaning and you publish `/2`, declared with
``supersedes="area.name/1"``: a peer that still sends `/1` is refused with a reason that
names `/2`, not with a bare "no handler".
"""

from __future__ import annotations

import datetime
import decimal
import enum
import re
import uuid
from typing import Any, ClassVar, TypeVar

import msgpack
from pydantic import BaseModel, ConfigDict, ValidationError

from .errors import InvalidPayload, UsageError

TYPE_NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+/[1-9][0-9]{0,5}\Z")
MAX_TYPE_NAME_LENGTH = 128
"""Longest type name; receivers refuse longer ones before checking the signature."""

M = TypeVar("M", bound="Message")

# Type name -> class, filled as Message subclasses are defined. It is how a reply whose type
# the asker did not list can still be decoded; it is keyed like a discriminated union and,
# like one, two classes may not claim the same name.
_catalog: dict[str, type[Message]] = {}
# Retired type name -> the class that replaced it (`supersedes=`): a peer still sending the
# old one is told which version this side speaks instead of "no handler".
_retired: dict[str, type[Message]] = {}


class Message(BaseModel):
    """Base of every message. Frozen; unknown fields are an error, not silently dropped.

    Subclass with an explicit type name: ``class Ping(Message, type="demo.ping/1")``.
    A subclass without one is abstract: it can be a base for others but cannot be sent.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    message_type: ClassVar[str | None] = None

    def __init_subclass__(cls, *, type: str | None = None, supersedes: str | None = None,
                          **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.message_type = None
        if type is None:
            return
        if (not isinstance(type, str) or len(type) > MAX_TYPE_NAME_LENGTH
                or not TYPE_NAME_PATTERN.match(type)):
            raise UsageError(
                f"{cls.__qualname__}: type name {type!r} is not of the form "
                f"'area.name/VERSION' of at most {MAX_TYPE_NAME_LENGTH} characters, e.g. "
                "type=\"market.quote_request/1\"")
        previous = _catalog.get(type)
        if previous is not None and _origin(previous) != _origin(cls):
            raise UsageError(
                f"{cls.__qualname__}: type name {type!r} is already used by "
                f"{previous.__module__}.{previous.__qualname__}; choose another name or bump the "
                "version")
        cls.message_type = type
        _catalog[type] = cls
        if supersedes is not None:
            _retired[supersedes] = cls

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        # pydantic passes the class keywords here too; `type` was handled above.
        kwargs.pop("type", None)
        kwargs.pop("supersedes", None)
        super().__pydantic_init_subclass__(**kwargs)


class ErrorReply(Message, type="aaex.error/1"):
    """Sent back by the runtime when a handler fails; `ask` raises it as RemoteHandlerError."""

    code: str
    """Stable machine-readable code, e.g. ``handler_failed`` or ``bad_reply``."""
    detail: str
    """Human-readable explanation; never a traceback."""


def _origin(cls: type) -> tuple[str, str]:
    return cls.__module__, cls.__qualname__


def message_class(type_name: str) -> type[Message] | None:
    """Return the Message subclass defined with `type_name` in this process, if any."""
    return _catalog.get(type_name)


def successor(type_name: str) -> str | None:
    """The type name that replaced `type_name` (declared with ``supersedes=``), if any."""
    cls = _retired.get(type_name)
    return None if cls is None else cls.message_type


def require_type_name(cls: type[Message]) -> str:
    """Return the wire type name of `cls`, or raise UsageError if it has none."""
    name = cls.message_type
    if name is None:
        raise UsageError(
            f"{cls.__qualname__} has no type name and cannot be sent; declare it as "
            f"`class {cls.__name__}(Message, type=\"area.name/1\")`")
    return name


def _encode_extra(value: object) -> object:
    if isinstance(value, decimal.Decimal | uuid.UUID):
        return str(value)
    if isinstance(value, datetime.datetime | datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, set | frozenset):
        return list(value)
    raise TypeError(f"cannot put a {type(value).__name__} on the wire; use a pydantic field type")


def encode_payload(message: Message) -> bytes:
    """Serialise `message` to msgpack; pydantic's lax validation restores rich types."""
    packed: bytes = msgpack.packb(message.model_dump(mode="python"), default=_encode_extra,
                                  use_bin_type=True)
    return packed


def decode_payload(cls: type[M], payload: bytes) -> M:
    """Validate msgpack `payload` as `cls`.

    Raises:
        InvalidPayload: the bytes are not msgpack, or do not validate as `cls`.
    """
    try:
        data = msgpack.unpackb(payload, raw=False)
    except (ValueError, msgpack.UnpackException) as exc:
        raise InvalidPayload(f"payload of {cls.message_type} is not msgpack: {exc}") from exc
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "(root)"
        raise InvalidPayload(
            f"payload does not validate as {cls.message_type}: {where}: {first['msg']} "
            f"({exc.error_count()} error(s))") from exc
