"""Agent identity: an Ed25519 key pair, its self-certifying address, and key files.

The same seed also yields the agent's X25519 encryption key (see `aaex_agents.hpke`), so a
key file holds both and needs no new field.

Key files are JSON so an operator can read the address without tools, written with mode
0600 through a temporary file and an atomic rename (a crash never leaves half a key), and
optionally sealed with a passphrase (Argon2id + XSalsa20-Poly1305 from libsodium).
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import nacl.bindings
import nacl.exceptions
import nacl.pwhash
import nacl.secret
import nacl.utils
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from .address import address_from_public_key, public_key_from_address
from .errors import KeyFileError, UsageError
from .hpke import derive_encryption_key, open_with, public_bytes

SIGNATURE_BYTES = 64
SEED_BYTES = 32
_KEY_FILE_KIND = "aaex-key"
_KEY_FILE_VERSION = 1


class Identity:
    """An Ed25519 signing key and the address derived from it.

    The private key never leaves this object except through `save`.
    """

    __slots__ = ("_encryption_key", "_encryption_public_key", "_secret_key", "_seed", "address",
                 "public_key")

    def __init__(self, seed: bytes) -> None:
        if not isinstance(seed, bytes) or len(seed) != SEED_BYTES:
            raise UsageError(f"an Ed25519 seed is {SEED_BYTES} bytes; use Identity.generate()")
        public_key, secret_key = nacl.bindings.crypto_sign_seed_keypair(seed)
        self._seed = seed
        self._secret_key = secret_key
        self.public_key: bytes = public_key
        self.address: str = address_from_public_key(public_key)
        self._encryption_key: X25519PrivateKey | None = None
        self._encryption_public_key = b""

    @classmethod
    def generate(cls) -> Identity:
        """Return a new identity from the operating system's random source."""
        return cls(nacl.utils.random(SEED_BYTES))

    def sign(self, data: bytes) -> bytes:
        """Return the 64-byte Ed25519 signature of `data`."""
        return nacl.bindings.crypto_sign(data, self._secret_key)[:SIGNATURE_BYTES]

    @property
    def encryption_public_key(self) -> bytes:
        """The 32-byte X25519 public key peers seal messages to (derived on first use)."""
        self._box_key()
        return self._encryption_public_key

    def open_sealed(self, sealed: bytes, *, info: bytes) -> bytes:
        """Open an HPKE payload sealed to this agent's encryption key under `info`.

        Raises:
            BadSeal: it does not open (altered, for another key, or another `info`).
        """
        return open_with(self._box_key(), sealed, info=info)

    def _box_key(self) -> X25519PrivateKey:
        if self._encryption_key is None:  # lazily: most identities made in tests never open
            self._encryption_key = derive_encryption_key(self._seed)
            self._encryption_public_key = public_bytes(self._encryption_key)
        return self._encryption_key

    def export_seed(self) -> bytes:
        """The 32-byte private seed.

        A secret: only for deriving a node's libp2p key from the same key file, never for
        sending anywhere.
        """
        return self._seed

    def save(self, path: str | os.PathLike[str], *, passphrase: str | None = None,
             overwrite: bool = False) -> Path:
        """Write the key to `path` with mode 0600, sealed when a passphrase is given.

        Raises:
            UsageError: the file exists and `overwrite` is false.
            KeyFileError: the file cannot be written (the message has the OS reason).
        """
        target = Path(path)
        if target.exists() and not overwrite:
            raise UsageError(f"{target} already exists; pass overwrite=True to replace it")
        document: dict[str, object] = {
            "kind": _KEY_FILE_KIND, "version": _KEY_FILE_VERSION, "address": self.address}
        if passphrase is None:
            document["seed"] = self._seed.hex()
        else:
            document["sealed"] = _seal_seed(self._seed, passphrase)
        _write_private(target, json.dumps(document, indent=2).encode() + b"\n")
        return target

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, passphrase: str | None = None) -> Identity:
        """Read a key file written by `save`.

        Raises:
            KeyFileError: missing, readable by others than its owner, corrupt, sealed with
                no passphrase given, or the passphrase is wrong.
        """
        source = Path(path)
        try:
            mode = source.stat().st_mode
            raw = source.read_bytes()
        except OSError as exc:
            raise KeyFileError(f"cannot read key file {source}: {exc.strerror}") from exc
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise KeyFileError(
                f"key file {source} is accessible by other users (mode {stat.filemode(mode)}); "
                f"run `chmod 600 {source}`")
        try:
            document = json.loads(raw)
            if document.get("kind") != _KEY_FILE_KIND:
                raise ValueError(f"kind is {document.get('kind')!r}, not {_KEY_FILE_KIND!r}")
            if document.get("version") != _KEY_FILE_VERSION:
                raise ValueError(f"version {document.get('version')!r} is not supported")
            if "sealed" in document:
                if passphrase is None:
                    raise KeyFileError(f"key file {source} is sealed; pass its passphrase")
                seed = _open_seed(document["sealed"], passphrase, source)
            else:
                seed = bytes.fromhex(document["seed"])
            identity = cls(seed)
        except KeyFileError:
            raise
        except (ValueError, KeyError, TypeError, AttributeError, UsageError) as exc:
            raise KeyFileError(f"key file {source} is corrupt: {exc}") from exc
        if identity.address != document.get("address"):
            raise KeyFileError(f"key file {source} is corrupt: its key does not match its address")
        return identity

    def __repr__(self) -> str:
        return f"<Identity {self.address}>"


