"""A flood of calls for proposals from fresh keys against an `aaex node run` seller, over HTTP,
while honest buyers trade with it: nobody is shut out (marketplace.trade.dialogues).

The hostile review sent 10,000 calls from 667 fresh keys with ``respond_by = 1e12``; the
seller's table filled for good and the honest buyer's next call got ``busy``. Here the seller
runs with small quotas ([dialogues]: 12 slots, 4 per buyer) so the table fills at once.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp

from aaex_agents import Agent, HttpTransport, StaticDirectory, open_runtime
from aaex_agents.context import Context
from marketplace.trade.contracting import buyer_signer
from marketplace.trade.delegation import Delegator
from marketplace.trade.negotiation import (
    Accept,
    CallForProposals,
    Decline,
    Propose,
    new_dialogue_id,
)
from marketplace.trade.policy import Wallet
from marketplace.trade.strategies import Offer
from tests.market_kit import cr
from tests.node_kit import running_node

SELLER_TOML = """
[node]
http = "127.0.0.1:0"
admin = "127.0.0.1:0"
p2p = []
drain_timeout = 1

[dialogues]
max_open = 12
max_per_buyer = 4
max_window = 60

[[agents]]
name = "forecaster"
class = "tests.peers.seller_peer:ForecastSeller"
settings = { cost = 2.0, exponent = 4.0 }
"""


class Buyer(Agent):
    pass


def call(respond_by: float | None = None) -> CallForProposals:
    return CallForProposals(dialogue=new_dialogue_id(), capability="forecast.demand",
                            task={"history": [1, 2, 3]}, max_price=cr(10), max_latency_ms=1000,
                            max_deadline_s=60,
                            respond_by=time.time() + 50 if respond_by is None else respond_by)


def outcome(reply: Any) -> str:
    return reply.reason if isinstance(reply, Decline) else type(reply).__name__


async def negotiate(ctx: Context, seller: str, *, accept: bool) -> str:
    """One honest negotiation: a call, and with `accept` the agreement; how it ended."""
    cfp = call()
    offer = await ctx.ask(seller, cfp, timeout=10)
    if not (accept and isinstance(offer, Propose)):
        return outcome(offer)
    agreement = buyer_signer(ctx.identity)(cfp.dialogue, seller, cfp, Offer(
        offer.price, offer.latency_ms, offer.deadline_s, offer.penalty))
    return outcome(await ctx.ask(seller, Accept(dialogue=cfp.dialogue, round=offer.round,
                                                agreement=agreement), timeout=10))


async def flood(contexts: Sequence[Context], seller: str, *, calls: int,
                respond_by: float | None = None) -> Counter[str]:
    """`calls` calls for proposals from each fresh key, all at once; the outcomes."""
    replies = await asyncio.gather(*(ctx.ask(seller, call(respond_by), timeout=10)
                                     for ctx in contexts for _ in range(calls)))
    return Counter(outcome(r) for r in replies)


async def open_dialogues(admin: str) -> int:
    async with aiohttp.ClientSession() as http, http.get(admin + "/dialogues") as response:
        rows = await response.json()
    return sum(1 for row in rows if row["state"] == "proposed")


async def test_honest_buyers_are_served_during_a_flood_of_fresh_keys(tmp_path: Path) -> None:
    (config := tmp_path / "seller.toml").write_text(SELLER_TOML)
    async with running_node(config) as node:
        admin = node.ready["admin"]
        endpoint = next(e for e in node.ready["endpoints"] if e.startswith("http"))
        async with aiohttp.ClientSession() as http, http.get(admin + "/agents") as response:
            seller = json.loads(await response.text())[0]["address"]
        regular, newcomer = Buyer(), Buyer()
        flooders = [Buyer() for _ in range(40)]
        async with open_runtime([regular, newcomer, *flooders], transports=[HttpTransport()],
                                directory=StaticDirectory({seller: [endpoint]})) as runtime:
            keys = [runtime.context(f) for f in flooders]

            async def only_seller(capability: str, where: str | None) -> list[str]:
                return [seller]

            # The regular bought before: its receipt paid the seller, which gives it standing.
            done = await Delegator(regular.identity, find=only_seller, wallet=Wallet(
                budget=cr(50), per_seller=cr(50), per_task=cr(20))).delegate(
                runtime.context(regular), "forecast.demand", {"history": [1, 2, 3]},
                budget=cr(10), deadline=30)
            assert done.receipt.receipt.verdict == "met"
            await node.event("receipt_booked")

            # The review's flood: respond_by 1e12 is refused, and nothing is held for it.
            assert await flood(keys[:15], seller, calls=4, respond_by=1e12) == Counter(
                respond_by_too_far=60)
            assert await open_dialogues(admin) == 0

            # Within the window, three keys fill the table (four calls each, their quota) ...
            assert await flood(keys[:3], seller, calls=4) == Counter(Propose=12)
            assert await flood(keys[:1], seller, calls=1) == Counter(too_many_dialogues=1)
            # ... and 37 more keep it full while the honest buyers negotiate.
            async def honest() -> list[str]:
                ends = []
                for _ in range(3):
                    ends.append(await negotiate(runtime.context(regular), seller, accept=True))
                    ends.append(await negotiate(runtime.context(newcomer), seller,
                                                accept=False))
                return ends

            flooded, served = await asyncio.gather(flood(keys[3:], seller, calls=4), honest())
            # The regular agreed three times and the stranger was offered three times.
            assert served == ["Agreed", "Propose"] * 3
            assert set(flooded) <= {"Propose", "busy"} and flooded["Propose"] > 0
            assert await open_dialogues(admin) <= 12
