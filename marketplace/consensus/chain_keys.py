"""Each node's Ethereum account: a secp256k1 key derived from its Ed25519 identity seed.

The node's identity is an Ed25519 key, which the EVM cannot verify, so a chain account needs
a secp256k1 key of its own. It is derived, not stored: HMAC-SHA256 of the identity seed under
a versioned label gives the account key, so the identity file (0600, optionally sealed with a
passphrase) stays the one secret an operator backs up, and the same node always has the same
account. The label separates the two uses: neither key reveals the other, and the Ed25519
key is never used as a scalar on another curve. An operator who keeps funds under a separate
key (a hardware wallet, a consortium-issued account) builds the account from that key with
`eth_account.Account.from_key` instead; the client takes any `LocalAccount`.
"""

from __future__ import annotations

import hashlib
import hmac

import coincurve
from eth_account import Account
from eth_account.signers.local import LocalAccount

from aaex_agents.identity import Identity

LABEL = b"aaex chain account/1"
"""Domain label of the derivation; a new version of it gives every node a new account."""


def chain_account(identity: Identity) -> LocalAccount:
    """The node's chain account, derived from its identity seed (same seed, same account)."""
    counter = 0
    while True:
        key = hmac.new(LABEL, identity.export_seed() + counter.to_bytes(4, "big"),
                       hashlib.sha256).digest()
        try:
            coincurve.PrivateKey(key)  # below the curve order and not zero
        except ValueError:  # probability about 2**-128: try the next counter
            counter += 1
            continue
        account: LocalAccount = Account.from_key(key)
        return account
