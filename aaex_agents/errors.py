"""Every error AAEX raises, in one hierarchy.

Whose fault it is decides where an error sits in the tree::

    AaexError
    ├── UsageError                  you called the API wrongly; fix the calling code
    │   └── HandlerDefinitionError  an Agent subclass declares a bad handler
    ├── KeyFileError                a key file is missing, corrupt, or the passphrase is wrong
    ├── StorageError                an agent's store cannot be read or written (disk full...)
    ├── EnvelopeRejected            an inbound envelope failed a check; `reason` names which
    │   ├── MalformedEnvelope       bytes that do not decode as an envelope
    │   ├── OversizeFrame           larger than the configured frame limit
    │   ├── BadSignature            signature does not verify against the sender's key
    │   │   └── UnsignedEnvelope    a foreign envelope (uAgents) that carries no signature
    │   ├── BadSeal                 a sealed frame does not open: altered, or sealed to another key
    │   │   ├── ReaddressedEnvelope the signed envelope inside names another sender or target
    │   │   └── UnsealedEnvelope    plaintext where this receiver or asker requires a sealed frame
    │   ├── UnknownChannel          sealed under a channel key this receiver does not hold (the
    │   │                           sender seals the same envelope anew to the receiver's key)
    │   ├── WrongTarget             addressed to an agent that is not here
    │   ├── EnvelopeExpired         its expires-at is in the past
    │   ├── EnvelopeFromFuture      sent-at is ahead of our clock by more than the skew
    │   ├── LifetimeTooLong         valid for longer than the receiver remembers message ids
    │   ├── MissingExpiry           a foreign envelope (uAgents) without an expiry time
    │   ├── ReplayedEnvelope        this message id was already accepted
    │   ├── UnknownMessageType      the receiver has no handler for the type name
    │   ├── InvalidPayload          the payload does not validate as the named type
    │   ├── ReceiverStopping        the receiver is shutting down; try another provider
    │   └── ReceiverBusy            the receiver holds as many requests as it allows; retry later
    ├── BadRequestBody              an HTTP request body that is too large, not JSON, or nested
    │                               too deep; `status` is the HTTP answer (400 or 413)
    ├── TransportError              the network failed
    │   ├── PeerUnreachable         nothing answered at any known endpoint
    │   ├── RequestTimeout          the peer did not answer in time (also a TimeoutError)
    │   ├── PeerRejected            the peer refused our envelope and said why
    │   ├── TransportClosed         you closed the transport and then used it
    │   └── AddressInUse            another socket listens on the address we were to listen on
    ├── ReplyError                  the peer answered, but not with what we can use
    │   ├── RemoteHandlerError      the peer's handler failed; carries its code and detail
    │   └── UnexpectedReply         a reply that is missing or of a type we did not ask for
    ├── LLMError                    the local language model could not answer
    │   ├── LLMUnavailable          no model or server to ask (server down, model not installed)
    │   ├── LLMTimeout              no answer within the timeout (also a TimeoutError)
    │   ├── LLMRequestFailed        the engine refused or failed this request
    │   └── LLMOutputInvalid        the answer does not validate against the requested schema
    │
    │   The layers above add branches to this one root; each module's docstring details its own.
    ├── RecordRejected              (discovery.errors) a DHT record or ad failed a check
    ├── ContractRejected            (marketplace.contracts.errors) a signed contract failed a check
    ├── UnknownAgreement            (marketplace.contracts.errors) a lookup named an unrecorded
    │                               agreement
    ├── LedgerError                 (marketplace.contracts.errors) the ledger did not do what was
    │                               asked; nothing was written
    ├── ChainError                  (marketplace.consensus.errors) the consensus chain refused
    │                               a transaction (ChainRefused) or did not answer
    │                               (ChainUnavailable)
    ├── TradeError                  (marketplace.trade.errors) a seller or the wallet refused
    │                               (Refusal, SpendingRefused), or nobody delivered
    │                               (DelegationFailed)
    └── ConfigError                 (marketplace.node.tables) a node's TOML does not validate

Lower-layer exceptions (aiohttp, sqlite3, nacl, llama.cpp, vLLM) are translated once, at the
boundary that calls them, with ``raise X(...) from exc``; none of them leaves this package.
"""

from __future__ import annotations

from typing import ClassVar

QUOTE_LIMIT = 80
"""Most characters of outside input (a peer's field, a file's value) an error message quotes."""


def quote(value: object, limit: int = QUOTE_LIMIT) -> str:
    """`repr(value)`, cut to `limit` characters with an ellipsis.

    Error messages travel back to peers and into logs: quoting a peer's 1 MiB field in full
    would echo it to the sender and fill the log, so every quote of outside input is bounded.
    Strings and bytes are sliced before `repr`, so the cost does not grow with the input.
    """
    if isinstance(value, str | bytes) and len(value) > limit:
        value = value[:limit]
        text = repr(value)
        return text[: limit - 1] + "…"
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def clip(text: str, limit: int = QUOTE_LIMIT) -> str:
    """`text` cut to `limit` characters with an ellipsis (for details sent back to a peer)."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


class AaexError(Exception):
    """Base of every error raised by AAEX."""


class UsageError(AaexError):
    """The API was called in a way it does not support; the message says the right call."""


class HandlerDefinitionError(UsageError):
    """An `Agent` subclass declares handlers that cannot work; lists every problem at once."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{len(self.problems)} handler problem(s):\n{lines}")


class KeyFileError(AaexError):
    """A key file cannot be read: missing, corrupt, wrong format, or wrong passphrase."""


class StorageError(AaexError):
    """An agent's persistent store could not be read or written; nothing was changed."""


