"""The capability index: signed service ads held by the nodes closest to a shard key.

Why not libp2p provider records: py-libp2p keeps at most 20 providers per key per node
(first come, first served), never withdraws them, keeps them 48 h, and its `find_providers`
cannot dial the closer peers it learns. A popular capability (thousands of appliances
selling `llm.chat`) cannot live there. Instead, each capability is split into shards; the
Kademlia walk (FIND_NODE) finds the nodes closest to a shard's key, and those nodes hold the
full signed ads in this store, verified on arrival and again by every reader. Ads expire
from their own signed expiry, are replaced by a higher sequence number, and are withdrawn by
a signed tombstone.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import RecordRejected, StaleRecord
from .records import ServiceAd


@dataclass
class _Held:
    ad: ServiceAd
    wire: bytes


class AdIndex:
    """Ads held by one node, per (capability, shard), bounded in memory.

    Args:
        max_per_shard: ads kept per capability shard; when full, the ad expiring soonest
            is dropped for a new one (a flood of sellers cannot grow memory without bound).
    """

    def __init__(self, max_per_shard: int = 10_000) -> None:
        self._max = max_per_shard
        self._shards: dict[tuple[str, int], dict[str, _Held]] = {}

    def put(self, wire: bytes, shard: int, *, now: float) -> ServiceAd:
        """Verify and store an ad (or a tombstone) for `shard`.

        Raises:
            RecordRejected: forged, malformed, expired, or older than what is held.
        """
        ad = ServiceAd.verify(wire, now=now)
        held = self._shards.setdefault((ad.capability, shard), {})
        current = held.get(ad.address)
        if current is not None and current.ad.expires_at >= now and current.ad.seq >= ad.seq:
            if current.ad.seq == ad.seq and current.wire == wire:
                return ad  # the same ad again: idempotent
            raise StaleRecord(f"ad of {ad.address} for {ad.capability}: seq {ad.seq} is not "
                              f"newer than the held seq {current.ad.seq}")
        held[ad.address] = _Held(ad, wire)
        if len(held) > self._max:
            self._evict(held, now)
        return ad

    def get(self, capability: str, shard: int, *, now: float, limit: int = 1000) -> list[bytes]:
        """Wire forms of the live, not withdrawn ads of one shard (at most `limit`)."""
        held = self._shards.get((capability, shard), {})
        for address in [a for a, h in held.items() if h.ad.expires_at < now]:
            del held[address]
        return [h.wire for h in held.values() if not h.ad.withdrawn][:limit]

    def __len__(self) -> int:
        return sum(len(h) for h in self._shards.values())

    @staticmethod
    def _evict(held: dict[str, _Held], now: float) -> None:
        expired = [a for a, h in held.items() if h.ad.expires_at < now]
        victims = expired or [min(held, key=lambda a: held[a].ad.expires_at)]
        for address in victims:
            del held[address]


__all__ = ["AdIndex", "RecordRejected"]
