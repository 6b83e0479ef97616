"""Two `aaex node run` processes trade through loopback TCP relays; no relay sees the task.

The relays keep every byte they carry, as a proxy or a log between the nodes would. The
task's note is a marker string; the seller delivers it back, so it crosses both ways: in
the call for proposals and the award (buyer to seller) and in the delivery (seller to
buyer). Over HTTP, each node's agent record names its relay (``[node] http_public``), so
every envelope between the nodes passes one; over libp2p, the buyer reaches the seller
through the relay it was given as its seed.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from aaex_agents import HttpTransport, Identity, Message, PeerRejected
from aaex_agents.envelope import seal
from tests.node_kit import aaex, buy_until, running_node, two_operators
from tests.relay import tcp_relay

MARKER = "sealed-marker-5d1e0b7c"

SELLER_TOML = """
[node]
http = "{http}"
http_public = "{public}"
admin = "127.0.0.1:0"
p2p = ["/ip4/127.0.0.1/tcp/0"]
drain_timeout = 1

[[agents]]
name = "echo"
class = "tests.peers.market_agents:NoteEcho"
settings = {{ cost = 1.0, exponent = 1.0 }}
"""

BUYER_TOML = """
[node]
http = "{http}"
http_public = "{public}"
admin = "127.0.0.1:0"
p2p = ["/ip4/127.0.0.1/tcp/0"]
seeds = ["{seed}"]
drain_timeout = 1

[market]
negotiation_window = 3

[[agents]]
name = "shopper"
class = "marketplace:Buyer"
"""


def _port(endpoint: str) -> int:
    return int(endpoint.split("://", 1)[1].split("/", 1)[0].rsplit(":", 1)[1])


async def _buy_echo(capsys: pytest.CaptureFixture[str], ops_buyer: Path, ops: object) -> str:
    code, _, err = await aaex(capsys, "account", "deposit", "--config", str(ops_buyer),
                              "shopper", "10")
    assert code == 0, err
    code, out = await buy_until(capsys, ops, "text.echo", budget="5",  # type: ignore[arg-type]
                                deadline="20", done=lambda code, out: code == 0)
    assert code == 0, out
    return out


class Probe(Message, type="test_sealing_nodes.probe/1"):
    note: str


async def _plaintext_is_refused(capsys: pytest.CaptureFixture[str], toml: Path,
                                endpoints: list[str]) -> None:
    """A node takes only sealed envelopes: a signed one in plaintext is refused, unread."""
    code, out, _ = await aaex(capsys, "account", "show", "--config", str(toml), "--json")
    assert code == 0
    target = json.loads(out)[0]["address"]
    frame = seal(Identity.generate(), target=target, message=Probe(note=MARKER),
                 now=time.time(), ttl=30)[1]
    client = HttpTransport()
    try:
        with pytest.raises(PeerRejected) as refused:
            await client.request(next(e for e in endpoints if e.startswith("http")), frame,
                                 timeout=10)
    finally:
        await client.aclose()
    assert refused.value.reason == "unsealed"


async def test_http_relays_between_two_nodes_see_no_plaintext_of_the_task(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ops = two_operators(tmp_path, {"note": MARKER}, "")
    async with tcp_relay() as to_seller, tcp_relay() as to_buyer:
        ops.seller_toml.write_text(SELLER_TOML.format(
            http="127.0.0.1:0", public=f"127.0.0.1:{to_seller.port}"))
        async with running_node(ops.seller_toml) as seller:
            to_seller.target = ("127.0.0.1", _port(next(
                e for e in seller.ready["endpoints"] if e.startswith("http"))))
            ops.buyer_toml.write_text(BUYER_TOML.format(
                http="127.0.0.1:0", public=f"127.0.0.1:{to_buyer.port}",
                seed=seller.ready["p2p"][0]))
            async with running_node(ops.buyer_toml) as buyer:
                to_buyer.target = ("127.0.0.1", _port(next(
                    e for e in buyer.ready["endpoints"] if e.startswith("http"))))
                out = await _buy_echo(capsys, ops.buyer_toml, ops)
                await _plaintext_is_refused(capsys, ops.seller_toml, seller.ready["endpoints"])
    assert MARKER in out  # the buyer got its note back, in the clear, at its end
    assert to_seller.connections > 0 and to_seller.carried > 0
    seen = to_seller.seen() + to_buyer.seen()
    assert b"/aaex/v1/envelope" in seen  # the envelopes did pass the relays
    assert MARKER.encode() not in seen
    assert b"market.call_for_proposals" not in seen  # nor a message type


async def test_a_libp2p_relay_between_two_nodes_sees_no_plaintext_of_the_task(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ops = two_operators(tmp_path, {"note": MARKER}, "")
    async with tcp_relay() as relay:
        ops.seller_toml.write_text(SELLER_TOML.format(http="", public=""))
        async with running_node(ops.seller_toml) as seller:
            seed = seller.ready["p2p"][0]  # /ip4/127.0.0.1/tcp/PORT/p2p/ID
            parts = seed.split("/")
            relay.target = ("127.0.0.1", int(parts[4]))
            parts[4] = str(relay.port)
            ops.buyer_toml.write_text(BUYER_TOML.format(http="", public="",
                                                        seed="/".join(parts)))
            async with running_node(ops.buyer_toml):
                out = await _buy_echo(capsys, ops.buyer_toml, ops)
    assert MARKER in out
    assert relay.connections > 0 and relay.carried > 0
    assert MARKER.encode() not in relay.seen()
