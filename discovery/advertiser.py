"""Keeping an agent advertised.

Publish its record and ads, refresh them on a timer, and withdraw them on a clean shutdown.

Ads live `2 x refresh_period`: one missed refresh is survived, and a node killed without
withdrawing disappears from every lookup within two periods.

A publication reaches the index nodes closest to each shard key *among the nodes known then*.
A node that starts with others (an appliance and its neighbours after a power cut, the demo's
four providers) may know only its seed: its ads land on the seed and on itself, nodes joining
a moment later are closer to the key, and lookups, which ask the closest nodes only, miss the
ads until the next refresh, minutes later. So the first publication is repeated after 1 s, 2 s,
4 s ... (`FIRST_RETRY_S`, doubling, at most `refresh_period`) until one is acknowledged by
`DiscoveryConfig.replication` index nodes, the same ones as the publication before (the
neighbourhood of the key has stopped changing); a refresh that fails, or reaches fewer
nodes than `replication` and other ones than the refresh before, starts the same schedule.

Index nodes refuse ads signed to live longer than their `IndexLimits.max_lifetime` (by default
a refresh period of at most 15 minutes, plus clock skew), so a longer period is refused here,
at construction. Sequence numbers are the publication time in milliseconds, so they grow
across restarts without stored state.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aaex_agents.clock import Clock, SystemClock
from aaex_agents.errors import TransportError, UsageError
from aaex_agents.identity import Identity
from aaex_agents.interop.binding import AddressBinding

from .dht import Discovery
from .index import CLOCK_SKEW
from .records import (
    AccessPolicy,
    AgentRecord,
    PriceModel,
    ProofOfRepresentation,
    ServiceAd,
    SlaOffer,
)

logger = logging.getLogger(__name__)

FIRST_RETRY_S = 1.0
"""Seconds from a publication that has not settled to its first repetition (then doubling)."""


@dataclass(frozen=True, kw_only=True)
class Listing:
    """What an agent sells; the advertiser turns it into signed, expiring ads."""

    capability: str
    price: PriceModel
    sla: SlaOffer
    attributes: dict[str, Any] = field(default_factory=dict)
    access: AccessPolicy = field(default_factory=AccessPolicy)
    capability_version: int = 1
    task_schema: dict[str, Any] | None = None
    """The JSON Schema of the task sold (`discovery.schema.compact_schema`); None: unstated."""
    result_schema: dict[str, Any] | None = None


class Advertiser:
    """Publishes one agent's record and offers. Use `open_advertiser`."""

    def __init__(self, discovery: Discovery, identity: Identity, offers: Sequence[Listing], *,
                 refresh_period: float, http_endpoints: Sequence[str] = (),
                 protocols: Sequence[str] = (), clock: Clock | None = None,
                 uagents: AddressBinding | None = None) -> None:
        if refresh_period <= 0:
            raise UsageError("refresh_period must be positive seconds")
        longest = (discovery.config.index.max_lifetime - CLOCK_SKEW) / 2
        if refresh_period > longest:
            raise UsageError(f"refresh_period {refresh_period:g} s would sign ads for "
                             f"{2 * refresh_period:g} s, longer than index nodes accept; use "
                             f"at most {longest:g} s")
        self._discovery = discovery
        self._identity = identity
        self._offers = list(offers)
        self._period = refresh_period
        self._http = list(http_endpoints)
        self._protocols = list(protocols)
        self._uagents = uagents
        self._clock = clock or SystemClock()
        self._last_seq = 0
        self.published = 0
        self.acknowledgements: dict[str, int] = {}
        """Index nodes that acknowledged each capability's ad in the last publication."""
        self.holders: dict[str, frozenset[str]] = {}
        """Their peer ids."""

    @property
    def address(self) -> str:
        """The advertised agent's address."""
        return self._identity.address

    def _next_seq(self) -> int:
        self._last_seq = max(self._last_seq + 1, self._clock.now_ms())
        return self._last_seq

    def _ad(self, offer: Listing, *, withdrawn: bool = False) -> bytes:
        now = self._clock.now()
        ad = ServiceAd(address=self._identity.address, seq=self._next_seq(),
                       expires_at=now + 2 * self._period, capability=offer.capability,
                       capability_version=offer.capability_version, price=offer.price,
                       sla=offer.sla, attributes=offer.attributes, access=offer.access,
                       withdrawn=withdrawn, task_schema=offer.task_schema,
                       result_schema=offer.result_schema)
        return ad.sign(self._identity)

    async def publish(self) -> None:
        """Publish the agent record and every offer once (the timer calls this)."""
        now = self._clock.now()
        expires = now + 2 * self._period
        node = self._discovery.node
        record = AgentRecord(
            address=self._identity.address, seq=self._next_seq(), expires_at=expires,
            peer_id=node.peer_id, peer_addrs=node.addrs, http_endpoints=self._http,
            protocols=self._protocols, uagents=self._uagents,
            encryption_key=self._identity.encryption_public_key.hex(),
            proof=ProofOfRepresentation.create(self._identity, node.peer_id, expires))
        await self._discovery.publish_record(record.sign(self._identity))
        for offer in self._offers:
            holders = await self._discovery.store_ad(self._ad(offer))
            self.holders[offer.capability] = frozenset(holders)
            self.acknowledgements[offer.capability] = len(holders)
            if not holders:
                logger.warning("%s: no index node stored the %s ad; retrying",
                               self._identity.address, offer.capability)
        self.published += 1

    @property
    def complete(self) -> bool:
        """Whether the last publication reached `replication` index nodes with every ad."""
        wanted = self._discovery.config.replication
        return all(self.acknowledgements.get(o.capability, 0) >= wanted for o in self._offers)

    async def withdraw(self) -> None:
        """Replace every ad with a signed tombstone."""
        for offer in self._offers:
            await self._discovery.publish_ad(self._ad(offer, withdrawn=True))

    async def serve_refresh(self) -> None:
        """Re-publish until the ads settle, then every `refresh_period`; never returns.

        Call it after the first `publish` (cancel it to stop). See the module's docstring for
        the schedule.
        """
        backoff: float | None = FIRST_RETRY_S  # None: settled, refreshing every period
        while True:
            await self._clock.sleep(self._period if backoff is None
                                    else min(backoff, self._period))
            before = dict(self.holders)
            try:
                await self.publish()
                failed = False
            except (TransportError, TimeoutError) as exc:
                logger.warning("%s: publishing failed (%s); the ads live until a later one",
                               self._identity.address, exc)
                failed = True
            changed = failed or self.holders != before
            if backoff is None:  # a refresh: only a failed or a shifting, short one retries
                backoff = FIRST_RETRY_S if failed or (changed and not self.complete) else None
            elif self.complete and not changed:
                backoff = None
            else:
                backoff = backoff * 2 if backoff * 2 < self._period else None
            if backoff is not None:
                logger.debug("%s: index nodes holding its ads: %s (want %d%s); again in %g s",
                             self._identity.address, self.acknowledgements,
                             self._discovery.config.replication,
                             ", other nodes than before" if changed else "", backoff)


