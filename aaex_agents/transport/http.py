"""HTTP transport (aiohttp): one POST per envelope on pooled keep-alive connections.

The reply frame comes back in the response body, so request/response costs one HTTP round
trip. Status codes: 200 reply frame, 204 no reply, 400 rejected (JSON `reason`, `detail`),
413 frame too large, 500 the receiver failed.
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
from aiohttp import web
from typing_extensions import override

from ..envelope import DEFAULT_MAX_FRAME_BYTES
from ..errors import (
    EnvelopeRejected,
    PeerRejected,
    PeerUnreachable,
    RequestTimeout,
    TransportClosed,
    TransportError,
    UsageError,
    clip,
)
from .base import DETAIL_LIMIT, FrameHandler, Transport
from .bodies import parse_json, read_body
from .listener import ServerLimits, open_http_listener

logger = logging.getLogger(__name__)

ENVELOPE_PATH = "/aaex/v1/envelope"
CLIENT_IDLE_S = 5.0
"""Seconds a pooled client connection may stay idle; under every server's header timeout."""
_CONTENT_TYPE = "application/x-aaex-envelope"
_STALE_RETRIES = 2
"""Times a request is sent again when a pooled connection turns out closed by the server."""


class HttpTransport(Transport):
    """Serves on `host:port` (port 0 picks a free one) and sends to ``http://`` endpoints.

    Args:
        host: interface to listen on; the default keeps the agent on loopback.
        port: TCP port; 0 lets the OS choose (read the endpoint from `serve`).
        max_frame_bytes: larger request bodies are refused with 413, by their Content-Length
            before being read, or once that many bytes have been read; larger replies are
            dropped the same way.
        connections_per_host: keep-alive pool size per peer.
        advertise_host: host name peers should use, when it differs from `host`.
        shutdown_timeout: on leaving `serve`, how long in-flight requests may still run
            before they are cancelled (default 5 s), so a stop is always bounded.
        limits: what the server grants one client: header and body timeouts, connections
            in all and per IP (default `ServerLimits()`; see `transport.listener`).

    As a client it closes a pooled connection after 5 s idle, before a server with the
    default `ServerLimits.header_timeout` (10 s) would close it under a new request.
    """

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0,
                 max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES, connections_per_host: int = 100,
                 advertise_host: str | None = None, shutdown_timeout: float = 5.0,
                 limits: ServerLimits | None = None) -> None:
        if max_frame_bytes <= 0 or connections_per_host <= 0 or shutdown_timeout < 0:
            raise UsageError("max_frame_bytes, connections_per_host and shutdown_timeout must "
                             "be positive")
        self._shutdown_timeout = shutdown_timeout
        self._host = host
        self._port = port
        self._advertise_host = advertise_host or host
        self._max_frame_bytes = max_frame_bytes
        self._connections_per_host = connections_per_host
        self._limits = limits or ServerLimits()
        self._session: aiohttp.ClientSession | None = None
        self._closed = False

    @override
    def handles(self, endpoint: str) -> bool:
        return endpoint.startswith(("http://", "https://"))

    def _client(self) -> aiohttp.ClientSession:
        if self._closed:
            raise TransportClosed("this HttpTransport was closed; create a new one")
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=0, limit_per_host=self._connections_per_host,
                                             keepalive_timeout=CLIENT_IDLE_S)
            # No aiohttp timeout: `request` bounds each exchange with its own asyncio.timeout,
            # and a second timer per request would only cost CPU on the hot path.
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=aiohttp.ClientTimeout(total=None),
                skip_auto_headers=("User-Agent", "Accept-Encoding"))
        return self._session

    @override
    async def request(self, endpoint: str, frame: bytes, *, timeout: float) -> bytes | None:
        status, body = await post_bounded(self._client(), endpoint, frame,
                                          {"Content-Type": _CONTENT_TYPE}, timeout=timeout,
                                          limit=self._max_frame_bytes)
        if status == 200:
            return body
        if status == 204:
            return None
        if status in (400, 413):
            try:
                reason = parse_json(body)
                raise PeerRejected(clip(str(reason["reason"])),
                                   clip(str(reason.get("detail", "")), DETAIL_LIMIT))
            except (ValueError, KeyError, TypeError):
                raise PeerRejected("oversize" if status == 413 else "rejected",
                                   clip(body[:DETAIL_LIMIT].decode(errors="replace"))) from None
        raise TransportError(f"{endpoint} answered HTTP {status}: "
                             f"{clip(body[:DETAIL_LIMIT].decode(errors='replace'))}")

    @override
    @asynccontextmanager
    async def serve(self, handler: FrameHandler) -> AsyncIterator[str | None]:
        max_bytes = self._max_frame_bytes

        async def on_request(request: web.BaseRequest) -> web.StreamResponse:
            if request.method != "POST" or request.path != ENVELOPE_PATH:
                return web.Response(status=404, text=f"POST envelopes to {ENVELOPE_PATH}\n")
            length = request.content_length
            if length is not None and length > max_bytes:
                return _rejection(413, "oversize",
                                  f"{length} bytes exceeds the limit of {max_bytes}")
            frame = await read_body(request.content, max_bytes)
            if frame is None:
                return _rejection(413, "oversize", f"body exceeds the limit of {max_bytes} bytes")
            try:
                reply = await handler(frame)
            except EnvelopeRejected as exc:
                return _rejection(400, exc.reason, clip(str(exc), DETAIL_LIMIT))
            except Exception:
                logger.error("envelope handler failed on %s", request.remote, exc_info=True)
                return web.Response(status=500, text="internal error\n")
            if reply is None:
                return web.Response(status=204)
            return web.Response(body=reply, content_type=_CONTENT_TYPE)

        async with open_http_listener(on_request, self._host, self._port,
                                      limits=self._limits, name="envelopes",
                                      shutdown_timeout=self._shutdown_timeout) as listener:
            endpoint = f"http://{self._advertise_host}:{listener.port}{ENVELOPE_PATH}"
            logger.info("serving envelopes at %s", endpoint)
            yield endpoint

    @override
    async def aclose(self) -> None:
        self._closed = True
        if self._session is not None:
            await self._session.close()
            self._session = None

    def __repr__(self) -> str:
        return f"<HttpTransport {self._host}:{self._port} {'closed' if self._closed else 'open'}>"


