"""Many discovery nodes in one OS process, driven by JSON lines on stdin.

The multi-process tests and `bench.discovery` build their networks with it.

    python -m tests.swarm --nodes 25 --seed /ip4/127.0.0.1/tcp/4001/p2p/12D3...

It prints one JSON line when every node has joined, then answers one JSON line per command
(see `_COMMANDS`). It exits on `{"op": "quit"}` or when stdin closes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

from libp2p.peer.id import ID

from aaex_agents import Agent, Context, HttpTransport, Identity, Message, handler, open_runtime
from aaex_agents.errors import AaexError
from aaex_agents.transport.base import Transport
from aaex_agents.transport.libp2p import Libp2pHost, Libp2pTransport, open_libp2p_host
from discovery.advertiser import Advertiser, Listing
from discovery.dht import Discovery, DiscoveryConfig
from discovery.directory import DhtDirectory
from discovery.index import IndexLimits
from discovery.query import Query, parse_where
from discovery.records import (
    PriceModel,
    ServiceAd,
    SlaOffer,
    agent_record_key,
    capability_shard_key,
    shard_of,
)
from tests.market_kit import cr

logger = logging.getLogger(__name__)


class SwarmPing(Message, type="aaex.swarm_ping/1"):
    """A request an echo agent of the swarm answers."""

    text: str


class SwarmPong(Message, type="aaex.swarm_pong/1"):
    """The answer to SwarmPing."""

    text: str


class SwarmEcho(Agent):
    """Answers SwarmPing over whatever transport the runtime serves."""

    @handler
    async def on_ping(self, ctx: Context, msg: SwarmPing) -> SwarmPong:
        """Echo the text."""
        return SwarmPong(text=msg.text)


class Swarm:
    """The nodes of this process and what they published."""

    def __init__(self, hosts: list[Libp2pHost], discoveries: list[Discovery],
                 refresh_period: float, walk_concurrency: int = 3) -> None:
        self.hosts = hosts
        self.discoveries = discoveries
        self.refresh_period = refresh_period
        self.walks = asyncio.Semaphore(walk_concurrency)
        """Bounds the nodes of this process walking at once for `stats` (as joins are)."""
        self.advertisers: list[Advertiser] = []
        self.exits = AsyncExitStack()

    async def publish(self, node: int, capability: str, price: float = 1.0,
                      attributes: dict[str, Any] | None = None,
                      ttl: float | None = None) -> dict[str, Any]:
        """Advertise a new agent selling `capability` from `node`; one publication, no timer."""
        identity = Identity.generate()
        period = ttl / 2 if ttl else self.refresh_period
        offer = Listing(capability=capability, price=PriceModel(amount=cr(price)),
                      sla=SlaOffer(p50_ms=100, p95_ms=250, deadline_s=60, availability=0.99),
                      attributes=attributes or {})
        advertiser = Advertiser(self.discoveries[node], identity, [offer], refresh_period=period)
        await advertiser.publish()
        self.advertisers.append(advertiser)
        return {"address": identity.address, "acks": advertiser.acknowledgements[capability],
                "holders": sorted(advertiser.holders[capability])}

    async def lookup(self, node: int | str, capability: str, where: str | None = None,
                     max_price: float | None = None, fresh: bool = True) -> dict[str, Any]:
        """Look `capability` up from one node (or all), with a fresh cache by default."""
        query = Query(capability, where=parse_where(where) if where else None,
                      max_price=None if max_price is None else cr(max_price))
        targets = range(len(self.discoveries)) if node == "all" else [int(node)]
        results = []
        for index in targets:
            discovery = self.discoveries[index]
            if fresh:
                discovery.clear_cache()
            before = sum(discovery.node.streams_opened.values())
            calls_before = discovery.stats.walks + discovery.stats.index_calls
            started = time.perf_counter()
            try:
                ads = await discovery.lookup(query)
                error = None
            except (AaexError, TimeoutError) as exc:
                ads, error = [], f"{type(exc).__name__}: {exc}"
            results.append({
                "node": index, "addresses": sorted(a.address for a in ads),
                "seqs": {a.address: a.seq for a in ads},
                "ms": (time.perf_counter() - started) * 1000, "error": error,
                "messages": sum(discovery.node.streams_opened.values()) - before,
                "walks_and_index_calls": (discovery.stats.walks + discovery.stats.index_calls
                                          - calls_before)})
        return {"results": results}

    async def spray(self, node: int, wire: str, capability: str, peers: list[str],
                    shards: int, only: int | None = None) -> dict[str, Any]:
        """Send a raw (possibly forged) ad straight to the index of every listed peer.

        It is offered for every shard in turn (one reply each), or only for shard `only`.
        """
        discovery = self.discoveries[node]
        data = bytes.fromhex(wire)
        targets = range(shards) if only is None else [only]
        replies = []
        for peer in peers:
            async def call(peer_id: str = peer) -> Any:
                return [await discovery._t_index_call(ID.from_base58(peer_id), ["put", data, s])
                        for s in targets]
            replies.append(await discovery.node.bridge.call(call, timeout=30))
        return {"replies": replies, "capability": capability}

    async def flood(self, node: int, capability: str, count: int, peers: list[str],
                    shards: int, ttl: float = 600.0, same_key: bool = False) -> dict[str, Any]:
        """Send `count` valid ads straight to every listed peer's index, on their own shard.

        Each ad comes from a fresh key (or all from one key when `same_key`), signed to live
        `ttl` seconds. With `same_key` the ads are for `count` capability names derived from
        `capability`, since one key holds one ad per capability. Returns the replies counted
        by outcome ("ok" or the refusal reason).
        """
        discovery = self.discoveries[node]
        one = Identity.generate()
        sla = SlaOffer(p50_ms=100, p95_ms=250, deadline_s=60, availability=0.99)
        ads: list[tuple[bytes, int]] = []
        for i in range(count):
            identity = one if same_key else Identity.generate()
            name = f"{capability}_{i}" if same_key else capability
            ad = ServiceAd(address=identity.address, seq=1, expires_at=time.time() + ttl,
                           capability=name, price=PriceModel(amount=cr(0.01)), sla=sla)
            ads.append((ad.sign(identity), shard_of(identity.address, shards)))

        async def send_all() -> list[str]:
            outcomes = []
            for peer in peers:
                for wire, shard in ads:
                    reply = await discovery._t_index_call(ID.from_base58(peer),
                                                          ["put", wire, shard])
                    outcomes.append("unreachable" if not reply else
                                    "ok" if reply[0] == "ok" else str(reply[1]))
            return outcomes

        outcomes = await discovery.node.bridge.call(send_all, timeout=300)
        return {"outcomes": dict(Counter(outcomes))}

    async def republish(self) -> dict[str, Any]:
        """Refresh every ad this process advertised (what each advertiser's timer does)."""
        acks: dict[str, int] = {}
        for advertiser in self.advertisers:
            await advertiser.publish()
            acks.update({f"{advertiser.address}:{c}": n
                         for c, n in advertiser.acknowledgements.items()})
        return {"acks": acks}

    async def spray_record(self, node: int, wire: str, address: str,
                           peers: list[str]) -> dict[str, Any]:
        """Listing a raw (possibly forged) agent record to every listed peer's value store."""
        discovery = self.discoveries[node]
        key = agent_record_key(address).encode()

        async def store_everywhere() -> list[bool]:
            store = discovery._dht.value_store
            return [bool(await store._store_at_peer(ID.from_base58(p), key, bytes.fromhex(wire)))
                    for p in peers]

        return {"stored": await discovery.node.bridge.call(store_everywhere, timeout=60)}

    async def holds_record(self, address: str) -> dict[str, Any]:
        """Whether each node's value store holds an agent record for `address`."""
        key = agent_record_key(address).encode()
        return {"held": [d._dht.value_store.get(key) is not None for d in self.discoveries]}

    async def resolve(self, node: int, address: str) -> dict[str, Any]:
        """Resolve `address` from `node` through the DHT."""
        try:
            record = await self.discoveries[node].resolve(address)
        except AaexError as exc:
            return {"error": f"{type(exc).__name__}: {exc}"}
        return {"peer_id": record.peer_id, "endpoints": record.endpoints(),
                "encryption_key": record.encryption_key}

    async def host_echo(self, node: int, http: bool = True) -> dict[str, Any]:
        """Run a SwarmEcho agent on `node`, served over libp2p (and HTTP), and advertise it."""
        echo = SwarmEcho(name=f"echo-{node}")
        transports: list[Transport] = [Libp2pTransport(self.hosts[node])]
        if http:
            transports.append(HttpTransport())
        runtime = await self.exits.enter_async_context(open_runtime(echo, transports=transports))
        served_http = [e for e in runtime.endpoints if e.startswith("http")]
        advertiser = Advertiser(self.discoveries[node], echo.identity, [],
                                refresh_period=self.refresh_period, http_endpoints=served_http)
        await advertiser.publish()
        return {"address": echo.address, "endpoints": list(runtime.endpoints)}

    async def ask_echo(self, node: int, address: str, count: int = 1, concurrency: int = 1,
                       transport: str = "libp2p") -> dict[str, Any]:
        """Ask a SwarmEcho agent, resolved through the DHT, over `transport` only; time it."""
        caller = SwarmEcho(name=f"caller-{node}")
        directory = DhtDirectory(self.discoveries[node])
        carrier = Libp2pTransport(self.hosts[node]) if transport == "libp2p" else HttpTransport()
        times: list[float] = []
        gate = asyncio.Semaphore(concurrency)
        async with open_runtime(caller, transports=[carrier], directory=directory) as runtime:
            ctx = runtime.context(caller)

            async def one(i: int) -> None:
                async with gate:
                    started = time.perf_counter()
                    reply = await ctx.ask(address, SwarmPing(text=str(i)), reply_type=SwarmPong,
                                          timeout=20)
                    times.append((time.perf_counter() - started) * 1000)
                    if reply.text != str(i):
                        raise AaexError(f"wrong reply {reply.text!r} to {i}")

            record_key = await directory.encryption_key(address)
            await one(-1)  # resolve and connect before timing
            times.clear()
            started = time.perf_counter()
            await asyncio.gather(*(one(i) for i in range(count)))
            wall = time.perf_counter() - started
        return {"ms": times, "pairs_per_s": count / wall,
                "record_key": None if record_key is None else record_key.hex(),
                "sealed_to": (runtime.keyring.known_key(address) or b"").hex()}

    async def peers(self) -> dict[str, Any]:
        """The peers each node is connected to right now."""
        async def connected(host: Libp2pHost) -> list[str]:
            return [p.to_string() for p in host.host.get_connected_peers()]
        return {"connected": [await h.bridge.call(connected, h, timeout=10) for h in self.hosts]}

    async def disconnect(self, node: int, peer: str) -> dict[str, Any]:
        """Close every connection between `node` and `peer`."""
        async def drop(host: Libp2pHost) -> None:
            await host.host.disconnect(ID.from_base58(peer))
        await self.hosts[node].bridge.call(drop, self.hosts[node], timeout=10)
        return {"disconnected": peer}

    async def stats(self) -> dict[str, Any]:
        """Routing table sizes after a self-lookup, held ads and rejections of every node.

        The self-lookups go a few at a time, as joins do: every node of a process walking
        at once (38 at N=300) timed some out on 2 cores. A node whose walk still times out
        reports its table as it is.
        """
        async def refreshed(discovery: Discovery) -> int:
            async with self.walks:
                try:
                    return await discovery.refresh_routing_table()
                except TimeoutError:
                    dht = discovery.node.dht
                    return dht.get_routing_table_size() if dht is not None else 0

        tables = await asyncio.gather(*(refreshed(d) for d in self.discoveries))
        return {"routing_tables": list(tables),
                "held_ads": [len(d.index) for d in self.discoveries],
                "rejected": [d.stats.rejected for d in self.discoveries]}

    async def held(self, capability: str) -> dict[str, Any]:
        """The addresses each node's index holds for `capability`, by shard (diagnostics)."""
        now = time.time()
        shards = self.discoveries[0].config.shards if self.discoveries else 0
        return {"nodes": [{"peer_id": h.peer_id, "shards": {
            str(s): sorted(ServiceAd.verify(w, now=now).address
                           for w in d.index.get(capability, s, now=now))
            for s in range(shards)}} for h, d in zip(self.hosts, self.discoveries, strict=True)]}

    async def trace_lookup(self, node: int, capability: str) -> dict[str, Any]:
        """Each shard's walk and index replies from `node`, timed (why a lookup missed)."""
        discovery = self.discoveries[node]
        discovery.clear_cache()

        async def one_shard(shard: int) -> dict[str, Any]:
            started = time.perf_counter()
            peers = await discovery._t_closest(capability_shard_key(capability, shard))
            walked = time.perf_counter() - started
            replies = []
            for peer in peers[:9]:
                reply = await discovery._t_index_call(peer, ["get", capability, shard])
                replies.append({"peer": peer.to_string(), "answered": reply is not None,
                                "addresses": sorted(
                                    ServiceAd.verify(w, now=time.time()).address
                                    for w in (reply[1] if reply and reply[0] == "ads" else [])
                                    if isinstance(w, bytes))})
                if sum(r["answered"] for r in replies) >= discovery.config.query_nodes:
                    break
            return {"shard": shard, "walk_s": walked, "walked": [p.to_string() for p in peers],
                    "replies": replies, "s": time.perf_counter() - started}

        async def all_shards() -> list[dict[str, Any]]:
            return [await one_shard(s) for s in range(discovery.config.shards)]

        return {"shards": await discovery.node.bridge.call(all_shards, timeout=120)}

    async def host_state(self, node: int = 0) -> dict[str, Any]:
        """Connections, open streams and resource-manager counters of one host (diagnostics)."""
        async def state(host: Libp2pHost) -> dict[str, Any]:
            network = host.host.get_network()
            manager = getattr(network, "_resource_manager", None)
            gate = getattr(network, "_stream_semaphore", None)
            connections = [c for cs in network.connections.values() for c in cs]
            return {"peers": len(network.connections), "connections": len(connections),
                    "streams": sum(len(getattr(c, "streams", ())) for c in connections),
                    "rm_streams": getattr(manager, "_current_streams", None),
                    "rm_connections": getattr(manager, "_current_connections", None),
                    "semaphore_free": None if gate is None else gate.value,
                    "routing_table": host.dht.get_routing_table_size() if host.dht else 0}
        return await self.hosts[node].bridge.call(state, self.hosts[node], timeout=30)

    async def withdraw_all(self) -> dict[str, Any]:
        """Publish tombstones for everything this process advertised."""
        for advertiser in self.advertisers:
            await advertiser.withdraw()
        return {"withdrawn": len(self.advertisers)}


_COMMANDS: dict[str, Callable[..., Awaitable[dict[str, Any]]]] = {
    name: getattr(Swarm, name) for name in (
        "publish", "lookup", "spray", "flood", "republish", "spray_record", "holds_record",
        "resolve", "host_echo", "ask_echo", "peers", "disconnect", "stats", "withdraw_all",
        "held", "trace_lookup", "host_state")}


async def _join(discovery: Discovery, seeds: list[str], gate: asyncio.Semaphore) -> int:
    async with gate:  # a crowd joining at once overloads the seed (it resets streams)
        return await discovery.bootstrap(seeds)


async def run_swarm(nodes: int, seeds: list[str], *, shards: int, refresh_period: float,
                    join_concurrency: int, index: IndexLimits | None = None) -> None:
    """Start the nodes, join them, then serve commands from stdin until told to quit."""
    config = DiscoveryConfig(shards=shards, index=index or IndexLimits())
    async with AsyncExitStack() as stack:
        hosts = [await stack.enter_async_context(open_libp2p_host()) for _ in range(nodes)]
        discoveries = [await Discovery.start(h, config) for h in hosts]
        swarm = Swarm(hosts, discoveries, refresh_period, join_concurrency)
        stack.push_async_callback(swarm.exits.aclose)
        started = time.perf_counter()
        join_seeds = seeds or [hosts[0].addrs[0]]
        gate = asyncio.Semaphore(join_concurrency)
        first = 0 if seeds else 1
        tables = await asyncio.gather(*(_join(d, join_seeds, gate) for d in discoveries[first:]))
        _emit({"ready": True, "bootstrap_s": time.perf_counter() - started,
               "routing_tables": list(tables),
               "nodes": [{"peer_id": h.peer_id, "addr": h.addrs[0]} for h in hosts]})
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while line := await reader.readline():
            try:
                command = json.loads(line)
                op = command.pop("op")
                if op == "quit":
                    break
                result = await _COMMANDS[op](swarm, **command)
            except (KeyError, TypeError, ValueError, AaexError, TimeoutError) as exc:
                result = {"error": f"{type(exc).__name__}: {exc}"}
            _emit(result)


def _emit(document: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(document) + "\n")
    sys.stdout.flush()


def main() -> None:
    """Entry point of ``python -m tests.swarm``."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--nodes", type=int, default=5)
    parser.add_argument("--seed", action="append", default=[], help="multiaddr of a seed node")
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--refresh-period", type=float, default=300.0)
    parser.add_argument("--join-concurrency", type=int, default=3)
    defaults = IndexLimits()
    for name in ("max_per_shard", "max_per_advertiser", "max_total"):
        parser.add_argument(f"--{name.replace('_', '-')}", type=int,
                            default=getattr(defaults, name),
                            help="index node bound (see discovery.index.IndexLimits)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # py-libp2p warns about every refused store with the whole value in hex: the harness
    # keeps its errors only.
    logging.getLogger("libp2p").setLevel(logging.ERROR)
    asyncio.run(run_swarm(args.nodes, args.seed, shards=args.shards,
                          refresh_period=args.refresh_period,
                          join_concurrency=args.join_concurrency,
                          index=IndexLimits(max_per_shard=args.max_per_shard,
                                            max_per_advertiser=args.max_per_advertiser,
                                            max_total=args.max_total)))


if __name__ == "__main__":
    main()
