"""A hostile partner against a real `aaex node run` process, through every HTTP door it opens.

The unit-level tests of each limit run the listener in-process; this one runs the attacks of
the third hostile review against a separate node process (its own key, config and ledger),
from this process as the attacker, and checks the node still serves an honest sender and
logs no traceback (the replay flood on ``/submit`` needs more envelopes than a node's
default window holds; tests/test_interop_limits.py runs it with small bounds):

- sync requests nobody answers are held at most ``sync_holds_per_ip`` per address;
- a valid 300 kB envelope is read whole; a 900 kB "address" is ``malformed`` at once;
- the OpenAI gateway refuses connections beyond its per-address limit at once;
- deeply nested JSON gets a one-line refusal from A2A, the gateway and the admin API;
- an A2A caller naming a signed buyer's dialogue id cannot end that negotiation.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import aiohttp

from aaex_agents import HttpTransport, StaticDirectory, open_runtime
from aaex_agents.agent import Agent
from marketplace.trade.contracting import buyer_signer
from marketplace.trade.negotiation import (
    Accept,
    Agreed,
    CallForProposals,
    Propose,
    new_dialogue_id,
)
from marketplace.trade.strategies import Offer
from tests.market_kit import cr
from tests.node_kit import running_node
from tests.test_interop_limits import JSON, SAFETY_S, SYNC, ack, key, post, unanswered

NODE_TOML = """
[node]
http = "127.0.0.1:0"
admin = "127.0.0.1:0"
p2p = []
drain_timeout = 0

[interop]
listen = "127.0.0.1:0"
sync_timeout = 300
sync_holds = 8
sync_holds_per_ip = 2

[gateway]
listen = "127.0.0.1:0"
agent = "shopper"

[[agents]]
name = "shopper"
class = "marketplace:Buyer"

[[agents]]
name = "forecaster"
class = "tests.peers.seller_peer:ForecastSeller"
settings = { cost = 2.0, exponent = 4.0 }
"""

DEEP = b"[" * 100_000 + b"]" * 100_000


class Bidder(Agent):
    """A signed buyer that opens a negotiation the attacker then names."""


async def _connect(url: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = url.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)
    return await asyncio.open_connection(host, int(port))


async def _deep_json_everywhere(ready: dict[str, Any], token: str) -> None:
    interop, gateway = ready["interop"], ready["gateway"]
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=SAFETY_S)) as http:
        shopper = next(iter(interop["agents"]))
        for url, auth in ((f"{interop['listen']}/a2a/{shopper}", None),
                          (gateway + "/v1/chat/completions", token),
                          (ready["admin"] + "/account/deposit", token)):
            headers = {**JSON, **({"Authorization": f"Bearer {auth}"} if auth else {})}
            async with http.post(url, data=DEEP, headers=headers) as response:
                assert response.status in (200, 400), url  # A2A: JSON-RPC -32700 in a 200
                text = await response.text()
                assert "nested deeper than" in text and "Traceback" not in text, url


async def test_the_hostile_reviews_http_attacks_against_a_node_process(tmp_path: Path) -> None:
    toml = tmp_path / "node.toml"
    toml.write_text(NODE_TOML)
    async with running_node(toml) as node:
        ready = node.ready
        token = (tmp_path / "data" / "admin.token").read_text().strip()
        interop = ready["interop"]
        submit = interop["submit"]
        target = next(iter(interop["agents"].values()))["uagents"]

        # Whole bodies up to the frame limit; over-long fields refused before decoding.
        big = ack(key(2), target, expires=int(time.time()) + 30,
                  metadata={"padding": "p" * 300_000})
        assert await post(submit, big.to_json()) == (200, {})
        document = json.loads(ack(key(3), target, expires=int(time.time()) + 30).to_json())
        document["sender"] = document["sender"][:6] + "q" * 900_000
        status, answer = await post(submit, json.dumps(document).encode())
        assert (status, answer["reason"]) == (400, "malformed")

        # Held sync requests: two per address. Of three sent at once, whichever arrives
        # third is refused at once, while the other two stay held.
        held = [asyncio.create_task(post(submit, unanswered(key(20 + n), target).to_json(),
                                         SYNC)) for n in range(3)]
        try:
            done, pending = await asyncio.wait(held, timeout=SAFETY_S,
                                               return_when=asyncio.FIRST_COMPLETED)
            [refused] = done
            status, answer = refused.result()
            assert (status, answer["reason"]) == (503, "busy"), answer
            assert "sync requests" in answer["error"] and len(pending) == 2
        finally:
            for task in held:
                task.cancel()
            await asyncio.gather(*held, return_exceptions=True)

        # The gateway: 64 connections per address, the 65th refused at once.
        open_ones = [await _connect(ready["gateway"]) for _ in range(64)]
        try:
            reader, writer = await _connect(ready["gateway"])
            assert (await asyncio.wait_for(reader.read(), SAFETY_S)).startswith(
                b"HTTP/1.1 503")
            writer.close()
        finally:
            for _, open_writer in open_ones:
                open_writer.close()

        await _deep_json_everywhere(ready, token)
        await _a2a_cannot_end_a_signed_negotiation(ready)

        assert node.process.returncode is None  # alive, and no traceback in its log
        assert not [e for e in node.events if e.get("exc_info") or "Traceback" in str(e)]


async def _a2a_cannot_end_a_signed_negotiation(ready: dict[str, Any]) -> None:
    """A rival names a live dialogue id over A2A (no key); the buyer's accept still goes
    through and is countersigned."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=SAFETY_S)) as http:
        async with http.get(ready["admin"] + "/agents") as response:
            seller = next(a["address"] for a in await response.json()
                          if a["name"] == "forecaster")
    bidder = Bidder()
    async with open_runtime(bidder, transports=[HttpTransport()], directory=StaticDirectory(
            {seller: list(ready["endpoints"])})) as runtime:
        ctx = runtime.context(bidder)
        cfp = CallForProposals(dialogue=new_dialogue_id(), capability="forecast.demand",
                               task={"history": [1, 2]}, max_price=cr(10), max_latency_ms=1000,
                               max_deadline_s=60, respond_by=time.time() + 60)
        offer = await ctx.ask(seller, cfp, timeout=10)
        assert isinstance(offer, Propose)
        data = {"dialogue": cfp.dialogue, "capability": "forecast.demand",
                "task": {"history": [1, 2]}, "max_price": "10", "max_latency_ms": 1000,
                "max_deadline_s": 60}
        rpc = {"jsonrpc": "2.0", "id": "r", "method": "SendMessage",
               "params": {"message": {"messageId": "m", "role": "ROLE_USER",
                                      "parts": [{"data": data}]}}}
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=SAFETY_S)) as http:
            async with http.post(ready["interop"]["listen"] + f"/a2a/{seller}",
                                 json=rpc) as response:
                answer = await response.json()
        assert answer["error"]["code"] == -32602, answer
        agreement = buyer_signer(bidder.identity)(cfp.dialogue, seller, cfp, Offer(
            offer.price, offer.latency_ms, offer.deadline_s, offer.penalty))
        agreed = await ctx.ask(seller, Accept(dialogue=cfp.dialogue, round=0,
                                              agreement=agreement), timeout=10)
        assert isinstance(agreed, Agreed), agreed