async def post_bounded(session: aiohttp.ClientSession, endpoint: str, data: bytes,
                       headers: dict[str, str], *, timeout: float,
                       limit: int) -> tuple[int, bytes]:
    """POST `data` and return (status, body), the body read whole but never past `limit`.

    The one place an outbound HTTP exchange is bounded in time and size, and where aiohttp's
    errors become ours (the envelope transport and the uAgents gateway both post through it).

    Raises:
        RequestTimeout: no whole answer within `timeout` seconds.
        PeerUnreachable: nothing accepted the connection.
        TransportError: the exchange failed, or the answer passed `limit` bytes (dropped).
    """
    try:
        async with asyncio.timeout(timeout):
            for attempt in range(_STALE_RETRIES + 1):
                answered = False
                try:
                    async with session.post(endpoint, data=data, headers=headers) as response:
                        answered = True
                        body = await read_body(response.content, limit)
                        status = response.status
                    break
                except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as exc:
                    if answered or attempt == _STALE_RETRIES or not _closed_under_us(exc):
                        raise
                    logger.debug("%s closed a pooled connection under a request (%s); sending "
                                 "again on another", endpoint, exc)
    except TimeoutError:
        raise RequestTimeout(f"{endpoint} did not answer within {timeout} s") from None
    except aiohttp.ClientConnectionError as exc:
        raise PeerUnreachable(f"cannot reach {endpoint}: {exc}") from exc
    except aiohttp.ClientError as exc:
        raise TransportError(f"HTTP exchange with {endpoint} failed: {exc}") from exc
    if body is None:
        raise TransportError(f"{endpoint} answered with more than {limit} bytes; the reply "
                             "was dropped")
    return status, body


def _closed_under_us(exc: aiohttp.ClientError) -> bool:
    """Whether the server closed the connection before it answered a byte.

    A server closes an idle keep-alive connection when its own idle timeout passes; a request
    sent on it at that moment meets a reset (or a bare close). No answer has begun, so the
    server did not take the frame: sending it again, on another connection, is safe (and a
    signed envelope that did arrive is refused as a replay, never run twice).
    """
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return True
    return isinstance(exc, aiohttp.ClientOSError) and exc.errno in (errno.ECONNRESET,
                                                                     errno.EPIPE)


def _rejection(status: int, reason: str, detail: str) -> web.Response:
    return web.Response(status=status, text=json.dumps({"reason": reason, "detail": detail}),
                        content_type="application/json")
