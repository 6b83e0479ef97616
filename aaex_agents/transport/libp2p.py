"""libp2p transport: envelopes over `/aaex/envelope/1.0.0` streams (TCP + Noise + Yamux).

A node runs one `Libp2pHost` (py-libp2p in its own trio thread, see `trio_bridge`). Frames
are length-prefixed (4 bytes, big-endian). A request is one frame; the response is one frame
whose first byte says what follows: 0 a reply frame, 1 no reply, 2 a rejection (JSON
`reason`, `detail`), 3 the receiver failed. Streams are reused: each peer gets a small pool of
idle streams, so a request costs one stream round trip, not a new stream (~10 ms) each time.

A connection that broke is dropped before the next request to its peer, which dials again:
py-libp2p keeps a connection whose close was interrupted in its table, and refuses to dial a
peer that has one ("No valid connections available") for as long as it stays there; and
after a failed dial it blocks the peer for 60 s. Redials follow our own per-peer backoff
instead (`redial.RedialBackoff`).

Code in this module marked "trio side" runs in the libp2p thread.
"""

from __future__ import annotations

import json
import logging
import struct
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import multiaddr
import trio
from libp2p import new_host
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.custom_types import TProtocol
from libp2p.exceptions import BaseLibp2pError
from libp2p.kad_dht.kad_dht import DHTMode, KadDHT
from libp2p.network.config import ConnectionConfig
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.peer.peerstore import PeerStoreError
from libp2p.rcmgr.connection_limits import new_connection_limits_with_defaults
from libp2p.tools.anyio_service.context import background_trio_service
from typing_extensions import override

from ..clock import Clock, SystemClock
from ..envelope import DEFAULT_MAX_FRAME_BYTES
from ..errors import (
    EnvelopeRejected,
    OversizeFrame,
    PeerRejected,
    PeerUnreachable,
    RequestTimeout,
    TransportClosed,
    TransportError,
    UsageError,
    clip,
)
from .base import DETAIL_LIMIT, FrameHandler, Transport
from .bodies import parse_json
from .libp2p_logging import adopt_libp2p_logging
from .listener import check_port_free, tcp_host_port
from .redial import RedialBackoff
from .trio_bridge import RESOURCE_ERRORS, TrioBridge, shielded

logger = logging.getLogger(__name__)

ENVELOPE_PROTOCOL = TProtocol("/aaex/envelope/1.0.0")
_LENGTH = struct.Struct(">I")
_REPLY, _NO_REPLY, _REJECTED, _FAILED = 0, 1, 2, 3
_CLOSE_TIMEOUT_S = 5.0
"""Bound on closing a host's connections when it stops."""
# Streams and connections of py-libp2p raise a zoo of exception types: its own tree
# (IOException, StreamError, MuxedStreamError, SwarmException, all BaseLibp2pError), trio's
# Broken/ClosedResourceError, OSError from sockets, ValueError from a bad multiaddr or peer
# id, and TimeoutError. The boundary below catches exactly these and translates them.
_LIBP2P_FAILURES: tuple[type[Exception], ...] = (
    BaseLibp2pError, *RESOURCE_ERRORS, OSError, ValueError, TimeoutError)


@dataclass(frozen=True, kw_only=True)
class Libp2pConfig:
    """Settings of a node's libp2p host.

    Attributes:
        listen: multiaddrs to listen on (default: loopback, a free TCP port).
        seed: 32-byte seed of the node's Ed25519 peer identity; None makes a new one.
        dht: run a Kademlia DHT server on the host (needed by `discovery`).
        max_frame_bytes: largest envelope frame accepted (default 1 MiB).
        streams_per_peer: idle streams kept per peer for reuse (default 16).
        start_timeout: seconds the host may take to start listening (default 30).
        redial_backoff: seconds a peer is not dialed after a failed dial (default 0.5),
            doubled on each further failure up to `redial_backoff_max` (default 10).
        clock: where the redial backoff reads time (default: the system clock).
    """

    listen: tuple[str, ...] = ("/ip4/127.0.0.1/tcp/0",)
    seed: bytes | None = None
    dht: bool = True
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES
    streams_per_peer: int = 16
    start_timeout: float = 30.0
    redial_backoff: float = 0.5
    redial_backoff_max: float = 10.0
    clock: Clock = field(default_factory=SystemClock)

    def __post_init__(self) -> None:
        if self.seed is not None and len(self.seed) != 32:
            raise UsageError("Libp2pConfig.seed must be 32 bytes")
        if self.max_frame_bytes <= 0 or self.streams_per_peer <= 0:
            raise UsageError("Libp2pConfig.max_frame_bytes and streams_per_peer must be positive")
        if not 0 < self.redial_backoff <= self.redial_backoff_max:
            raise UsageError("Libp2pConfig needs 0 < redial_backoff <= redial_backoff_max, got "
                             f"{self.redial_backoff!r} and {self.redial_backoff_max!r}")


