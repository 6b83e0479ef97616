"""Why a discovery record was refused.

Part of the AAEX error tree (see aaex_agents.errors)::

AaexError
└── RecordRejected              a DHT/index record failed a check; `reason` names which
    ├── MalformedRecord         bytes that do not decode as a record of the expected kind
    ├── BadRecordSignature      signature does not verify against the agent's key
    ├── RecordKeyMismatch       stored under a key that does not belong to its signer
    │   └── WrongShard          an ad offered for an index shard its advertiser does not map to
    ├── RecordExpired           its expiry has passed
    ├── RecordLifetimeTooLong         signed to expire further ahead than index nodes accept
    ├── StaleRecord             a newer sequence number (or a tombstone) is already known
    └── IndexFull               the index node's bounds leave no room for a new ad
        └── AdvertiserLimit     this advertiser already holds its quota of ads on the node
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


class WrongShard(RecordKeyMismatch):
    """An ad offered for an index shard other than the one its advertiser maps to.

    Shards are `shard_of(address, shards)`: an ad parked on another shard could outlive its
    tombstone there, so index nodes refuse it.
    """

    reason = "wrong_shard"


class RecordLifetimeTooLong(RecordRejected):
    """The ad is signed to expire further ahead than the index's `max_lifetime` allows.

    Refused on arrival and never stored: a long-lived ad would hold memory (and outlive
    tombstones) long after its seller stopped refreshing it.
    """

    reason = "lifetime_too_long"


class IndexFull(RecordRejected):
    """A new ad does not fit: a shard or the whole index is at its bound.

    Held ads that are still valid are never evicted to make room (see `discovery.index`);
    the seller retries at its next refresh, when expired ads may have left.
    """

    reason = "index_full"


class AdvertiserLimit(IndexFull):
    """The advertiser already holds `max_per_advertiser` ads (and tombstones) on the node."""

    reason = "advertiser_limit"
