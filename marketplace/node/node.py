"""The marketplace node: everything one appliance runs, opened and closed as one.

    async with open_node(load_config("node.toml")) as node:
        await node.stopped.wait()          # the CLI sets it on SIGTERM

The node owns, in start order: the ledger, the language model its agents share as `ctx.llm`
(when `[llm]` names one), the libp2p host and DHT (joined through the seeds), the
transports (HTTP and libp2p), the runtime hosting the configured agents, the interop listener
(when `[interop]` sets one), one advertiser per selling agent, the OpenAI-compatible gateway
(when `[gateway]` sets one), and the admin API with `/metrics` (its write routes take the
token written to ``data_dir/admin.token``; ``data_dir/admin.json`` says where it listens).
`open_node` returns only when all of them listen, as a `Node` built whole then and never
changed. Leaving it closes them in reverse: the admin API stops, the gateway, the ads are
withdrawn (signed tombstones), sellers decline new calls while open negotiations get up to
`drain_timeout` to finish, the runtime stops, the transports and the host close, the model
is unloaded, and the ledger closes last.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import time
from collections.abc import AsyncIterator, Coroutine
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, fields
from typing import Any

from aaex_agents import (
    Agent,
    HttpTransport,
    Identity,
    RuntimeConfig,
    Services,
    StaticDirectory,
    open_runtime,
)
from aaex_agents.clock import Clock, SystemClock
from aaex_agents.directory import Directory
from aaex_agents.errors import AaexError, UsageError
from aaex_agents.keyring import SealingPolicy
from aaex_agents.llm import LLMService
from aaex_agents.runtime import Runtime
from aaex_agents.transport.base import Transport
from aaex_agents.transport.http import ENVELOPE_PATH
from aaex_agents.transport.libp2p import (
    Libp2pConfig,
    Libp2pHost,
    Libp2pTransport,
    open_libp2p_host,
)
from aaex_agents.transport.listener import ServerLimits
from discovery.advertiser import Advertiser, Listing, open_advertiser
from discovery.dht import Discovery, open_discovery
from discovery.directory import DhtDirectory
from discovery.query import Query
from discovery.records import PriceModel, SlaOffer
from discovery.schema import compact_schema

from ..contracts.ledger import Ledger, LedgerConfig, open_ledger
from ..contracts.provenance import ModelRef
from ..trade.audit import report_audit
from ..trade.buying import Buyer
from ..trade.contracting import seller_countersigner
from ..trade.desk import MarketDesk
from ..trade.grants import GrantDesk
from ..trade.llm_seller import LlmSeller
from ..trade.market import NodeMarket, discovery_finder
from ..trade.negotiation import Seller
from ..trade.policy import AccessControl, AccessList
from ..trade.recovery import resolve_open
from ..trade.selling import ServiceSeller
from ..trade.strategies import SellerStrategy
from .accounts import (
    agent_key_path,
    issue_token,
    load_or_create_identity,
    publish_admin,
    withdraw_admin,
)
from .api import ADMIN_LIMITS, serve_admin, uptime_since
from .config import AgentSpec, ConfigError, LLMSpec, NodeConfig, split_host_port
from .gateway import GATEWAY_LIMITS, open_gateway
from .interop import Interop, interop_gateway, interop_status, open_interop
from .llm import model_file_hash, open_node_llm
from .metrics import metrics_text
from .ports import check_ports
from .validators import bind_validators

logger = logging.getLogger(__name__)

FILES_RESERVE = 512
"""Open files a node needs besides its listeners' connections: libp2p, the ledger, logs."""
GRANT_REVOCATIONS = "grant_revocations.jsonl"
"""The file under the data dir where the node keeps data owners' revocations of grants."""


