"""Discovery records, the DHT validator and the query language, offline."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aaex_agents import Identity, UsageError
from aaex_agents.clock import ManualClock
from discovery.dht import AgentRecordValidator
from discovery.errors import (
    BadRecordSignature,
    MalformedRecord,
    RecordExpired,
    RecordKeyMismatch,
)
from discovery.query import And, Compare, Not, Or, Query, Utility, parse_where
from discovery.records import (
    AgentRecord,
    PriceModel,
    ProofOfRepresentation,
    ServiceAd,
    SlaOffer,
    _canonical,
    agent_record_key,
    capability_shard_key,
    shard_of,
)
from tests.market_kit import cr

NOW = 1_800_000_000.0
SELLER = Identity(b"\x01" * 32)
OTHER = Identity(b"\x02" * 32)


def ad(identity: Identity = SELLER, *, seq: int = 1, price: float = 2.0, p95: float = 200,
       attributes: dict | None = None, withdrawn: bool = False,  # type: ignore[type-arg]
       capability: str = "forecast.demand", ttl: float = 60) -> ServiceAd:
    return ServiceAd(address=identity.address, seq=seq, expires_at=NOW + ttl,
                     capability=capability, price=PriceModel(amount=cr(price)),
                     sla=SlaOffer(p50_ms=p95 / 2, p95_ms=p95, deadline_s=60, availability=0.99),
                     attributes=attributes or {}, withdrawn=withdrawn)


def record(identity: Identity = SELLER, *, seq: int = 1, peer: str = "12D3KooWpeer",
           proof_by: Identity | None = None, ttl: float = 60) -> AgentRecord:
    signer = proof_by or identity
    return AgentRecord(address=identity.address, seq=seq, expires_at=NOW + ttl, peer_id=peer,
                       peer_addrs=[f"/ip4/127.0.0.1/tcp/4001/p2p/{peer}"],
                       http_endpoints=["http://127.0.0.1:8000/aaex/v1/envelope"],
                       proof=ProofOfRepresentation.create(signer, peer, NOW + ttl))


def test_signed_ad_round_trips() -> None:
    original = ad(attributes={"region": "eu", "gpu": ["h100"], "tokens_per_s": 41.5})
    assert ServiceAd.verify(original.sign(SELLER), now=NOW) == original


def test_only_the_agent_itself_can_sign_its_ad() -> None:
    with pytest.raises(UsageError, match="cannot be signed"):
        ad().sign(OTHER)


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_any_flipped_bit_is_refused(data: st.DataObject) -> None:
    wire = bytearray(ad().sign(SELLER))
    position = data.draw(st.integers(0, len(wire) * 8 - 1))
    wire[position // 8] ^= 1 << (position % 8)
    with pytest.raises((MalformedRecord, BadRecordSignature, RecordExpired)):
        ServiceAd.verify(bytes(wire), now=NOW)


def test_forged_expired_and_malformed_ads_are_refused() -> None:
    claimed = ad()
    forged = msgpack.packb([claimed.kind, _canonical(claimed), OTHER.sign(claimed.signing_bytes())])
    with pytest.raises(BadRecordSignature):
        ServiceAd.verify(forged, now=NOW)
    with pytest.raises(RecordExpired):
        ServiceAd.verify(ad(ttl=5).sign(SELLER), now=NOW + 6)
    with pytest.raises(MalformedRecord):
        ServiceAd.verify(b"\x00garbage", now=NOW)
    as_record = record().sign(SELLER)
    with pytest.raises(MalformedRecord):  # an agent record is not an ad
        ServiceAd.verify(as_record, now=NOW)
    # the same fields re-encoded non-canonically do not verify either
    kind, body, signature = msgpack.unpackb(ad().sign(SELLER))
    spaced = body.replace(b",", b", ", 1)
    with pytest.raises(MalformedRecord, match="canonical"):
        ServiceAd.verify(msgpack.packb([kind, spaced, signature]), now=NOW)


def test_validator_checks_signature_key_proof_expiry_and_picks_highest_seq() -> None:
    clock = ManualClock(NOW)
    validator = AgentRecordValidator(clock)
    key = agent_record_key(SELLER.address)
    good = record(seq=4).sign(SELLER)
    validator.validate(key, good)
    with pytest.raises(RecordKeyMismatch):
        validator.validate(agent_record_key(OTHER.address), good)
    with pytest.raises(BadRecordSignature, match="proof of representation"):
        validator.validate(key, record(proof_by=OTHER).sign(SELLER))
    clock.advance(120)
    with pytest.raises(RecordExpired):
        validator.validate(key, good)
    clock.advance(-120)
    newer = record(seq=9).sign(SELLER)
    assert validator.select(key, [good, b"junk", newer]) == 2
    assert len(key.encode()) <= 50  # FIND_NODE refuses longer plain keys


def test_endpoints_put_the_faster_transport_first() -> None:
    endpoints = record().endpoints()
    assert endpoints[0].startswith("http://") and "/p2p/" in endpoints[1]


def test_shards_spread_sellers_and_keys_are_multihashes() -> None:
    counts = [0] * 4
    for _ in range(400):
        counts[shard_of(Identity.generate().address, 4)] += 1
    assert min(counts) > 50
    key = capability_shard_key("llm.chat", 3)
    assert key[:2] == b"\x12\x20" and len(key) == 34
    assert key != capability_shard_key("llm.chat", 2)


def test_query_constraints() -> None:
    eu = ad(attributes={"region": "eu", "gpu": "h100", "tokens_per_s": 40, "quantized": True})
    us = ad(OTHER, price=9, p95=900, attributes={"region": "us", "gpu": "l4"})
    where = parse_where("region == 'eu' and (gpu in ['h100', 'a100'] or tokens_per_s > 100)")
    assert Query("forecast.demand", where=where).matches(eu)
    assert not Query("forecast.demand", where=where).matches(us)
    assert Query("forecast.demand", max_price=cr(5)).matches(eu)
    assert not Query("forecast.demand", max_price=cr(5)).matches(us)
    assert not Query("forecast.demand", max_p95_ms=500).matches(us)
    assert not Query("route.vrp").matches(eu)
    assert Query("forecast.demand", where=parse_where("quantized")).matches(eu)
    assert Query("forecast.demand", where=parse_where("not region != 'eu'")).matches(eu)
    assert parse_where("gpu not in ['l4']") == Compare("gpu", "not_in", ["l4"])
    assert parse_where("a == 1 or b == 2") == Or((Compare("a", "==", 1), Compare("b", "==", 2)))
    assert parse_where("not a < 3 and b >= 2.5") == And(
        (Not(Compare("a", "<", 3)), Compare("b", ">=", 2.5)))
    # a missing attribute never matches, and a type mismatch is not an error
    assert not Compare("missing", "!=", "x").matches({})
    assert not Compare("region", "<", 3).matches({"region": "eu"})
    assert not Query("forecast.demand").matches(ad(withdrawn=True))


@pytest.mark.parametrize("text", ["__import__('os')", "region == other_name", "1 == region",
                                  "a < b < c", "region ==", "f(x)"])
def test_query_text_that_is_not_a_constraint_is_refused(text: str) -> None:
    with pytest.raises(UsageError, match="--where"):
        parse_where(text)


def test_utility_ranks_by_price_latency_and_reputation() -> None:
    cheap_slow = ad(Identity.generate(), price=1, p95=1000)
    dear_fast = ad(Identity.generate(), price=10, p95=100)
    middle = ad(Identity.generate(), price=4, p95=300)
    by_price = Utility(price=1, latency=0, reputation=0).rank([dear_fast, cheap_slow, middle])
    assert next(a for _, a in by_price) == cheap_slow
    by_latency = Utility(price=0, latency=1, reputation=0).rank([cheap_slow, dear_fast])
    assert by_latency[0][1] == dear_fast
    trusted = Utility(price=0, latency=0, reputation=1,
                      reputation_of={middle.address: 0.99}).rank([cheap_slow, middle])
    assert trusted[0][1] == middle


def test_agent_record_binds_the_encryption_key_and_older_records_still_verify() -> None:
    old = record()
    assert old.encryption_key is None and b"encryption_key" not in _canonical(old)
    assert AgentRecord.verify(old.sign(SELLER), now=NOW).encryption_key is None
    keyed = old.model_copy(update={"encryption_key": SELLER.encryption_public_key.hex()})
    wire = keyed.sign(SELLER)
    assert AgentRecord.verify(wire, now=NOW).encryption_key == SELLER.encryption_public_key.hex()
    # A relay that swaps in its own key breaks the agent's signature.
    kind, body, signature = msgpack.unpackb(wire, raw=False)
    swapped = body.replace(SELLER.encryption_public_key.hex().encode(),
                           OTHER.encryption_public_key.hex().encode())
    with pytest.raises(BadRecordSignature):
        AgentRecord.verify(msgpack.packb([kind, swapped, signature]), now=NOW)
    with pytest.raises(ValueError, match="encryption_key"):
        AgentRecord.model_validate({**old.model_dump(), "encryption_key": "zz"})
