"""Reading a reply: which types an asker takes, and what an error reply says."""

from __future__ import annotations

from .agent import Agent
from .envelope import Envelope
from .errors import InvalidPayload, RemoteHandlerError, UnexpectedReply
from .model import ErrorReply, Message, decode_payload, message_class


def decode_reply(agent: Agent, message: Message, reply: Envelope,
                 reply_type: type[Message] | None) -> Message:
    """The message in `reply` to `message`, of a type the asker takes.

    That is `reply_type`, else what `agent`'s protocols allow, else any known type.

    Raises:
        RemoteHandlerError: the peer answered with an `ErrorReply`.
        UnexpectedReply: a type not allowed, or a payload that does not validate.
    """
    if reply.message_type == ErrorReply.message_type:
        try:
            error = decode_payload(ErrorReply, reply.payload)
        except InvalidPayload as exc:
            raise UnexpectedReply(f"unreadable error reply from {reply.sender}") from exc
        raise RemoteHandlerError(error.code, error.detail)
    allowed: set[type[Message]] | None = None
    if reply_type is not None:
        allowed = {reply_type}
    else:
        for protocol in agent.protocols:
            valid = protocol.valid_replies(type(message))
            if valid is not None:
                allowed = set(valid)
    if allowed is None:
        cls = message_class(reply.message_type)
    else:
        cls = next((c for c in allowed if c.message_type == reply.message_type), None)
    if cls is None:
        names = sorted(str(c.message_type) for c in allowed or ())
        wanted = ", ".join(names) if names else "a known type"
        raise UnexpectedReply(f"{reply.sender} replied {reply.message_type} to "
                              f"{message.message_type}; expected {wanted}")
    try:
        return decode_payload(cls, reply.payload)
    except InvalidPayload as exc:
        raise UnexpectedReply(f"reply from {reply.sender}: {exc}") from exc


def error_text(reply: Envelope) -> str:
    """An `ErrorReply`'s code and detail, for logs."""
    try:
        error = decode_payload(ErrorReply, reply.payload)
    except InvalidPayload:
        return "(unreadable)"
    return f"[{error.code}] {error.detail}"
