"""A market forming while its nodes start: every provider is found in seconds, not minutes.

Four providers join through one buyer node, as in `aaex demo supply-chain`. A provider that
publishes before the others have joined knows only the buyer: its ad lands on the buyer and
on itself, the providers joining a moment later are closer to the ad's shard key, and a
lookup asks the 3 closest index nodes only. The ad stayed invisible until the advertiser's
next refresh (`refresh_period`, 300 s here; the demo stalled for its 60 s in about one run
of three). The advertiser now re-publishes an ad that has not settled after 1 s, 2 s, 4 s...

Real libp2p hosts on loopback, in this process. The node keys are drawn so that the buyer
and each provider are the two nodes farthest from that provider's shard key: an ad that
only the buyer and its provider hold is then missed by every lookup, so the stall happens
whenever a provider publishes before the others joined (no luck needed to catch it), and a
network that heals does so only by re-publishing.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass

from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.kad_dht.utils import sort_peer_ids_by_distance
from libp2p.peer.id import ID

from aaex_agents import Identity
from aaex_agents.transport.libp2p import Libp2pConfig, open_libp2p_host
from discovery.advertiser import Listing, open_advertiser
from discovery.dht import Discovery, DiscoveryConfig, open_discovery
from discovery.query import Query
from discovery.records import PriceModel, SlaOffer, capability_shard_key, shard_of

CAPABILITIES = ("forecast.demand", "forecast.demand", "route.vrp", "route.vrp")
"""The demo's market: two forecasters and two routers."""
CONFIG = DiscoveryConfig()  # 4 shards, ads on 4 index nodes, 3 asked per shard
REFRESH_PERIOD = 300.0
"""The default: a stalled ad would wait this long for its refresh."""
FOUND_WITHIN = 15.0
"""Seconds from the last provider's start to every provider found. A healthy network needs
one or two; the stall lasts until the refresh, `REFRESH_PERIOD`."""
STARTUP_TIMEOUT = 60.0
"""Seconds the nodes may take to start (a bound on a broken test, not a measurement)."""
SLA = SlaOffer(p50_ms=50, p95_ms=100, deadline_s=30, availability=0.99)


@dataclass(frozen=True)
class Keys:
    """Node and agent keys of one trial."""

    buyer: bytes
    providers: list[tuple[bytes, Identity]]  # (host seed, agent identity)


def _peer_id(seed: bytes) -> ID:
    return ID.from_pubkey(create_new_key_pair(seed).public_key)


def _worst_case_keys() -> Keys:
    """Keys under which an ad held only by the buyer and its provider is never found.

    For each provider, some shard of its capability must have the buyer and that provider
    as the two nodes farthest from the shard's key (of five); its agent's key is then drawn
    until its ads go to that shard.
    """
    while True:
        seeds = [os.urandom(32) for _ in range(1 + len(CAPABILITIES))]
        ids = [_peer_id(s) for s in seeds]
        shards: list[int] = []
        for i, capability in enumerate(CAPABILITIES, start=1):
            for shard in range(CONFIG.shards):
                order = sort_peer_ids_by_distance(capability_shard_key(capability, shard), ids)
                if set(order[-2:]) == {ids[0], ids[i]}:
                    shards.append(shard)
                    break
            else:
                break
        if len(shards) == len(CAPABILITIES):
            break
    providers = []
    for seed, shard in zip(seeds[1:], shards, strict=True):
        identity = Identity.generate()
        while shard_of(identity.address, CONFIG.shards) != shard:
            identity = Identity.generate()
        providers.append((seed, identity))
    return Keys(seeds[0], providers)


async def _run_provider(seed_addr: str, host_seed: bytes, identity: Identity, capability: str,
                        delay: float, up: asyncio.Event, stop: asyncio.Event) -> None:
    """One provider node: join through the buyer, then advertise (a node's start order)."""
    await asyncio.sleep(delay)
    async with open_libp2p_host(Libp2pConfig(seed=host_seed)) as host, \
            open_discovery(host, seeds=[seed_addr], config=CONFIG) as discovery, \
            open_advertiser(discovery, identity, [Listing(capability=capability,
                                                        price=PriceModel(amount=1), sla=SLA)],
                            refresh_period=REFRESH_PERIOD):
        up.set()
        await stop.wait()


async def _await_market(buyer: Discovery, want: dict[str, set[str]], within: float) -> None:
    """Look up as the demo's planner does (a fresh walk every 0.5 s) until all are found."""
    deadline = time.monotonic() + within
    while True:
        buyer.clear_cache()
        found = {c: {ad.address for ad in await buyer.lookup(Query(c))} for c in want}
        if found == want:
            return
        missing = {c: sorted(want[c] - found[c]) for c in want if want[c] - found[c]}
        assert time.monotonic() < deadline, (
            f"providers not found {within:g} s after the last one started: {missing}; they "
            f"would wait for the advertiser's refresh ({REFRESH_PERIOD:g} s)")
        await asyncio.sleep(0.5)


async def _form_market(delays: Sequence[float], *, first_alone: bool) -> None:
    """Start a buyer and four providers; assert that the buyer finds them all in time.

    `first_alone`: the first provider is up (joined and advertised) before the others start,
    as a node whose model loads faster. `delays`: each provider's start after the others'.
    """
    keys = _worst_case_keys()
    want: dict[str, set[str]] = {}
    for (_, identity), capability in zip(keys.providers, CAPABILITIES, strict=True):
        want.setdefault(capability, set()).add(identity.address)
    ups = [asyncio.Event() for _ in CAPABILITIES]
    stop = asyncio.Event()
    async with open_libp2p_host(Libp2pConfig(seed=keys.buyer)) as buyer_host, \
            open_discovery(buyer_host, config=CONFIG) as buyer:
        providers: list[asyncio.Task[None]] = []
        try:
            for i, ((seed, identity), capability) in enumerate(
                    zip(keys.providers, CAPABILITIES, strict=True)):
                providers.append(asyncio.create_task(_run_provider(
                    buyer_host.addrs[0], seed, identity, capability, delays[i], ups[i], stop)))
                if i == 0 and first_alone:
                    async with asyncio.timeout(STARTUP_TIMEOUT):
                        await ups[0].wait()
            async with asyncio.timeout(STARTUP_TIMEOUT):
                await asyncio.gather(*(up.wait() for up in ups))
            await _await_market(buyer, want, FOUND_WITHIN)
        finally:
            stop.set()  # each provider withdraws and stops; a provider's failure is raised
            async with asyncio.timeout(STARTUP_TIMEOUT):
                await asyncio.gather(*providers)


async def test_the_market_forms_when_one_provider_is_up_before_the_others() -> None:
    # Its ad lands on the buyer and on itself only, the two nodes farthest from its key.
    await _form_market([0.0] * len(CAPABILITIES), first_alone=True)


async def test_the_market_forms_when_four_providers_start_at_once() -> None:
    # The demo's providers come up within about a second of each other.
    rng = random.Random()  # noqa: S311 - start skew, not a secret
    for _ in range(3):
        await _form_market([rng.uniform(0.0, 1.0) for _ in CAPABILITIES], first_alone=False)
