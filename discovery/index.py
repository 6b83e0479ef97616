"""The capability index: signed service ads held by the nodes closest to a shard key.

Why not libp2p provider records: py-libp2p keeps at most 20 providers per key per node
(first come, first served), never withdraws them, keeps them 48 h, and its `find_providers`
cannot dial the closer peers it learns. A popular capability (thousands of appliances
selling `llm.chat`) cannot live there. Instead, each capability is split into shards; the
Kademlia walk (FIND_NODE) finds the nodes closest to a shard's key, and those nodes hold the
full signed ads in this store, verified on arrival and again by every reader. Ads expire
from their own signed expiry, are replaced by a higher sequence number, and are withdrawn by
a signed tombstone.

Anyone can publish: an identity is a fresh key pair, so an index node must hold up against a
flood of valid, signed ads from keys it has never seen. The rules (each one refuses with a
typed `RecordRejected` naming the reason, and nothing refused is stored):

- Lifetime: an ad signed to expire more than `IndexLimits.max_lifetime` from now is refused
  (`RecordLifetimeTooLong`). Honest ads live twice their advertiser's refresh period.
- Shard: an ad is only held under the shard its advertiser maps to (`shard_of`), so a
  captured copy cannot be parked on another shard, where no tombstone would ever meet it
  (`WrongShard`).
- Order: of two records for one (capability, advertiser), the higher `seq` wins, and at an
  equal `seq` a tombstone wins (`StaleRecord`). A tombstone is kept until every ad it
  withdrew could have expired, so a replayed older copy meets it and is refused.
- Room: bounded per shard, per advertiser and in total (`IndexFull`, `AdvertiserLimit`); a
  full index refuses newcomers and never evicts a held ad that is still valid (see
  `AdIndex`).
"""

from __future__ import annotations

import heapq
import itertools
from collections import Counter
from dataclasses import dataclass

from aaex_agents.errors import UsageError

from .errors import (
    AdvertiserLimit,
    IndexFull,
    RecordLifetimeTooLong,
    RecordRejected,
    StaleRecord,
    WrongShard,
)
from .records import ServiceAd, shard_of

MAX_REFRESH_PERIOD = 900.0
"""The longest refresh period an advertiser may use (s); its ads live twice that."""
CLOCK_SKEW = 60.0
"""How far an advertiser's clock may run ahead of an index node's (s)."""


@dataclass(frozen=True, kw_only=True)
class IndexLimits:
    """How much one index node holds, and for how long. Every network node should agree.

    Attributes:
        max_lifetime: seconds from now an ad may be signed to live; later expiries are
            refused. Default 1,860 s: twice the longest refresh period (`MAX_REFRESH_PERIOD`,
            900 s) plus `CLOCK_SKEW` (60 s). It also bounds how long a tombstone is kept.
        max_per_shard: ads and tombstones held per (capability, shard); default 5,000, so one
            crowded capability cannot take the whole budget (a lookup reads at most 1,000 per
            shard and node anyway).
        max_per_advertiser: ads and tombstones held for one agent address, over all its
            capabilities; default 64, so one key cannot fill a node with capability names.
        max_total: ads and tombstones held by the node over every capability and shard;
            default 20,000: about 70 MB, at the ~3.5 kB a held ad with four attributes
            takes (measured with tracemalloc, wire form included). A network of 3,000
            appliances with ten capabilities each puts ~40 ads on an average index node.
    """

    max_lifetime: float = 2 * MAX_REFRESH_PERIOD + CLOCK_SKEW
    max_per_shard: int = 5_000
    max_per_advertiser: int = 64
    max_total: int = 20_000

    def __post_init__(self) -> None:
        if not self.max_lifetime > 0:
            raise UsageError("IndexLimits.max_lifetime must be positive seconds")
        for name in ("max_per_shard", "max_per_advertiser", "max_total"):
            if getattr(self, name) < 1:
                raise UsageError(f"IndexLimits.{name} must be at least 1")


