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


class StaticDirectory(Directory):
    """A directory filled by hand."""

    def __init__(self, entries: dict[str, Sequence[str]] | None = None) -> None:
        self._entries: dict[str, tuple[str, ...]] = {}
        for address, endpoints in (entries or {}).items():
            self.add(address, *endpoints)

    def add(self, address: str, *endpoints: str) -> None:
        """Record endpoints for `address`, after any already known.

        Raises:
            UsageError: `address` is not a well-formed address.
        """
        public_key_from_address(address)
        known = self._entries.get(address, ())
        self._entries[address] = known + tuple(e for e in endpoints if e not in known)

    def remove(self, address: str) -> None:
        """Forget `address`."""
        self._entries.pop(address, None)

    @override
    async def resolve(self, address: str) -> Sequence[str]:
        return self._entries.get(address, ())

    def __repr__(self) -> str:
        return f"<StaticDirectory {len(self._entries)} addresses>"
