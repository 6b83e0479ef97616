"""RFC 9180's test vectors for the HPKE suite AAEX seals with, and its sibling with AES-GCM.

What the vectors cover, for DHKEM(X25519, HKDF-SHA256) / HKDF-SHA256 with ChaCha20-Poly1305
(A.2.1, the suite of `aaex_agents.hpke`) and AES-128-GCM (A.1.1), base mode:

- the open side of pyca/cryptography's HPKE, the code that opens every sealed frame: it
  opens the RFC's first ciphertext (sequence 0, the only one a single-shot seal makes) with
  the RFC's skR, info and aad, and refuses it with any one of them changed;
- the key schedule, written out here from the RFC's definitions over pyca's X25519, HKDF
  and AEAD primitives: DeriveKeyPair from ikmE and ikmR, the shared secret, key,
  base_nonce and exporter_secret, every listed sequence's nonce and ciphertext, and the
  exported values;
- the seal side only through a round trip: pyca takes no ephemeral key from its caller,
  so its ciphertexts cannot equal the RFC's; what it seals must open with the schedule
  above and with `hpke.open_with`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.bindings._rust import openssl as rust_openssl
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.hpke import AEAD, KDF, KEM, Suite

from aaex_agents import hpke
from aaex_agents.errors import BadSeal

DATA = json.loads((Path(__file__).parent / "data" / "hpke_rfc9180_base_x25519.json").read_text())
VECTORS: list[dict[str, Any]] = DATA["vectors"]
AEADS = {1: (AEAD.AES_128_GCM, AESGCM, 16), 3: (AEAD.CHACHA20_POLY1305, ChaCha20Poly1305, 32)}
KEM_SUITE_ID = b"KEM" + (0x0020).to_bytes(2, "big")


def _hex(vector: dict[str, Any], name: str) -> bytes:
    return bytes.fromhex(vector[name])


def _suite_id(vector: dict[str, Any]) -> bytes:
    return b"HPKE" + b"".join(vector[k].to_bytes(2, "big") for k in ("kem_id", "kdf_id",
                                                                       "aead_id"))


def _extract(salt: bytes, ikm: bytes) -> bytes:
    mac = hmac.HMAC(salt or bytes(32), hashes.SHA256())
    mac.update(ikm)
    return mac.finalize()


def _expand(prk: bytes, info: bytes, length: int) -> bytes:
    out, block, counter = b"", b"", 1
    while len(out) < length:
        mac = hmac.HMAC(prk, hashes.SHA256())
        mac.update(block + info + bytes([counter]))
        block = mac.finalize()
        out += block
        counter += 1
    return out[:length]


def _labeled_extract(suite_id: bytes, salt: bytes, label: bytes, ikm: bytes) -> bytes:
    return _extract(salt, b"HPKE-v1" + suite_id + label + ikm)


def _labeled_expand(suite_id: bytes, prk: bytes, label: bytes, info: bytes, length: int) -> bytes:
    return _expand(prk, length.to_bytes(2, "big") + b"HPKE-v1" + suite_id + label + info, length)


def _derive_key_pair(ikm: bytes) -> bytes:
    prk = _labeled_extract(KEM_SUITE_ID, b"", b"dkp_prk", ikm)
    return _labeled_expand(KEM_SUITE_ID, prk, b"sk", b"", 32)


def _schedule(vector: dict[str, Any]) -> dict[str, bytes]:
    """RFC 9180 sections 4.1 and 5.1 for the recipient: from skR, enc, pkR and info."""
    sk_r = X25519PrivateKey.from_private_bytes(_hex(vector, "skRm"))
    enc = _hex(vector, "enc")
    dh = sk_r.exchange(X25519PublicKey.from_public_bytes(enc))
    eae_prk = _labeled_extract(KEM_SUITE_ID, b"", b"eae_prk", dh)
    shared = _labeled_expand(KEM_SUITE_ID, eae_prk, b"shared_secret", enc + _hex(vector, "pkRm"),
                             32)
    suite_id = _suite_id(vector)
    psk_id_hash = _labeled_extract(suite_id, b"", b"psk_id_hash", b"")
    info_hash = _labeled_extract(suite_id, b"", b"info_hash", _hex(vector, "info"))
    context = bytes([0]) + psk_id_hash + info_hash
    secret = _labeled_extract(suite_id, shared, b"secret", b"")
    key_length = AEADS[vector["aead_id"]][2]
    return {"shared_secret": shared, "key_schedule_context": context, "secret": secret,
            "key": _labeled_expand(suite_id, secret, b"key", context, key_length),
            "base_nonce": _labeled_expand(suite_id, secret, b"base_nonce", context, 12),
            "exporter_secret": _labeled_expand(suite_id, secret, b"exp", context, 32)}


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: f"aead{v['aead_id']}")
def test_key_pairs_and_schedule_match_the_rfc(vector: dict[str, Any]) -> None:
    for ikm, sk, pk in (("ikmE", "skEm", "pkEm"), ("ikmR", "skRm", "pkRm")):
        derived = _derive_key_pair(_hex(vector, ikm))
        assert derived == _hex(vector, sk)
        public = X25519PrivateKey.from_private_bytes(derived).public_key().public_bytes_raw()
        assert public == _hex(vector, pk)
    schedule = _schedule(vector)
    for name, value in schedule.items():
        assert value == _hex(vector, name), name


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: f"aead{v['aead_id']}")
def test_every_listed_encryption_and_export_matches_the_rfc(vector: dict[str, Any]) -> None:
    schedule = _schedule(vector)
    base_nonce, exporter = schedule["base_nonce"], schedule["exporter_secret"]
    aead = AEADS[vector["aead_id"]][1](schedule["key"])
    for case in vector["encryptions"]:
        seq = case["sequence_number"].to_bytes(12, "big")
        nonce = bytes(a ^ b for a, b in zip(base_nonce, seq, strict=True))
        assert nonce == _hex(case, "nonce")
        assert aead.encrypt(nonce, _hex(case, "pt"), _hex(case, "aad")) == _hex(case, "ct")
    suite_id = _suite_id(vector)
    for case in vector["exports"]:
        value = _labeled_expand(suite_id, exporter, b"sec", _hex(case, "exporter_context"),
                                case["L"])
        assert value == _hex(case, "exported_value")


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: f"aead{v['aead_id']}")
def test_pyca_hpke_opens_the_rfc_ciphertext_and_nothing_altered(vector: dict[str, Any]) -> None:
    suite = Suite(KEM.X25519, KDF.HKDF_SHA256, AEADS[vector["aead_id"]][0])
    sk_r = X25519PrivateKey.from_private_bytes(_hex(vector, "skRm"))
    first = vector["encryptions"][0]
    assert first["sequence_number"] == 0
    sealed = _hex(vector, "enc") + _hex(first, "ct")
    info, aad = _hex(vector, "info"), _hex(first, "aad")
    # The RFC's sequence 0 has an aad; pyca's public API seals with none, so its
    # aad-taking twin (the same code, one more argument) opens the RFC's exact bytes.
    opened = rust_openssl.hpke._decrypt_with_aad(suite, sealed, sk_r, info=info, aad=aad)
    assert opened == _hex(first, "pt")
    for wrong in ((sealed[:-1] + bytes([sealed[-1] ^ 1]), info, aad),
                  (sealed, info + b"!", aad), (sealed, info, aad + b"!")):
        with pytest.raises(InvalidTag):
            rust_openssl.hpke._decrypt_with_aad(suite, wrong[0], sk_r, info=wrong[1],
                                                aad=wrong[2])


def test_aaex_suite_is_the_rfcs_a2_and_its_seal_opens_by_the_rfc_schedule() -> None:
    chacha = next(v for v in VECTORS if v["aead_id"] == 3)
    assert (chacha["kem_id"], chacha["kdf_id"]) == (0x20, 1)
    sk_r = X25519PrivateKey.from_private_bytes(_hex(chacha, "skRm"))
    info = b"aaex/test\x00sender\x00target"
    sealed = hpke.seal_to(_hex(chacha, "pkRm"), b"a signed frame", info=info)
    schedule = _schedule({**chacha, "info": info.hex(), "enc": sealed[:32].hex()})
    opened = ChaCha20Poly1305(schedule["key"]).decrypt(schedule["base_nonce"], sealed[32:], b"")
    assert opened == b"a signed frame"
    assert hpke.open_with(sk_r, sealed, info=info) == b"a signed frame"
    with pytest.raises(BadSeal, match="does not open"):
        hpke.open_with(sk_r, sealed, info=info + b"x")