@dataclass(frozen=True, kw_only=True)
class NodeParts:
    """What a node has open before its admin API.

    That API, `/metrics` and the operator routes read it through their own narrow views
    (`api.AdminView`, `metrics.MetricsView`, `admin_writes.OperatorView`).
    """

    config: NodeConfig
    identity: Identity
    ledger: Ledger
    runtime: Runtime
    host: Libp2pHost | None
    discovery: Discovery | None
    llm: LLMService | None
    """The language model the agents share; None when the configuration names none."""
    market: NodeMarket
    """What `ctx.delegate` of the hosted agents reaches."""
    desk: MarketDesk
    """What the node answers for every hosted agent (statements, escrow, disputes)."""
    interop: Interop | None
    """The uAgents and A2A listener; None when `[interop]` sets no `listen`."""
    advertisers: tuple[Advertiser, ...]
    gateway_url: str | None
    """The OpenAI-compatible gateway; None when `[gateway]` sets no `listen`."""
    started: float
    draining: asyncio.Event
    """Set when shutdown begins: new negotiations are declined from then on."""

    def describe(self, admin_url: str) -> dict[str, Any]:
        """The status document, with the admin API at `admin_url`."""
        return {
            "node": self.identity.address, "peer_id": self.host.peer_id if self.host else None,
            "p2p": self.host.addrs if self.host else [], "endpoints": list(self.runtime.endpoints),
            "admin": admin_url, "agents": len(self.runtime.agents),
            "state": "draining" if self.draining.is_set() else self.runtime.state.value,
            "uptime_s": round(uptime_since(self.started), 1),
            "routing_table": (self.host.dht.get_routing_table_size()
                              if self.host and self.host.dht else 0),
            "llm": self._llm_status(),
            "interop": interop_status(self.runtime, self.interop),
            "gateway": self.gateway_url}

    def _llm_status(self) -> dict[str, Any] | None:
        if self.llm is None:
            return None
        info = self.llm.describe()
        return {"backend": info.backend, "model": info.name,
                "quantization": info.quantization, "tokens_per_second": info.tokens_per_second,
                **({} if info.speed is None else {
                    "tokens_per_second_low": info.speed.low,
                    "tokens_per_second_high": info.speed.high,
                    "speed_runs": info.speed.runs})}

    def published_ads(self) -> list[dict[str, Any]]:
        """The offers this node advertises, with the index acknowledgements of the last run."""
        return [{"capability": capability, "acknowledged_by": acks}
                for advertiser in self.advertisers
                for capability, acks in advertiser.acknowledgements.items()]

    def metrics_text(self) -> str:
        """Prometheus exposition of the node's counters (`/metrics` adds the ledger's)."""
        return metrics_text(self)


@dataclass(frozen=True, kw_only=True)
class Node(NodeParts):
    """A running node, built whole once everything listens; see `open_node`."""

    admin_url: str

    def status(self) -> dict[str, Any]:
        """What `aaex node status` shows."""
        return self.describe(self.admin_url)


def build_agent(spec: AgentSpec, config: NodeConfig, clock: Clock,
                ledger: Ledger | None = None, grants: GrantDesk | None = None) -> Agent:
    """Construct the agent `spec` names, with its own key under the data dir.

    A `Seller` gets its strategy from the settings (`cost`, `exponent`, `latency_ms`, ...),
    its countersigner, the node's whitelist for its capability and its `[dialogues]` limits;
    a `ServiceSeller` and a `Buyer` also keep their books on the node's `ledger` (to answer
    statements). Every seller checks uses of granted data with the node's `grants`.

    Raises:
        ConfigError: the class is not an Agent (or a seller's class states no capability or
            task model: see `config.check_seller_class`), or a setting is not accepted.
    """
    cls = spec.load_class()
    if not issubclass(cls, Agent):
        raise ConfigError(f"agents.{spec.name}.class: {spec.target} is not an Agent subclass")
    identity = load_or_create_identity(agent_key_path(config, spec.name))
    settings = dict(spec.settings)
    try:
        if issubclass(cls, Seller):
            capability = cls.capability
            rules = config.whitelists.get(capability)
            gate = AccessControl({capability: AccessList(open=rules is None,
                                                         agents=rules or frozenset())})
            strategy_fields = {**cls.strategy_defaults,
                               **{k: settings.pop(k) for k in list(settings)
                                  if k in SellerStrategy.__dataclass_fields__}}
            if issubclass(cls, ServiceSeller):
                settings["ledger"] = ledger
            strategy = SellerStrategy.from_settings(**strategy_fields)
            return cls(identity, name=spec.name, strategy=strategy,
                       countersign=seller_countersigner(identity, clock), admit=gate.admit,
                       limits=config.dialogues, clock=clock,
                       trusted_arbiters=frozenset(config.market.arbiters), grants=grants,
                       **settings)
        if issubclass(cls, Buyer):
            settings["ledger"] = ledger
        return cls(identity, name=spec.name, **settings)
    except (TypeError, UsageError) as exc:
        raise ConfigError(f"agents.{spec.name}.settings: {exc}") from exc


