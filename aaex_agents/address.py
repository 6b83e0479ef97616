"""Self-certifying agent addresses: an Ed25519 public key in bech32 with the prefix ``aaex``.

An address *is* the public key plus a readable prefix and a 6-character checksum (BIP-173
bech32), so anyone can check a signature from an address alone, with no lookup, and a
mistyped address is caught before it is used.
"""

from __future__ import annotations

from functools import lru_cache

from .errors import UsageError, quote

PREFIX = "aaex"
_CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_CHAR_VALUE = {c: i for i, c in enumerate(_CHARSET)}
_GENERATORS = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)
_KEY_BYTES = 32
ADDRESS_LENGTH = len(PREFIX) + 1 + (_KEY_BYTES * 8 + 4) // 5 + 6
"""Characters in every address: prefix, separator, 52 data characters, 6 of checksum (63)."""
_BECH32_MAX_LENGTH = 90  # BIP-173: no bech32 string is longer


def _polymod(values: list[int]) -> int:
    chk = 1
    for value in values:
        top = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ value
        for i, gen in enumerate(_GENERATORS):
            if (top >> i) & 1:
                chk ^= gen
    return chk


def _expand_prefix(prefix: str) -> list[int]:
    return [ord(c) >> 5 for c in prefix] + [0] + [ord(c) & 31 for c in prefix]


def _regroup(data: bytes | list[int], from_bits: int, to_bits: int, pad: bool) -> list[int]:
    acc = bits = 0
    out: list[int] = []
    max_value = (1 << to_bits) - 1
    for value in data:
        acc = (acc << from_bits) | value
        bits += from_bits
        while bits >= to_bits:
            bits -= to_bits
            out.append((acc >> bits) & max_value)
    if pad and bits:
        out.append((acc << (to_bits - bits)) & max_value)
    elif not pad and (bits >= from_bits or (acc << (to_bits - bits)) & max_value):
        raise ValueError("non-zero padding")
    return out


@lru_cache(maxsize=65536)
def address_from_public_key(public_key: bytes) -> str:
    """Return the address of a 32-byte Ed25519 public key."""
    if len(public_key) != _KEY_BYTES:
        raise UsageError(f"an Ed25519 public key is {_KEY_BYTES} bytes, got {len(public_key)}")
    data = _regroup(public_key, 8, 5, pad=True)
    polymod = _polymod(_expand_prefix(PREFIX) + data + [0] * 6) ^ 1
    checksum = [(polymod >> 5 * (5 - i)) & 31 for i in range(6)]
    return PREFIX + "1" + "".join(_CHARSET[d] for d in data + checksum)


def public_key_from_address(address: str) -> bytes:
    """Return the public key inside `address`.

    Raises:
        UsageError: the text is not an AAEX address (wrong prefix, bad character, bad
            checksum or wrong length); the message says which.
    """
    if not isinstance(address, str):
        raise UsageError(f"an address is a str like 'aaex1...', got {type(address).__name__}")
    # Bound the work before anything else: the checksum costs time in the length, and an
    # address may come from a peer who has not yet proven anything (an unverified envelope).
    if len(address) > _BECH32_MAX_LENGTH:
        raise UsageError(f"address {quote(address)} is {len(address)} characters; an AAEX "
                         f"address has {ADDRESS_LENGTH}")
    return _decode(address)


@lru_cache(maxsize=65536)
def _decode(address: str) -> bytes:
    if address.lower() != address:
        raise UsageError(f"address {address!r} must be lower case")
    prefix, sep, rest = address.rpartition("1")
    if not sep or prefix != PREFIX:
        raise UsageError(f"address {address!r} must start with '{PREFIX}1'")
    try:
        values = [_CHAR_VALUE[c] for c in rest]
    except KeyError as exc:
        raise UsageError(f"address {address!r} has a character outside bech32: {exc}") from None
    if len(values) < 7 or _polymod(_expand_prefix(prefix) + values) != 1:
        raise UsageError(f"address {address!r} fails its checksum; it was mistyped or cut")
    try:
        key = bytes(_regroup(values[:-6], 5, 8, pad=False))
    except ValueError:
        raise UsageError(f"address {address!r} does not hold a whole public key") from None
    if len(key) != _KEY_BYTES:
        raise UsageError(f"address {address!r} holds {len(key)} bytes, not a {_KEY_BYTES}-byte key")
    return key


def bech32_encode(prefix: str, data: bytes) -> str:
    """Encode `data` as bech32 with `prefix` (BIP-173 checksum, no length limit).

    For foreign identifiers built the same way (uAgents' ``agent1...`` keys and ``sig1...``
    signatures); AAEX addresses use `address_from_public_key`.
    """
    values = _regroup(data, 8, 5, pad=True)
    polymod = _polymod(_expand_prefix(prefix) + values + [0] * 6) ^ 1
    checksum = [(polymod >> 5 * (5 - i)) & 31 for i in range(6)]
    return prefix + "1" + "".join(_CHARSET[d] for d in values + checksum)


def bech32_decode(text: str) -> tuple[str, bytes]:
    """Return the prefix and the bytes of a bech32 string.

    Raises:
        ValueError: not lower case, no separator, a character outside bech32, a bad
            checksum or non-zero padding; the message says which.
    """
    if text.lower() != text:
        raise ValueError(f"{text[:24]!r} must be lower case")
    prefix, sep, rest = text.rpartition("1")
    if not sep or not prefix:
        raise ValueError(f"{text[:24]!r} has no bech32 prefix")
    try:
        values = [_CHAR_VALUE[c] for c in rest]
    except KeyError as exc:
        raise ValueError(f"{text[:24]!r} has a character outside bech32: {exc}") from None
    if len(values) < 7 or _polymod(_expand_prefix(prefix) + values) != 1:
        raise ValueError(f"{text[:24]!r} fails its bech32 checksum")
    return prefix, bytes(_regroup(values[:-6], 5, 8, pad=False))


def is_address(text: object) -> bool:
    """True when `text` is a well-formed AAEX address."""
    try:
        public_key_from_address(text)  # type: ignore[arg-type]  # checked inside
    except UsageError:
        return False
    return True
