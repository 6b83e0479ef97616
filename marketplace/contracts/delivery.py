"""The seller's signed delivery: the result's hash and the seller's own timings.

The seller signs ``"aaex/delivery/1" || 0x00 || JSON [agreement id, result hash, started,
finished]`` when it delivers; the result itself travels beside it and hashes to the signed
digest. These are the seller's facts: the buyer judges the SLA by them when they agree with
its own observation within the agreed tolerance (`check_timings`), and the seller refuses a
receipt that states other ones (marketplace.contracts.dispute).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from aaex_agents.errors import UsageError
from aaex_agents.identity import verify_signature

DELIVERY_TAG = b"aaex/delivery/1\x00"


def result_hash(result: Mapping[str, Any]) -> str:
    """sha256 of a result's canonical JSON."""
    return hashlib.sha256(json.dumps(result, sort_keys=True, separators=(",", ":"),
                                     default=str).encode()).hexdigest()


def delivery_signing_bytes(agreement_id: str, result_digest: str, started_at_ms: int,
                           finished_at_ms: int) -> bytes:
    """What a seller signs when it delivers."""
    return DELIVERY_TAG + json.dumps(
        [agreement_id, result_digest, started_at_ms, finished_at_ms],
        separators=(",", ":")).encode()


def delivery_signed_by(delivery: Mapping[str, Any], seller: str) -> bool:
    """True when a delivery (a ``market.deliver`` body) hashes right and `seller` signed it."""
    try:
        if delivery["result_hash"] != result_hash(delivery["result"]):
            return False
        return verify_signature(seller, delivery_signing_bytes(
            delivery["agreement_id"], delivery["result_hash"], delivery["started_at_ms"],
            delivery["finished_at_ms"]), bytes.fromhex(delivery["signature"]))
    except (KeyError, TypeError, UsageError, ValueError):
        return False
