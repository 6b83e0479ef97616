"""The node's interop listener: uAgents envelopes and A2A, on a port of their own.

    [interop]
    listen = "127.0.0.1:8702"        # absent: interop is off
    public_url = "http://appliance.lan:8702"   # optional: the base A2A cards advertise
    ask_mode = "sync"                # how ctx.ask reaches uAgents: "sync" or "async"
    sign_sync_replies = true         # false: answer sync requests unsigned, as uAgents does
    sync_timeout = 30                # seconds a uAgents sync request is held for its answer
    sync_holds = 256                 # sync requests held open at once, in all
    sync_holds_per_ip = 16           # ... and from one client address

    [interop.uagents.peers]          # where uAgents agents are (no Almanac)
    "agent1q..." = "http://127.0.0.1:8000/submit"

    [interop.uagents.schemas]        # AAEX type name = uAgents schema digest (uagents-core's)
    "demo.ping/1" = "model:64d85c39..."

It serves ``POST /submit`` and ``HEAD /submit`` for uAgents (`aaex_agents.interop`) and the
A2A routes (`a2a`); it is not the admin API. Every hosted agent answers at its ``agent1...``
address, derived from its own key. Its counters are `Interop.metrics` (`samples()` for
Prometheus).

`InteropSettings` is the ``[interop]`` table of the node's configuration. Nothing here
imports libp2p, so reading a configuration stays fast.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any

from aiohttp import web
from pydantic import AfterValidator, Field, model_validator

from aaex_agents import Agent
from aaex_agents.envelope import EnvelopePolicy
from aaex_agents.errors import UsageError
from aaex_agents.interop import (
    SUBMIT_PATH,
    AddressBinding,
    InteropMetrics,
    SchemaTable,
    UAgentsConfig,
    UAgentsGateway,
    UAgentsKey,
    add_uagents_routes,
)
from aaex_agents.interop.config import AskMode, check_peers
from aaex_agents.model import message_class
from aaex_agents.runtime import Runtime
from aaex_agents.transport.listener import open_http_listener

from .a2a import CARD_PATH, A2AService, Offers, describe
from .tables import HostPort, Table, fix, problem, split_host_port

logger = logging.getLogger(__name__)

def _digest(value: str) -> str:
    if not value.startswith("model:") or len(value) != 70:
        raise fix('write the uAgents schema digest, "model:" and 64 hex digits')
    return value


def _peers(value: dict[str, str]) -> dict[str, str]:
    try:
        check_peers(value, "interop.uagents.peers")
    except UsageError as exc:
        raise problem(str(exc)) from None
    return value


def _http_url(value: str) -> str:
    if not value.startswith(("http://", "https://")):
        raise fix("write an http(s) URL")
    return value


class UAgentsTables(Table):
    """The ``[interop.uagents.*]`` tables.

    Attributes:
        peers: ``agent1...`` address -> its submit URL, for replies and for sending.
        schemas: AAEX message type name -> uAgents schema digest, beyond the chat protocol.
    """

    peers: Annotated[dict[str, str], AfterValidator(_peers)] = Field(default_factory=dict)
    schemas: dict[str, Annotated[str, AfterValidator(_digest)]] = Field(default_factory=dict)


class InteropSettings(Table):
    """The ``[interop]`` section.

    Attributes:
        listen: host:port of the interop listener; None (the default) turns interop off.
        public_url: base URL the A2A cards advertise; None: ``http://`` + the bound address.
        ask_mode: how `ctx.ask` reaches uAgents agents: "sync" (the reply in the HTTP
            response, the default) or "async" (the reply POSTed to our ``/submit``).
        sign_sync_replies: sign the reply to a uAgents sync request (default True); see
            `UAgentsConfig.sign_sync_replies` for the cost to a uAgents sender.
        sync_timeout: seconds a uAgents sync request is held for the agent's answer
            (default 30); then an ErrorMessage says so.
        sync_holds: uAgents sync requests held open at once (default 256); beyond, 503.
        sync_holds_per_ip: of those, from one client address (default 16); beyond, 503.
        uagents: where uAgents peers are and the schema digests of our message types.
    """

    listen: HostPort | None = None
    public_url: Annotated[str, AfterValidator(_http_url)] | None = None
    ask_mode: AskMode = "sync"
    sign_sync_replies: bool = True
    sync_timeout: float = Field(default=30.0, gt=0, le=600)
    sync_holds: int = Field(default=256, gt=0)
    sync_holds_per_ip: int = Field(default=16, gt=0)
    uagents: UAgentsTables = Field(default_factory=lambda: UAgentsTables())

    @model_validator(mode="after")
    def _holds_per_ip_within_total(self) -> InteropSettings:
        if self.sync_holds_per_ip > self.sync_holds:
            raise problem(f"interop.sync_holds_per_ip = {self.sync_holds_per_ip}: must be at "
                          f"most interop.sync_holds ({self.sync_holds})")
        return self

    @property
    def peers(self) -> Mapping[str, str]:
        """``agent1...`` address -> its submit URL (``[interop.uagents.peers]``)."""
        return self.uagents.peers

    @property
    def schemas(self) -> Mapping[str, str]:
        """AAEX message type name -> uAgents digest (``[interop.uagents.schemas]``)."""
        return self.uagents.schemas

    @property
    def enabled(self) -> bool:
        """True when the listener is configured."""
        return self.listen is not None

    def schema_table(self) -> SchemaTable:
        """The configured digests, by message class.

        Raises:
            UsageError: a name is not a message type defined in this process (its module
                is not imported), or a digest is malformed.
        """
        table = SchemaTable()
        for name, digest in self.schemas.items():
            cls = message_class(name)
            if cls is None:
                raise UsageError(f"interop.uagents.schemas: no message type {name!r} is "
                                 "defined; name one that a hosted agent's module defines")
            table.add(cls, digest)
        return table


@dataclass
class Interop:
    """A running interop listener."""

    url: str
    """Its base URL (A2A cards advertise `public_url` when set)."""
    gateway: UAgentsGateway
    a2a: A2AService
    metrics: InteropMetrics
    bindings: dict[str, AddressBinding]
    """Each hosted agent's signed aaex1 <-> agent1 binding, by AAEX address."""

    def status(self) -> dict[str, Any]:
        """What the node's status shows: endpoints and each agent's uAgents address."""
        return {"listen": self.url, "submit": self.url + SUBMIT_PATH,
                "a2a_card": self.a2a.base_url + CARD_PATH,
                "agents": {address: {"uagents": binding.uagents,
                                     "a2a": f"{self.a2a.base_url}/a2a/{address}"}
                           for address, binding in self.bindings.items()}}


