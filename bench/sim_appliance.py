"""One simulated appliance: the node's own parts, composed as `marketplace.node` composes them.

An appliance keeps its ledger (its disk) for the whole simulation, and goes online in
sessions. Each session builds what a node process builds at start: fresh agent objects with
the appliance's keys (one `ServiceSeller` per capability it sells, the first of which also
buys), the node's `NodeMarket` (delegation through `discovery_finder`), its `MarketDesk`, a
runtime on the memory transport with a `DhtDirectory`, one advertiser per seller (the
product's `Advertiser`, ads from the node's `offers_of`), and the node's periodic
`resolve_open` pass. Only the DHT is the simulation's (`bench.sim_dht.SimDiscovery`).

Leaving is either clean (ads withdrawn, as `open_advertiser` does on exit) or a crash (the
ads stay until they expire); either way every task of the session is cancelled, its
in-flight purchases included, and the next session resolves them from the books.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pydantic import BaseModel

from aaex_agents import Context, Credits, Identity, RuntimeConfig, Services, open_runtime
from aaex_agents.clock import Clock
from aaex_agents.errors import AaexError
from aaex_agents.transport.memory import MemoryNetwork
from bench.sim_dht import KademliaConfig, Overlay, SimDiscovery, open_sim_discovery
from discovery.advertiser import Advertiser, open_advertiser
from discovery.dht import DiscoveryConfig
from discovery.directory import DhtDirectory
from marketplace.contracts.ledger import Ledger, LedgerConfig, open_ledger
from marketplace.node.node import offers_of
from marketplace.trade.contracting import seller_countersigner
from marketplace.trade.delegation import Finder, Found
from marketplace.trade.desk import MarketDesk
from marketplace.trade.errors import DelegationFailed
from marketplace.trade.market import MarketSettings, NodeMarket, discovery_finder
from marketplace.trade.recovery import resolve_open
from marketplace.trade.selling import ServiceSeller
from marketplace.trade.strategies import BOULWARE, CONCEDER, LINEAR, SellerStrategy

FUNDS = Credits.parse(10_000)
"""What each appliance's buying agent is given on its own books at first start."""
SETTINGS = MarketSettings(budget=Credits.parse(5_000), per_seller=Credits.parse(1_000),
                          per_task=Credits.parse(10), resolve_period=300.0)
"""The node's [market] defaults, but for the budget (an hour of buying) and the period of the
recovery pass (5 s by default; 300 s here keeps 3,000 ledgers from spending the run on it)."""
RUNTIME = RuntimeConfig()


class SimTask(BaseModel):
    n: float


class SimResult(BaseModel):
    value: float


class SimSeller(ServiceSeller):
    """Sells one capability (set per subclass); the work takes virtual time only."""

    task_model: ClassVar[type[BaseModel] | None] = SimTask
    result_model: ClassVar[type[BaseModel] | None] = SimResult
    service_median_s: float = 0.2

    async def perform(self, ctx: Context, task: dict[str, Any]) -> dict[str, Any]:
        await ctx.clock.sleep(random.lognormvariate(0, 0.5) * self.service_median_s)
        return {"value": task["n"] * 2}


_CLASSES: dict[str, type[SimSeller]] = {}


def seller_class(capability: str) -> type[SimSeller]:
    cls = _CLASSES.get(capability)
    if cls is None:
        name = "Sim_" + capability.replace(".", "_")
        cls = _CLASSES[capability] = type(name, (SimSeller,), {"capability": capability})
    return cls


@dataclass(frozen=True)
class Offering:
    capability: str
    identity: Identity
    cost: Credits
    latency_ms: float
    exponent: float


def offerings(rng: random.Random, capabilities: Sequence[str]) -> list[Offering]:
    return [Offering(cap, Identity(rng.randbytes(32)),
                     Credits(rng.randrange(500_000, 2_000_001, 10_000)),
                     float(rng.choice((300, 500, 800, 1200))),
                     rng.choice((BOULWARE, LINEAR, CONCEDER)))
            for cap in capabilities]


@dataclass
class Session:
    """When an appliance is online: from `start` to `end` (virtual seconds since start)."""

    start: float
    end: float
    clean_exit: bool = True


@dataclass
class Appliance:
    index: int
    peer_id: str
    owner: Identity
    sells: list[Offering]
    sessions: list[Session]
    online: bool = False
    discovery: SimDiscovery | None = None
    ledger: Ledger | None = None
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)

    @property
    def buyer(self) -> str:
        return self.sells[0].identity.address

    def agents(self, ledger: Ledger, clock: Clock) -> list[SimSeller]:
        made = []
        for offer in self.sells:
            cls = seller_class(offer.capability)
            seller = cls(offer.identity, name=f"{self.peer_id}-{offer.capability}",
                         strategy=SellerStrategy(cost=offer.cost, exponent=offer.exponent,
                                                 latency_ms=offer.latency_ms),
                         countersign=seller_countersigner(offer.identity, clock),
                         clock=clock, ledger=ledger)
            seller.service_median_s = offer.latency_ms / 1000 * 0.4
            made.append(seller)
        return made


