"""The uAgents codec against golden vectors computed by uagents-core 0.4.12.

The constants below were printed by tests/peers/uagents_golden.py running uagents-core
itself; the AAEX codec must agree with them, never with its own output.
"""

from __future__ import annotations

import base64
import json
import uuid

import pytest

from aaex_agents.address import bech32_decode, bech32_encode
from aaex_agents.clock import ManualClock
from aaex_agents.envelope import EnvelopePolicy
from aaex_agents.errors import (
    BadSignature,
    EnvelopeExpired,
    LifetimeTooLong,
    MalformedEnvelope,
    MissingExpiry,
    OversizeFrame,
    ReplayedEnvelope,
    UnsignedEnvelope,
    UsageError,
)
from aaex_agents.identity import Identity
from aaex_agents.interop import (
    CHAT_ACK_DIGEST,
    CHAT_MESSAGE_DIGEST,
    CHAT_PROTOCOL_DIGEST,
    CHAT_SCHEMAS,
    ERROR_MESSAGE_DIGEST,
    AddressBinding,
    ChatAcknowledgement,
    ChatMessage,
    SchemaTable,
    UAgentsKey,
    UEnvelope,
    admit,
    is_uagents_address,
    parse_envelope,
    seal_envelope,
    session_uuid,
    verify_digest,
)
from aaex_agents.interop.uagents import SECP256K1_ORDER
from aaex_agents.model import Message

# -- golden vectors (uagents-core 0.4.12) -------------------------------------------------
GOLDEN_CHAT_MESSAGE = "model:2601825997203ee07dbb9ff6e7c71ae7bdaf6a7c8b817361f2f88f4b29c68d0c"
GOLDEN_CHAT_ACK = "model:741eb75692abbeb43c131e364ad939af23f14e8288ba0ec3df130843ef79bd7f"
GOLDEN_CHAT_PROTOCOL = "proto:30a801ed3a83f9a0ff0a9f1e6fe958cb91da1fc2218b153df7b6cbf87bd33d62"
GOLDEN_ERROR_MESSAGE = "model:94cb082f79871c5e80a20637f935d233f0ce11a135d5a3a3c6071e81102a84d5"
# Ping/Pong of tests/peers/uagents_peer.py (class Ping(Model): text: str)
GOLDEN_PING = "model:64d85c393a306c7a194a88dd36b06bd8665dd84c9c1f078611b3ce7c614203bd"
GOLDEN_PONG = "model:16222561a1092a38c50d8c8e9871711acb66518643953da53873131fbca16ca3"
# sha256("aaex/uagents-key/1" || bytes(range(32))) mod n, turned into an address by uagents-core
GOLDEN_DERIVED_ADDRESS = "agent1qwt33u778hkm0j7l8skgm064p5j9q8h72unyw6lhm4wcn9gfxelksalx36e"
GOLDEN_SENDER_SECRET = "3b029210e52893fc2e0526f84dfa5cf5084c0ae257c7170eef9d87f5b5f25ec7"  # noqa: S105 - a test key
GOLDEN_SENDER = "agent1q2kqw2xeukrndez8rr9nt3pe5my6x083zgnu7du457ldcsmws2ta7lnm8vz"
GOLDEN_TARGET = "agent1qfp47uj7e9s3dnpay0uexg6dvk844pez6mw0xnpqc942nra3ns67wz4jtwt"
GOLDEN_ENVELOPE = {
    "version": 1, "sender": GOLDEN_SENDER, "target": GOLDEN_TARGET,
    "session": "5f0c1f4e-8a43-4c6e-9d3b-1d2e3f405162", "schema_digest": GOLDEN_CHAT_ACK,
    "protocol_digest": None,
    "payload": "eyJ0aW1lc3RhbXAiOiAiMjAyNS0wNi0xNVQxNTowNjo0MCswMDowMCIsICJhY2tub3dsZWRnZWRf"
               "bXNnX2lkIjogIjBiOGY1ZDBlLTNmMGEtNGEzOS04YzVlLThhMmE1ZjFmOWM3NyIsICJtZXRhZGF0YSI6"
               "IG51bGx9",
    "expires": 1750000030, "nonce": None}
