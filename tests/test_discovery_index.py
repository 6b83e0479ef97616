"""The capability index of one node, offline: ordering, lifetime cap, shards, bounds, tombstones.

Each flood test replays a finding of a hostile review against the index itself: ten-year ads
from fresh keys, thousands of capability names, captured ads parked on other shards.
"""

from __future__ import annotations

import pytest

from aaex_agents import Identity, UsageError
from discovery.errors import (
    AdvertiserLimit,
    IndexFull,
    RecordExpired,
    RecordLifetimeTooLong,
    StaleRecord,
    WrongShard,
)
from discovery.index import AdIndex, IndexLimits
from discovery.records import PriceModel, ServiceAd, SlaOffer, shard_of
from tests.market_kit import cr

NOW = 1_800_000_000.0
SELLER = Identity(b"\x01" * 32)
OTHER = Identity(b"\x02" * 32)
CAPABILITY = "forecast.demand"
TEN_YEARS = 10 * 365 * 24 * 3600.0


def ad(identity: Identity = SELLER, *, seq: int = 1, ttl: float = 600, price: float = 2.0,
       withdrawn: bool = False, capability: str = CAPABILITY, now: float = NOW) -> bytes:
    return ServiceAd(address=identity.address, seq=seq, expires_at=now + ttl,
                     capability=capability, price=PriceModel(amount=cr(price)),
                     sla=SlaOffer(p50_ms=50, p95_ms=100, deadline_s=60, availability=0.99),
                     withdrawn=withdrawn).sign(identity)


def live(index: AdIndex, *, now: float = NOW, capability: str = CAPABILITY,
         shards: int = 1) -> dict[str, int]:
    """What a reader sees: the highest seq per address over every shard, tombstones hidden."""
    best: dict[str, ServiceAd] = {}
    for shard in range(shards):
        for wire in index.get(capability, shard, now=now):
            found = ServiceAd.verify(wire, now=now)
            if found.address not in best or found.seq > best[found.address].seq:
                best[found.address] = found
    return {a: found.seq for a, found in best.items() if not found.withdrawn}


def put(index: AdIndex, wire: bytes, *, now: float = NOW, shards: int = 1) -> ServiceAd:
    """Store under the shard the ad's advertiser maps to."""
    address = ServiceAd.verify(wire, now=now).address
    return index.put(wire, shard_of(address, shards), now=now)


def test_the_newest_seq_wins_and_the_same_ad_again_is_idempotent() -> None:
    index = AdIndex(shards=1)
    put(index, ad(seq=2))
    put(index, ad(seq=2))
    with pytest.raises(StaleRecord):
        put(index, ad(seq=1, price=0.1))
    assert live(index) == {SELLER.address: 2}
    put(index, ad(seq=3))
    assert live(index) == {SELLER.address: 3} and len(index) == 1
    put(index, ad(OTHER, ttl=5))
    assert live(index) == {SELLER.address: 3, OTHER.address: 1}
    assert live(index, now=NOW + 10) == {SELLER.address: 3}  # expired and dropped
    assert len(index) == 1


# -- lifetime cap --------------------------------------------------------------------------
def test_an_ad_signed_to_live_beyond_the_cap_is_refused_and_never_stored() -> None:
    limits = IndexLimits()
    assert limits.max_lifetime == 2 * 900 + 60  # twice the longest refresh period + skew
    index = AdIndex(shards=1)
    with pytest.raises(RecordLifetimeTooLong, match="at most 1860 s") as refused:
        put(index, ad(ttl=TEN_YEARS))
    assert refused.value.reason == "lifetime_too_long"
    with pytest.raises(RecordLifetimeTooLong):
        put(index, ad(ttl=limits.max_lifetime + 1))
    assert len(index) == 0 and live(index) == {}
    put(index, ad(ttl=limits.max_lifetime))  # exactly at the cap is fine
    assert live(index) == {SELLER.address: 1}


def test_limits_refuse_nonsense() -> None:
    with pytest.raises(UsageError, match="max_total"):
        IndexLimits(max_total=0)
    with pytest.raises(UsageError, match="max_lifetime"):
        IndexLimits(max_lifetime=-1)


# -- eviction ------------------------------------------------------------------------------
def test_a_flood_of_fresh_keys_never_pushes_out_a_held_ad() -> None:
    index = AdIndex(shards=1, limits=IndexLimits(max_per_shard=5))
    put(index, ad(SELLER, ttl=600))
    outcomes = []
    for _ in range(200):  # fresh keys, each ad living as long as the cap allows
        flooder = Identity.generate()
        try:
            put(index, ad(flooder, ttl=index.limits.max_lifetime))
            outcomes.append("ok")
        except IndexFull as exc:
            outcomes.append(exc.reason)
    assert SELLER.address in live(index), "the honest ad was pushed out"
    assert outcomes.count("ok") == 4 and outcomes.count("index_full") == 196
    assert len(index) == 5
    # a refresh replaces the held ad in place: it needs no room, even in a full shard
    put(index, ad(SELLER, seq=2, ttl=600, now=NOW + 300), now=NOW + 300)
    assert live(index, now=NOW + 300)[SELLER.address] == 2


