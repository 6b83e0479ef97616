"""Why a discovery record was refused.

Part of the AAEX error tree (see aaex_agents.errors)::

AaexError
└── RecordRejected              a DHT/index record failed a check; `reason` names which
├── MalformedRecord         bytes that do not decode as a record of the expected kind
├── BadRecordSignature      signature does not verify against the agent's key
├── RecordKeyMismatch       stored under a key that does not belong to its signer
├── RecordExpired           its expiry has passed
└── StaleRecord             a newer sequence number is already known
"""

from __future__ import annotations

from typing import ClassVar

from aaex_agents.errors import AaexError


class RecordRejected(AaexError):
    """A record failed verification and is neither stored nor returned."""

    reason: ClassVar[str] = "rejected"


class MalformedRecord(RecordRejected):
    """The bytes do not decode as a record of the expected kind."""

    reason = "malformed"


class BadRecordSignature(RecordRejected):
    """The signature does not verify against the public key in the record's address."""

    reason = "bad_signature"


class RecordKeyMismatch(RecordRejected):
    """The record is stored under a DHT key derived from another agent."""

    reason = "key_mismatch"


class RecordExpired(RecordRejected):
    """The record's expiry has passed; readers and validators drop it."""

    reason = "expired"


class StaleRecord(RecordRejected):
    """A record with a higher sequence number for the same key is already held."""

    reason = "stale"
