"""AAEX agents SDK: subclass `Agent`, declare typed handlers, exchange signed envelopes.

Layout: identity and envelopes (`identity`, `address`, `envelope`), messages (`model`,
`protocol`), agents (`agent`, `handlers`, `context`, `runtime`, `storage`, `directory`,
`services`),
transports (`transport/`), the node's language model (`llm/`), and the public test kit
(`testing`). Other agent networks (uAgents) are reached through `interop`.
"""

from .agent import Agent
from .clock import Clock, SystemClock
from .context import Context
from .directory import Directory, StaticDirectory
from .envelope import Envelope, EnvelopePolicy
from .errors import (
    AaexError,
    BadSignature,
    EnvelopeExpired,
    EnvelopeFromFuture,
    EnvelopeRejected,
    HandlerDefinitionError,
    InvalidPayload,
    KeyFileError,
    LifetimeTooLong,
    LLMError,
    LLMOutputInvalid,
    LLMRequestFailed,
    LLMTimeout,
    LLMUnavailable,
    MalformedEnvelope,
    MissingExpiry,
    OversizeFrame,
    PeerRejected,
    PeerUnreachable,
    ReceiverBusy,
    ReceiverStopping,
    RemoteHandlerError,
    ReplayedEnvelope,
    ReplyError,
    RequestTimeout,
    StorageError,
    TransportClosed,
    TransportError,
    UnexpectedReply,
    UnknownMessageType,
    UnsignedEnvelope,
    UsageError,
    WrongTarget,
)
from .handlers import handler, on_interval
from .identity import Identity, verify_signature
from .llm import LLM, Completion, LLMService, LLMServiceConfig, open_llm_service
from .model import ErrorReply, Message
from .money import Credits
from .protocol import Protocol
from .runtime import Runtime, RuntimeConfig, RuntimeMetrics, open_runtime
from .services import Delegated, DelegateTerms, Delegation, Market, Services
from .storage import AgentStorage
from .transport import HttpTransport, MemoryNetwork, MemoryTransport, Transport

__all__ = [
    "Credits",
    "DelegateTerms",
    "Delegated",
    "Delegation",
    "Market",
    "Services",
    "AaexError",
    "Agent",
    "AgentStorage",
    "BadSignature",
    "Clock",
    "Completion",
    "Context",
    "Directory",
    "Envelope",
    "EnvelopeExpired",
    "EnvelopeFromFuture",
    "EnvelopePolicy",
    "EnvelopeRejected",
    "ErrorReply",
    "HandlerDefinitionError",
    "HttpTransport",
    "Identity",
    "InvalidPayload",
    "KeyFileError",
    "LLM",
    "LLMError",
    "LLMOutputInvalid",
    "LLMRequestFailed",
    "LLMService",
    "LLMServiceConfig",
    "LLMTimeout",
    "LLMUnavailable",
    "LifetimeTooLong",
    "MalformedEnvelope",
    "MemoryNetwork",
    "MemoryTransport",
    "Message",
    "MissingExpiry",
    "OversizeFrame",
    "PeerRejected",
    "PeerUnreachable",
    "Protocol",
    "ReceiverBusy",
    "ReceiverStopping",
    "RemoteHandlerError",
    "ReplayedEnvelope",
    "ReplyError",
    "RequestTimeout",
    "Runtime",
    "RuntimeConfig",
    "RuntimeMetrics",
    "StaticDirectory",
    "StorageError",
    "SystemClock",
    "Transport",
    "TransportClosed",
    "TransportError",
    "UnexpectedReply",
    "UnknownMessageType",
    "UnsignedEnvelope",
    "UsageError",
    "WrongTarget",
    "handler",
    "on_interval",
    "open_llm_service",
    "open_runtime",
    "verify_signature",
]