GOLDEN_DIGEST = "1204022c47ea70524a69656c5c0f9feefba4cf8b80fe145a9dbc44b56fe4f74d"
GOLDEN_DIGEST_WITH_NONCE_7 = "908cb1a76a66f923ff9f76c163db28f10ec54aa27edcade60bef2fc8251711e9"
GOLDEN_SIG_LOW_S = ("sig1s34tn7287a2y6d8m0jqww3vdrwzlg7rq3jy76xtfxvw9jd57vqr5qmx03kn5k00l60tmz"
                    "rdwvmk9uaj3n2n2rtynyzy4mmn0qqzhlws330hlp")
GOLDEN_SIG_HIGH_S = ("sig1ekk5qsys247syluxjhud49z330g9z5mapuz794up2z34rfxmfevfrhrvmq34hwu2rrvw5"
                     "5wpy2525lq8vl8cnm94yfd55f7zf780lmcg836j4")

NOW = 1_750_000_000.0  # 30 s before the golden envelope expires
POLICY = EnvelopePolicy()


class Ping(Message, type="tests.uagents_ping/1"):
    text: str


def golden(signature: str | None = GOLDEN_SIG_HIGH_S, **changes: object) -> UEnvelope:
    return UEnvelope.model_validate({**GOLDEN_ENVELOPE, "signature": signature, **changes})


def test_chat_schema_digests_are_those_of_uagents_core() -> None:
    assert (CHAT_MESSAGE_DIGEST, CHAT_ACK_DIGEST, CHAT_PROTOCOL_DIGEST, ERROR_MESSAGE_DIGEST) == (
        GOLDEN_CHAT_MESSAGE, GOLDEN_CHAT_ACK, GOLDEN_CHAT_PROTOCOL, GOLDEN_ERROR_MESSAGE)
    assert CHAT_SCHEMAS.digest_of(ChatMessage) == GOLDEN_CHAT_MESSAGE
    assert CHAT_SCHEMAS.digest_of(ChatAcknowledgement) == GOLDEN_CHAT_ACK
    assert CHAT_SCHEMAS.class_for(GOLDEN_CHAT_ACK) is ChatAcknowledgement
    assert CHAT_SCHEMAS.protocol_of(ChatMessage) == GOLDEN_CHAT_PROTOCOL


def test_envelope_digest_matches_uagents_core() -> None:
    assert golden().digest().hex() == GOLDEN_DIGEST
    assert golden(nonce=7).digest().hex() == GOLDEN_DIGEST_WITH_NONCE_7


def test_signatures_made_by_uagents_core_verify_low_and_high_s() -> None:
    _, high = bech32_decode(GOLDEN_SIG_HIGH_S)
    _, low = bech32_decode(GOLDEN_SIG_LOW_S)
    assert int.from_bytes(high[32:], "big") > SECP256K1_ORDER // 2  # the vector is high-s
    assert int.from_bytes(low[32:], "big") <= SECP256K1_ORDER // 2
    digest = bytes.fromhex(GOLDEN_DIGEST)
    assert verify_digest(GOLDEN_SENDER, digest, GOLDEN_SIG_HIGH_S)
    assert verify_digest(GOLDEN_SENDER, digest, GOLDEN_SIG_LOW_S)
    assert not verify_digest(GOLDEN_TARGET, digest, GOLDEN_SIG_LOW_S)
    assert not verify_digest(GOLDEN_SENDER, digest, "sig1qqqq")  # malformed: False, no raise


def test_address_derivation_matches_uagents_core() -> None:
    assert UAgentsKey(bytes.fromhex(GOLDEN_SENDER_SECRET)).address == GOLDEN_SENDER
    derived = UAgentsKey.from_identity(Identity(bytes(range(32))))
    assert derived.address == GOLDEN_DERIVED_ADDRESS
    assert is_uagents_address(GOLDEN_DERIVED_ADDRESS)
    assert not is_uagents_address(Identity(bytes(range(32))).address)
    assert not is_uagents_address(GOLDEN_DERIVED_ADDRESS[:-1] + "q")  # checksum


