"""A port already in use stops a node in one line naming the setting, never silently shared.

py-libp2p listens with SO_REUSEPORT, so without a check a second node on the same p2p port
would start and the kernel would split connections between the two; an HTTP or admin port
in use used to end in a long traceback.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from aaex_agents import Identity
from aaex_agents.errors import AddressInUse
from aaex_agents.transport.libp2p import Libp2pConfig, open_libp2p_host

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def held_port() -> Iterator[int]:
    """A loopback port another program listens on, with SO_REUSEPORT as py-libp2p sets it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield int(holder.getsockname()[1])


SETTINGS = {
    "node.http": ('http = "127.0.0.1:{port}"\np2p = []', "127.0.0.1:{port}"),
    "node.admin": ('admin = "127.0.0.1:{port}"\np2p = []', "127.0.0.1:{port}"),
    "node.p2p": ('p2p = ["/ip4/127.0.0.1/tcp/{port}"]', "/ip4/127.0.0.1/tcp/{port}"),
    "interop.listen": ('p2p = []\n[interop]\nlisten = "127.0.0.1:{port}"', "127.0.0.1:{port}"),
    "gateway.listen": ('p2p = []\n[gateway]\nlisten = "127.0.0.1:{port}"\nagent = "shopper"\n'
                       '[[agents]]\nname = "shopper"\nclass = "marketplace:Buyer"',
                       "127.0.0.1:{port}"),
}


CLI_TELLING_IF_LIBP2P_LOADED = (
    "import sys; from marketplace.cli.main import main; code = main(sys.argv[1:]); "
    "print('libp2p loaded:', 'libp2p' in sys.modules); sys.exit(code)")


@pytest.mark.parametrize("field", SETTINGS, ids=list(SETTINGS))
def test_a_port_in_use_stops_the_node_in_one_line(tmp_path: Path, held_port: int,
                                                  field: str) -> None:
    lines, value = SETTINGS[field]
    Identity.generate().save(tmp_path / "node.key")  # no "created key" log line first
    (tmp_path / "node.toml").write_text("[node]\n" + lines.format(port=held_port) + "\n")
    try:
        result = subprocess.run([sys.executable, "-c", CLI_TELLING_IF_LIBP2P_LOADED, "node",
                                 "run", "--config", str(tmp_path / "node.toml")],
                                capture_output=True, text=True, timeout=60, check=False,
                                cwd=ROOT)
    except subprocess.TimeoutExpired as exc:  # it started: it shares the port
        raise AssertionError(f"the node started on a port in use: {exc.stdout!r}") from None
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [result.stderr.strip()]  # one line, no traceback
    assert result.stderr.strip() == (f"aaex: {field} = {value.format(port=held_port)}: the "
                                     "port is in use; choose another or 0")
    assert result.stdout == "libp2p loaded: False\n"  # named before the stack loads


async def test_a_libp2p_host_does_not_share_a_port_in_use(held_port: int) -> None:
    with pytest.raises(AddressInUse, match=f"127.0.0.1:{held_port}: the port is in use"):
        async with open_libp2p_host(Libp2pConfig(listen=(f"/ip4/127.0.0.1/tcp/{held_port}",),
                                                 dht=False)):
            pass


def test_two_settings_on_one_address_are_named(tmp_path: Path) -> None:
    import asyncio

    from marketplace.node.config import ConfigError, parse_config
    from marketplace.node.ports import check_ports

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = parse_config({"node": {"http": f"127.0.0.1:{port}", "admin": f"127.0.0.1:{port}",
                                    "p2p": []}}, base=tmp_path)
    with pytest.raises(ConfigError, match=f"node.admin = 127.0.0.1:{port}: node.http listens"):
        asyncio.run(check_ports(config))
