"""Public-key encryption to an agent: RFC 9180 HPKE, base mode, from pyca/cryptography.

The suite is DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20-Poly1305 (RFC 9180
Appendix A.2): one X25519 key agreement with a fresh ephemeral key per sealed message, so
every message gets its own AEAD key. No part of HPKE is implemented here; this module only
fixes the suite, derives an agent's X25519 key from its identity seed, and translates
pyca's errors into ours. tests/test_hpke_vectors.py checks the suite against the RFC's
test vectors.

An agent's encryption key is derived from its Ed25519 seed with HKDF-SHA256 under its own
label, so it is a separate key (the signing key never does key agreement) that lives in the
same key file and needs no new secret to back up; its public half is published, bound to
the agent by the agent's signature (the agent record, or a signed key answer).
"""

from __future__ import annotations

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, hpke
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .errors import BadSeal, UsageError

SUITE = hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.CHACHA20_POLY1305)
"""The one HPKE suite AAEX speaks (RFC 9180 ids: KEM 0x0020, KDF 0x0001, AEAD 0x0003)."""
ENC_BYTES = 32
"""Length of HPKE's encapsulated key (the ephemeral X25519 public key) heading a ciphertext."""
TAG_BYTES = 16
"""Length of the ChaCha20-Poly1305 tag every ciphertext carries."""
PUBLIC_KEY_BYTES = 32
_KEY_LABEL = b"aaex/x25519-encryption-key/1"


def derive_encryption_key(seed: bytes) -> X25519PrivateKey:
    """The agent's X25519 private key, derived from its 32-byte Ed25519 seed."""
    raw = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_KEY_LABEL).derive(seed)
    return X25519PrivateKey.from_private_bytes(raw)


def public_bytes(key: X25519PrivateKey) -> bytes:
    """The 32 raw bytes of `key`'s public half, as published and as HPKE takes them."""
    return key.public_key().public_bytes_raw()


def seal_to(public_key: bytes, plaintext: bytes, *, info: bytes) -> bytes:
    """HPKE single-shot seal of `plaintext` to `public_key`: ``enc || ciphertext``.

    `info` binds the context (who sends to whom): opening with any other `info` fails.

    Raises:
        UsageError: `public_key` is not 32 bytes.
    """
    if len(public_key) != PUBLIC_KEY_BYTES:
        raise UsageError(f"an X25519 public key is {PUBLIC_KEY_BYTES} bytes, got "
                         f"{len(public_key)}")
    return SUITE.encrypt(plaintext, X25519PublicKey.from_public_bytes(public_key), info=info)


def open_with(private_key: X25519PrivateKey, sealed: bytes, *, info: bytes) -> bytes:
    """Open what `seal_to` sealed to `private_key`'s public half under the same `info`.

    Raises:
        BadSeal: too short, altered, sealed to another key, or under another `info`.
    """
    if len(sealed) < ENC_BYTES + TAG_BYTES:
        raise BadSeal(f"sealed payload of {len(sealed)} bytes is shorter than HPKE's "
                      f"{ENC_BYTES + TAG_BYTES}")
    try:
        return SUITE.decrypt(sealed, private_key, info=info)
    except (InvalidTag, ValueError):
        raise BadSeal("sealed payload does not open: it was altered, or sealed to another "
                      "key or for another sender or recipient") from None