def _schemas(agent: Seller) -> dict[str, Any]:
    """The schemas of `agent`'s task and result models, as its ads carry them."""
    return {f"{name}_schema": compact_schema(model) for name, model in
            (("task", agent.task_model), ("result", agent.result_model)) if model is not None}


def offers_of(agent: Agent) -> list[Listing]:
    """What a selling agent advertises: its capability at its current asking price.

    An `LlmSeller` advertises its price per output token, its model and what the node
    measured of it (`LlmSeller.ad_attributes`). Every ad carries the schemas of the seller's
    task and result models (`discovery.schema`).
    """
    if not isinstance(agent, Seller) or not agent.capability:
        return []
    if isinstance(agent, LlmSeller):
        latency = agent.strategy.latency_ms
        return [Listing(capability=agent.capability,
                      price=PriceModel(kind="per_1k_tokens", amount=agent.output_per_1k),
                      sla=SlaOffer(p50_ms=latency / 2, p95_ms=latency,
                                   deadline_s=agent.strategy.deadline_s, availability=0.99),
                      attributes=agent.ad_attributes(), **_schemas(agent))]
    ask = agent.strategy.ask(0.0, 1.0, agent.queue_depth)
    return [Listing(capability=agent.capability, price=PriceModel(amount=ask.price),
                  sla=SlaOffer(p50_ms=ask.latency_ms / 2, p95_ms=ask.latency_ms,
                               deadline_s=ask.deadline_s, availability=0.99),
                  attributes={"strategy_exponent": agent.strategy.exponent},
                  **_schemas(agent))]


async def _bind_llm_sellers(agents: list[Agent], llm: LLMService | None,
                            spec: LLMSpec) -> None:
    """Let every `LlmSeller` describe the node's model in its ad; measure it first.

    At start, one warm-up generation (discarded: a cold one can be a hundred times slower)
    and three timed ones of 16 tokens give the first ad a measured tokens/s, its range and
    the time to first token instead of none. The model file is hashed once here, for the
    provenance every delivery carries.
    """
    sellers = [a for a in agents if isinstance(a, LlmSeller)]
    if not sellers or llm is None:
        return
    digest = await model_file_hash(spec)
    if digest is not None:
        for seller in sellers:
            seller.model_file = ModelRef(name=llm.describe().name, file_hash=digest)
    try:
        await llm.measure(max_tokens=16, runs=3, warmup=1)
    except AaexError:  # the ad goes out without the figures; the seller still sells
        logger.warning("measuring the model for its ad failed", exc_info=True)
    for seller in sellers:
        seller.model_info = llm.describe


async def _advertised_models(discovery: Discovery | None) -> list[str]:
    """The model ids the market's ``llm.chat`` sellers advertise (for ``/v1/models``)."""
    if discovery is None:
        return []
    ads = await discovery.lookup(Query("llm.chat"))
    return sorted({str(ad.attributes["model"]) for ad in ads if "model" in ad.attributes})