def interop_status(runtime: Runtime, interop: Interop | None) -> dict[str, Any]:
    """The status block: endpoints (None when off) and every agent's ``agent1...`` address.

    Every agent has a uAgents address, derived from its key, whether or not it is served.
    """
    if interop is not None:
        return interop.status()
    return {"listen": None, "submit": None, "a2a_card": None,
            "agents": {a.address: {"uagents": UAgentsKey.from_identity(a.identity).address,
                                   "a2a": None} for a in runtime.agents.values()}}


def interop_gateway(settings: InteropSettings, *, policy: EnvelopePolicy,
                    offers: Offers) -> UAgentsGateway:
    """The uAgents gateway `settings` describe, for ``open_runtime(..., gateways=[...])``.

    An agent without a chat handler answers a chat message with what it sells (`offers`).

    Raises:
        UsageError: a schema name is unknown.
    """
    config = UAgentsConfig(peers=settings.peers, schemas=settings.schema_table(),
                           ask_mode=settings.ask_mode, policy=policy,
                           sign_sync_replies=settings.sign_sync_replies,
                           sync_timeout=settings.sync_timeout, sync_holds=settings.sync_holds,
                           sync_holds_per_ip=settings.sync_holds_per_ip)

    def say_what_it_sells(agent: Agent) -> str:
        return describe(agent, offers(agent))

    return UAgentsGateway(config, describe=say_what_it_sells)


@asynccontextmanager
async def open_interop(runtime: Runtime, gateway: UAgentsGateway, settings: InteropSettings, *,
                       offers: Offers) -> AsyncIterator[Interop]:
    """Serve uAgents and A2A for `runtime`'s agents until the block exits.

    `gateway` is the one the runtime was opened with (`interop_gateway`). Returns once
    listening, with the default `ServerLimits` (header and body timeouts, connections in all
    and per IP). Leaving stops the listener (in-flight requests get 2 s); the runtime closes
    the gateway when it stops.

    Raises:
        UsageError: `settings.listen` is not set, or `gateway` is not the runtime's.
        AddressInUse, TransportError: the address cannot be bound.
    """
    if settings.listen is None:
        raise UsageError("open_interop needs interop.listen")
    if gateway not in runtime.gateways:
        raise UsageError("open_interop: open the runtime with this gateway "
                         "(open_runtime(..., gateways=[gateway]))")
    host, port = split_host_port(settings.listen)
    metrics = gateway.metrics
    bindings = {a.address: AddressBinding.create(a.identity, gateway.key_of(a))
                for a in runtime.agents.values()}
    app = web.Application(client_max_size=gateway.config.policy.max_frame_bytes + 1)
    add_uagents_routes(app, gateway)
    a2a = A2AService(runtime, base_url=settings.public_url or "", offers=offers,
                     metrics=metrics, bindings=bindings)
    a2a.add_routes(app)
    async with open_http_listener(app, host, port, name="interop") as listener:
        url = f"http://{host}:{listener.port}"
        a2a.base_url = (settings.public_url or url).rstrip("/")  # known once bound
        logger.info("interop at %s: uAgents %s, A2A card %s", url, url + SUBMIT_PATH,
                    a2a.base_url + CARD_PATH)
        yield Interop(url, gateway, a2a, metrics, bindings)
