"""An in-memory Kademlia DHT that stands in for `discovery.dht.Discovery` in the simulation.

py-libp2p runs one trio host per node in a thread: a process cannot hold 3,000 of them. This
DHT keeps what matters to discovery's behaviour and cost. Every call between two of its nodes
waits a round trip of the simulated network on the virtual clock (`Overlay.plan`, with
`bench.sim_net.WanRoute`'s latency, loss and departed peers); calls are method calls between
the node objects, not frames on the memory transport: the DHT's messages carry no envelope
or signature in the product either (libp2p streams), and a walk round then costs one timer
instead of a task, a timeout and a timer per call. Walks are round-synchronous like
py-libp2p's (`alpha` calls, then wait for all of them), so a departed peer still in a routing
table costs its round the call's timeout:

- node ids are SHA-256 of the peer id, keys SHA-256 of the DHT key (as py-libp2p sorts by
  distance); XOR routing tables of k-buckets (k = 20) that learn every peer that calls or
  answers and forget a peer whose call failed;
- iterative FIND_NODE walks with `alpha` calls in flight per round; a walk ends once the
  `settle` closest peers it knows have answered (a full Kademlia walk waits for the k
  closest; the index needs the closest `replication`), and counts its rounds (hops);
- the capability index is the product's own: each node holds a real `AdIndex`, and publishing,
  looking up (shards, `query_nodes`, the per-capability cache) and verifying follow
  `Discovery.store_ad` and `Discovery.lookup`;
- agent records are checked by the product's `AgentRecordValidator` on every store, kept
  on the `replication` closest nodes, and verified again by readers.

`SimDiscovery` has the methods and attributes the product's `Advertiser`, `DhtDirectory` and
`discovery_finder` use (config, node, clock, publish_record, store_ad, publish_ad, lookup,
resolve, rejoin), so those run unchanged on top of it. This is a bench part, not product code.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import msgpack

from aaex_agents.clock import Clock
from aaex_agents.errors import PeerUnreachable, UsageError
from bench.sim_net import WanRoute
from discovery.dht import (
    AgentRecordValidator,
    DiscoveryConfig,
    DiscoveryStats,
    resolved_record,
)
from discovery.errors import RecordRejected
from discovery.index import AdIndex
from discovery.query import Query
from discovery.records import (
    AgentRecord,
    ServiceAd,
    agent_record_key,
    capability_shard_key,
    shard_of,
)

_IDS: dict[str, int] = {}


def node_id(peer: str) -> int:
    found = _IDS.get(peer)
    if found is None:
        found = _IDS[peer] = int.from_bytes(hashlib.sha256(peer.encode()).digest(), "big")
    return found


def key_id(key: str | bytes) -> int:
    raw = key.encode() if isinstance(key, str) else key
    return int.from_bytes(hashlib.sha256(raw).digest(), "big")


@dataclass(frozen=True, kw_only=True)
class KademliaConfig:
    k: int = 20
    alpha: int = 3
    settle: int = 4
    rpc_timeout: float = 2.0
    refresh_interval: float = 600.0


@dataclass
class DhtStats:
    """Network-wide counters of the DHT (one object shared by every node)."""

    rpcs: int = 0
    rpc_failures: int = 0
    walks: int = 0
    hops: list[int] = field(default_factory=list)
    purposes: Counter[str] = field(default_factory=Counter)
    """Walks by what they were for: record, ad, lookup, resolve, join."""


class Overlay:
    """The DHT nodes online now, and how a call between two of them fares.

    A call takes a round trip of the network's latency (`WanRoute.delay`, twice); one lost
    (`WanRoute.loss`) fails at the caller's timeout, one to a node that left fails after
    `WanRoute.dead_wait` (or the timeout, if shorter).
    """

    def __init__(self, route: WanRoute) -> None:
        self.route = route
        self.nodes: dict[str, SimDiscovery] = {}
        self.stats = DhtStats()

    def plan(self, peer: str, timeout: float) -> tuple[float, bool]:
        """(seconds until the answer or the failure, whether an answer comes)."""
        route = self.route
        if route.loss and route.lost():
            return timeout, False
        if peer not in self.nodes:
            return min(route.dead_wait, timeout), False
        return route.delay() + route.delay(), True


class RoutingTable:
    def __init__(self, own: str, k: int) -> None:
        self.own = own
        self._own_id = node_id(own)
        self._k = k
        self._buckets: dict[int, list[str]] = {}
        self._ids: dict[str, int] = {}
        """Every peer in a bucket, with its node id."""

    def add(self, peer: str) -> None:
        if peer == self.own:
            return
        if peer in self._ids:
            bucket = self._buckets[(self._own_id ^ self._ids[peer]).bit_length()]
            bucket.remove(peer)
            bucket.append(peer)
            return
        peer_id = node_id(peer)
        bucket = self._buckets.setdefault((self._own_id ^ peer_id).bit_length(), [])
        if len(bucket) < self._k:  # a full bucket keeps its long-lived contacts
            bucket.append(peer)
            self._ids[peer] = peer_id

    def remove(self, peer: str) -> None:
        peer_id = self._ids.pop(peer, None)
        if peer_id is not None:
            self._buckets[(self._own_id ^ peer_id).bit_length()].remove(peer)

    def closest(self, target: int, count: int) -> list[str]:
        return [p for _, p in sorted([(i ^ target, p) for p, i in self._ids.items()])[:count]]

    def __len__(self) -> int:
        return len(self._ids)


@dataclass(frozen=True)
class SimHost:
    """What the advertiser reads of the node: its peer id and the addresses it is reached at."""

    peer_id: str
    addrs: list[str]


class SimDiscovery:
    """One node's DHT and discovery service (see the module docstring)."""

    def __init__(self, overlay: Overlay, peer_id: str, *, clock: Clock,
                 config: DiscoveryConfig, kademlia: KademliaConfig,
                 seeds: Sequence[str] = (), rng: random.Random | None = None) -> None:
        self.node = SimHost(peer_id, [])
        self.config = config
        self.clock = clock
        self.kademlia = kademlia
        self.table = RoutingTable(peer_id, kademlia.k)
        self.index = AdIndex(config.shards, config.index)
        self.records: dict[str, tuple[int, bytes]] = {}
        self.stats = DiscoveryStats()
        self.overlay = overlay
        self.dht_stats = overlay.stats
        self.seeds = [s for s in seeds if s != peer_id]
        self._validator = AgentRecordValidator(clock)
        self._ad_cache: dict[str, tuple[float, list[ServiceAd]]] = {}
        self._record_cache: dict[str, AgentRecord] = {}
        self._rng = rng or random.Random(peer_id)

    @property
    def peer_id(self) -> str:
        return self.node.peer_id

    # -- the wire ----------------------------------------------------------------------
    async def _rpcs(self, peers: Sequence[str], request: list[Any]) -> list[list[Any] | None]:
        """Call `peers` at once; their answers once the slowest has come (or failed)."""
        overlay, timeout = self.overlay, self.kademlia.rpc_timeout
        plans = [overlay.plan(peer, timeout) for peer in peers]
        self.dht_stats.rpcs += len(peers)
        await asyncio.sleep(max(wait for wait, _ in plans))
        answers: list[list[Any] | None] = []
        for peer, (_, arrives) in zip(peers, plans, strict=True):
            target = overlay.nodes.get(peer) if arrives else None
            if target is None:  # gone, or the call was lost: it failed
                self.dht_stats.rpc_failures += 1
                self.table.remove(peer)
                answers.append(None)
                continue
            target.table.add(self.peer_id)  # a node learns whoever calls it
            self.table.add(peer)
            answers.append(target._answer(request))
        return answers

    def _answer(self, request: list[Any]) -> list[Any]:
        op, now = request[0], self.clock.now()
        if op == "find":
            return ["nodes", self.table.closest(int.from_bytes(request[2], "big"),
                                                self.kademlia.k)]
        if op == "put_ad":
            try:
                self.index.put(request[2], request[3], now=now)
            except RecordRejected as exc:
                self.stats.rejected += 1
                return ["err", exc.reason]
            return ["ok"]
        if op == "get_ads":
            return ["ads", self.index.get(request[2], request[3], now=now)]
        if op == "put_rec":
            key, wire = request[2], request[3]
            try:
                self._validator.validate(key, wire)  # the product's namespace validator
            except RecordRejected as exc:
                self.stats.rejected += 1
                return ["err", exc.reason]
            # Its `select` (highest seq) would verify the held record again: the held one
            # was verified on arrival, so compare the sequence numbers of the two.
            seq = json.loads(msgpack.unpackb(wire, raw=False)[1])["seq"]
            held = self.records.get(key)
            if held is None or seq > held[0]:
                self.records[key] = (seq, wire)
            return ["ok"]
        if op == "get_rec":
            held = self.records.get(request[2])
            return ["rec", held[1] if held is not None else None]
        return ["err", "malformed"]

    async def _call(self, peer: str, request: list[Any]) -> list[Any] | None:
        """One request to `peer`, answered locally when it is this node."""
        if peer == self.peer_id:
            return self._answer(request)
        return (await self._rpcs([peer], request))[0]

    # -- Kademlia ----------------------------------------------------------------------
    async def closest(self, target: int, purpose: str) -> list[str]:
        """The peers closest to `target` (this node included), found by an iterative walk."""
        self.stats.walks += 1
        self.dht_stats.walks += 1
        self.dht_stats.purposes[purpose] += 1
        k, alpha, settle = self.kademlia.k, self.kademlia.alpha, self.kademlia.settle
        known = {p: node_id(p) ^ target for p in self.table.closest(target, k)}
        known[self.peer_id] = node_id(self.peer_id) ^ target
        asked = {self.peer_id}
        rounds = 0
        while True:
            best = sorted(known, key=known.__getitem__)[:settle]
            pending = [p for p in best if p not in asked][:alpha]
            if not pending:
                break
            rounds += 1
            asked.update(pending)
            request = ["find", self.peer_id, target.to_bytes(32, "big")]
            replies = await self._rpcs(pending, request)
            for peer, reply in zip(pending, replies, strict=True):
                if reply is None or reply[0] != "nodes":
                    known.pop(peer, None)
                    continue
                for found in reply[1]:
                    if found not in known and found not in asked:
                        known[found] = node_id(found) ^ target
        self.dht_stats.hops.append(rounds)
        return sorted(known, key=known.__getitem__)[:k]

    async def bootstrap(self) -> int:
        for seed in self.seeds:
            self.table.add(seed)
        await self.closest(node_id(self.peer_id), "join")
        return len(self.table)

    async def rejoin(self) -> int:
        if len(self.table) == 0:
            return await self.bootstrap()
        return len(self.table)

    async def serve_refresh(self) -> None:
        while True:
            await self.clock.sleep(self.kademlia.refresh_interval * self._rng.uniform(0.8, 1.2))
            await self.rejoin()
            await self.closest(node_id(self.peer_id), "join")

    async def _store(self, target: int, request: list[Any], wanted: int) -> list[str]:
        holders: list[str] = []
        purpose = "record" if request[0] == "put_rec" else "ad"
        for peer in (await self.closest(target, purpose))[: wanted * 3]:
            reply = await self._call(peer, request)
            if reply is not None and reply[0] == "ok":
                holders.append(peer)
                if len(holders) >= wanted:
                    break
        return holders

    # -- what the advertiser, the directory and the finder call --------------------------
    async def publish_record(self, wire: bytes) -> None:
        record = AgentRecord.verify(wire, now=self.clock.now())
        self._record_cache[record.address] = record
        key = agent_record_key(record.address)
        await self._store(key_id(key), ["put_rec", self.peer_id, key, wire],
                          self.config.replication)

    async def publish_ad(self, wire: bytes) -> int:
        return len(await self.store_ad(wire))

    async def store_ad(self, wire: bytes) -> list[str]:
        ad = ServiceAd.verify(wire, now=self.clock.now())
        shard = shard_of(ad.address, self.config.shards)
        self._ad_cache.pop(ad.capability, None)
        return await self._store(key_id(capability_shard_key(ad.capability, shard)),
                                 ["put_ad", self.peer_id, wire, shard], self.config.replication)

    async def resolve(self, address: str, *, fresh: bool = False) -> AgentRecord:
        if fresh:
            await self.rejoin()
        now = self.clock.now()
        cached = None if fresh else self._record_cache.get(address)
        if cached is not None and cached.expires_at >= now:
            return cached
        key = agent_record_key(address)
        peers = (await self.closest(key_id(key), "resolve"))[: self.config.query_nodes * 3]
        wires: list[bytes] = []
        for peer in peers:
            reply = await self._call(peer, ["get_rec", self.peer_id, key])
            if reply is not None and reply[0] == "rec" and isinstance(reply[1], bytes):
                wires.append(reply[1])
                if len(wires) >= self.config.query_nodes:
                    break
        if not wires:
            raise PeerUnreachable(f"no agent record for {address} in the DHT")
        try:
            wire = wires[self._validator.select(key, wires)]
        except RecordRejected as exc:
            self.stats.rejected += 1
            raise PeerUnreachable(f"agent record for {address} is not valid: {exc}") from exc
        record = resolved_record(wire, address, key, now, self.stats)
        self._record_cache[address] = record
        return record

    async def lookup(self, query: Query) -> list[ServiceAd]:
        self.stats.lookups += 1
        now = self.clock.now()
        cached = self._ad_cache.get(query.capability)
        if cached is not None and cached[0] > now:
            self.stats.cache_hits += 1
            return _select(cached[1], query, now)
        ads: dict[str, ServiceAd] = {}
        shards = list(range(self.config.shards))
        self._rng.shuffle(shards)
        batches = [shards] if query.limit is None else [[s] for s in shards]
        complete = True
        for batch in batches:
            answers = await asyncio.gather(*(self._lookup_shard(query.capability, s)
                                             for s in batch))
            complete = complete and all(answered for _, answered in answers)
            for wire in (w for answer, _ in answers for w in answer):
                try:
                    ad = ServiceAd.verify(wire, now=now)
                except RecordRejected:
                    self.stats.rejected += 1
                    continue
                if ad.capability != query.capability:
                    continue
                known = ads.get(ad.address)
                if known is None or ad.seq > known.seq:
                    ads[ad.address] = ad
            if query.limit is not None and len(_select(list(ads.values()), query,
                                                       now)) >= query.limit:
                break
        else:  # as the real one: a shard some index nodes did not answer is not cached
            found = list(ads.values())
            until = min([now + self.config.cache_ttl, *(a.expires_at for a in found)])
            if complete:
                self._ad_cache[query.capability] = (until, found)
        return _select(list(ads.values()), query, now)

    async def _lookup_shard(self, capability: str, shard: int) -> tuple[list[bytes], bool]:
        self.stats.index_calls += 1
        peers = await self.closest(key_id(capability_shard_key(capability, shard)), "lookup")
        candidates = peers[: self.config.query_nodes * 3]
        wires: list[bytes] = []
        answered = 0
        for peer in candidates:
            reply = await self._call(peer, ["get_ads", self.peer_id, capability, shard])
            if reply is None:
                continue
            answered += 1
            if reply[0] == "ads":
                wires.extend(reply[1])
            if answered >= self.config.query_nodes:
                break
        return wires, answered >= min(self.config.query_nodes, len(candidates))

    def clear_cache(self) -> None:
        self._ad_cache.clear()
        self._record_cache.clear()


def _select(ads: list[ServiceAd], query: Query, now: float) -> list[ServiceAd]:
    found = [a for a in ads if a.expires_at >= now and query.matches(a)]
    found.sort(key=lambda a: a.address)
    return found[: query.limit] if query.limit is not None else found


@asynccontextmanager
async def open_sim_discovery(discovery: SimDiscovery) -> AsyncIterator[SimDiscovery]:
    """Serve the node's DHT endpoint, join through the seeds, refresh while the block runs."""
    overlay = discovery.overlay
    if discovery.peer_id in overlay.nodes:
        raise UsageError(f"{discovery.peer_id} is already in the DHT")
    overlay.nodes[discovery.peer_id] = discovery
    try:
        async with asyncio.TaskGroup() as tasks:
            await discovery.bootstrap()
            refresher = tasks.create_task(discovery.serve_refresh())
            try:
                yield discovery
            finally:
                refresher.cancel()
    finally:
        del overlay.nodes[discovery.peer_id]
