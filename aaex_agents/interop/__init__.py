"""Interop with other agent networks: uAgents (Fetch.ai) envelopes and the chat protocol.

`uagents` is the wire codec and AAEX's rules for uAgents traffic, `chat` the standard chat
protocol as AAEX messages, `binding` the signed link between an agent's two addresses,
`gateway` the bridge a runtime uses to reach ``agent1...`` addresses (`config` its settings,
`holds` its bound on held sync requests), `http` its ``/submit``.
"""

from .base import Gateway, InteropMetrics
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
from .config import UAgentsConfig
from .gateway import UAgentsGateway, no_chat_handler
from .http import SUBMIT_PATH, add_uagents_routes, serve_uagents
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
    "SUBMIT_PATH",
    "AddressBinding",
    "ChatAcknowledgement",
    "ChatMessage",
    "Gateway",
    "InteropMetrics",
    "MetadataContent",
    "Resource",
    "ResourceContent",
    "SchemaTable",
    "TextContent",
    "UAgentsConfig",
    "UAgentsGateway",
    "UAgentsKey",
    "UEnvelope",
    "add_uagents_routes",
    "admit",
    "is_uagents_address",
    "no_chat_handler",
    "parse_envelope",
    "seal_envelope",
    "serve_uagents",
    "session_uuid",
    "uagents_address",
    "verify_digest",
]
