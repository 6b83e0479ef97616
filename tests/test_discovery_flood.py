"""An index flood on five real libp2p nodes on loopback, in two OS processes.

The attacker mints fresh keys and sends valid, signed ads straight to every node's index:
ten-year ads, ads that fill every shard, one key with many capability names, and a captured
ad of a seller that withdrew, offered on every shard. Every honest ad must stay findable
from every node, and the withdrawn one must stay gone.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from aaex_agents import Identity
from discovery.records import PriceModel, ServiceAd, SlaOffer, shard_of
from tests.market_kit import cr
from tests.swarm_harness import SwarmProcess

pytestmark = pytest.mark.asyncio(loop_scope="module")
SHARDS = 4
LIMITS = {"max_per_shard": 20, "max_total": 50, "max_per_advertiser": 4}
CAPABILITY = "flood.target"
TEN_YEARS = 10 * 365 * 24 * 3600


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def network() -> AsyncIterator[list[SwarmProcess]]:
    """Five nodes with small index bounds: three in one process, two joining through a seed."""
    first = await SwarmProcess.start(3, shards=SHARDS, **LIMITS)
    second = await SwarmProcess.start(2, [first.nodes[0]["addr"]], shards=SHARDS, **LIMITS)
    workers = [first, second]
    try:
        yield workers
    finally:
        assert await asyncio.gather(*(w.stop() for w in workers)) == [0, 0]


def _ad(identity: Identity, *, seq: int, withdrawn: bool = False,
        capability: str = CAPABILITY) -> bytes:
    return ServiceAd(address=identity.address, seq=seq, expires_at=time.time() + 600,
                     capability=capability, price=PriceModel(amount=cr(1.0)),
                     sla=SlaOffer(p50_ms=50, p95_ms=100, deadline_s=30, availability=0.99),
                     withdrawn=withdrawn).sign(identity)


async def test_a_withdrawn_ad_replayed_on_every_shard_stays_gone(
        network: list[SwarmProcess]) -> None:
    first, second = network
    peers = [n["peer_id"] for w in network for n in w.nodes]
    seller = Identity.generate()
    spray = {"capability": "flood.replay", "peers": peers, "shards": SHARDS}
    own_shard = shard_of(seller.address, SHARDS)
    captured = _ad(seller, seq=1, capability="flood.replay")
    await second.call("spray", node=1, wire=captured.hex(), only=own_shard, **spray)
    assert (await first.call("lookup", node=0, capability="flood.replay"))["results"][0][
        "addresses"] == [seller.address]
    tombstone = _ad(seller, seq=2, withdrawn=True, capability="flood.replay")
    await second.call("spray", node=1, wire=tombstone.hex(), only=own_shard, **spray)

    replayed = await first.call("spray", node=2, wire=captured.hex(), **spray)  # every shard
    for worker in network:
        answer = await worker.call("lookup", node="all", capability="flood.replay")
        for result in answer["results"]:
            assert result["addresses"] == [], "a withdrawn ad came back"
    outcomes = {tuple(reply[:2]) for per_peer in replayed["replies"] for reply in per_peer}
    assert outcomes == {("err", "stale"), ("err", "wrong_shard")}


async def test_honest_ads_stay_findable_and_withdrawn_ads_stay_gone_under_a_flood(
        network: list[SwarmProcess]) -> None:
    first, second = network
    peers = [n["peer_id"] for w in network for n in w.nodes]
    honest = []
    for i in range(6):  # through the real advertiser, before the flood
        worker = network[i % 2]
        published = await worker.call("publish", node=i % len(worker.nodes),
                                       capability=CAPABILITY)
        assert published["acks"] >= 1
        honest.append(published["address"])

    quitter = Identity.generate()  # advertises, is captured, then withdraws
    captured = _ad(quitter, seq=1)
    shard = shard_of(quitter.address, SHARDS)
    stored = await second.call("spray", node=0, wire=captured.hex(), capability=CAPABILITY,
                               peers=peers, shards=SHARDS)
    assert all(r[shard] == ["ok"] for r in stored["replies"])
    await second.call("spray", node=0, wire=_ad(quitter, seq=2, withdrawn=True).hex(),
                      capability=CAPABILITY, peers=peers, shards=SHARDS)

    flood = {"node": 0, "capability": CAPABILITY, "peers": peers, "shards": SHARDS}
    long_lived = await first.call("flood", count=100, ttl=TEN_YEARS, **flood)
    names = await first.call("flood", count=30, ttl=600, same_key=True,
                             **{**flood, "capability": "flood.names"})
    fresh = await first.call("flood", count=150, ttl=1800, **flood)
    replayed = await first.call("spray", node=1, wire=captured.hex(), capability=CAPABILITY,
                                peers=peers, shards=SHARDS)
    refreshed = [await w.call("republish") for w in network]  # the honest sellers' timers

    # What the flood must not achieve, asked from every node.
    for worker in network:
        answer = await worker.call("lookup", node="all", capability=CAPABILITY)
        for result in answer["results"]:
            assert result["error"] is None
            assert set(honest) <= set(result["addresses"]), "an honest ad was pushed out"
            assert quitter.address not in result["addresses"], "a withdrawn ad came back"
    # How each attack was refused.
    assert long_lived["outcomes"] == {"lifetime_too_long": 100 * len(peers)}
    assert fresh["outcomes"].get("index_full", 0) > 0
    assert set(fresh["outcomes"]) <= {"ok", "index_full"}
    quota = LIMITS["max_per_advertiser"]
    assert names["outcomes"] == {"ok": quota * len(peers),
                                 "advertiser_limit": (30 - quota) * len(peers)}
    outcomes = [reply for per_peer in replayed["replies"] for reply in per_peer]
    assert ["ok"] not in outcomes
    assert {tuple(o[:2]) for o in outcomes} == {("err", "stale"), ("err", "wrong_shard")}
    for acks in (r["acks"] for r in refreshed):
        assert acks and min(acks.values()) >= 1, "a refresh of a held ad was refused"
    held = [n for w in network for n in (await w.call("stats"))["held_ads"]]
    assert max(held) <= LIMITS["max_total"]
