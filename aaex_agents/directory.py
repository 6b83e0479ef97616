"""Where an agent can be reached: address -> transport endpoints.

The runtime asks a `Directory` before sending. `StaticDirectory` is a plain table (tests,
fixed deployments); the DHT-backed directory of the `discovery` package implements the same
one-method interface.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence

from typing_extensions import override

from .address import public_key_from_address
from .errors import UsageError


class Directory(abc.ABC):
    """Resolves agent addresses to endpoints, best first."""

    @abc.abstractmethod
    async def resolve(self, address: str) -> Sequence[str]:
        """Return the endpoints where `address` may be reached; empty if none is known."""

    async def resolve_again(self, address: str) -> Sequence[str]:
        """Look `address` up anew, after `resolve` knew no endpoint or every one failed.

        The agent may have restarted elsewhere since a directory that caches learned its
        endpoints, or this node may have lost touch with the network; such a directory
        overrides this to skip its cache and rejoin. By default, the answer is `resolve`'s.
        """
        return await self.resolve(address)

    async def encryption_key(self, address: str) -> bytes | None:
        """`address`'s X25519 encryption key as its signed record states it; None if unknown.

        Only a key bound to the agent by its own signature may be returned. With None, the
        runtime asks the agent itself (`aaex_agents.keyring.KeyRequest`).
        """
        return None


class StaticDirectory(Directory):
    """A directory filled by hand."""

    def __init__(self, entries: dict[str, Sequence[str]] | None = None) -> None:
        self._entries: dict[str, tuple[str, ...]] = {}
        self._keys: dict[str, bytes] = {}
        for address, endpoints in (entries or {}).items():
            self.add(address, *endpoints)

    def add(self, address: str, *endpoints: str, encryption_key: bytes | None = None) -> None:
        """Record endpoints for `address`, after any already known, and its encryption key.

        Give `encryption_key` only when it came from the agent (its `Identity`, its signed
        record); without it the runtime asks the agent, which signs its answer.

        Raises:
            UsageError: `address` is not a well-formed address, or the key is not 32 bytes.
        """
        public_key_from_address(address)
        if encryption_key is not None:
            if len(encryption_key) != 32:
                raise UsageError(f"an X25519 public key is 32 bytes, got {len(encryption_key)}")
            self._keys[address] = encryption_key
        known = self._entries.get(address, ())
        self._entries[address] = known + tuple(e for e in endpoints if e not in known)

    def remove(self, address: str) -> None:
        """Forget `address`."""
        self._entries.pop(address, None)
        self._keys.pop(address, None)

    @override
    async def resolve(self, address: str) -> Sequence[str]:
        return self._entries.get(address, ())

    @override
    async def encryption_key(self, address: str) -> bytes | None:
        return self._keys.get(address)

    def __repr__(self) -> str:
        return f"<StaticDirectory {len(self._entries)} addresses>"
