"""Identity: self-certifying addresses, Ed25519 signatures and key files."""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from aaex_agents import Identity, KeyFileError, UsageError, verify_signature
from aaex_agents.address import address_from_public_key, is_address, public_key_from_address

BECH32 = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
ADDRESS_LENGTH = len("aaex1") + 52 + 6  # 256 bits in 5-bit groups, then a 6-char checksum

seeds = st.binary(min_size=32, max_size=32)
FIXED_SEED = bytes(range(32))
PASSPHRASE = "correct horse battery staple"  # noqa: S105 - a test passphrase
WRONG_PASSPHRASE = "not the passphrase"  # noqa: S105 - a test passphrase


def flip_bit(data: bytes, bit: int) -> bytes:
    mutable = bytearray(data)
    mutable[bit // 8] ^= 1 << (bit % 8)
    return bytes(mutable)


# --- addresses ------------------------------------------------------------------------------


@given(seeds)
def test_address_round_trips_to_public_key(seed: bytes) -> None:
    identity = Identity(seed)
    address = identity.address
    assert public_key_from_address(address) == identity.public_key
    assert address_from_public_key(identity.public_key) == address
    assert address.startswith("aaex1")
    assert address == address.lower()
    assert len(address) == ADDRESS_LENGTH
    assert set(address[len("aaex1"):]) <= set(BECH32)
    assert is_address(address)


@given(seeds, seeds)
def test_distinct_seeds_give_distinct_addresses(seed_a: bytes, seed_b: bytes) -> None:
    assume(seed_a != seed_b)
    assert Identity(seed_a).address != Identity(seed_b).address
    assert Identity(seed_a).address == Identity(seed_a).address


@given(seeds, st.data())
def test_any_single_substitution_is_caught(seed: bytes, data: st.DataObject) -> None:
    address = Identity(seed).address
    position = data.draw(st.integers(0, len(address) - 1), label="position")
    replacement = data.draw(
        st.sampled_from([c for c in BECH32 if c != address[position]]), label="replacement")
    mistyped = address[:position] + replacement + address[position + 1:]
    with pytest.raises(UsageError):
        public_key_from_address(mistyped)
    assert not is_address(mistyped)


@given(seeds, st.data())
def test_any_single_deletion_is_caught(seed: bytes, data: st.DataObject) -> None:
    address = Identity(seed).address
    position = data.draw(st.integers(0, len(address) - 1), label="position")
    with pytest.raises(UsageError):
        public_key_from_address(address[:position] + address[position + 1:])


@given(seeds, st.data())
def test_any_single_insertion_is_caught(seed: bytes, data: st.DataObject) -> None:
    address = Identity(seed).address
    position = data.draw(st.integers(0, len(address)), label="position")
    inserted = data.draw(st.sampled_from(BECH32), label="inserted")
    with pytest.raises(UsageError):
        public_key_from_address(address[:position] + inserted + address[position:])


def test_every_substitution_deletion_and_insertion_of_one_address_is_caught() -> None:
    # Exhaustive over one address, next to the random search above.
    address = Identity(FIXED_SEED).address
    variants = set()
    for position in range(len(address) + 1):
        for char in BECH32:
            variants.add(address[:position] + char + address[position:])
            if position < len(address) and char != address[position]:
                variants.add(address[:position] + char + address[position + 1:])
        if position < len(address):
            variants.add(address[:position] + address[position + 1:])
    assert address not in variants
    assert len(variants) > 3000
    assert not any(is_address(variant) for variant in variants)


def reference_polymod(values: list[int]) -> int:
    """The BIP-173 checksum function, written out independently of the package."""
    generators = [0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3]
    checksum = 1
    for value in values:
        top = checksum >> 25
        checksum = (checksum & 0x1FFFFFF) << 5 ^ value
        for i in range(5):
            checksum ^= generators[i] if (top >> i) & 1 else 0
    return checksum


def reference_expand(prefix: str) -> list[int]:
    return [ord(c) >> 5 for c in prefix] + [0] + [ord(c) & 31 for c in prefix]


def reference_bech32(prefix: str, payload: bytes) -> str:
    """Encode `payload` as bech32 with a valid checksum, whatever its length."""
    bits = "".join(f"{byte:08b}" for byte in payload)
    bits += "0" * (-len(bits) % 5)
    data = [int(bits[i:i + 5], 2) for i in range(0, len(bits), 5)]
    polymod = reference_polymod(reference_expand(prefix) + data + [0] * 6) ^ 1
    checksum = [(polymod >> 5 * (5 - i)) & 31 for i in range(6)]
    return prefix + "1" + "".join(BECH32[d] for d in data + checksum)


@pytest.mark.parametrize("vector", [
    "a12uel5l",
    "abcdef1qpzry9x8gf2tvdw0s3jn54khce6mua7lmqqqxw",
    "split1checkupstagehandshakeupstreamerranterredcaperred2y9e3w",
    "?1ezyfcl",
])
def test_reference_checksum_accepts_bip173_vectors(vector: str) -> None:
    prefix, _, data = vector.rpartition("1")
    assert reference_polymod(reference_expand(prefix) + [BECH32.index(c) for c in data]) == 1


@given(seeds)
def test_address_is_standard_bech32_of_the_public_key(seed: bytes) -> None:
    identity = Identity(seed)
    assert identity.address == reference_bech32("aaex", identity.public_key)


@pytest.mark.parametrize("size", [0, 1, 20, 31, 33, 64])
def test_well_checksummed_address_of_a_wrong_size_key_is_refused(size: int) -> None:
    address = reference_bech32("aaex", bytes(range(size)))
    with pytest.raises(UsageError):
        public_key_from_address(address)


def test_well_checksummed_address_with_another_prefix_is_refused() -> None:
    public_key = Identity(FIXED_SEED).public_key
    for prefix in ("btc", "aae", "aaexx", "bbex"):
        with pytest.raises(UsageError, match="must start with"):
            public_key_from_address(reference_bech32(prefix, public_key))


@pytest.mark.parametrize("text", [
    "",
    "aaex1",
    "aaex",
    "AAEX1" + "Q" * 58,
    "btc1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqq",
])
def test_malformed_addresses_raise_usage_error(text: str) -> None:
    with pytest.raises(UsageError):
        public_key_from_address(text)


def test_upper_case_address_is_refused() -> None:
    address = Identity(FIXED_SEED).address
    with pytest.raises(UsageError, match="lower case"):
        public_key_from_address(address.upper())


def test_non_string_address_is_a_usage_error() -> None:
    address = Identity(FIXED_SEED).address
    with pytest.raises(UsageError):
        public_key_from_address(address.encode())  # type: ignore[arg-type]
    assert not is_address(None)


@pytest.mark.parametrize("size", [0, 31, 33, 64])
def test_public_key_of_wrong_size_has_no_address(size: int) -> None:
    with pytest.raises(UsageError):
        address_from_public_key(b"\x07" * size)


@pytest.mark.parametrize("seed", [b"", b"\x00" * 31, b"\x00" * 33, "0" * 32])
def test_identity_refuses_a_seed_that_is_not_32_bytes(seed: object) -> None:
    with pytest.raises(UsageError):
        Identity(seed)  # type: ignore[arg-type]


def test_generated_identities_differ() -> None:
    assert Identity.generate().address != Identity.generate().address


# --- signatures -----------------------------------------------------------------------------


@given(seeds, st.binary(max_size=512))
def test_signature_verifies(seed: bytes, data: bytes) -> None:
    identity = Identity(seed)
    signature = identity.sign(data)
    assert len(signature) == 64
    assert verify_signature(identity.address, data, signature) is True


@given(seeds, st.binary(min_size=1, max_size=256), st.data())
def test_flipped_data_bit_fails(seed: bytes, data: bytes, draw: st.DataObject) -> None:
    identity = Identity(seed)
    signature = identity.sign(data)
    bit = draw.draw(st.integers(0, len(data) * 8 - 1), label="bit")
    assert verify_signature(identity.address, flip_bit(data, bit), signature) is False


@given(seeds, st.binary(max_size=256), st.integers(0, 64 * 8 - 1))
def test_flipped_signature_bit_fails(seed: bytes, data: bytes, bit: int) -> None:
    identity = Identity(seed)
    signature = identity.sign(data)
    assert verify_signature(identity.address, data, flip_bit(signature, bit)) is False


@given(seeds, seeds, st.binary(max_size=256))
def test_signature_does_not_verify_for_another_address(
        seed: bytes, other_seed: bytes, data: bytes) -> None:
    assume(seed != other_seed)
    signer, other = Identity(seed), Identity(other_seed)
    assert verify_signature(other.address, data, signer.sign(data)) is False


@given(seeds, st.binary(max_size=64), st.integers(0, 200).filter(lambda n: n != 64))
def test_signature_of_wrong_length_is_false(seed: bytes, data: bytes, length: int) -> None:
    identity = Identity(seed)
    signature = identity.sign(data)
    wrong = (signature * 4)[:length]
    assert verify_signature(identity.address, data, wrong) is False


def test_verify_with_malformed_address_raises() -> None:
    identity = Identity(FIXED_SEED)
    with pytest.raises(UsageError):
        verify_signature(identity.address[:-1], b"x", identity.sign(b"x"))


# --- key files ------------------------------------------------------------------------------


def file_mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(scope="module")
def sealed_key_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One key file sealed with PASSPHRASE (Argon2id is slow, so it is written once)."""
    path = tmp_path_factory.mktemp("sealed") / "agent.key"
    Identity(FIXED_SEED).save(path, passphrase=PASSPHRASE)
    return path


@pytest.fixture
def sealed_copy(sealed_key_file: Path, tmp_path: Path) -> Path:
    target = tmp_path / "agent.key"
    shutil.copyfile(sealed_key_file, target)
    target.chmod(0o600)
    return target


def test_plain_key_file_round_trip(tmp_path: Path) -> None:
    identity = Identity(FIXED_SEED)
    path = tmp_path / "agent.key"
    assert identity.save(path) == path
    loaded = Identity.load(path)
    assert loaded.address == identity.address
    assert loaded.public_key == identity.public_key
    assert loaded.sign(b"message") == identity.sign(b"message")  # Ed25519 is deterministic
    assert file_mode(path) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["agent.key"]  # no temp file left


def test_save_creates_missing_directories(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "agent.key"
    Identity(FIXED_SEED).save(path)
    assert Identity.load(path).address == Identity(FIXED_SEED).address


def test_sealed_key_file_round_trip(sealed_key_file: Path) -> None:
    assert file_mode(sealed_key_file) == 0o600
    loaded = Identity.load(sealed_key_file, passphrase=PASSPHRASE)
    assert loaded.address == Identity(FIXED_SEED).address
    assert loaded.sign(b"m") == Identity(FIXED_SEED).sign(b"m")


def test_plain_file_shows_address_and_sealed_file_hides_seed(
        tmp_path: Path, sealed_key_file: Path) -> None:
    identity = Identity(FIXED_SEED)
    plain = tmp_path / "plain.key"
    identity.save(plain)
    plain_text = plain.read_text()
    assert identity.address in plain_text
    assert json.loads(plain_text)["address"] == identity.address
    sealed_text = sealed_key_file.read_text()
    assert identity.address in sealed_text
    assert FIXED_SEED.hex() not in sealed_text.lower()
    assert "seed" not in json.loads(sealed_text)


def test_wrong_passphrase_is_a_key_file_error(sealed_copy: Path) -> None:
    with pytest.raises(KeyFileError, match="passphrase"):
        Identity.load(sealed_copy, passphrase=WRONG_PASSPHRASE)


def test_sealed_file_without_passphrase_is_a_key_file_error(sealed_copy: Path) -> None:
    with pytest.raises(KeyFileError, match="sealed"):
        Identity.load(sealed_copy)


def test_tampered_sealed_box_is_a_key_file_error(sealed_copy: Path) -> None:
    document = json.loads(sealed_copy.read_text())
    box = bytearray.fromhex(document["sealed"]["box"])
    box[-1] ^= 1
    document["sealed"]["box"] = box.hex()
    sealed_copy.write_text(json.dumps(document))
    with pytest.raises(KeyFileError):
        Identity.load(sealed_copy, passphrase=PASSPHRASE)


def test_plain_key_loaded_with_a_passphrase_still_loads(tmp_path: Path) -> None:
    path = tmp_path / "agent.key"
    Identity(FIXED_SEED).save(path)
    assert Identity.load(path, passphrase=WRONG_PASSPHRASE).address == Identity(FIXED_SEED).address


def write_private(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(0o600)


@pytest.mark.parametrize("text", [
    "",
    "{",
    "not json",
    "[]",
    "null",
    "42",
    '"aaex-key"',
    "{}",
    '{"kind": "aaex-key", "version": 1}',
    '{"kind": "other", "version": 1, "seed": "00"}',
    '{"kind": "aaex-key", "version": 2, "seed": "00"}',
    '{"kind": "aaex-key", "version": 1, "seed": 12}',
    '{"kind": "aaex-key", "version": 1, "seed": "zz"}',
    '{"kind": "aaex-key", "version": 1, "seed": "0001"}',
    '{"kind": "aaex-key", "version": 1, "sealed": "x"}',
    '{"kind": "aaex-key", "version": 1, "sealed": {"kdf": "scrypt"}}',
])
def test_corrupt_key_file_is_a_key_file_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "agent.key"
    write_private(path, text)
    with pytest.raises(KeyFileError):
        Identity.load(path, passphrase=PASSPHRASE)
    with pytest.raises(KeyFileError):
        Identity.load(path)


def test_invalid_utf8_key_file_is_a_key_file_error(tmp_path: Path) -> None:
    path = tmp_path / "agent.key"
    path.write_bytes(b"\xff\xfe{")
    path.chmod(0o600)
    with pytest.raises(KeyFileError):
        Identity.load(path)


def test_key_file_truncated_at_any_length_is_a_key_file_error(tmp_path: Path) -> None:
    source = tmp_path / "agent.key"
    Identity(FIXED_SEED).save(source)
    raw = source.read_bytes()
    assert raw.endswith(b"}\n")
    cut = tmp_path / "cut.key"
    for length in range(len(raw) - 1):  # every cut that loses at least the closing brace
        cut.write_bytes(raw[:length])
        cut.chmod(0o600)
        with pytest.raises(KeyFileError):
            Identity.load(cut)


def test_edited_address_is_a_key_file_error(tmp_path: Path) -> None:
    path = tmp_path / "agent.key"
    Identity(FIXED_SEED).save(path)
    document = json.loads(path.read_text())
    document["address"] = Identity(b"\x09" * 32).address
    write_private(path, json.dumps(document))
    with pytest.raises(KeyFileError, match="does not match its address"):
        Identity.load(path)


def test_edited_seed_is_a_key_file_error(tmp_path: Path) -> None:
    path = tmp_path / "agent.key"
    Identity(FIXED_SEED).save(path)
    document = json.loads(path.read_text())
    document["seed"] = (b"\x09" * 32).hex()
    write_private(path, json.dumps(document))
    with pytest.raises(KeyFileError):
        Identity.load(path)


def test_missing_key_file_is_a_key_file_error(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError):
        Identity.load(tmp_path / "absent.key")


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o700 | 0o070])
def test_key_file_readable_by_others_is_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "agent.key"
    Identity(FIXED_SEED).save(path)
    path.chmod(mode)
    with pytest.raises(KeyFileError, match=r"chmod 600") as excinfo:
        Identity.load(path)
    assert str(path) in str(excinfo.value)
    path.chmod(0o600)
    assert Identity.load(path).address == Identity(FIXED_SEED).address


@pytest.mark.parametrize("mode", [0o400, 0o600, 0o700])
def test_owner_only_modes_are_accepted(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "agent.key"
    Identity(FIXED_SEED).save(path)
    path.chmod(mode)
    assert Identity.load(path).address == Identity(FIXED_SEED).address


def test_save_refuses_to_overwrite_without_flag(tmp_path: Path) -> None:
    path = tmp_path / "agent.key"
    first, second = Identity(FIXED_SEED), Identity(b"\x09" * 32)
    first.save(path)
    before = path.read_bytes()
    with pytest.raises(UsageError, match="overwrite=True"):
        second.save(path)
    assert path.read_bytes() == before
    assert Identity.load(path).address == first.address


def test_save_with_overwrite_replaces_and_restores_private_mode(tmp_path: Path) -> None:
    path = tmp_path / "agent.key"
    path.write_text("old")
    path.chmod(0o644)
    identity = Identity(b"\x09" * 32)
    identity.save(path, overwrite=True)
    assert file_mode(path) == 0o600
    assert Identity.load(path).address == identity.address
    assert sorted(os.listdir(tmp_path)) == ["agent.key"]
