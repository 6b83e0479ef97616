"""Print the golden vectors of tests/test_interop_uagents.py, computed by uagents-core itself.

    $AAEX_UAGENTS_PYTHON tests/peers/uagents_golden.py

The test pins the output as constants, so the AAEX codec is checked against what uagents-core
computes, never against itself. Run it again only to re-pin after a deliberate upgrade of
uagents-core; each run signs afresh (random k), so the signatures change, the rest does not.
"""

from __future__ import annotations

import hashlib
import json
import sys
import uuid
from pathlib import Path

import ecdsa
from uagents_core.contrib.protocols.chat import ChatAcknowledgement, ChatMessage, chat_protocol_spec
from uagents_core.envelope import Envelope
from uagents_core.identity import Identity
from uagents_core.models import ErrorMessage, Model

sys.path.insert(0, str(Path(__file__).resolve().parent))
from uagents_peer import Ping, Pong

N = ecdsa.SECP256k1.order


def main() -> None:
    out: dict[str, object] = {
        "chat_message": Model.build_schema_digest(ChatMessage),
        "chat_ack": Model.build_schema_digest(ChatAcknowledgement),
        "chat_protocol": chat_protocol_spec.digest,
        "ping": Model.build_schema_digest(Ping),
        "pong": Model.build_schema_digest(Pong),
        "error_message": Model.build_schema_digest(ErrorMessage),
    }
    # Address derivation: the AAEX rule (domain-tagged hash of an Ed25519 seed) gives a
    # secp256k1 secret; uagents-core turns that secret into the agent1 address.
    ed_seed = bytes(range(32))
    secret = int.from_bytes(hashlib.sha256(b"aaex/uagents-key/1" + ed_seed).digest(), "big") % N
    out["derived_secret"] = f"{secret:064x}"
    out["derived_address"] = Identity.from_string(f"{secret:064x}").address
    sender = Identity.from_seed("aaex golden sender", 0)
    out["sender_secret"] = sender.private_key
    out["sender_address"] = sender.address
    envelope = Envelope(version=1, sender=sender.address,
                        target=Identity.from_seed("aaex golden target", 0).address,
                        session=uuid.UUID("5f0c1f4e-8a43-4c6e-9d3b-1d2e3f405162"),
                        schema_digest=str(out["chat_ack"]), expires=1_750_000_030)
    envelope.encode_payload(json.dumps({"timestamp": "2025-06-15T15:06:40+00:00",
                                        "acknowledged_msg_id":
                                            "0b8f5d0e-3f0a-4a39-8c5e-8a2a5f1f9c77",
                                        "metadata": None}))
    out["digest"] = envelope._digest().hex()
    with_nonce = envelope.model_copy(update={"nonce": 7})
    out["digest_with_nonce"] = with_nonce._digest().hex()
    low = high = None
    while low is None or high is None:
        envelope.sign(sender)
        _, data = _decode(str(envelope.signature))
        s = int.from_bytes(data[32:], "big")
        if s > N // 2:
            high = envelope.signature
        else:
            low = envelope.signature
    out["signature_low_s"] = low
    out["signature_high_s"] = high
    out["envelope"] = json.loads(envelope.model_dump_json(exclude={"signature"}))
    print(json.dumps(out, indent=1))


def _decode(text: str) -> tuple[str, bytes]:
    import bech32
    prefix, values = bech32.bech32_decode(text)
    return str(prefix), bytes(bech32.convertbits(values, 5, 8, False))


if __name__ == "__main__":
    main()
