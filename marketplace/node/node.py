"""The marketplace node: everything one appliance runs, opened and closed as one.

    async with open_node(load_config("node.toml")) as node:
        await node.stopped.wait()          # the CLI sets it on SIGTERM

The node owns, in start order: the ledger, the language model its agents share as `ctx.llm`
(when `[llm]` names one), the libp2p host and DHT (joined through the seeds), the
transports (HTTP and libp2p), the runtime hosting the configured agents, one advertiser per
selling agent, and the admin API with `/metrics`. `open_node` returns only when all of them
listen. Leaving it closes them in reverse: the admin API stops, the ads are withdrawn
(signed tombstones), sellers decline new calls while open negotiations get up to
`drain_timeout` to finish, the runtime stops, the transports and the host close, the model
is unloaded, and the ledger closes last.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aaex_agents import Agent, HttpTransport, Identity, RuntimeConfig, StaticDirectory, open_runtime
from aaex_agents.directory import Directory
from aaex_agents.errors import KeyFileError, UsageError
from aaex_agents.llm import LLMService
from aaex_agents.runtime import Runtime
from aaex_agents.transport.base import Transport
from aaex_agents.transport.libp2p import Libp2pConfig, Libp2pHost, Libp2pTransport, open_libp2p_host
from discovery.advertiser import Advertiser, Offer, open_advertiser
from discovery.dht import Discovery, open_discovery
from discovery.directory import DhtDirectory
from discovery.records import PriceModel, SlaOffer

from ..contracts.ledger import Ledger, open_ledger
from ..trade.contracting import seller_countersigner
from ..trade.market import NodeMarket, discovery_finder
from ..trade.negotiation import Seller
from ..trade.policy import AccessControl, AccessList
from ..trade.strategies import SellerStrategy
from .api import serve_admin, uptime_since
from .config import AgentSpec, ConfigError, NodeConfig, split_host_port
from .llm import open_node_llm
from .metrics import metrics_text

logger = logging.getLogger(__name__)


@dataclass
class Node:
    """A running node; see `open_node`."""

    config: NodeConfig
    identity: Identity
    ledger: Ledger
    runtime: Runtime
    host: Libp2pHost | None
    discovery: Discovery | None
    advertisers: list[Advertiser] = field(default_factory=list)
    admin_url: str = ""
    llm: LLMService | None = None
    market: NodeMarket | None = None
    """What `ctx.delegate` of the hosted agents reaches."""
    """The language model the agents share; None when the configuration names none."""
    started: float = field(default_factory=time.monotonic)
    draining: asyncio.Event = field(default_factory=asyncio.Event)
    """Set when shutdown begins: new negotiations are declined from then on."""

    def status(self) -> dict[str, Any]:
        """What `aaex node status` shows."""
        return {
            "node": self.identity.address, "peer_id": self.host.peer_id if self.host else None,
            "p2p": self.host.addrs if self.host else [], "endpoints": list(self.runtime.endpoints),
            "admin": self.admin_url, "agents": len(self.runtime.agents),
            "state": "draining" if self.draining.is_set() else self.runtime.state.value,
            "uptime_s": round(uptime_since(self.started), 1),
            "routing_table": (self.host.dht.get_routing_table_size()
                              if self.host and self.host.dht else 0),
            "llm": self._llm_status()}

    def _llm_status(self) -> dict[str, Any] | None:
        if self.llm is None:
            return None
        info = self.llm.describe()
        return {"backend": info.backend, "model": info.name,
                "quantization": info.quantization, "tokens_per_second": info.tokens_per_second}

    def published_ads(self) -> list[dict[str, Any]]:
        """The offers this node advertises, with the index acknowledgements of the last run."""
        return [{"capability": capability, "acknowledged_by": acks}
                for advertiser in self.advertisers
                for capability, acks in advertiser.acknowledgements.items()]

    def metrics_text(self) -> str:
        """Prometheus exposition of the node's counters (`/metrics` adds the ledger's)."""
        return metrics_text(self)


def load_or_create_identity(path: Any) -> Identity:
    """The key at `path`, created (mode 0600) when missing."""
    try:
        return Identity.load(path)
    except KeyFileError:
        if path.exists():
            raise
        identity = Identity.generate()
        identity.save(path)
        logger.info("created key %s for %s", path, identity.address)
        return identity


def build_agent(spec: AgentSpec, config: NodeConfig) -> Agent:
    """Construct the agent `spec` names, with its own key under the data dir.

    A `Seller` gets its strategy from the settings (`cost`, `exponent`, `latency_ms`, ...),
    its countersigner, and the node's whitelist for its capability.

    Raises:
        ConfigError: the class is not an Agent, or a setting is not accepted.
    """
    cls = spec.load_class()
    if not issubclass(cls, Agent):
        raise ConfigError(f"agents.{spec.name}.class: {spec.target} is not an Agent subclass")
    identity = load_or_create_identity(config.data_dir / "agents" / f"{spec.name}.key")
    settings = dict(spec.settings)
    try:
        if issubclass(cls, Seller):
            capability = cls.capability
            rules = config.whitelists.get(capability)
            gate = AccessControl({capability: AccessList(open=rules is None,
                                                         agents=rules or frozenset())})
            strategy_fields = {k: settings.pop(k) for k in list(settings)
                               if k in SellerStrategy.__dataclass_fields__}
            return cls(identity, name=spec.name, strategy=SellerStrategy(**strategy_fields),
                       countersign=seller_countersigner(identity), admit=gate.admit,
                       **settings)
        return cls(identity, name=spec.name, **settings)
    except (TypeError, UsageError) as exc:
        raise ConfigError(f"agents.{spec.name}.settings: {exc}") from exc


def offers_of(agent: Agent) -> list[Offer]:
    """What a selling agent advertises: its capability at its current asking price."""
    if not isinstance(agent, Seller) or not agent.capability:
        return []
    ask = agent.strategy.ask(0.0, 1.0, agent.queue_depth)
    return [Offer(capability=agent.capability, price=PriceModel(amount=ask.price),
                  sla=SlaOffer(p50_ms=ask.latency_ms / 2, p95_ms=ask.latency_ms,
                               deadline_s=ask.deadline_s, availability=0.99),
                  attributes={"strategy_exponent": agent.strategy.exponent})]


async def _no_market(capability: str) -> list[str]:
    """The finder of a node without libp2p: it finds nobody (configure `node.p2p`)."""
    return []


async def _drain(node: Node, timeout: float) -> None:
    """Decline new negotiations; wait (at most `timeout` s) for open ones to end."""
    sellers = [a for a in node.runtime.agents.values() if isinstance(a, Seller)]
    for seller in sellers:
        seller.accepting = False
    node.draining.set()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = time.time()
        live = sum(s.live_dialogues(now) for s in sellers)
        if live == 0:
            return
        await asyncio.sleep(0.05)
    logger.warning("drain: %d negotiation(s) still open after %.0f s; stopping anyway",
                   sum(s.live_dialogues(time.time()) for s in sellers), timeout)


@asynccontextmanager
async def open_node(config: NodeConfig) -> AsyncIterator[Node]:
    """Start everything `config` describes; returns when all of it listens.

    Raises:
        ConfigError: an agent cannot be built from the configuration, or the `[llm]` model
            cannot start (the message names `llm.backend` and `llm.model_path` or
            `llm.base_url`; the LLM error is its cause).
        KeyFileError, LedgerError, TransportError: a resource could not be opened.
    """
    config.data_dir.mkdir(parents=True, exist_ok=True)
    config.ledger_path.parent.mkdir(parents=True, exist_ok=True)
    identity = load_or_create_identity(config.identity)
    agents = [build_agent(spec, config) for spec in config.agents]
    async with AsyncExitStack() as stack:
        ledger = await stack.enter_async_context(open_ledger(config.ledger_path))
        # Before the runtime, so it closes after it: handlers may use ctx.llm until the end.
        llm = await stack.enter_async_context(open_node_llm(config.llm))
        host: Libp2pHost | None = None
        discovery: Discovery | None = None
        transports: list[Transport] = []
        directory: Directory = StaticDirectory()
        if config.http:
            http_host, http_port = split_host_port(config.http)
            transports.append(HttpTransport(host=http_host, port=http_port))
        if config.p2p:
            host = await stack.enter_async_context(open_libp2p_host(Libp2pConfig(
                listen=config.p2p, seed=identity.export_seed())))
            discovery = await stack.enter_async_context(open_discovery(host, seeds=config.seeds))
            transports.append(Libp2pTransport(host))
            directory = DhtDirectory(discovery)
        market = NodeMarket({a.address: a for a in agents}, find=(
            discovery_finder(discovery) if discovery is not None else _no_market),
            ledger=ledger, settings=config.market)
        runtime = await stack.enter_async_context(open_runtime(
            agents, transports=transports, directory=directory,
            config=RuntimeConfig(data_dir=config.data_dir / "storage"), llm=llm,
            delegate=market.delegate))
        node = Node(config, identity, ledger, runtime, host, discovery, llm=llm, market=market)
        # Runs after the advertisers have withdrawn (exit order is reversed), before the
        # runtime stops: nobody finds us any more, and open negotiations may still finish.
        stack.push_async_callback(_drain, node, config.drain_timeout)
        if discovery is not None:
            http_endpoints = [e for e in runtime.endpoints if e.startswith("http")]
            for agent in agents:
                offers = offers_of(agent)
                advertiser = await stack.enter_async_context(open_advertiser(
                    discovery, agent.identity, offers, refresh_period=config.refresh_period,
                    http_endpoints=http_endpoints,
                    protocols=[p.name for p in agent.protocols]))
                node.advertisers.append(advertiser)
        admin_host, admin_port = split_host_port(config.admin)
        node.admin_url = await stack.enter_async_context(serve_admin(node, admin_host,
                                                                     admin_port))
        logger.info("node %s up: %d agent(s), admin %s", identity.address, len(agents),
                    node.admin_url)
        yield node
        logger.info("node %s stopping", identity.address)
