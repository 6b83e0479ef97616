"""Publishing and finding agents and their service ads over the libp2p Kademlia DHT.

- Agent records go into the DHT's value store under `/aaex/<hash>`, guarded by a namespace
  validator on every node (signature, key/signer match, expiry; the highest sequence wins).
- Service ads go to the capability index (see `index.py`) on the nodes closest to their
  shard's key, found with Kademlia FIND_NODE walks.
- py-libp2p reports success from `put_value` even when every peer refused, and `get_value`
  returns a stale local copy without asking the network: nothing read is trusted until it
  is verified here, and publishing is confirmed by counting explicit acknowledgements.

Code marked "trio side" runs in the libp2p thread through the bridge.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import msgpack
import multiaddr
from libp2p.custom_types import TProtocol
from libp2p.kad_dht.kad_dht import KadDHT
from libp2p.kad_dht.utils import sort_peer_ids_by_distance
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo, info_from_p2p_addr
from libp2p.records.validator import Validator

from aaex_agents.clock import Clock, SystemClock
from aaex_agents.errors import PeerUnreachable, TransportClosed, UsageError
from aaex_agents.transport.libp2p import Libp2pHost, read_frame, reset_quietly, write_frame

from .errors import RecordKeyMismatch, RecordRejected
from .index import AdIndex, IndexLimits
from .query import Query
from .records import (
    AGENT_NAMESPACE,
    AgentRecord,
    ServiceAd,
    agent_record_key,
    capability_shard_key,
    shard_of,
)

logger = logging.getLogger(__name__)

INDEX_PROTOCOL = TProtocol("/aaex/index/1.0.0")
_MAX_INDEX_FRAME = 4 * 1024 * 1024


@dataclass(frozen=True, kw_only=True)
class DiscoveryConfig:
    """Settings of a node's discovery service.

    Attributes:
        shards: index shards per capability; more shards spread a popular capability over
            more nodes (a buyer samples shards until it has enough ads).
        replication: index nodes each ad is stored on.
        query_nodes: index nodes asked per shard during a lookup.
        cache_ttl: seconds a lookup result is reused (never past an ad's expiry).
        call_timeout: timeout of each DHT walk or index call.
        dht_concurrency: DHT operations in flight per process (py-libp2p is CPU-bound).
        index: what this node holds as an index node: ad lifetime cap, per-shard,
            per-advertiser and total bounds (see `IndexLimits` for the defaults).
    """

    shards: int = 4
    replication: int = 4
    query_nodes: int = 3
    cache_ttl: float = 30.0
    call_timeout: float = 20.0
    dht_concurrency: int = 4
    index: IndexLimits = field(default_factory=IndexLimits)

    def __post_init__(self) -> None:
        for name in ("shards", "replication", "query_nodes", "dht_concurrency"):
            if getattr(self, name) < 1:
                raise UsageError(f"DiscoveryConfig.{name} must be at least 1")


class AgentRecordValidator(Validator):
    """DHT namespace validator for agent records, installed on every node."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock

    def validate(self, key: str, value: bytes) -> None:
        """Raise unless `value` is a valid, unexpired agent record owned by `key`."""
        self._checked(key, value)

    def _checked(self, key: str, value: bytes) -> AgentRecord:
        now = self._clock.now()
        record = AgentRecord.verify(value, now=now)
        record.check_proof(now)
        if agent_record_key(record.address) != key:
            raise RecordKeyMismatch(f"record of {record.address} stored under {key}")
        return record

    def select(self, key: str, values: list[bytes]) -> int:
        """Index of the best value: valid first, then the highest sequence number."""
        best, best_seq = 0, -1
        for i, value in enumerate(values):
            try:
                seq = self._checked(key, value).seq
            except RecordRejected:
                continue
            if seq > best_seq:
                best, best_seq = i, seq
        return best


@dataclass
class DiscoveryStats:
    """Counters for metrics and benchmarks."""

    lookups: int = 0
    cache_hits: int = 0
    index_calls: int = 0
    walks: int = 0
    rejected: int = 0


class Discovery:
    """Discovery on one node. Create with `await Discovery.start(host)`; `aclose()` it."""

    def __init__(self, node: Libp2pHost, config: DiscoveryConfig, clock: Clock) -> None:
        if node.dht is None:
            raise UsageError("discovery needs a libp2p host started with Libp2pConfig(dht=True)")
        self._dht: KadDHT = node.dht
        self.node = node
        self.config = config
        self._clock = clock
        self.index = AdIndex(config.shards, config.index)
        self.stats = DiscoveryStats()
        self._limit = asyncio.Semaphore(config.dht_concurrency)
        self._ad_cache: dict[str, tuple[float, list[ServiceAd]]] = {}
        self._record_cache: dict[str, AgentRecord] = {}
        self._seeds: list[PeerInfo] = []
        """The seeds of the last `bootstrap` that named some, which `rejoin` dials."""

    @classmethod
    async def start(cls, node: Libp2pHost, config: DiscoveryConfig | None = None,
                    clock: Clock | None = None) -> Discovery:
        """Install the validator and the index protocol on `node`."""
        discovery = cls(node, config or DiscoveryConfig(), clock or SystemClock())
        await node.bridge.call(discovery._t_install)
        return discovery

    async def _t_install(self) -> None:
        """Trio side."""
        dht = self._dht
        dht.register_validator(AGENT_NAMESPACE, AgentRecordValidator(self._clock))
        self.node.host.set_stream_handler(INDEX_PROTOCOL, self._t_serve_index)

    async def aclose(self) -> None:
        """Stop serving the index. Idempotent."""
        async def uninstall() -> None:
            self.node.host.remove_stream_handler(INDEX_PROTOCOL)
        try:
            await self.node.bridge.call(uninstall, timeout=5)
        except Exception:
            logger.debug("index handler already removed", exc_info=True)

    @property
    def clock(self) -> Clock:
        """Where this node's discovery reads time and sleeps."""
        return self._clock

    def clear_cache(self) -> None:
        """Forget cached lookups and records: the next ones walk the DHT."""
        self._ad_cache.clear()
        self._record_cache.clear()

    async def _call(self, fn: Any, *args: Any) -> Any:
        async with self._limit:
            return await self.node.bridge.call(fn, *args, timeout=self.config.call_timeout)

    # -- joining ---------------------------------------------------------------------
    async def bootstrap(self, seeds: Sequence[str]) -> int:
        """Connect to seed multiaddrs and fill the routing table; return its size.

        Seeds that cannot be reached are skipped (logged); the caller sees a small table.
        The seeds are kept for `rejoin`.
        """
        infos = []
        for seed in seeds:
            try:
                infos.append(info_from_p2p_addr(multiaddr.Multiaddr(seed)))
            except (ValueError, TypeError) as exc:
                raise UsageError(f"seed {seed!r} is not a /p2p/ multiaddr: {exc}") from exc
        size: int = await self._call(self._t_bootstrap, infos)
        self._seeds = infos or self._seeds
        return size

    async def rejoin(self) -> int:
        """Dial again the seeds this node has no connection to; return the table size.

        A node whose seed restarted (on the same address) may have no live peer left: what
        it looks up is not found until it rejoins. The refresh timer re-dials the seeds too,
        but only once a `refresh_interval` and only when the table is empty; a lookup that
        failed should not wait that long. A failed dial is logged, never raised.
        """
        try:
            size: int = await self._call(self._t_rejoin)
        except (TimeoutError, TransportClosed) as exc:
            logger.warning("rejoining through the seeds failed: %s", exc)
            return 0
        return size

    async def _t_rejoin(self) -> int:
        """Trio side: bootstrap through the seeds without an open connection, if any."""
        network = self.node.host.get_network()
        lost = [info for info in self._seeds
                if not any(not c.is_closed for c in network.get_connections(info.peer_id))]
        if lost:
            return await self._t_bootstrap(lost)
        size: int = self._dht.get_routing_table_size()
        return size

    async def _t_bootstrap(self, infos: list[PeerInfo]) -> int:
        """Trio side: connect, add to the routing table, then one self-lookup."""
        host, dht = self.node.host, self._dht
        for info in infos:
            if info.peer_id == host.get_id():
                continue
            try:
                host.get_peerstore().add_addrs(info.peer_id, info.addrs, 3600 * 24)
                # A seed is dialed on purpose, even one that failed moments ago (it was
                # restarting): py-libp2p's negative cache would refuse it for a while.
                host.get_network().unblock_peer(info.peer_id)
                await host.connect(info)
                await dht.add_peer(info.peer_id, skip_server_mode_check=True)
            except Exception as exc:  # noqa: BLE001 - an unreachable seed is skipped
                logger.warning("seed %s unreachable: %s", info.peer_id, exc)
        # One self-lookup (not a walk per bucket): it finds our neighbourhood, which is what
        # lookups need, at a fraction of the CPU of py-libp2p's full start-up refresh.
        for peer in await dht.peer_routing.find_closest_peers_network(host.get_id().to_bytes()):
            if peer != host.get_id():
                await dht.add_peer(peer, skip_server_mode_check=True)
        size: int = dht.get_routing_table_size()
        return size

    async def refresh_routing_table(self) -> int:
        """Look ourselves up again and return the routing table size (call periodically)."""
        size: int = await self._call(self._t_bootstrap, [])
        return size

    # -- agent records -----------------------------------------------------------------
    async def publish_record(self, wire: bytes) -> None:
        """Store a signed agent record in the DHT.

        Raises:
            RecordRejected: the record itself is invalid (checked before sending).
        """
        record = AgentRecord.verify(wire, now=self._clock.now())
        self._record_cache[record.address] = record
        await self._call(self._t_put_value, agent_record_key(record.address), wire)

    async def _t_put_value(self, key: str, wire: bytes) -> None:
        """Trio side."""
        await self._dht.put_value(key, wire)

    async def resolve(self, address: str, *, fresh: bool = False) -> AgentRecord:
        """Return the verified, unexpired agent record of `address`.

        `fresh` skips the cache, after its endpoints failed (the agent may have moved), and
        first rejoins through the seeds if no peer is left (see `rejoin`).

        Raises:
            PeerUnreachable: no valid record is found.
        """
        if fresh:
            await self.rejoin()
        now = self._clock.now()
        cached = None if fresh else self._record_cache.get(address)
        if cached is not None and cached.expires_at >= now:
            return cached
        key = agent_record_key(address)
        wire = await self._call(self._t_get_value, key)
        if wire is None:
            raise PeerUnreachable(f"no agent record for {address} in the DHT")
        record = resolved_record(wire, address, key, now, self.stats)
        self._record_cache[address] = record
        return record

    async def _t_get_value(self, key: str) -> bytes | None:
        """Trio side: skip an expired local copy, which py-libp2p would return forever."""
        dht = self._dht
        local = dht.value_store.get(key.encode())
        if local is not None:
            try:
                AgentRecord.verify(local.value, now=self._clock.now())
            except RecordRejected:
                dht.value_store.remove(key.encode())
        value: bytes | None = await dht.get_value(key)
        return value

    # -- service ads -----------------------------------------------------------------------
    async def publish_ad(self, wire: bytes) -> int:
        """Store a signed ad (or tombstone) on the index nodes of its shard.

        Returns how many index nodes acknowledged it; 0 means nobody holds it.

        Raises:
            RecordRejected: the ad itself is invalid (checked before sending).
        """
        return len(await self.store_ad(wire))

    async def store_ad(self, wire: bytes) -> list[str]:
        """Like `publish_ad`, but return the peer ids of the index nodes that acknowledged.

        This node is one of them when it is among the closest to the shard's key. The
        advertiser compares them between publications to tell a network still forming.
        """
        ad = ServiceAd.verify(wire, now=self._clock.now())
        shard = shard_of(ad.address, self.config.shards)
        self._ad_cache.pop(ad.capability, None)
        holders: list[str] = await self._call(self._t_publish_ad, wire, ad.capability, shard)
        return holders

    async def _t_publish_ad(self, wire: bytes, capability: str, shard: int) -> list[str]:
        """Trio side: the index nodes that acknowledged, closest first."""
        peers = await self._t_closest(capability_shard_key(capability, shard))
        holders: list[str] = []
        for peer in _reachable_first(peers, self.config.replication):
            reply = await self._t_index_call(peer, ["put", wire, shard])
            if reply is None:
                continue  # gone (a routing table keeps dead peers for a while): the next
            if reply[0] == "ok":
                holders.append(peer.to_string())
            else:
                logger.debug("index node %s refused the ad: %s", peer, reply)
            if len(holders) >= self.config.replication:
                break
        return holders

    async def lookup(self, query: Query) -> list[ServiceAd]:
        """Return verified, unexpired ads matching `query` (not ranked).

        Results are cached per capability for `cache_ttl` seconds, never past an ad's expiry,
        and only when every shard's index nodes answered (see `_t_lookup_shard`).
        """
        self.stats.lookups += 1
        now = self._clock.now()
        cached = self._ad_cache.get(query.capability)
        if cached is not None and cached[0] > now:
            self.stats.cache_hits += 1
            return _select(cached[1], query, now)
        ads: dict[str, ServiceAd] = {}
        shards = list(range(self.config.shards))
        random.shuffle(shards)
        # Without a limit every shard is needed: ask them all at once. With one, go shard
        # by shard and stop early: a buyer wanting 5 candidates of `llm.chat` must not read
        # the whole index.
        batches = [shards] if query.limit is None else [[s] for s in shards]
        complete = True
        for batch in batches:
            answers = await asyncio.gather(*(
                self._call(self._t_lookup_shard, query.capability, shard) for shard in batch))
            complete = complete and all(answered for _, answered in answers)
            for wire in (w for answer, _ in answers for w in answer):
                try:
                    ad = ServiceAd.verify(wire, now=now)
                except RecordRejected as exc:
                    self.stats.rejected += 1
                    logger.warning("dropped an invalid ad from the index: %s", exc)
                    continue
                if ad.capability != query.capability:
                    continue
                known = ads.get(ad.address)
                if known is None or ad.seq > known.seq:
                    ads[ad.address] = ad
            enough = query.limit is not None and len(
                _select(list(ads.values()), query, now)) >= query.limit
            if enough:
                break
        else:  # every shard was read: cached, unless some index nodes did not answer
            found = list(ads.values())
            until = min([now + self.config.cache_ttl, *(a.expires_at for a in found)])
            if complete:
                self._ad_cache[query.capability] = (until, found)
        return _select(list(ads.values()), query, now)

    async def _t_lookup_shard(self, capability: str, shard: int) -> tuple[list[bytes], bool]:
        """Trio side: ask the closest index nodes of one shard, merging their answers.

        Also says whether enough of them answered: `query_nodes`, or every candidate in a
        network smaller than that. A shard read from fewer is partial (an index node
        overloaded or restarting holds ads nobody else has) and must not be cached.
        """
        peers = await self._t_closest(capability_shard_key(capability, shard))
        candidates = _reachable_first(peers, self.config.query_nodes)
        wires: list[bytes] = []
        answered = 0
        for peer in candidates:
            reply = await self._t_index_call(peer, ["get", capability, shard])
            if reply is None:
                continue  # a dead or broken peer does not count as one of the asked
            answered += 1
            if reply[0] == "ads" and isinstance(reply[1], list):
                wires.extend(w for w in reply[1] if isinstance(w, bytes))
            if answered >= self.config.query_nodes:
                break
        return wires, answered >= min(self.config.query_nodes, len(candidates))

    async def _t_closest(self, key: bytes) -> list[ID]:
        """Trio side: the peers closest to `key`, this node included when it is close."""
        self.stats.walks += 1
        host, dht = self.node.host, self._dht
        peers: list[ID] = list(await dht.peer_routing.find_closest_peers_network(key))
        if host.get_id() not in peers:
            peers.append(host.get_id())
        ordered: list[ID] = sort_peer_ids_by_distance(key, peers)
        return ordered

    async def _t_index_call(self, peer: ID, request: list[Any]) -> list[Any] | None:
        """Trio side: one index RPC; local when `peer` is this node. None on failure."""
        self.stats.index_calls += 1
        if peer == self.node.host.get_id():
            return self._answer(request)
        try:
            stream = await self.node.host.new_stream(peer, [INDEX_PROTOCOL])
        except Exception as exc:  # noqa: BLE001 - an unreachable index node is skipped
            logger.debug("index node %s unreachable: %s", peer, exc)
            return None
        try:
            await write_frame(stream, msgpack.packb(request))
            response = await read_frame(stream, _MAX_INDEX_FRAME)
            await stream.close()
        except Exception as exc:  # noqa: BLE001 - a broken index node is skipped
            logger.debug("index call to %s failed: %s", peer, exc)
            await reset_quietly(stream)
            return None
        if response is None:
            return None
        try:
            decoded = msgpack.unpackb(response, raw=False)
        except (ValueError, msgpack.UnpackException):
            return None
        return decoded if isinstance(decoded, list) and decoded else None

    async def _t_serve_index(self, stream: Any) -> None:
        """Trio side: answer one index request on an inbound stream."""
        try:
            frame = await read_frame(stream, _MAX_INDEX_FRAME)
            if frame is None:
                return
            try:
                request = msgpack.unpackb(frame, raw=False)
            except (ValueError, msgpack.UnpackException):
                request = None
            await write_frame(stream, msgpack.packb(self._answer(request)))
            await stream.close()
        except Exception as exc:  # noqa: BLE001 - one bad stream never hurts the node
            logger.debug("index stream failed: %s", exc)
            await reset_quietly(stream)

    def _answer(self, request: Any) -> list[Any]:
        """The index's answer to a decoded request (runs on either side; pure)."""
        now = self._clock.now()
        if not isinstance(request, list) or not request:
            return ["err", "malformed", "request is not a list"]
        if request[0] == "put" and len(request) == 3 and isinstance(request[1], bytes) \
                and type(request[2]) is int and 0 <= request[2] < 1 << 16:
            try:
                self.index.put(request[1], request[2], now=now)
            except RecordRejected as exc:
                self.stats.rejected += 1
                return ["err", exc.reason, str(exc)]
            return ["ok"]
        if request[0] == "get" and len(request) == 3 and isinstance(request[1], str) \
                and type(request[2]) is int:
            return ["ads", self.index.get(request[1], request[2], now=now)]
        return ["err", "malformed", f"unknown request {str(request[0])[:40]!r}"]

    def __repr__(self) -> str:
        return (f"<Discovery {self.node.peer_id} held_ads={len(self.index)} "
                f"lookups={self.stats.lookups}>")


def _select(ads: list[ServiceAd], query: Query, now: float) -> list[ServiceAd]:
    found = [a for a in ads if a.expires_at >= now and query.matches(a)]
    found.sort(key=lambda a: a.address)
    return found[: query.limit] if query.limit is not None else found


@asynccontextmanager
async def open_discovery(node: Libp2pHost, *, seeds: Sequence[str] = (),
                         config: DiscoveryConfig | None = None, clock: Clock | None = None,
                         refresh_interval: float = 300.0) -> AsyncIterator[Discovery]:
    """Run discovery on `node` while the block runs.

    Joins through `seeds`, refreshes the routing table every `refresh_interval` seconds,
    and stops serving the index on exit.

    Entering returns once the node has joined (or found every seed unreachable: it then
    runs alone and later refreshes try again).
    """
    discovery = await Discovery.start(node, config, clock)
    try:
        if seeds:
            await discovery.bootstrap(seeds)
        async with asyncio.TaskGroup() as tasks:
            refresher = tasks.create_task(_serve_refresh(discovery, refresh_interval, seeds),
                                          name="discovery.refresh")
            try:
                yield discovery
            finally:
                refresher.cancel()
    finally:
        await discovery.aclose()


async def _serve_refresh(discovery: Discovery, interval: float, seeds: Sequence[str]) -> None:
    """Refresh forever (cancel to stop); a node left alone re-dials its seeds."""
    while True:
        await discovery.clock.sleep(interval)
        try:
            if seeds and discovery.node.dht is not None and \
                    discovery.node.dht.get_routing_table_size() == 0:
                await discovery.bootstrap(seeds)
            else:
                await discovery.refresh_routing_table()
        except (TimeoutError, TransportClosed) as exc:
            logger.warning("routing table refresh failed: %s", exc)


def _reachable_first(peers: list[ID], wanted: int) -> list[ID]:
    """The closest `wanted` peers, then the rest in order, at most 3 x `wanted` in all.

    A routing table keeps peers that went away (every `aaex market search` joins with a fresh
    host that is gone a second later), and they can be the closest to a shard key. Callers
    walk this list until `wanted` peers *answered*, so dead peers cost a failed dial each
    instead of hiding the live index nodes behind them.
    """
    return peers[: max(wanted, 1) * 3]


def resolved_record(wire: bytes, address: str, key: str, now: float,
                    stats: DiscoveryStats) -> AgentRecord:
    """The agent record `wire` found under `key`, checked as `address`'s.

    Its signature, expiry, interop proof and owner are checked; a bad one is counted in
    `stats`, and the address is then unreachable (the simulation's DHT resolves the same way).

    Raises:
        PeerUnreachable: the record does not verify or belongs to someone else.
    """
    try:
        record = AgentRecord.verify(wire, now=now)
        record.check_proof(now)
        if record.address != address:
            raise RecordKeyMismatch(f"record under {key} belongs to {record.address}")
    except RecordRejected as exc:
        stats.rejected += 1
        raise PeerUnreachable(f"agent record for {address} is not valid: {exc}") from exc
    return record