def test_our_signature_verifies_and_is_low_s() -> None:
    key = UAgentsKey(bytes.fromhex(GOLDEN_SENDER_SECRET))
    envelope = seal_envelope(key, target=GOLDEN_TARGET, schema_digest=GOLDEN_CHAT_ACK,
                             payload_json='{"a": 1}', session=uuid.uuid4(), expires=1)
    assert envelope.verify()
    _, compact = bech32_decode(str(envelope.signature))
    assert int.from_bytes(compact[32:], "big") <= SECP256K1_ORDER // 2


@pytest.mark.parametrize("change", [
    {"payload": base64.b64encode(b'{"tampered": true}').decode()},
    {"target": GOLDEN_SENDER},
    {"expires": 1750000031},
    {"session": "5f0c1f4e-8a43-4c6e-9d3b-1d2e3f405163"},
    {"schema_digest": GOLDEN_CHAT_MESSAGE},
    {"nonce": 1},
])
def test_tampered_envelope_is_refused(change: dict[str, object]) -> None:
    with pytest.raises(BadSignature) as caught:
        admit(golden(**change), now=NOW, policy=POLICY, replay=POLICY.new_replay_guard())
    assert caught.value.reason == "bad_signature"


def test_version_and_protocol_digest_are_not_signed_by_uagents() -> None:
    # A fact of the uAgents format: these two fields can change under a valid signature.
    assert golden(version=2, protocol_digest=GOLDEN_CHAT_PROTOCOL).verify()


def test_high_s_signature_is_admitted_and_its_low_s_twin_is_a_replay() -> None:
    replay = POLICY.new_replay_guard()
    admit(golden(GOLDEN_SIG_HIGH_S), now=NOW, policy=POLICY, replay=replay)
    # The same envelope with s folded to n - s verifies too (ECDSA malleability); the replay
    # id is the signed digest, so it is still the same envelope.
    _, compact = bech32_decode(GOLDEN_SIG_HIGH_S)
    s = int.from_bytes(compact[32:], "big")
    twin = bech32_encode("sig", compact[:32] + (SECP256K1_ORDER - s).to_bytes(32, "big"))
    assert golden(twin).verify()
    with pytest.raises(ReplayedEnvelope):
        admit(golden(twin), now=NOW, policy=POLICY, replay=replay)


def test_replayed_envelope_is_refused() -> None:
    replay = POLICY.new_replay_guard()
    admit(golden(GOLDEN_SIG_LOW_S), now=NOW, policy=POLICY, replay=replay)
    with pytest.raises(ReplayedEnvelope) as caught:
        admit(golden(GOLDEN_SIG_LOW_S), now=NOW + 1, policy=POLICY, replay=replay)
    assert caught.value.reason == "replayed"


def test_expired_envelope_is_refused() -> None:
    clock = ManualClock(NOW)
    clock.advance(30 + POLICY.clock_skew + 1)
    with pytest.raises(EnvelopeExpired) as caught:
        admit(golden(), now=clock.now(), policy=POLICY, replay=POLICY.new_replay_guard())
    assert caught.value.reason == "expired"


def test_envelope_without_expiry_is_refused() -> None:
    key = UAgentsKey(bytes.fromhex(GOLDEN_SENDER_SECRET))
    envelope = seal_envelope(key, target=GOLDEN_TARGET, schema_digest=GOLDEN_CHAT_ACK,
                             payload_json="{}", session=uuid.uuid4(), expires=None)
    assert envelope.verify()
    with pytest.raises(MissingExpiry) as caught:
        admit(envelope, now=NOW, policy=POLICY, replay=POLICY.new_replay_guard())
    assert caught.value.reason == "no_expiry"


def test_lifetime_beyond_the_policy_is_refused() -> None:
    key = UAgentsKey(bytes.fromhex(GOLDEN_SENDER_SECRET))
    envelope = seal_envelope(key, target=GOLDEN_TARGET, schema_digest=GOLDEN_CHAT_ACK,
                             payload_json="{}", session=uuid.uuid4(), expires=int(NOW) + 3600)
    with pytest.raises(LifetimeTooLong):
        admit(envelope, now=NOW, policy=POLICY, replay=POLICY.new_replay_guard())


