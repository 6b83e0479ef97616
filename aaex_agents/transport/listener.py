"""HTTP listeners that a slow or greedy client cannot exhaust, and ports checked before use.

Every aiohttp server of a node (the envelope transport, the admin API, the interop
listener) listens through `open_http_listener`, which enforces `ServerLimits`:

- **Headers in time.** A connection must send a request's headers within `header_timeout`
  of opening, or of the end of the previous response; an idle keep-alive connection is
  closed after the same time (aiohttp's ``keepalive_timeout``, which runs while the server
  waits for a whole request head). A client trickling a header a byte at a time is cut.
- **Body in time.** Once the headers are in, the body must arrive within `body_timeout`,
  whether or not the handler has started reading it; otherwise the connection is closed.
- **Bounded connections.** At most `max_connections` at once, and `max_connections_per_ip`
  from one address; a connection beyond either gets ``503`` and is closed at once, before
  aiohttp parses a byte of it.

`check_port_free` binds a plain socket to an address, without ``SO_REUSEPORT``, and closes
it: py-libp2p listens with ``SO_REUSEPORT`` (for hole punching), so two nodes could
otherwise share one port and split its connections between them.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from ..errors import AddressInUse, TransportError, UsageError

logger = logging.getLogger(__name__)

LowLevelHandler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]

_BUSY = (b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Type: text/plain"
         b"\r\nContent-Length: 34\r\n\r\ntoo many connections; retry later\n")
_REFUSAL_LOG_PERIOD_S = 60.0


@dataclass(frozen=True, kw_only=True)
class ServerLimits:
    """What one HTTP listener grants its clients (the defaults suit a node on the internet).

    Attributes:
        header_timeout: seconds a connection may take to send a request's headers, from when
            it opens or from the end of the previous response; also how long an idle
            keep-alive connection stays open (default 10). Clients of `HttpTransport` close
            their idle connections sooner (5 s), so they never reuse one being closed.
        body_timeout: seconds the body may take to arrive once the headers are in
            (default 30: a 1 MiB frame at 35 kB/s).
        max_connections: connections open at once (default 1024). Each is a file descriptor:
            keep the sum over a process's listeners well under its open-file limit.
        max_connections_per_ip: connections open at once from one IP address (default 128,
            above the 100 an `HttpTransport` client pools per peer).
    """

    header_timeout: float = 10.0
    body_timeout: float = 30.0
    max_connections: int = 1024
    max_connections_per_ip: int = 128

    def __post_init__(self) -> None:
        if not (self.header_timeout > 0 and self.body_timeout > 0):
            raise UsageError(f"ServerLimits: header_timeout and body_timeout must be positive, "
                             f"got {self.header_timeout!r} and {self.body_timeout!r}")
        if not 0 < self.max_connections_per_ip <= self.max_connections:
            raise UsageError(f"ServerLimits: need 0 < max_connections_per_ip <= "
                             f"max_connections, got {self.max_connections_per_ip} and "
                             f"{self.max_connections}")


@dataclass
class ListenerStats:
    """What a listener has admitted and refused (for metrics and benchmarks)."""

    open: int = 0
    """Connections open now."""
    refused: int = 0
    """Connections closed on arrival because a limit was reached."""
    cut: int = 0
    """Requests whose body did not arrive within `body_timeout`."""
    per_ip: Counter[str] = field(default_factory=Counter)
    """Open connections by client IP address."""
    warned_at: float | None = None
    """Loop time of the last refusal warning (one a minute at most: a flood must not
    flood the log too)."""


@dataclass(frozen=True)
class Listener:
    """A running listener: where it is bound and what it has seen."""

    host: str
    port: int
    """The bound port (the one the OS chose when asked for 0)."""
    stats: ListenerStats


class _Gate(asyncio.Protocol):
    """Admits a connection (or answers 503 and closes it), then hands it to aiohttp."""

    def __init__(self, make: Callable[[], asyncio.Protocol], stats: ListenerStats,
                 limits: ServerLimits, name: str) -> None:
        self._make = make
        self._stats = stats
        self._limits = limits
        self._name = name
        self._inner: asyncio.Protocol | None = None
        self._ip = ""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername")
        ip = str(peer[0]) if isinstance(peer, tuple) and peer else "?"
        stats, limits = self._stats, self._limits
        if stats.open >= limits.max_connections or \
                stats.per_ip[ip] >= limits.max_connections_per_ip:
            stats.refused += 1
            _log_refusal(self._name, ip, stats, limits)
            if isinstance(transport, asyncio.WriteTransport):
                transport.write(_BUSY)
            transport.close()
            return
        stats.open += 1
        stats.per_ip[ip] += 1
        self._ip = ip
        self._inner = self._make()
        self._inner.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._inner is None:
            return
        stats = self._stats
        stats.open -= 1
        stats.per_ip[self._ip] -= 1
        if stats.per_ip[self._ip] <= 0:
            del stats.per_ip[self._ip]
        inner, self._inner = self._inner, None
        inner.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._inner is not None:
            self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received() if self._inner is not None else None

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()


def _log_refusal(name: str, ip: str, stats: ListenerStats, limits: ServerLimits) -> None:
    now = asyncio.get_running_loop().time()
    if stats.warned_at is None or now - stats.warned_at >= _REFUSAL_LOG_PERIOD_S:
        stats.warned_at = now
        logger.warning("%s: refusing connections (%d open, %d from %s; limits %d and %d per "
                       "IP); %d refused so far", name, stats.open, stats.per_ip[ip], ip,
                       limits.max_connections, limits.max_connections_per_ip, stats.refused)


class _LimitedSite(web.TCPSite):
    """A TCPSite whose connections pass through `_Gate` first."""

    def __init__(self, runner: web.BaseRunner, host: str, port: int, *, limits: ServerLimits,
                 stats: ListenerStats, name: str) -> None:
        super().__init__(runner, host, port)
        self._limits = limits
        self._stats = stats
        self._name = name

    async def start(self) -> None:
        await web.BaseSite.start(self)  # registers the site with its runner
        server = self._runner.server
        if server is None:
            raise UsageError("set the runner up before starting its site")
        limits, stats, name = self._limits, self._stats, self._name
        self._server = await asyncio.get_running_loop().create_server(
            lambda: _Gate(server, stats, limits, name), self._host, self._port,
            reuse_address=True)


def _cut_if_body_pending(request: web.BaseRequest, stats: ListenerStats, name: str) -> None:
    if not request.content.is_eof():
        stats.cut += 1
        logger.info("%s: the body from %s did not arrive in time; connection closed", name,
                    request.remote)
        request.protocol.force_close()


async def _in_time(request: web.BaseRequest, handler: LowLevelHandler, timeout: float,
                   stats: ListenerStats, name: str) -> web.StreamResponse:
    """Run `handler`; close the connection if the body is not in `timeout` s after the head.

    Whether or not the handler reads the body yet: the parser marks the body's end itself.
    A handler still reading a connection that is gone (cut here, or left by its client) has
    nobody to answer: that is not the handler's failure, and is not logged as one.
    """
    timer = asyncio.get_running_loop().call_later(timeout, _cut_if_body_pending, request,
                                                  stats, name)
    try:
        return await handler(request)
    except ConnectionError:
        if request.transport is not None and not request.transport.is_closing():
            raise
        logger.debug("%s: %s left before its request was read", name, request.remote)
        return web.Response(status=408)
    finally:
        timer.cancel()


@asynccontextmanager
async def open_http_listener(target: web.Application | LowLevelHandler, host: str, port: int,
                             *, limits: ServerLimits | None = None, shutdown_timeout: float = 2.0,
                             name: str = "http") -> AsyncIterator[Listener]:
    """Serve `target` (an application or a low-level handler) on `host:port` with `limits`.

    Returns once listening; leaving stops accepting, gives requests in flight
    `shutdown_timeout` seconds, then closes every connection. `name` labels its log lines.

    Raises:
        AddressInUse: another socket listens on `host:port`.
        TransportError: the address cannot be bound for another reason (not an address of
            this machine, a privileged port...).
    """
    limits = limits or ServerLimits()
    stats = ListenerStats()
    runner: web.BaseRunner
    if isinstance(target, web.Application):
        @web.middleware
        async def body_in_time(request: web.Request, handler: Any) -> web.StreamResponse:
            return await _in_time(request, handler, limits.body_timeout, stats, name)

        target.middlewares.insert(0, body_in_time)  # outermost: it times every request
        runner = web.AppRunner(target, access_log=None, shutdown_timeout=shutdown_timeout,
                               keepalive_timeout=limits.header_timeout)
    else:
        handler = target

        async def low_level(request: web.BaseRequest) -> web.StreamResponse:
            return await _in_time(request, handler, limits.body_timeout, stats, name)

        server = web.Server(low_level, access_log=None, keepalive_timeout=limits.header_timeout)
        runner = web.ServerRunner(server, handle_signals=False,
                                  shutdown_timeout=shutdown_timeout)
    await runner.setup()
    try:
        site = _LimitedSite(runner, host, port, limits=limits, stats=stats, name=name)
        try:
            await site.start()
        except OSError as exc:
            raise listen_error(host, port, exc) from exc
        yield Listener(host, int(runner.addresses[0][1]), stats)
    finally:
        await runner.cleanup()


def listen_error(host: str, port: int, exc: OSError) -> TransportError:
    """The error to raise when binding `host:port` failed with `exc`."""
    if exc.errno == errno.EADDRINUSE:
        return AddressInUse(host, port)
    return TransportError(f"cannot listen on {host}:{port}: {exc.strerror or exc}")


def check_port_free(host: str, port: int) -> None:
    """Bind a plain socket to `host:port` (an IP address) and close it; port 0 always passes.

    No ``SO_REUSEPORT``, so a listener that set it (py-libp2p's) still counts as holding the
    port; ``SO_REUSEADDR`` as servers set it, so a port left in TIME_WAIT by a previous run
    is free.

    Raises:
        AddressInUse: something listens there.
        TransportError: the address cannot be bound for another reason.
    """
    if port == 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise listen_error(host, port, exc) from exc


def host_port(value: str) -> tuple[str, int] | None:
    """``("127.0.0.1", 8700)`` for ``"127.0.0.1:8700"``; None unless `value` is host:port.

    The one reading of a listen address: a host, then ``:`` and a port from 0 to 65535 (the
    last colon splits, so ``::1:8700`` is IPv6's loopback).
    """
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        return None
    return host, int(port)


def tcp_host_port(address: str) -> tuple[str, int] | None:
    """``("127.0.0.1", 4001)`` for ``/ip4/127.0.0.1/tcp/4001``; None for other multiaddrs."""
    parts = address.split("/")
    if len(parts) >= 5 and parts[0] == "" and parts[1] in ("ip4", "ip6") and parts[3] == "tcp":
        return host_port(f"{parts[2]}:{parts[4]}")
    return None
