"""Discovery over real libp2p hosts on loopback, in several OS processes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import pytest_asyncio

from aaex_agents import Identity
from discovery.records import (
    AgentRecord,
    PriceModel,
    ProofOfRepresentation,
    ServiceAd,
    SlaOffer,
    shard_of,
)
from tests.market_kit import cr
from tests.swarm_harness import SwarmProcess

pytestmark = pytest.mark.asyncio(loop_scope="module")
SHARDS = 4


@dataclass
class Network:
    workers: list[SwarmProcess]

    @property
    def peer_ids(self) -> list[str]:
        return [n["peer_id"] for w in self.workers for n in w.nodes]

    async def lookup_everywhere(self, capability: str, **query: object) -> list[dict]:  # type: ignore[type-arg]
        answers = await asyncio.gather(*(w.call("lookup", node="all", capability=capability,
                                                **query) for w in self.workers))
        return [r for answer in answers for r in answer["results"]]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def network() -> AsyncIterator[Network]:
    """Ten nodes in three processes; every other process joins through one seed."""
    first = await SwarmProcess.start(4, shards=SHARDS)
    seed = first.nodes[0]["addr"]
    others = await asyncio.gather(SwarmProcess.start(3, [seed], shards=SHARDS),
                                  SwarmProcess.start(3, [seed], shards=SHARDS))
    workers = [first, *others]
    try:
        yield Network(workers)
    finally:
        codes = await asyncio.gather(*(w.stop() for w in workers))
        assert codes == [0, 0, 0]


def _ad(identity: Identity, *, seq: int = 1, price: float = 1.0, ttl: float = 120,
        capability: str = "forecast.demand") -> ServiceAd:
    return ServiceAd(address=identity.address, seq=seq, expires_at=time.time() + ttl,
                     capability=capability, price=PriceModel(amount=cr(price)),
                     sla=SlaOffer(p50_ms=50, p95_ms=100, deadline_s=30, availability=0.99))


async def test_an_ad_is_found_from_every_node(network: Network) -> None:
    publisher = network.workers[2]
    published = await publisher.call("publish", node=2, capability="route.vrp", price=3.0,
                                     attributes={"region": "eu", "trucks": 3})
    assert published["acks"] >= 1
    results = await network.lookup_everywhere("route.vrp")
    assert len(results) == 10
    for result in results:
        assert result["error"] is None
        assert result["addresses"] == [published["address"]]

    # An asker with no connection to the publishing node still finds the ad: the walk
    # goes to the shard's index nodes, never to the publisher.
    asker = network.workers[0]
    publisher_peer = publisher.nodes[2]["peer_id"]
    await asker.call("disconnect", node=3, peer=publisher_peer)
    assert publisher_peer not in (await asker.call("peers"))["connected"][3]
    alone = await asker.call("lookup", node=3, capability="route.vrp")
    assert alone["results"][0]["addresses"] == [published["address"]]

    eu = await network.workers[0].call("lookup", node=1, capability="route.vrp",
                                       where="region == 'eu' and trucks >= 3", max_price=5)
    assert eu["results"][0]["addresses"] == [published["address"]]
    us = await network.workers[0].call("lookup", node=1, capability="route.vrp",
                                       where="region == 'us'")
    assert us["results"][0]["addresses"] == []


async def test_more_than_twenty_sellers_of_one_capability(network: Network) -> None:
    addresses = []
    for i in range(25):
        worker = network.workers[i % 3]
        published = await worker.call("publish", node=i % len(worker.nodes),
                                      capability="llm.chat", price=1.0 + i / 10)
        assert published["acks"] >= 1
        addresses.append(published["address"])
    for worker in network.workers:
        found = await worker.call("lookup", node=0, capability="llm.chat")
        assert found["results"][0]["addresses"] == sorted(addresses)


async def test_forged_and_replayed_ads_are_refused_by_every_node(network: Network) -> None:
    honest, impostor = Identity.generate(), Identity.generate()
    attacker = network.workers[0]
    peers = network.peer_ids
    newer = _ad(honest, seq=6).sign(honest)
    older = _ad(honest, seq=5).sign(honest)
    shard = shard_of(honest.address, SHARDS)

    accepted = await attacker.call("spray", node=0, wire=newer.hex(), capability="forecast.demand",
                                   peers=peers, shards=SHARDS)
    assert all(r[shard] == ["ok"] for r in accepted["replies"])

    tampered = bytearray(_ad(honest, seq=7, price=0.01).sign(honest))
    tampered[-5] ^= 0x01  # inside the signature
    stolen_identity = _ad(honest, seq=8, price=0.01).model_copy()
    forged_by_other = _forge(stolen_identity, impostor)
    for wire, reason in ((older, "stale"), (bytes(tampered), "bad_signature"),
                         (forged_by_other, "bad_signature")):
        refused = await attacker.call("spray", node=1, wire=wire.hex(),
                                      capability="forecast.demand", peers=peers, shards=SHARDS)
        assert len(refused["replies"]) == len(peers)
        for reply in refused["replies"]:
            assert reply[shard][:2] == ["err", reason]

    results = await network.lookup_everywhere("forecast.demand")
    for result in results:
        assert result["seqs"].get(honest.address) == 6  # never 5, 7 or 8


def _forge(ad: ServiceAd, signer: Identity) -> bytes:
    """An ad claiming `ad.address` but signed by another key."""
    import msgpack

    from discovery.records import _canonical

    return msgpack.packb([ad.kind, _canonical(ad), signer.sign(ad.signing_bytes())])


async def test_forged_agent_records_never_enter_any_value_store(network: Network) -> None:
    victim, impostor = Identity.generate(), Identity.generate()
    node = network.workers[1].nodes[0]
    expires = time.time() + 120
    record = AgentRecord(address=victim.address, seq=1, expires_at=expires,
                         peer_id=node["peer_id"], peer_addrs=[node["addr"]],
                         proof=ProofOfRepresentation.create(impostor, node["peer_id"], expires))
    forged = _forge_record(record, impostor)
    # py-libp2p reports a store as done even when the peer refused it, so the proof is that
    # no value store holds it afterwards.
    await network.workers[1].call("spray_record", node=0, wire=forged.hex(),
                                  address=victim.address, peers=network.peer_ids)
    for worker in network.workers:
        assert not any((await worker.call("holds_record", address=victim.address))["held"])
    unresolved = await network.workers[2].call("resolve", node=0, address=victim.address)
    assert "PeerUnreachable" in unresolved["error"]


def _forge_record(record: AgentRecord, signer: Identity) -> bytes:
    import msgpack

    from discovery.records import _canonical

    return msgpack.packb([record.kind, _canonical(record), signer.sign(record.signing_bytes())])


async def test_envelopes_over_libp2p_between_nodes_without_http(network: Network) -> None:
    echo = await network.workers[1].call("host_echo", node=2, http=False)
    assert all(e.startswith("/ip4/") and "/p2p/" in e for e in echo["endpoints"])
    answered = await network.workers[2].call("ask_echo", node=0, address=echo["address"],
                                             count=5)
    assert "error" not in answered and len(answered["ms"]) == 5
    # The caller sealed to the key in the echo's signed agent record, found through the DHT.
    assert answered["record_key"] is not None and answered["sealed_to"] == answered["record_key"]


async def test_a_killed_nodes_ads_are_gone_after_their_ttl(network: Network) -> None:
    seed = network.workers[0].nodes[0]["addr"]
    doomed = await SwarmProcess.start(2, [seed], shards=SHARDS)
    try:
        not_before = time.time() + 4.0  # the ad expires 4 s after it is made, so not sooner
        published = await doomed.call("publish", node=1, capability="inventory.check", ttl=4.0)
        assert published["acks"] >= 1
        before = await network.workers[0].call("lookup", node=2, capability="inventory.check")
        assert before["results"][0]["addresses"] == [published["address"]]
    finally:
        doomed.kill()  # no withdrawal: the process dies at once
        await doomed.process.wait()
    # Every lookup is a walk of the DHT: none before the ad can have expired.
    await asyncio.sleep(max(0.0, not_before - time.time()))
    deadline = time.monotonic() + 30
    while True:
        after = await network.workers[0].call("lookup", node=2, capability="inventory.check")
        if after["results"][0]["addresses"] == []:
            break
        assert time.monotonic() < deadline, "the dead node's ad outlived its TTL"
        await asyncio.sleep(0.5)
    for result in await network.lookup_everywhere("inventory.check"):
        assert result["addresses"] == []
