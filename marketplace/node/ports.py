"""The addresses a node will listen on, checked before it opens anything.

Apart from the node so that `aaex node run` checks them before it imports libp2p: a port in
use is named in half a second, not after the whole stack has loaded.
"""

from __future__ import annotations

import asyncio
import socket

from aaex_agents.errors import AddressInUse, TransportError
from aaex_agents.transport.listener import check_port_free, tcp_host_port

from .config import ConfigError, NodeConfig, split_host_port


def listen_fields(config: NodeConfig) -> list[tuple[str, str, str, int]]:
    """(field, value, host, port) of every address the node will listen on."""
    fields = []
    for field_name, value in (("node.http", config.node.http), ("node.admin", config.node.admin),
                              ("interop.listen", config.interop.listen or ""),
                              ("gateway.listen", config.gateway.listen or "")):
        if value:
            fields.append((field_name, value, *split_host_port(value)))
    for address in config.node.p2p:
        bound = tcp_host_port(address)
        if bound is not None:
            fields.append(("node.p2p", address, *bound))
    return fields


async def check_ports(config: NodeConfig) -> None:
    """Fail in one line naming the setting when a fixed port of `config` is taken.

    Run before anything opens, so a taken port costs no model load and no DHT join. The
    check binds a plain socket (see `aaex_agents.transport.listener.check_port_free`): a
    libp2p port another node holds is found too, though py-libp2p itself would share it.

    Raises:
        ConfigError: ``node.http = 127.0.0.1:8700: the port is in use; choose another or 0``,
            two settings name the same address, a host does not resolve, or an address is
            not this machine's.
    """
    seen: dict[tuple[str, int], str] = {}
    loop = asyncio.get_running_loop()
    for field_name, value, host, port in listen_fields(config):
        if port == 0:
            continue
        if (host, port) in seen:
            raise ConfigError(f"{field_name} = {value}: {seen[host, port]} listens there "
                              "already; choose another port or 0")
        seen[host, port] = field_name
        try:
            found = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            for ip in sorted({str(info[4][0]) for info in found}):
                check_port_free(ip, port)
        except socket.gaierror as exc:
            raise ConfigError(f"{field_name} = {value}: cannot resolve {host!r} "
                              f"({exc.strerror})") from None
        except AddressInUse:
            raise ConfigError(f"{field_name} = {value}: the port is in use; choose another "
                              "or 0") from None
        except TransportError as exc:
            raise ConfigError(f"{field_name} = {value}: {exc}") from None