def test_unsigned_and_user_envelopes_are_refused() -> None:
    with pytest.raises(UnsignedEnvelope) as caught:
        admit(golden(None), now=NOW, policy=POLICY, replay=POLICY.new_replay_guard())
    assert caught.value.reason == "unsigned"
    assert isinstance(caught.value, BadSignature)
    with pytest.raises(UnsignedEnvelope):
        admit(golden(sender="user1qqqqqqq"), now=NOW, policy=POLICY,
              replay=POLICY.new_replay_guard())


def test_parse_refuses_bad_structure_with_the_field_named() -> None:
    with pytest.raises(MalformedEnvelope, match="session"):
        parse_envelope(json.dumps({**GOLDEN_ENVELOPE, "session": str(uuid.uuid1())}),
                       max_bytes=10_000)
    with pytest.raises(MalformedEnvelope, match="expires"):
        parse_envelope(json.dumps({**GOLDEN_ENVELOPE, "expires": "soon"}), max_bytes=10_000)
    with pytest.raises(MalformedEnvelope):
        parse_envelope(b"not json", max_bytes=10_000)
    with pytest.raises(OversizeFrame):
        parse_envelope(json.dumps(GOLDEN_ENVELOPE), max_bytes=100)
    parsed = parse_envelope(json.dumps({**GOLDEN_ENVELOPE, "signature": GOLDEN_SIG_LOW_S,
                                        "future_field": 1}), max_bytes=10_000)
    assert parsed.verify()
    assert json.loads(parsed.payload_json())["metadata"] is None


def test_session_ids_become_uuid4_and_uagents_sessions_map_to_themselves() -> None:
    aaex_session = bytes(range(16))
    mapped = session_uuid(aaex_session)
    assert mapped.version == 4
    assert session_uuid(mapped.bytes) == mapped
    assert session_uuid(None).version == 4


def test_schema_table_maps_both_ways_and_names_the_fix() -> None:
    table = CHAT_SCHEMAS.merged(SchemaTable({Ping: GOLDEN_PING}))
    assert table.digest_of(Ping) == GOLDEN_PING
    assert table.class_for(GOLDEN_PING) is Ping
    assert table.class_for(GOLDEN_CHAT_MESSAGE) is ChatMessage
    assert table.class_for(GOLDEN_PONG) is None
    with pytest.raises(UsageError, match=r"tests.uagents_ping/1.*model:"):
        CHAT_SCHEMAS.digest_of(Ping)
    with pytest.raises(UsageError, match="64 hex"):
        SchemaTable({Ping: "model:abc"})
    with pytest.raises(UsageError, match="already mapped"):
        SchemaTable({Ping: GOLDEN_PING, ChatMessage: GOLDEN_PING})


def test_chat_payload_written_by_uagents_validates() -> None:
    # What pydantic v1's .json() writes for ChatAcknowledgement (the golden payload).
    ack = ChatAcknowledgement.model_validate_json(golden().payload_json())
    assert str(ack.acknowledged_msg_id) == "0b8f5d0e-3f0a-4a39-8c5e-8a2a5f1f9c77"
    message = ChatMessage.model_validate_json(
        '{"timestamp": "2025-06-15T15:06:40.123456+00:00", "msg_id": '
        '"0b8f5d0e-3f0a-4a39-8c5e-8a2a5f1f9c77", "content": [{"type": "text", "text": "hi"}, '
        '{"type": "end-session"}]}')
    assert message.text() == "hi"


def test_binding_is_signed_by_both_keys() -> None:
    identity = Identity(bytes(range(32)))
    binding = AddressBinding.create(identity)
    assert (binding.aaex, binding.uagents) == (identity.address, GOLDEN_DERIVED_ADDRESS)
    assert binding.holds()
    other = Identity.generate()
    assert not binding.model_copy(update={"aaex": other.address}).holds()
    assert not binding.model_copy(update={"uagents": GOLDEN_SENDER}).holds()
    assert not binding.model_copy(update={"secp256k1_signature": GOLDEN_SIG_LOW_S}).holds()


def test_generic_bech32_round_trip() -> None:
    data = bytes(range(64))
    text = bech32_encode("sig", data)
    assert bech32_decode(text) == ("sig", data)
    with pytest.raises(ValueError, match="checksum"):
        bech32_decode(text[:-1] + ("q" if text[-1] != "q" else "p"))