async def _no_market(capability: str, where: str | None) -> list[str]:
    """The finder of a node without libp2p: it finds nobody (configure `node.p2p`)."""
    return []


async def _drain(runtime: Runtime, draining: asyncio.Event, timeout: float) -> None:
    """Decline new negotiations; wait (at most `timeout` s) for open ones to end."""
    sellers = [a for a in runtime.agents.values() if isinstance(a, Seller)]
    for seller in sellers:
        seller.accepting = False
    draining.set()
    clock = runtime.clock
    deadline = clock.now() + timeout

    def open_work(now: float) -> tuple[int, int]:
        owed = sum(s.owed_work(int(now * 1000)) for s in sellers
                   if isinstance(s, ServiceSeller))
        return sum(s.live_dialogues(now) for s in sellers), owed

    while (now := clock.now()) < deadline:
        if open_work(now) == (0, 0):
            logger.info("drain: every negotiation ended and every agreed task was delivered "
                        "or passed its deadline")
            return
        await clock.sleep(0.05)
    negotiations, owed = open_work(clock.now())
    logger.warning("drain: stopping after %.0f s with %d negotiation(s) open and %d agreed "
                   "task(s) undelivered", timeout, negotiations, owed)


def _check_open_file_limit() -> None:
    """Warn when the listeners' connection limits could exhaust the open-file limit."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = (2 * ServerLimits().max_connections + ADMIN_LIMITS.max_connections
              + GATEWAY_LIMITS.max_connections + FILES_RESERVE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        logger.warning("the open-file limit is %d, under the %d the listeners may hold with "
                       "their connection limits; raise it (ulimit -n %d)", soft, needed,
                       needed)


async def _resolve_forever(node: Node) -> None:
    """Resolve the open purchases at start, then every `market.resolve_period` seconds."""
    settings, runtime = node.config.market, node.runtime
    while True:
        try:
            await resolve_open(node.ledger, node.market, dict(runtime.agents),
                               runtime.context, grace=settings.grace)
        except AaexError:  # the books could not be read this time; the next pass retries
            logger.error("resolving open agreements failed", exc_info=True)
        await runtime.clock.sleep(settings.resolve_period)


async def _report_audit_forever(node: Node) -> None:
    """Send partners the audit entries about them (marketplace.trade.audit).

    At once when an access is recorded, and every `market.resolve_period` seconds again for
    entries a partner has not taken yet (it was unreachable, or its ad not found yet).
    """
    runtime, ledger = node.runtime, node.ledger
    silenced: set[str] = set()  # partners that caught our log: the operator decides
    while True:
        ledger.audit_appended.clear()
        try:
            await report_audit(ledger, dict(runtime.agents), runtime.context, silenced=silenced)
        except AaexError:  # the books could not be read this time; the next pass retries
            logger.error("reporting the audit log to partners failed", exc_info=True)
        await _first_of(runtime.clock.sleep(node.config.market.resolve_period),
                        ledger.audit_appended.wait())


async def _first_of(*waits: Coroutine[Any, Any, Any]) -> None:
    """Await `waits` until the first one ends; the others are cancelled."""
    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(wait) for wait in waits]
        for task in tasks:
            task.add_done_callback(lambda _: [other.cancel() for other in tasks])


def _preflight(config: NodeConfig) -> Identity:
    """What fails before anything opens: a bad class for the model, the data dir, the key."""
    _check_open_file_limit()
    # 0700: the data dir holds the agents' keys and, by default, the ledger.
    try:
        config.node.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"node.data_dir = {config.node.data_dir}: cannot create it "
                          f"({exc.strerror}); choose a folder this user may write") from None
    identity = load_or_create_identity(config.node.identity)
    for spec in config.agents:  # a bad class or setting fails before anything is opened
        if issubclass(spec.load_class(), LlmSeller) and config.llm.backend == "none":
            raise ConfigError(f"agents.{spec.name}: an LlmSeller sells the node's model; add "
                              "an [llm] section (e.g. backend = \"llamacpp\")")
    return identity


@dataclass(frozen=True)
class _Network:
    """The transports a node listens on, and its libp2p host and DHT when it has them."""

    transports: list[Transport]
    directory: Directory
    host: Libp2pHost | None = None
    discovery: Discovery | None = None


async def _open_network(stack: AsyncExitStack, config: NodeConfig,
                        identity: Identity) -> _Network:
    transports: list[Transport] = []
    if config.node.http:
        http_host, http_port = split_host_port(config.node.http)
        transports.append(HttpTransport(host=http_host, port=http_port))
    if not config.node.p2p:
        return _Network(transports, StaticDirectory())
    host = await stack.enter_async_context(open_libp2p_host(Libp2pConfig(
        listen=config.node.p2p, seed=identity.export_seed())))
    discovery = await stack.enter_async_context(open_discovery(host, seeds=config.node.seeds))
    transports.append(Libp2pTransport(host))
    return _Network(transports, DhtDirectory(discovery), host, discovery)


async def _open_advertisers(stack: AsyncExitStack, config: NodeConfig, runtime: Runtime,
                            discovery: Discovery | None,
                            interop: Interop | None) -> tuple[Advertiser, ...]:
    """One advertiser per hosted agent, publishing its offers (none without a DHT)."""
    if discovery is None:
        return ()
    http_endpoints = [e for e in runtime.endpoints if e.startswith("http")]
    if http_endpoints and config.node.http_public:
        http_endpoints = [f"http://{config.node.http_public}{ENVELOPE_PATH}"]
    advertisers = []
    for agent in runtime.agents.values():
        advertisers.append(await stack.enter_async_context(open_advertiser(
            discovery, agent.identity, offers_of(agent), refresh_period=config.node.refresh_period,
            http_endpoints=http_endpoints, protocols=[p.name for p in agent.protocols],
            uagents=interop.bindings[agent.address] if interop else None)))
    return tuple(advertisers)


async def _open_parts(stack: AsyncExitStack, config: NodeConfig, identity: Identity,
                      clock: Clock, deps: object) -> tuple[NodeParts, str]:
    """Open everything but the admin API, in start order; `stack` closes them in reverse.

    Returns the parts and the admin token (issued once the agents are advertised).
    """
    ledger = await stack.enter_async_context(open_ledger(
        config.ledger_path, config=LedgerConfig(clock=clock, owner=identity)))
    # Revocations outlive a restart in a file beside the books (read once, off the loop).
    grants = await asyncio.to_thread(GrantDesk, path=config.node.data_dir / GRANT_REVOCATIONS,
                                     ledger=ledger, clock=clock)
    agents = [build_agent(spec, config, clock, ledger, grants) for spec in config.agents]
    # Before the runtime, so it closes after it: handlers may use ctx.llm until the end.
    llm = await stack.enter_async_context(open_node_llm(config.llm))
    await _bind_llm_sellers(agents, llm, config.llm)
    network = await _open_network(stack, config, identity)
    discovery = network.discovery
    market = NodeMarket({a.address: a for a in agents}, find=(
        discovery_finder(discovery) if discovery is not None else _no_market),
        ledger=ledger, settings=config.market)
    await bind_validators(agents, market, clock, ledger, stack=stack, section=config.chain,
                          node=identity)
    # Reputation is read from the books, so a restarted node still knows whom it can trust.
    market.reputation.add_settled(await ledger.settled_receipts())
    # A node takes only sealed envelopes (and plaintext key requests): docs/sovereignty.md.
    runtime_config = RuntimeConfig(data_dir=config.node.data_dir / "storage",
                                   sealing=SealingPolicy(accept_plaintext=False))
    desk = MarketDesk({a.address: a for a in agents}, ledger, grants)
    await desk.load()  # half-signed payments and resolutions kept before a restart
    gateway = (interop_gateway(config.interop, policy=runtime_config.policy,
                               offers=offers_of) if config.interop.enabled else None)
    runtime = await stack.enter_async_context(open_runtime(
        agents, transports=network.transports, directory=network.directory,
        config=runtime_config, clock=clock, services=Services(llm=llm, market=market),
        shared=desk,
        gateways=[gateway] if gateway is not None else (), deps=deps))
    started, draining = time.monotonic(), asyncio.Event()
    # Runs after the advertisers have withdrawn (exit order is reversed), before the
    # runtime stops: nobody finds us any more, and open negotiations may still finish.
    stack.push_async_callback(_drain, runtime, draining, config.node.drain_timeout)
    interop = None
    if gateway is not None:  # interop: uAgents and A2A on their own listener
        interop = await stack.enter_async_context(open_interop(
            runtime, gateway, config.interop, offers=offers_of))
    advertisers = await _open_advertisers(stack, config, runtime, discovery, interop)
    token = issue_token(config.node.data_dir)
    gateway_url = None
    if config.gateway.enabled:  # the OpenAI-compatible gateway, keyed by the admin token
        gateway_url = await stack.enter_async_context(open_gateway(
            runtime, market, config.gateway, token=token, llm=llm,
            models=lambda: _advertised_models(discovery)))
    return NodeParts(config=config, identity=identity, ledger=ledger, runtime=runtime,
                     host=network.host, discovery=discovery, llm=llm, market=market, desk=desk,
                     interop=interop, advertisers=advertisers, gateway_url=gateway_url,
                     started=started, draining=draining), token


@asynccontextmanager
async def open_node(config: NodeConfig, *, clock: Clock | None = None,
                    deps: object = None) -> AsyncIterator[Node]:
    """Start everything `config` describes; returns when all of it listens.

    `clock` (default: the system's) is where the ledger, the runtime, the sellers and the
    market read time and sleep. `deps` are the hosted agents' own dependencies (a database,
    a price feed), reached as ``ctx.deps``; the caller opens and closes them, and the
    configuration does not name them (``aaex node run`` gives none). The `Node` is built
    once all of it is open, and not changed.

    Raises:
        ConfigError: a port to listen on is taken (named, see `check_ports`), an agent
            cannot be built from the configuration, or the `[llm]` model cannot start (the
            message names `llm.backend` and `llm.model_path` or `llm.base_url`; the LLM
            error is its cause).
        KeyFileError, LedgerError, TransportError: a resource could not be opened.
    """
    await check_ports(config)  # a taken port fails before anything opens
    identity = _preflight(config)
    async with AsyncExitStack() as stack:
        parts, token = await _open_parts(stack, config, identity, clock or SystemClock(),
                                        deps)
        admin_host, admin_port = split_host_port(config.node.admin)
        admin_url = await stack.enter_async_context(serve_admin(parts, admin_host,
                                                                admin_port, token))
        node = Node(**{f.name: getattr(parts, f.name) for f in fields(parts)},
                    admin_url=admin_url)
        # The CLI finds the admin API (its port may have been 0) and the token through these.
        publish_admin(config.node.data_dir, node.admin_url, identity.address)
        stack.callback(withdraw_admin, config.node.data_dir, node.admin_url)
        # The node's own background work belongs to its task group, cancelled on exit.
        group = await stack.enter_async_context(asyncio.TaskGroup())
        stack.callback(group.create_task(_resolve_forever(node), name="node.resolve").cancel)
        stack.callback(group.create_task(_report_audit_forever(node), name="node.audit").cancel)
        logger.info("node %s up: %d agent(s), admin %s", identity.address,
                    len(node.runtime.agents), node.admin_url)
        yield node
        logger.info("node %s stopping", identity.address)