def verify_signature(address: str, data: bytes, signature: bytes) -> bool:
    """True when `signature` is `address`'s Ed25519 signature of `data`.

    Raises:
        UsageError: `address` is not a well-formed address.
    """
    public_key = public_key_from_address(address)
    if len(signature) != SIGNATURE_BYTES:
        return False
    try:
        nacl.bindings.crypto_sign_open(signature + data, public_key)
    except nacl.exceptions.BadSignatureError:
        return False
    return True


def _seal_seed(seed: bytes, passphrase: str) -> dict[str, object]:
    salt = nacl.utils.random(nacl.pwhash.argon2id.SALTBYTES)
    ops, mem = nacl.pwhash.argon2id.OPSLIMIT_INTERACTIVE, nacl.pwhash.argon2id.MEMLIMIT_INTERACTIVE
    key = nacl.pwhash.argon2id.kdf(nacl.secret.SecretBox.KEY_SIZE, passphrase.encode(), salt,
                                   opslimit=ops, memlimit=mem)
    box = nacl.secret.SecretBox(key).encrypt(seed)
    return {"kdf": "argon2id", "opslimit": ops, "memlimit": mem, "salt": salt.hex(),
            "box": bytes(box).hex()}


def _open_seed(sealed: dict[str, object], passphrase: str, source: Path) -> bytes:
    if sealed.get("kdf") != "argon2id":
        raise ValueError(f"unknown key derivation {sealed.get('kdf')!r}")
    key = nacl.pwhash.argon2id.kdf(
        nacl.secret.SecretBox.KEY_SIZE, passphrase.encode(), bytes.fromhex(str(sealed["salt"])),
        opslimit=int(sealed["opslimit"]), memlimit=int(sealed["memlimit"]))  # type: ignore[call-overload]
    try:
        return bytes(nacl.secret.SecretBox(key).decrypt(bytes.fromhex(str(sealed["box"]))))
    except nacl.exceptions.CryptoError:
        raise KeyFileError(f"wrong passphrase for key file {source}") from None


def _write_private(target: Path, data: bytes) -> None:
    temp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, target)
    except OSError as exc:
        temp.unlink(missing_ok=True)
        raise KeyFileError(f"cannot write key file {target}: {exc.strerror}") from exc
