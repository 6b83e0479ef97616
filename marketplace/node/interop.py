"""The node's interop listener: uAgents envelopes and A2A, on a port of their own.

    [interop]
    listen = "127.0.0.1:8702"        # absent: interop is off
    public_url = "http://appliance.lan:8702"   # optional: the base A2A cards advertise
    ask_mode = "sync"                # how ctx.ask reaches uAgents: "sync" or "async"
    sign_sync_replies = true         # false: answer sync requests unsigned, as uAgents does

    [interop.uagents.peers]          # where uAgents agents are (no Almanac)
    "agent1q..." = "http://127.0.0.1:8000/submit"

    [interop.uagents.schemas]        # AAEX type name = uAgents schema digest (uagents-core's)
    "demo.ping/1" = "model:64d85c39..."

It serves ``POST /submit`` and ``HEAD /submit`` for uAgents (`aaex_agents.interop`) and the
A2A routes (`a2a`); it is not the admin API. Every hosted agent answers at its ``agent1...``
address, derived from its own key. Its counters are `Interop.metrics` (`samples()` for
Prometheus).

Only the parser reads the TOML table; the rest takes `InteropSettings`. Nothing here imports
libp2p, so reading a configuration stays fast.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from aaex_agents import Agent
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
    open_uagents_gateway,
)
from aaex_agents.interop.gateway import AskMode, check_ask_mode, check_peers
from aaex_agents.model import message_class
from aaex_agents.runtime import Runtime
from aaex_agents.transport.listener import open_http_listener

from .a2a import CARD_PATH, A2AService, Offers, describe

logger = logging.getLogger(__name__)

_KEYS = {"listen", "public_url", "ask_mode", "sign_sync_replies", "uagents"}
_UAGENTS_KEYS = {"peers", "schemas"}


@dataclass(frozen=True, kw_only=True)
class InteropSettings:
    """The ``[interop]`` section.

    Attributes:
        listen: host:port of the interop listener; None (the default) turns interop off.
        public_url: base URL the A2A cards advertise; None: ``http://`` + the bound address.
        ask_mode: how `ctx.ask` reaches uAgents agents: "sync" (the reply in the HTTP
            response, the default) or "async" (the reply POSTed to our ``/submit``).
        peers: ``agent1...`` address -> its submit URL, for replies and for sending.
        schemas: AAEX message type name -> uAgents schema digest, beyond the chat protocol.
        sign_sync_replies: sign the reply to a uAgents sync request (default True); see
            `UAgentsConfig.sign_sync_replies` for the cost to a uAgents sender.
    """

    listen: str | None = None
    public_url: str | None = None
    ask_mode: AskMode = "sync"
    peers: Mapping[str, str] = field(default_factory=dict)
    schemas: Mapping[str, str] = field(default_factory=dict)
    sign_sync_replies: bool = True

    def __post_init__(self) -> None:
        if self.listen is not None and _host_port(self.listen) is None:
            raise UsageError(f"interop.listen = {self.listen!r}: write host:port, e.g. "
                             "\"127.0.0.1:8702\"")
        if self.public_url is not None and not self.public_url.startswith(
                ("http://", "https://")):
            raise UsageError(f"interop.public_url = {self.public_url!r}: write an http(s) URL")
        check_ask_mode(self.ask_mode, "interop.ask_mode")
        check_peers(self.peers, "interop.uagents.peers")
        for name, digest in self.schemas.items():
            if not isinstance(digest, str) or not digest.startswith("model:") or len(digest) != 70:
                raise UsageError(f"interop.uagents.schemas.\"{name}\" = {digest!r}: write the "
                                 "uAgents schema digest, \"model:\" and 64 hex digits")

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


def parse_interop(table: Mapping[str, Any]) -> InteropSettings:
    """Build `InteropSettings` from the ``[interop]`` table (every field optional).

    Raises:
        UsageError: an unknown field or a bad value; the message names ``interop.<field>``.
    """
    bad = set(table) - _KEYS
    if bad:
        raise UsageError(f"interop: unknown field(s) {sorted(bad)}; known: {sorted(_KEYS)}")
    uagents = table.get("uagents", {})
    if not isinstance(uagents, dict):
        raise UsageError("interop.uagents must be a table")
    bad = set(uagents) - _UAGENTS_KEYS
    if bad:
        raise UsageError(f"interop.uagents: unknown field(s) {sorted(bad)}; known: "
                         f"{sorted(_UAGENTS_KEYS)}")
    for key in ("listen", "public_url", "ask_mode"):
        if key in table and not isinstance(table[key], str):
            raise UsageError(f"interop.{key} = {table[key]!r}: write a string")
    sign = table.get("sign_sync_replies", True)
    if not isinstance(sign, bool):
        raise UsageError(f"interop.sign_sync_replies = {sign!r}: write true or false")
    peers, schemas = uagents.get("peers", {}), uagents.get("schemas", {})
    for name, value in (("peers", peers), ("schemas", schemas)):
        if not isinstance(value, dict):
            raise UsageError(f"interop.uagents.{name} must be a table of strings")
    return InteropSettings(listen=table.get("listen"), public_url=table.get("public_url"),
                           ask_mode=table.get("ask_mode", "sync"), peers=dict(peers),
                           schemas=dict(schemas), sign_sync_replies=sign)


def _host_port(value: str) -> tuple[str, int] | None:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        return None
    return host, int(port)


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


@asynccontextmanager
async def open_interop(runtime: Runtime, settings: InteropSettings, *,
                       offers: Offers) -> AsyncIterator[Interop]:
    """Serve uAgents and A2A for `runtime`'s agents until the block exits.

    Returns once listening, with the default `ServerLimits` (header and body timeouts,
    connections in all and per IP). Leaving stops the listener (in-flight requests get 2 s),
    then the gateway (answers still being sent are cancelled).

    Raises:
        UsageError: `settings.listen` is not set, or a schema name is unknown.
        AddressInUse, TransportError: the address cannot be bound.
    """
    if settings.listen is None:
        raise UsageError("open_interop needs interop.listen")
    host, port = _host_port(settings.listen) or ("127.0.0.1", 0)
    metrics = InteropMetrics()
    config = UAgentsConfig(peers=settings.peers, schemas=settings.schema_table(),
                           ask_mode=settings.ask_mode, policy=runtime.config.policy,
                           sign_sync_replies=settings.sign_sync_replies)

    def say_what_it_sells(agent: Agent) -> str:
        return describe(agent, offers(agent))

    async with open_uagents_gateway(runtime, config, metrics=metrics,
                                    describe=say_what_it_sells) as gateway:
        bindings = {a.address: AddressBinding.create(a.identity, gateway.key_of(a))
                    for a in runtime.agents.values()}
        app = web.Application(client_max_size=config.policy.max_frame_bytes + 1)
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