@dataclass
class _Held:
    ad: ServiceAd
    wire: bytes
    retain_until: float
    """When the entry leaves: the ad's expiry, or later for a tombstone."""
    token: int
    """Identifies this entry in the expiry heap (older heap items for the key are stale)."""


def _supersedes(new: ServiceAd, old: ServiceAd) -> bool:
    """True when `new` replaces `old`: a higher seq, or a tombstone at the same seq."""
    return new.seq > old.seq or (new.seq == old.seq and new.withdrawn and not old.withdrawn)


class AdIndex:
    """Ads held by one node, per (capability, shard), bounded in memory.

    Why a full index refuses newcomers instead of evicting: identities are free and
    `shard_of` is public, so a flooder can mint keys that land in any shard within a few
    tries, and sign whatever expiry, price or sequence number it likes. Every eviction rule
    that looks at the ads themselves can therefore be won by the flooder: "drop the ad that
    expires soonest" let 200 keys with ten-year ads push out an honest one; "drop the oldest"
    would let any fresh flood push out every incumbent; random eviction lets a flood of k
    times the capacity push out an honest ad with a probability that tends to 1. What a
    flooder cannot forge is having been held here already. So held ads keep their place as
    long as they stay valid (a refresh, with a higher `seq`, replaces the ad in place and needs
    no room), expired ones leave first (purged before every decision), and a newcomer that
    does not fit is refused with `IndexFull`. Room comes back as abandoned ads expire, within
    `max_lifetime`; to keep honest newcomers out, a flooder has to keep re-signing and
    re-sending every slot it holds, on every replica, every lifetime.

    The per-advertiser quota stops one key from filling the node through many capability
    names, the per-shard bound stops one capability from taking the whole budget, and the
    total bound caps the node's memory whatever the mix.

    Args:
        shards: index shards per capability, as in `DiscoveryConfig.shards`; an ad is only
            held under `shard_of(address, shards)`.
        limits: the bounds (default `IndexLimits()`).
    """

    def __init__(self, shards: int = 4, limits: IndexLimits | None = None) -> None:
        if shards < 1:
            raise UsageError("AdIndex shards must be at least 1")
        self._shard_count = shards
        self.limits = limits or IndexLimits()
        self._shards: dict[tuple[str, int], dict[str, _Held]] = {}
        self._per_advertiser: Counter[str] = Counter()
        self._total = 0
        self._expiry: list[tuple[float, int, str, int, str]] = []
        self._tokens = itertools.count()

    def put(self, wire: bytes, shard: int, *, now: float) -> ServiceAd:
        """Verify and store an ad (or a tombstone) for `shard`.

        Raises:
            RecordRejected: forged, malformed, expired, signed to live too long, offered
                for another shard, not newer than what is held (`StaleRecord`), or with no
                room left (`IndexFull`, `AdvertiserLimit`). The index is unchanged.
        """
        ad = ServiceAd.verify(wire, now=now)
        if ad.expires_at - now > self.limits.max_lifetime:
            raise RecordLifetimeTooLong(
                f"ad of {ad.address} for {ad.capability} expires in "
                f"{ad.expires_at - now:.0f} s; index nodes accept at most "
                f"{self.limits.max_lifetime:.0f} s (refresh more often instead)")
        expected = shard_of(ad.address, self._shard_count)
        if shard != expected:
            raise WrongShard(f"ad of {ad.address} for {ad.capability} offered for shard "
                             f"{shard}; its advertiser maps to shard {expected} of "
                             f"{self._shard_count}")
        self._purge(now)
        key = (ad.capability, shard)
        current = self._shards.get(key, {}).get(ad.address)
        if current is not None:
            if current.wire == wire:
                return ad  # the same ad again: idempotent
            if not _supersedes(ad, current.ad):
                held_kind = "tombstone" if current.ad.withdrawn else "ad"
                raise StaleRecord(f"ad of {ad.address} for {ad.capability}: seq {ad.seq} does "
                                  f"not supersede the held {held_kind} with seq "
                                  f"{current.ad.seq}")
            self._store(key, ad, wire, self._retention(ad, current, now))
            return ad
        self._check_room(ad, key)
        self._store(key, ad, wire, self._retention(ad, None, now))
        self._per_advertiser[ad.address] += 1
        self._total += 1
        return ad

    def get(self, capability: str, shard: int, *, now: float, limit: int = 1000) -> list[bytes]:
        """Wire forms of one shard's live ads and live tombstones (at most `limit`).

        Tombstones are served so that a reader merging several index nodes by highest `seq`
        also hides a withdrawn ad that a node which missed the withdrawal still holds. A
        tombstone kept past its own signed expiry (see `put`) is not served: readers would
        refuse it as expired.
        """
        self._purge(now)
        held = self._shards.get((capability, shard), {})
        return [h.wire for h in held.values() if h.ad.expires_at >= now][:limit]

    def __len__(self) -> int:
        """Ads and tombstones held (expired ones leave at the next `put` or `get`)."""
        return self._total

    def __repr__(self) -> str:
        return (f"<AdIndex held={self._total}/{self.limits.max_total} "
                f"shards_in_use={len(self._shards)} advertisers={len(self._per_advertiser)}>")

    # -- internals ----------------------------------------------------------------------
    def _retention(self, ad: ServiceAd, current: _Held | None, now: float) -> float:
        """How long to remember `ad`: its expiry, and for a tombstone until older copies die.

        Every older ad of this key was signed before the tombstone, by an advertiser whose
        ads live at most `max_lifetime` (clock skew included), so all have expired by
        ``now + max_lifetime``; until then a replayed copy meets the tombstone and is refused.
        An ad that replaces a tombstone inherits its retention, for the same reason (it is
        not served past its own expiry).
        """
        kept = max(ad.expires_at, now + self.limits.max_lifetime) if ad.withdrawn \
            else ad.expires_at
        return max(kept, current.retain_until) if current is not None else kept

    def _check_room(self, ad: ServiceAd, key: tuple[str, int]) -> None:
        limits = self.limits
        if self._per_advertiser[ad.address] >= limits.max_per_advertiser:
            raise AdvertiserLimit(f"{ad.address} already holds {limits.max_per_advertiser} "
                                  f"ads on this node; its {ad.capability} ad is refused")
        if len(self._shards.get(key, {})) >= limits.max_per_shard:
            raise IndexFull(f"shard {key[1]} of {ad.capability} is full "
                            f"({limits.max_per_shard} ads); the ad of {ad.address} is refused")
        if self._total >= limits.max_total:
            raise IndexFull(f"this index node is full ({limits.max_total} ads); the "
                            f"{ad.capability} ad of {ad.address} is refused")

    def _store(self, key: tuple[str, int], ad: ServiceAd, wire: bytes,
               retain_until: float) -> None:
        token = next(self._tokens)
        self._shards.setdefault(key, {})[ad.address] = _Held(ad, wire, retain_until, token)
        heapq.heappush(self._expiry, (retain_until, token, key[0], key[1], ad.address))
        # Each replacement leaves a stale heap item behind until its time comes; a seller
        # re-signing in a tight loop must not grow the heap without bound: rebuild it.
        if len(self._expiry) > 2 * self._total + 1024:
            self._expiry = [(h.retain_until, h.token, capability, shard, address)
                            for (capability, shard), held in self._shards.items()
                            for address, h in held.items()]
            heapq.heapify(self._expiry)

    def _purge(self, now: float) -> None:
        """Drop every entry whose retention has passed (amortised O(log n) each)."""
        while self._expiry and self._expiry[0][0] < now:
            _, token, capability, shard, address = heapq.heappop(self._expiry)
            held = self._shards.get((capability, shard))
            entry = held.get(address) if held is not None else None
            if held is None or entry is None or entry.token != token:
                continue  # replaced since: a stale heap item
            del held[address]
            if not held:
                del self._shards[(capability, shard)]
            self._total -= 1
            self._per_advertiser[address] -= 1
            if self._per_advertiser[address] <= 0:
                del self._per_advertiser[address]


__all__ = ["CLOCK_SKEW", "MAX_REFRESH_PERIOD", "AdIndex", "IndexLimits", "RecordRejected"]
