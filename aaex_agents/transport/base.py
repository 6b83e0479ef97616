"""The one interface every transport implements: carry a frame, and serve frames.

Transports move opaque bytes. Signing, verification and dispatch live above them, so the
choice of transport never changes what is trusted.
"""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager

DETAIL_LIMIT = 300
"""Longest rejection detail a transport sends to, or takes from, a peer (characters)."""

FrameHandler = Callable[[bytes], Awaitable[bytes | None]]
"""Called with each inbound frame; returns the reply frame or None.

It raises `EnvelopeRejected` to refuse a frame: the transport then tells the peer the
rejection's `reason`, and the peer's `request` raises `PeerRejected` with it.
"""


class Transport(abc.ABC):
    """Carries envelope frames to endpoints and serves inbound frames to a handler."""

    @abc.abstractmethod
    def handles(self, endpoint: str) -> bool:
        """True when this transport can reach `endpoint` (by its scheme)."""

    @abc.abstractmethod
    async def request(self, endpoint: str, frame: bytes, *, timeout: float) -> bytes | None:
        """Deliver `frame` to `endpoint`; return the peer's reply frame, or None if none.

        Raises:
            PeerUnreachable: nothing accepted the connection.
            RequestTimeout: no answer within `timeout` seconds; the peer may still act on it.
            PeerRejected: the peer refused the frame and said why.
            TransportClosed: this transport was closed.
        Cancelling the call abandons the exchange; the connection is not reused.
        """

    @abc.abstractmethod
    def serve(self, handler: FrameHandler) -> AbstractAsyncContextManager[str | None]:
        """Listen and pass every inbound frame to `handler`.

        Entering returns once listening, with the endpoint peers should use (None for a
        transport that only sends). Leaving stops listening and waits for in-flight calls.
        """

    async def aclose(self) -> None:  # noqa: B027 - optional hook, no-op by default
        """Release outbound resources (pooled connections). Idempotent."""