@asynccontextmanager
async def open_advertiser(discovery: Discovery, identity: Identity, offers: Sequence[Listing], *,
                          refresh_period: float = 300.0, http_endpoints: Sequence[str] = (),
                          protocols: Sequence[str] = (), clock: Clock | None = None,
                          withdraw_timeout: float = 10.0,
                          uagents: AddressBinding | None = None) -> AsyncIterator[Advertiser]:
    """Publish now, keep refreshing while the block runs, withdraw on exit (bounded).

    `uagents` is the agent's signed uAgents address binding, published in its record when
    the node serves uAgents.
    """
    advertiser = Advertiser(discovery, identity, offers, refresh_period=refresh_period,
                            http_endpoints=http_endpoints, protocols=protocols, clock=clock,
                            uagents=uagents)
    await advertiser.publish()
    async with asyncio.TaskGroup() as tasks:
        refresher = tasks.create_task(advertiser.serve_refresh(), name="advertiser.refresh")
        try:
            yield advertiser
        finally:
            refresher.cancel()
            try:
                async with asyncio.timeout(withdraw_timeout):
                    await advertiser.withdraw()
            except (TransportError, TimeoutError) as exc:
                logger.warning("withdrawing the ads of %s failed: %s; they expire by "
                               "themselves", identity.address, exc)
