"""Keeping an agent advertised.

Publish its record and ads, refresh them on a timer, and withdraw them on a clean shutdown.

Ads live `2 x refresh_period`: one missed refresh is survived, and a node killed without
withdrawing disappears from every lookup within two periods. Index nodes refuse ads signed
to live longer than their `IndexLimits.max_lifetime` (by default a refresh period of at most
15 minutes, plus clock skew), so a longer period is refused here, at construction. Sequence
numbers are the publication time in milliseconds, so they grow across restarts without
stored state.
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


@dataclass(frozen=True, kw_only=True)
class Offer:
    """What an agent sells; the advertiser turns it into signed, expiring ads."""

    capability: str
    price: PriceModel
    sla: SlaOffer
    attributes: dict[str, Any] = field(default_factory=dict)
    access: AccessPolicy = field(default_factory=AccessPolicy)
    capability_version: int = 1


class Advertiser:
    """Publishes one agent's record and offers. Use `open_advertiser`."""

    def __init__(self, discovery: Discovery, identity: Identity, offers: Sequence[Offer], *,
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

    @property
    def address(self) -> str:
        """The advertised agent's address."""
        return self._identity.address

    def _next_seq(self) -> int:
        self._last_seq = max(self._last_seq + 1, self._clock.now_ms())
        return self._last_seq

    def _ad(self, offer: Offer, *, withdrawn: bool = False) -> bytes:
        now = self._clock.now()
        ad = ServiceAd(address=self._identity.address, seq=self._next_seq(),
                       expires_at=now + 2 * self._period, capability=offer.capability,
                       capability_version=offer.capability_version, price=offer.price,
                       sla=offer.sla, attributes=offer.attributes, access=offer.access,
                       withdrawn=withdrawn)
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
            proof=ProofOfRepresentation.create(self._identity, node.peer_id, expires))
        await self._discovery.publish_record(record.sign(self._identity))
        for offer in self._offers:
            acks = await self._discovery.publish_ad(self._ad(offer))
            self.acknowledgements[offer.capability] = acks
            if acks == 0:
                logger.warning("%s: no index node stored the %s ad; retrying next refresh",
                               self._identity.address, offer.capability)
        self.published += 1

    async def withdraw(self) -> None:
        """Replace every ad with a signed tombstone."""
        for offer in self._offers:
            await self._discovery.publish_ad(self._ad(offer, withdrawn=True))

    async def serve_refresh(self) -> None:
        """Re-publish every `refresh_period` seconds; never returns (cancel it)."""
        while True:
            await self._clock.sleep(self._period)
            try:
                await self.publish()
            except (TransportError, TimeoutError) as exc:
                logger.warning("%s: refresh failed (%s); the ads live until the next one",
                               self._identity.address, exc)


@asynccontextmanager
async def open_advertiser(discovery: Discovery, identity: Identity, offers: Sequence[Offer], *,
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