class EnvelopeRejected(AaexError):
    """An inbound envelope failed a check and was dropped before any handler saw it.

    `reason` is a short stable code (``"bad_signature"``...) used in metrics and sent back
    to the peer; the message text is for humans.
    """

    reason: ClassVar[str] = "rejected"


class MalformedEnvelope(EnvelopeRejected):
    """The bytes do not decode as an envelope (truncated, wrong structure, wrong types)."""

    reason = "malformed"


class OversizeFrame(EnvelopeRejected):
    """The frame is larger than the receiver's configured limit."""

    reason = "oversize"


class BadSignature(EnvelopeRejected):
    """The signature does not verify against the public key in the sender's address."""

    reason = "bad_signature"


class UnsignedEnvelope(BadSignature):
    """A foreign envelope (uAgents) carries no signature, or comes from a ``user...`` sender.

    uAgents accepts those from users; AAEX agents take only signed traffic.
    """

    reason = "unsigned"


class BadSeal(EnvelopeRejected):
    """A sealed frame does not open: it was altered, or sealed to another key, sender or target.

    Nothing inside was read: the receiver cannot tell an attack from a corrupted frame.
    """

    reason = "bad_seal"


class ReaddressedEnvelope(BadSeal):
    """The seal opened, but the signed envelope inside is from or to someone else.

    A recipient that opened a message cannot re-seal it to a third agent as if it had been
    sent there: the sender signed the target inside, and the seal's addresses must match it.
    """

    reason = "readdressed"


class UnsealedEnvelope(BadSeal):
    """A plaintext envelope where a sealed one is required (a reply to a sealed request)."""

    reason = "unsealed"


class UnknownChannel(EnvelopeRejected):
    """Sealed under a channel key the receiver does not hold (never had, forgot, restarted).

    Nothing was read or done; the sender seals the same envelope to the receiver's public
    key instead, which opens a new channel.
    """

    reason = "unknown_channel"


class WrongTarget(EnvelopeRejected):
    """The envelope is addressed to an agent that this receiver does not host."""

    reason = "wrong_target"


class EnvelopeExpired(EnvelopeRejected):
    """The envelope's expires-at is in the past (beyond the allowed clock skew)."""

    reason = "expired"


class EnvelopeFromFuture(EnvelopeRejected):
    """The envelope's sent-at is later than now plus the allowed clock skew."""

    reason = "from_future"


class LifetimeTooLong(EnvelopeRejected):
    """The envelope asks to stay valid longer than the receiver's replay window covers."""

    reason = "lifetime_too_long"


class MissingExpiry(EnvelopeRejected):
    """A foreign envelope (uAgents) has no expiry, so it could be replayed forever.

    uAgents makes `expires` optional and never checks it; AAEX requires it.
    """

    reason = "no_expiry"


class ReplayedEnvelope(EnvelopeRejected):
    """The message id was already accepted within its validity window."""

    reason = "replayed"


class UnknownMessageType(EnvelopeRejected):
    """The receiver has no handler (or expected reply) for this message type name."""

    reason = "unknown_type"


class InvalidPayload(EnvelopeRejected):
    """The payload does not validate against the message type it names."""

    reason = "invalid_payload"


class ReceiverStopping(EnvelopeRejected):
    """The receiving runtime is shutting down and takes no new envelopes."""

    reason = "stopping"


class ReceiverBusy(EnvelopeRejected):
    """The receiver holds as many such requests as it allows, from this address or in all.

    Nothing was done with the envelope, so the same one may be sent again later.
    """

    reason = "busy"


class BadRequestBody(AaexError):
    """An HTTP request body the server will not use; the message says why, in one line.

    `status` is what the server answers: 413 for a body over the limit, else 400.
    """

    def __init__(self, message: str, *, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class TransportError(AaexError):
    """The network failed to carry an envelope."""


class AddressInUse(TransportError):
    """Another socket already listens on `host:port`; choose another port, or 0 for any."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        super().__init__(f"cannot listen on {host}:{port}: the port is in use; choose another "
                         "or 0")


class PeerUnreachable(TransportError):
    """No endpoint of the peer accepted a connection, or none is known."""


class RequestTimeout(TransportError, TimeoutError):
    """The peer did not answer within the timeout."""


class PeerRejected(TransportError):
    """The peer refused our envelope; `reason` is its rejection code."""

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        suffix = f" ({detail})" if detail else ""
        super().__init__(f"peer rejected the envelope: {reason}{suffix}")


class TransportClosed(TransportError):
    """The transport was closed by its owner and cannot be used again."""


class ReplyError(AaexError):
    """The peer answered, but the answer is not a usable reply."""


class RemoteHandlerError(ReplyError):
    """The peer's handler failed; `code` and `detail` are what the peer chose to tell us."""

    def __init__(self, code: str, detail: str) -> None:
        self.code = code
        self.detail = detail
        super().__init__(f"remote handler failed [{code}]: {detail}")


class UnexpectedReply(ReplyError):
    """The reply is missing, or of a type that is not a valid reply to our request."""


class LLMError(AaexError):
    """The node's language model could not produce a usable answer."""


class LLMUnavailable(LLMError):
    """There is no model to ask: the server is down or the model is not installed.

    The message names the URL or the missing package; the request was not processed.
    """


class LLMTimeout(LLMError, TimeoutError):
    """The model did not finish within the timeout; the generation was cancelled."""


class LLMRequestFailed(LLMError):
    """The engine received the request and failed it (a 4xx answer, an engine error)."""


class LLMOutputInvalid(LLMError):
    """The model's answer does not validate against the requested schema.

    `text` is the raw answer, so a caller can log it or fall back to a deterministic path.
    """

    def __init__(self, message: str, text: str) -> None:
        self.text = text
        super().__init__(message)
