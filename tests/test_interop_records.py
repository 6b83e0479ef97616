"""The uAgents address binding in agent records: optional, signed by both keys, and
records signed before the field existed stay valid."""

from __future__ import annotations

import pytest

from aaex_agents.identity import Identity
from aaex_agents.interop import AddressBinding, UAgentsKey
from discovery.errors import BadRecordSignature
from discovery.records import AgentRecord, ProofOfRepresentation

PEER = "12D3KooWTestPeer"
NOW = 1_900_000_000.0

# An agent record signed by the code before `uagents` existed (commit 1124818), for the
# identity Identity(bytes(range(32))).
OLD_RECORD_WIRE = bytes.fromhex(
    "93b3616165782f6167656e742d7265636f72642f31c501fb7b2261646472657373223a226161657831717773"
    "7330306c6e65636774753874736d357677776a37716e396e37663433736e776a73366863616d6a727867796a"
    "347878757175766c707163222c22657870697265735f6174223a323030303030303030302e302c2268747470"
    "5f656e64706f696e7473223a5b22687474703a2f2f3132372e302e302e313a383730302f616165782f76312f"
    "656e76656c6f7065225d2c22706565725f6164647273223a5b222f6970342f3132372e302e302e312f746370"
    "2f343030312f7032702f313244334b6f6f575465737450656572225d2c22706565725f6964223a2231324433"
    "4b6f6f575465737450656572222c2270726f6f66223a7b22657870697265735f6174223a3230303030303030"
    "30302e302c22706565725f6964223a22313244334b6f6f575465737450656572222c227369676e6174757265"
    "223a226164313633306532323562653031303733633566346266653365313965646636663337623034653564"
    "6563623661333730343534623833393735306264343938656564363634643834333065623730656463303765"
    "3735626435663965653134336635303464363939313639626536346236663438323663303639383462303222"
    "7d2c2270726f746f636f6c73223a5b226d61726b65742e6e65676f74696174696f6e2f31225d2c2273657122"
    "3a377dc440b9968771769d8a7aaef06a83cb5244d903e759fea55fc6da397a05bc929f5591305bd5a8c4011a"
    "f023e6c6df49cd078e7b239a0f2b9467b31025579a8fa3e00e")


def record(identity: Identity, **changes: object) -> AgentRecord:
    fields: dict[str, object] = {
        "address": identity.address, "seq": 7, "expires_at": 2_000_000_000.0,
        "peer_id": PEER, "peer_addrs": [f"/ip4/127.0.0.1/tcp/4001/p2p/{PEER}"],
        "http_endpoints": ["http://127.0.0.1:8700/aaex/v1/envelope"],
        "protocols": ["market.negotiation/1"],
        "proof": ProofOfRepresentation.create(identity, PEER, 2_000_000_000.0)}
    return AgentRecord.model_validate({**fields, **changes})


def test_a_record_signed_before_the_field_existed_still_verifies() -> None:
    old = AgentRecord.verify(OLD_RECORD_WIRE, now=NOW)
    old.check_proof(NOW)
    assert old.uagents is None
    # And the same record signed now is byte for byte what the old code signed.
    assert record(Identity(bytes(range(32)))).sign(Identity(bytes(range(32)))) == OLD_RECORD_WIRE


def test_a_record_carries_the_binding_and_it_is_checked() -> None:
    identity = Identity.generate()
    binding = AddressBinding.create(identity)
    signed = record(identity, uagents=binding).sign(identity)
    read = AgentRecord.verify(signed, now=NOW)
    read.check_proof(NOW)
    assert read.uagents == binding
    assert read.uagents.uagents == UAgentsKey.from_identity(identity).address


@pytest.mark.parametrize("which", ["another agent's", "tampered"])
def test_a_binding_that_does_not_hold_refuses_the_record(which: str) -> None:
    identity = Identity.generate()
    if which == "tampered":
        binding = AddressBinding.create(identity).model_copy(
            update={"uagents": UAgentsKey(bytes([7] * 32)).address})
    else:
        binding = AddressBinding.create(Identity.generate())
    read = AgentRecord.verify(record(identity, uagents=binding).sign(identity), now=NOW)
    with pytest.raises(BadRecordSignature, match="uAgents address binding"):
        read.check_proof(NOW)
