"""Protocols: named groups of message types with the replies each one allows.

    echo = Protocol("demo.echo/1", {Ping: Pong, Query: (Answer, Decline)})

An agent that lists a protocol is checked at class creation: a handler for `Ping` must
return `Pong`; and `ask` knows which replies to accept without being told.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from .errors import UsageError
from .model import TYPE_NAME_PATTERN, Message


class Protocol:
    """An immutable map from request types to the set of valid reply types."""

    __slots__ = ("_replies", "name")

    def __init__(self, name: str,
                 replies: Mapping[type[Message], type[Message] | Iterable[type[Message]]]) -> None:
        if not TYPE_NAME_PATTERN.match(name):
            raise UsageError(f"protocol name {name!r} is not of the form 'area.name/VERSION'")
        table: dict[type[Message], frozenset[type[Message]]] = {}
        for request, allowed in replies.items():
            allowed_set = frozenset([allowed] if isinstance(allowed, type) else allowed)
            for cls in (request, *allowed_set):
                is_message = isinstance(cls, type) and issubclass(cls, Message)
                if not is_message or cls.message_type is None:
                    raise UsageError(
                        f"protocol {name}: {cls!r} is not a Message subclass with a type name")
            table[request] = allowed_set
        self.name = name
        self._replies = table

    @property
    def messages(self) -> frozenset[type[Message]]:
        """The request types this protocol defines."""
        return frozenset(self._replies)

    def valid_replies(self, request: type[Message]) -> frozenset[type[Message]] | None:
        """The allowed reply types for `request`, or None if the protocol does not define it."""
        return self._replies.get(request)

    def __repr__(self) -> str:
        return f"<Protocol {self.name} messages={len(self._replies)}>"