class Libp2pHost:
    """A running libp2p host (and DHT). Open it with `open_libp2p_host`."""

    def __init__(self, bridge: TrioBridge, host: Any, dht: KadDHT | None,
                 config: Libp2pConfig, streams_opened: Counter[str]) -> None:
        self.bridge = bridge
        self.host = host
        self.dht = dht
        self.config = config
        self.peer_id: str = host.get_id().to_string()
        self.streams_opened = streams_opened
        """Outbound streams opened, by protocol: one per DHT RPC in py-libp2p (metrics)."""

    @property
    def addrs(self) -> list[str]:
        """Dialable multiaddrs of this host, each ending in ``/p2p/<peer id>``."""
        return [str(a) for a in self.host.get_addrs()]

    def __repr__(self) -> str:
        return f"<Libp2pHost {self.peer_id} {self.addrs}>"


def _connection_config() -> ConnectionConfig:
    """How many connections a host keeps, and when it trims idle ones.

    min_connections=0 and a rare auto-connect: the default connection manager dials towards
    a full mesh (~100 connections per node at N=100), which 2 cores cannot carry.

    The watermarks sit below the resource manager's cap on inbound connections (256 by
    default). py-libp2p's defaults trim idle connections only above 300, so a node that
    every other node connects to (a seed: each joining node keeps its connection to it)
    reached the cap first and refused every newcomer from then on: at N=300 each node that
    joined after the 256th had a routing table of one (the seed), could walk nowhere, and
    no lookup from it, or of its ads, succeeded. Trimmed connections are dialled again when
    next needed.
    """
    inbound_cap = new_connection_limits_with_defaults().max_established_inbound or 256
    return ConnectionConfig(min_connections=0, auto_connect_interval=3600,
                            low_watermark=inbound_cap // 2, high_watermark=inbound_cap * 3 // 4)


async def _never_auto_connect() -> None:
    """Replaces py-libp2p's auto-connector step (see `_run_host`)."""


@asynccontextmanager
async def _run_host(config: Libp2pConfig,
                    streams_opened: Counter[str]) -> AsyncIterator[tuple[Any, KadDHT | None]]:
    """Trio side: create, start and finally stop the host and its DHT."""
    key_pair = create_new_key_pair(config.seed) if config.seed else create_new_key_pair()
    host = new_host(key_pair=key_pair, connection_config=_connection_config())
    # The auto-connector dials every known peer towards its watermark target (200 by
    # default), and at start-up, not only on its hourly tick: nodes end up in a full mesh.
    # Kademlia keeps the connections it needs; the auto-connector is switched off.
    host.get_network().auto_connector.maybe_connect = _never_auto_connect  # type: ignore[attr-defined]
    # Count outbound streams per protocol: py-libp2p opens one per DHT RPC, so this is the
    # DHT's message count, which it does not expose itself.
    open_stream = host.new_stream

    async def counted_new_stream(peer_id: Any, protocols: Any, *args: Any, **kw: Any) -> Any:
        streams_opened[str(protocols[0]) if protocols else "?"] += 1
        return await open_stream(peer_id, protocols, *args, **kw)

    host.new_stream = counted_new_stream  # type: ignore[method-assign, assignment]
    listen = [multiaddr.Multiaddr(a) for a in config.listen]
    async with host.run(listen):
        try:
            if not config.dht:
                yield host, None
                return
            # Registered before the first connection, so peers see the DHT protocol at once.
            dht = KadDHT(host, DHTMode.SERVER)
            async with background_trio_service(dht):
                yield host, dht
        finally:
            await _close_connections(host)


async def _close_connections(host: Any) -> None:
    """Trio side: close every connection of `host` before its service is stopped.

    Stopping the host's service cancels the swarm first, and its own closing of the
    connections then runs in a cancelled scope: the sockets stayed open. A process that
    opened a host and went on (a test, an in-process `aaex market search`) leaked one
    socket per peer, and each peer later waited out a timeout on a stream to it (a node's
    withdrawal at shutdown took 10 s). Shielded and bounded, so a stuck peer cannot stall
    the stop. All at once: py-libp2p's yamux waits 0.2 s in each close, which one by one
    added 2 s to the stop of a node with ten peers.
    """
    with shielded(), trio.move_on_after(_CLOSE_TIMEOUT_S):
        async with trio.open_nursery() as closing:
            for connections in list(host.get_network().connections.values()):
                for connection in list(connections):
                    closing.start_soon(_close_quietly, connection)
        await host.close()


async def _close_quietly(connection: Any) -> None:
    """Trio side: close one connection; a failure only means it is gone already.

    A connection whose own close was interrupted counts as closed but may still hold its
    muxer and socket open: those are closed directly.
    """
    try:
        if not connection.is_closed:
            await connection.close()
        elif not connection.muxed_conn.is_closed:
            await connection.muxed_conn.close()
    except _LIBP2P_FAILURES as exc:
        logger.debug("closing a connection failed (it is gone already?): %s", exc)


@asynccontextmanager
async def open_libp2p_host(config: Libp2pConfig | None = None) -> AsyncIterator[Libp2pHost]:
    """Start a libp2p host in its own trio thread; returns once it listens.

    Leaving the block stops the DHT, closes every connection and joins the thread.

    py-libp2p listens with ``SO_REUSEPORT``, so it would share a port that another process
    (or node) already listens on, and the kernel would split the connections between them.
    Each fixed TCP port is therefore checked first with a plain socket (`check_port_free`).

    Raises:
        AddressInUse: something already listens on a fixed port of `config.listen`.
        TransportError: the host could not start for another reason.
    """
    settings = config or Libp2pConfig()
    for address in settings.listen:
        bound = tcp_host_port(address)
        if bound is not None:
            check_port_free(*bound)
    adopt_libp2p_logging()
    bridge = TrioBridge()
    await bridge.start()
    try:
        try:
            streams_opened: Counter[str] = Counter()
            holder = bridge.open_in_trio(lambda: _run_host(settings, streams_opened),
                                         timeout=settings.start_timeout)
            running = await holder.__aenter__()
        except _LIBP2P_FAILURES as exc:
            raise TransportError(f"libp2p host did not start: {exc}") from exc
        try:
            host, dht = running
            yield Libp2pHost(bridge, host, dht, settings, streams_opened)
        finally:
            await holder.__aexit__(None, None, None)
    finally:
        await bridge.aclose()


class Libp2pTransport(Transport):
    """Sends and serves envelope frames over a `Libp2pHost`. Does not own the host."""

    def __init__(self, node: Libp2pHost) -> None:
        self._node = node
        self._idle: dict[str, list[Any]] = {}
        self._closed = False
        config = node.config
        self._redial = RedialBackoff(config.clock, first=config.redial_backoff,
                                     most=config.redial_backoff_max)

    @override
    def handles(self, endpoint: str) -> bool:
        return endpoint.startswith(("/ip4/", "/ip6/", "/dns")) and "/p2p/" in endpoint

    @override
    async def request(self, endpoint: str, frame: bytes, *, timeout: float) -> bytes | None:
        if self._closed:
            raise TransportClosed("this Libp2pTransport was closed")
        try:
            return await self._node.bridge.call(self._request, endpoint, frame, timeout=timeout)
        except TimeoutError:
            raise RequestTimeout(f"{endpoint} did not answer within {timeout} s") from None

    async def _request(self, endpoint: str, frame: bytes) -> bytes | None:
        """Trio side: one request/response, on a pooled stream when one is idle.

        A pooled stream may have been closed by the peer since its last use (a restart);
        then the request is retried once on a fresh stream. If the peer did handle the first
        attempt, the retry is refused as a replay: nothing is done twice.
        """
        try:
            info = info_from_p2p_addr(multiaddr.Multiaddr(endpoint))
        except (ValueError, TypeError) as exc:
            raise UsageError(f"{endpoint!r} is not a /p2p/ multiaddr: {exc}") from exc
        idle = self._idle.setdefault(info.peer_id.to_string(), [])
        if idle:
            try:
                return await self._exchange(idle, idle.pop(), endpoint, frame)
            except PeerUnreachable as exc:
                logger.debug("pooled stream to %s failed (%s); retrying on a new one",
                             endpoint, exc)
        stream = await self._open_stream(info, endpoint)
        return await self._exchange(idle, stream, endpoint, frame)

    async def _open_stream(self, info: Any, endpoint: str) -> Any:
        """Trio side: a new envelope stream to the peer, dialing it if no connection lives.

        Broken connections to it are dropped first. A dial happens only once the peer's
        redial backoff has passed; a failed one starts or grows it.

        Raises:
            PeerUnreachable: the peer is backing off, cannot be dialed, or refused the stream.
        """
        peer, key = info.peer_id, info.peer_id.to_string()
        network = self._node.host.get_network()
        await self._drop_broken(network, peer)
        dialing = not network.get_connections(peer)
        if dialing:
            if self._moved(info):  # restarted elsewhere: failures at the old address are moot
                self._redial.succeeded(key)
            wait = self._redial.wait_left(key)
            if wait > 0:
                raise PeerUnreachable(f"cannot open a stream to {endpoint}: its last dial "
                                      f"failed; the next is allowed in {wait:.1f} s")
            network.unblock_peer(peer)  # our backoff decides, not py-libp2p's 60 s block
        try:
            self._node.host.get_peerstore().add_addrs(peer, info.addrs, 3600)
            stream = await self._node.host.new_stream(peer, [ENVELOPE_PROTOCOL])
        except _LIBP2P_FAILURES as exc:
            later = ""
            if dialing and not network.get_connections(peer):
                later = f"; dialing again in {self._redial.failed(key):.1f} s at the earliest"
            raise PeerUnreachable(f"cannot open a stream to {endpoint}: {exc}{later}") from exc
        if dialing:
            self._redial.succeeded(key)
        return stream

    async def _drop_broken(self, network: Any, peer: Any) -> None:
        """Trio side: forget and close the connections to `peer` that are closed or closing.

        Each is taken out of the swarm's table first, so even a close that is cancelled
        cannot leave it there; the streams pooled for the peer go with it.
        """
        broken = [c for c in network.get_connections(peer)
                  if c.is_closed or c.muxed_conn.is_closed]
        if not broken:
            return
        for connection in broken:
            network.remove_conn(connection)
        pool = self._idle.get(peer.to_string(), [])
        pooled = list(pool)
        pool.clear()  # the same list a request in progress may pool its new stream in
        logger.debug("dropped %d broken connection(s) and %d pooled stream(s) to %s; "
                     "dialing it again", len(broken), len(pooled), peer)
        with shielded(), trio.move_on_after(_CLOSE_TIMEOUT_S):
            for stream in pooled:
                await reset_quietly(stream)
            for connection in broken:
                await _close_quietly(connection)

    def _moved(self, info: Any) -> bool:
        """Trio side: whether `info` names an address its known peer was not known at.

        If so, it replaces the old ones: py-libp2p dials one TCP address per peer, the first
        it knows, so a peer that restarted on a new port (its re-published record says so)
        would otherwise be dialed at its dead address forever.
        """
        peerstore = self._node.host.get_peerstore()
        try:
            known = set(peerstore.addrs(info.peer_id))
        except PeerStoreError:  # never seen: nothing to replace
            return False
        if known.issuperset(info.addrs):
            return False
        peerstore.clear_addrs(info.peer_id)
        return True

    async def _exchange(self, idle: list[Any], stream: Any, endpoint: str,
                        frame: bytes) -> bytes | None:
        """Trio side: write one frame, read one response; pool the stream if it is sound."""
        finished = False
        try:
            await stream.write(_LENGTH.pack(len(frame)) + frame)
            response = await read_frame(stream, self._node.config.max_frame_bytes + 1)
            finished = True
        except OversizeFrame as exc:
            raise TransportError(f"{endpoint} sent an oversize response: {exc}") from exc
        except _LIBP2P_FAILURES as exc:
            raise PeerUnreachable(f"stream to {endpoint} failed: {exc}") from exc
        finally:
            if not finished:
                with shielded():
                    await reset_quietly(stream)
        if response is None:
            await reset_quietly(stream)
            raise PeerUnreachable(f"{endpoint} closed the stream without answering")
        if len(idle) < self._node.config.streams_per_peer:
            idle.append(stream)
        else:
            await reset_quietly(stream)
        return _decode_response(endpoint, response)

    @override
    @asynccontextmanager
    async def serve(self, handler: FrameHandler) -> AsyncIterator[str | None]:
        node = self._node
        max_bytes = node.config.max_frame_bytes
        inbound: set[Any] = set()

        async def on_stream(stream: Any) -> None:
            """Trio side: serve frames on one inbound stream until the peer closes it."""
            inbound.add(stream)
            try:
                while True:
                    try:
                        frame = await read_frame(stream, max_bytes)
                    except OversizeFrame as exc:
                        # Answer, then close without reading the body: a reset here would
                        # discard the answer before the peer reads it.
                        await write_frame(stream, _rejection("oversize", str(exc)))
                        await stream.close()
                        return
                    if frame is None:
                        break
                    await write_frame(stream, await self._handle(handler, frame))
                await stream.close()
            except _LIBP2P_FAILURES as exc:
                logger.debug("inbound envelope stream ended: %s", exc)
                await reset_quietly(stream)
            finally:
                inbound.discard(stream)

        async def install() -> None:
            node.host.set_stream_handler(ENVELOPE_PROTOCOL, on_stream)

        async def uninstall() -> None:
            # Stop taking new streams, then end the open ones: no frame is served after this.
            node.host.remove_stream_handler(ENVELOPE_PROTOCOL)
            for stream in list(inbound):
                await reset_quietly(stream)

        await node.bridge.call(install)
        try:
            yield node.addrs[0] if node.addrs else None
        finally:
            try:
                await node.bridge.call(uninstall, timeout=5)
            except TransportClosed:
                pass

    async def _handle(self, handler: FrameHandler, frame: bytes) -> bytes:
        """Trio side: run the asyncio handler and encode its outcome as a response."""
        try:
            reply = await self._node.bridge.call_asyncio(handler, frame)
        except EnvelopeRejected as exc:
            return _rejection(exc.reason, clip(str(exc), DETAIL_LIMIT))
        except Exception:
            logger.error("envelope handler failed", exc_info=True)
            return bytes([_FAILED])
        return bytes([_NO_REPLY]) if reply is None else bytes([_REPLY]) + reply

    @override
    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        streams = [s for pool in self._idle.values() for s in pool]
        self._idle.clear()

        async def close_all() -> None:
            for stream in streams:
                await reset_quietly(stream)

        try:
            await self._node.bridge.call(close_all, timeout=5)
        except (TransportClosed, TimeoutError):
            pass

    def __repr__(self) -> str:
        pooled = sum(len(p) for p in self._idle.values())
        return f"<Libp2pTransport {self._node.peer_id} pooled_streams={pooled}>"


def _rejection(reason: str, detail: str) -> bytes:
    return bytes([_REJECTED]) + json.dumps({"reason": reason, "detail": detail}).encode()


def _decode_response(endpoint: str, response: bytes) -> bytes | None:
    if not response:
        raise TransportError(f"{endpoint} sent an empty response")
    status, body = response[0], response[1:]
    if status == _REPLY:
        return body
    if status == _NO_REPLY:
        return None
    if status == _REJECTED:
        try:
            reason = parse_json(body)
            raise PeerRejected(clip(str(reason["reason"])),
                               clip(str(reason.get("detail", "")), DETAIL_LIMIT))
        except (ValueError, KeyError, TypeError):
            raise PeerRejected("rejected",
                               clip(body[:DETAIL_LIMIT].decode(errors="replace"))) from None
    raise TransportError(f"{endpoint} failed to handle the envelope (status {status})")


async def _read_exactly(stream: Any, size: int) -> bytes | None:
    """Trio side: read `size` bytes; None on a clean end of stream before the first byte."""
    chunks: list[bytes] = []
    remaining = size
    while remaining:
        try:
            chunk = await stream.read(remaining)
        except EOFError:
            chunk = b""
        if not chunk:
            if remaining == size:
                return None
            raise PeerUnreachable("stream ended in the middle of a frame")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


async def read_frame(stream: Any, max_bytes: int) -> bytes | None:
    """Trio side: read one length-prefixed frame; None at a clean end of stream."""
    header = await _read_exactly(stream, _LENGTH.size)
    if header is None:
        return None
    (size,) = _LENGTH.unpack(header)
    if size > max_bytes:
        raise OversizeFrame(f"frame of {size} bytes exceeds the limit of {max_bytes}")
    if size == 0:
        return b""
    body = await _read_exactly(stream, size)
    if body is None:
        raise PeerUnreachable("stream ended before the frame body")
    return body


async def write_frame(stream: Any, response: bytes) -> None:
    """Trio side: write one length-prefixed frame."""
    await stream.write(_LENGTH.pack(len(response)) + response)


async def reset_quietly(stream: Any) -> None:
    """Trio side: reset a stream, ignoring a stream that is already gone."""
    try:
        await stream.reset()
    except _LIBP2P_FAILURES as exc:
        logger.debug("stream reset failed: %s", exc)