@dataclass
class World:
    """What every appliance shares: the network, the clock, settings, hooks for the driver."""

    network: MemoryNetwork
    clock: Clock
    discovery: DiscoveryConfig
    kademlia: KademliaConfig
    overlay: Overlay
    seeds: list[str]
    refresh_period: float
    measure: Callable[[Appliance, Finder], Finder]
    """Wraps an appliance's finder to record each lookup."""
    workload: Callable[[Appliance, Context, asyncio.TaskGroup], Any]
    """The coroutine that buys for an appliance while it is online."""
    went_online: Callable[[Appliance], None]
    went_offline: Callable[[Appliance], None]
    start: float
    """The clock's reading at virtual time 0: sessions are timed from it."""

    def elapsed(self) -> float:
        return self.clock.now() - self.start


async def run_appliance(app: Appliance, world: World, stop: asyncio.Event,
                        ready: asyncio.Event) -> None:
    """Open the ledger, then live the appliance's sessions; stay open until `stop`."""
    clock = world.clock
    async with open_ledger(None, config=LedgerConfig(clock=clock, owner=app.owner)) as ledger:
        app.ledger = ledger
        await ledger.deposit(app.buyer, FUNDS)
        ready.set()
        for session in app.sessions:
            wait = session.start - world.elapsed()
            if wait > 0:
                await clock.sleep(wait)
            await _session(app, world, ledger, session)
        await stop.wait()


async def _session(app: Appliance, world: World, ledger: Ledger, session: Session) -> None:
    clock = world.clock
    discovery = SimDiscovery(world.overlay, app.peer_id, clock=clock, config=world.discovery,
                             kademlia=world.kademlia, seeds=world.seeds)
    app.discovery = discovery
    agents = app.agents(ledger, clock)
    by_address = {a.address: a for a in agents}
    market = NodeMarket(by_address, find=world.measure(app, discovery_finder(discovery)),  # type: ignore[arg-type]
                        ledger=ledger, settings=SETTINGS)
    market.reputation.add_settled(await ledger.settled_receipts())
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(open_sim_discovery(discovery))
        runtime = await stack.enter_async_context(open_runtime(
            agents, transports=[world.network.transport(f"node/{app.peer_id}")],
            directory=DhtDirectory(discovery), config=RUNTIME, clock=clock,  # type: ignore[arg-type]
            services=Services(market=market), shared=MarketDesk(by_address, ledger)))
        discovery.node.addrs[:] = list(runtime.endpoints)
        if session.clean_exit:
            for agent in agents:
                await stack.enter_async_context(open_advertiser(
                    discovery, agent.identity, offers_of(agent),  # type: ignore[arg-type]
                    refresh_period=world.refresh_period, clock=clock,
                    protocols=[p.name for p in agent.protocols]))
        group = await stack.enter_async_context(asyncio.TaskGroup())
        if not session.clean_exit:  # a crash: the ads are never withdrawn
            for agent in agents:
                advertiser = Advertiser(discovery, agent.identity, offers_of(agent),  # type: ignore[arg-type]
                                        refresh_period=world.refresh_period, clock=clock,
                                        protocols=[p.name for p in agent.protocols])
                await advertiser.publish()
                app.tasks.add(group.create_task(advertiser.serve_refresh()))
        app.tasks.add(group.create_task(_resolve_forever(ledger, market, runtime)))
        app.tasks.add(group.create_task(world.workload(app, runtime.context(agents[0]), group)))
        app.online = True
        world.went_online(app)
        try:
            left = session.end - world.elapsed()
            if left > 0:
                await clock.sleep(left)
        finally:
            app.online = False
            world.went_offline(app)
            for task in list(app.tasks):
                task.cancel()
            app.tasks.clear()


async def _resolve_forever(ledger: Ledger, market: NodeMarket, runtime: Any) -> None:
    """The node's recovery pass (`marketplace.node.node._resolve_forever`), at the sim's period."""
    while True:
        await resolve_pass(ledger, market, runtime)
        await runtime.clock.sleep(SETTINGS.resolve_period)


async def resolve_pass(ledger: Ledger, market: NodeMarket, runtime: Any) -> None:
    try:
        await resolve_open(ledger, market, dict(runtime.agents), runtime.context,
                           grace=SETTINGS.grace)
    except AaexError:
        pass  # the books could not be read this time; the next pass retries


async def delegate_once(ctx: Context, capability: str, rng: random.Random,
                        progress: Callable[[str, dict[str, Any]], None]) -> str:
    """One purchase; returns ``met`` or why it failed."""
    try:
        done = await ctx.delegate(capability, {"n": rng.random()}, progress=progress,
                                  budget=Credits.parse(5), deadline=60, max_latency_ms=3000)
    except DelegationFailed as exc:
        verdicts = [a.verdict for a in exc.attempts]
        return "failed:" + (verdicts[-1] if verdicts else "no_seller")
    return str(done.receipt.receipt.verdict)


def addresses(found: Sequence[str | Found]) -> list[str]:
    return [f.address if isinstance(f, Found) else f for f in found]
