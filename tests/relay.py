"""A loopback TCP relay that keeps every byte it carries, as a proxy or a log between nodes would.

    async with tcp_relay() as relay:
        relay.target = ("127.0.0.1", seller_port)  # may be set once the relay listens
        ...  # peers dial relay.port
    assert MARKER not in relay.seen()
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class Relay:
    """What a `tcp_relay` carried: every chunk, either way, in order per direction."""

    def __init__(self) -> None:
        self.port = 0
        self.target: tuple[str, int] | None = None
        self.upstream: list[bytes] = []
        self.downstream: list[bytes] = []
        self.connections = 0
        self._tasks: set[asyncio.Task[None]] = set()

    def seen(self) -> bytes:
        """Everything carried, each direction joined (a marker split across chunks shows)."""
        return b"".join(self.upstream) + b"\x00" + b"".join(self.downstream)

    @property
    def carried(self) -> int:
        """Bytes carried, both directions."""
        return sum(map(len, self.upstream)) + sum(map(len, self.downstream))


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                into: list[bytes]) -> None:
    try:
        while chunk := await reader.read(65536):
            into.append(chunk)
            writer.write(chunk)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(ConnectionError, OSError):
            writer.close()


@asynccontextmanager
async def tcp_relay(target: tuple[str, int] | None = None) -> AsyncIterator[Relay]:
    """Listen on a free loopback port and relay each connection to `relay.target`."""
    relay = Relay()
    relay.target = target

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        relay.connections += 1
        try:
            if relay.target is None:
                raise OSError("the relay has no target yet")
            up_reader, up_writer = await asyncio.wait_for(
                asyncio.open_connection(*relay.target), 10)
        except (OSError, TimeoutError):
            writer.close()
            return
        await asyncio.gather(_pump(reader, up_writer, relay.upstream),
                             _pump(up_reader, writer, relay.downstream))

    def track(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.get_running_loop().create_task(accept(reader, writer))
        relay._tasks.add(task)
        task.add_done_callback(relay._tasks.discard)

    server = await asyncio.start_server(track, "127.0.0.1", 0)
    relay.port = server.sockets[0].getsockname()[1]
    try:
        yield relay
    finally:
        server.close()
        for task in list(relay._tasks):
            task.cancel()
        await asyncio.gather(*relay._tasks, return_exceptions=True)
        await server.wait_closed()
