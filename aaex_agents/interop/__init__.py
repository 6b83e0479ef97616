"""Interop with other agent networks: uAgents (Fetch.ai) envelopes and the chat protocol.

`uagents` is the wire codec and AAEX's rules for uAgents traffic, `chat` the standard chat
protocol as AAEX messages, `binding` the signed link between an agent's two addresses.
"""

from .binding import AddressBinding
from .chat import (
    CHAT_SCHEMAS,
    ChatAcknowledgement,
    ChatMessage,
    MetadataContent,
    Resource,
    ResourceContent,
    TextContent,
)
from .uagents import (
    CHAT_ACK_DIGEST,
    CHAT_MESSAGE_DIGEST,
    CHAT_PROTOCOL_DIGEST,
    ERROR_MESSAGE_DIGEST,
    SchemaTable,
    UAgentsKey,
    UEnvelope,
    admit,
    is_uagents_address,
    parse_envelope,
    seal_envelope,
    session_uuid,
    uagents_address,
    verify_digest,
)

__all__ = [
    "CHAT_ACK_DIGEST",
    "CHAT_MESSAGE_DIGEST",
    "CHAT_PROTOCOL_DIGEST",
    "CHAT_SCHEMAS",
    "ERROR_MESSAGE_DIGEST",
    "AddressBinding",
    "ChatAcknowledgement",
    "ChatMessage",
    "MetadataContent",
    "Resource",
    "ResourceContent",
    "SchemaTable",
    "TextContent",
    "UAgentsKey",
    "UEnvelope",
    "admit",
    "is_uagents_address",
    "parse_envelope",
    "seal_envelope",
    "session_uuid",
    "uagents_address",
    "verify_digest",
]
