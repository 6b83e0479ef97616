"""Signature checks shared by the simulated nodes: one CPU does the work of 3,000 machines.

Every index node that stores an ad, and every reader, checks its Ed25519 signature, as the
product does; in the simulation they are all one process, checking the same bytes again and
again. `shared_signature_checks` remembers the outcome of each successful check of
(signed message, public key) for the block: the product code still makes every check, in
the same places and order (they are counted), and a forged or altered signature still fails
(its bytes differ, so it is checked for real). Only the repeated arithmetic is saved.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import nacl.bindings

_MAX_REMEMBERED = 500_000


@dataclass
class SignatureStats:
    checks: int = 0
    """Signature checks the product code made."""
    computed: int = 0
    """Of them, checks of bytes not seen before (done by libsodium)."""


@contextmanager
def shared_signature_checks() -> Iterator[SignatureStats]:
    stats = SignatureStats()
    real: Callable[[bytes, bytes], bytes] = nacl.bindings.crypto_sign_open
    seen: dict[tuple[bytes, bytes], bytes] = {}

    def crypto_sign_open(signed: bytes, public_key: bytes) -> bytes:
        stats.checks += 1
        key = (signed, public_key)
        message = seen.get(key)
        if message is None:
            stats.computed += 1
            message = real(signed, public_key)  # raises BadSignatureError: not remembered
            if len(seen) >= _MAX_REMEMBERED:
                seen.clear()
            seen[key] = message
        return message

    nacl.bindings.crypto_sign_open = crypto_sign_open
    try:
        yield stats
    finally:
        nacl.bindings.crypto_sign_open = real