def test_room_comes_back_as_held_ads_expire() -> None:
    index = AdIndex(shards=1, limits=IndexLimits(max_per_shard=2))
    put(index, ad(SELLER, ttl=60))
    put(index, ad(OTHER, ttl=600))
    newcomer = Identity.generate()
    with pytest.raises(IndexFull):
        put(index, ad(newcomer))
    later = NOW + 61  # the seller stopped refreshing: its ad expired
    put(index, ad(newcomer, now=later), now=later)
    assert set(live(index, now=later)) == {OTHER.address, newcomer.address}


# -- total and per-advertiser bounds -------------------------------------------------------
def test_one_key_with_thousands_of_capability_names_holds_its_quota_only() -> None:
    index = AdIndex(shards=1)
    refused = 0
    for i in range(2000):
        try:
            put(index, ad(SELLER, capability=f"flood.cap_{i}"))
        except AdvertiserLimit as exc:
            assert exc.reason == "advertiser_limit"
            refused += 1
    assert len(index) == IndexLimits().max_per_advertiser == 64
    assert refused == 2000 - 64
    put(index, ad(OTHER))  # another advertiser is not affected
    assert len(index) == 65


def test_the_total_over_every_capability_and_shard_is_bounded() -> None:
    limits = IndexLimits(max_total=100, max_per_shard=1000)
    index = AdIndex(shards=4, limits=limits)
    refused = 0
    for i in range(300):  # many keys, many capability names, every shard
        flooder = Identity.generate()
        try:
            put(index, ad(flooder, capability=f"flood.cap_{i % 150}"), shards=4)
        except IndexFull as exc:
            assert exc.reason == "index_full" and "full (100 ads)" in str(exc)
            refused += 1
    assert len(index) == 100 and refused == 200
    assert "held=100/100" in repr(index)


# -- shard membership ----------------------------------------------------------------------
def test_an_ad_is_held_only_under_its_advertisers_shard() -> None:
    index = AdIndex(shards=4)
    right = shard_of(SELLER.address, 4)
    for wrong in (s for s in range(4) if s != right):
        with pytest.raises(WrongShard, match=f"maps to shard {right} of 4") as refused:
            index.put(ad(seq=1), wrong, now=NOW)
        assert refused.value.reason == "wrong_shard"
    assert len(index) == 0
    index.put(ad(seq=1), right, now=NOW)
    assert live(index, shards=4) == {SELLER.address: 1}


def test_a_captured_ad_parked_on_another_shard_cannot_outlive_its_tombstone() -> None:
    index = AdIndex(shards=4)
    right = shard_of(SELLER.address, 4)
    captured = ad(seq=1)
    index.put(captured, right, now=NOW)
    index.put(ad(seq=2, withdrawn=True), right, now=NOW + 1)
    for shard in range(4):  # the attacker tries every shard
        with pytest.raises((StaleRecord, WrongShard)):
            index.put(captured, shard, now=NOW + 2)
    assert live(index, now=NOW + 2, shards=4) == {}


# -- tombstones ----------------------------------------------------------------------------
def test_a_tombstone_beats_older_and_equal_seqs_and_is_served_to_readers() -> None:
    index = AdIndex(shards=1)
    put(index, ad(seq=5))
    put(index, ad(seq=5, withdrawn=True))  # at an equal seq the tombstone wins
    assert live(index) == {}
    with pytest.raises(StaleRecord, match="held tombstone"):
        put(index, ad(seq=5, price=1.0))  # a live ad at the tombstone's seq
    with pytest.raises(StaleRecord):
        put(index, ad(seq=4))
    # served, so a reader that also reached a node which missed the withdrawal hides it
    served = [ServiceAd.verify(w, now=NOW) for w in index.get(CAPABILITY, 0, now=NOW)]
    assert [(s.seq, s.withdrawn) for s in served] == [(5, True)]
    put(index, ad(seq=6))  # the seller may advertise again, with a newer seq
    assert live(index) == {SELLER.address: 6}


def test_a_tombstone_outlives_its_own_expiry_until_every_older_copy_is_void() -> None:
    limits = IndexLimits()
    index = AdIndex(shards=1)
    captured = ad(seq=1, ttl=1800)  # signed before the withdrawal, still valid for 30 min
    put(index, captured)
    put(index, ad(seq=2, ttl=60, withdrawn=True))  # a tombstone that lives one minute
    later = NOW + 120  # the tombstone's own expiry has passed; the captured ad's has not
    with pytest.raises(RecordExpired):
        ServiceAd.verify(ad(seq=2, ttl=60, withdrawn=True), now=later)
    with pytest.raises(StaleRecord):
        put(index, captured, now=later)
    assert live(index, now=later) == {}
    assert index.get(CAPABILITY, 0, now=later) == []  # an expired tombstone is not served
    assert len(index) == 1
    gone = NOW + limits.max_lifetime + 1  # every older copy has expired: it can go
    assert index.get(CAPABILITY, 0, now=gone) == [] and len(index) == 0


def test_a_tombstone_that_arrives_first_still_refuses_the_older_ad() -> None:
    index = AdIndex(shards=1)
    put(index, ad(seq=2, withdrawn=True))
    with pytest.raises(StaleRecord):
        put(index, ad(seq=1))
    assert live(index) == {}
