"""In-process transport: agents in one process talk through a `MemoryNetwork`.

Used by tests and by agents hosted on the same node. A `route` hook sees every delivery and
can drop, delay, duplicate or corrupt it, which is how fault tests are written (see
`aaex_agents.testing`).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from typing_extensions import override

from ..errors import EnvelopeRejected, PeerRejected, PeerUnreachable, RequestTimeout, UsageError
from .base import FrameHandler, Transport

SCHEME = "memory://"

Deliver = Callable[[bytes], Awaitable[bytes | None]]
Route = Callable[[str, bytes, Deliver], Awaitable[bytes | None]]
"""`route(endpoint, frame, deliver)`: call `deliver(frame)` zero or more times and return a
reply frame (or None); raise a TransportError to fail the delivery."""


async def _direct(endpoint: str, frame: bytes, deliver: Deliver) -> bytes | None:
    return await deliver(frame)


class MemoryNetwork:
    """A set of in-memory endpoints. Create one per test; nothing is global."""

    def __init__(self, route: Route | None = None) -> None:
        self.route: Route = route or _direct
        self._handlers: dict[str, FrameHandler] = {}
        self._names = itertools.count(1)

    def transport(self, name: str | None = None) -> MemoryTransport:
        """A transport on this network that serves at ``memory://<name>``."""
        return MemoryTransport(self, name or f"node-{next(self._names)}")

    def _bind(self, endpoint: str, handler: FrameHandler) -> None:
        if endpoint in self._handlers:
            raise UsageError(f"{endpoint} is already served on this network; use another name")
        self._handlers[endpoint] = handler

    def _unbind(self, endpoint: str) -> None:
        self._handlers.pop(endpoint, None)

    async def _deliver(self, endpoint: str, frame: bytes) -> bytes | None:
        handler = self._handlers.get(endpoint)
        if handler is None:
            raise PeerUnreachable(f"nothing serves {endpoint}")
        try:
            return await handler(frame)
        except EnvelopeRejected as exc:
            raise PeerRejected(exc.reason, str(exc)) from None

    def __repr__(self) -> str:
        return f"<MemoryNetwork endpoints={len(self._handlers)}>"


class MemoryTransport(Transport):
    """One participant of a `MemoryNetwork`."""

    def __init__(self, network: MemoryNetwork, name: str) -> None:
        self.network = network
        self.endpoint = SCHEME + name

    @override
    def handles(self, endpoint: str) -> bool:
        return endpoint.startswith(SCHEME)

    @override
    async def request(self, endpoint: str, frame: bytes, *, timeout: float) -> bytes | None:
        async def deliver(data: bytes) -> bytes | None:
            return await self.network._deliver(endpoint, data)

        try:
            async with asyncio.timeout(timeout):
                return await self.network.route(endpoint, frame, deliver)
        except TimeoutError:
            raise RequestTimeout(f"{endpoint} did not answer within {timeout} s") from None

    @override
    @asynccontextmanager
    async def serve(self, handler: FrameHandler) -> AsyncIterator[str | None]:
        self.network._bind(self.endpoint, handler)
        try:
            yield self.endpoint
        finally:
            self.network._unbind(self.endpoint)

    def __repr__(self) -> str:
        return f"<MemoryTransport {self.endpoint}>"
