"""A `Directory` backed by the DHT: routing by address for the runtime."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from typing_extensions import override

from aaex_agents.directory import Directory
from aaex_agents.errors import PeerUnreachable

from .dht import Discovery

LOOK_AGAIN_EVERY_S = 10.0
"""One address is looked up past the cache at most this often: a peer that is simply down
(every request to it fails) costs one DHT walk a period, not one per request, and leaves
the DHT's capacity to the lookups that find its replacement."""

class DhtDirectory(Directory):
    """Resolves addresses through verified agent records (cached until they expire).

    Endpoints come back fastest transport first (HTTP, then libp2p); the runtime uses the
    first one it has a transport for, so two nodes meet on the fastest transport both serve.
    """

    def __init__(self, discovery: Discovery, *, look_again_every: float = LOOK_AGAIN_EVERY_S,
                 remembered: int = 10_000) -> None:
        self._discovery = discovery
        self._look_again_every = look_again_every
        self._looked_again: OrderedDict[str, float] = OrderedDict()
        """When each address was last looked up past the cache (the newest `remembered`)."""
        self._remembered = remembered

    @override
    async def resolve(self, address: str) -> Sequence[str]:
        try:
            record = await self._discovery.resolve(address)
        except PeerUnreachable:
            return ()
        return record.endpoints()

    @override
    async def encryption_key(self, address: str) -> bytes | None:
        """The key in `address`'s verified agent record (None for a record without one)."""
        try:
            record = await self._discovery.resolve(address)
        except PeerUnreachable:
            return None
        return None if record.encryption_key is None else bytes.fromhex(record.encryption_key)

    @override
    async def resolve_again(self, address: str) -> Sequence[str]:
        """The endpoints of `address`'s record as the DHT holds it now, not as cached.

        A restarted node re-publishes its agents' records with its new endpoints (and a
        higher sequence number, which every DHT node's validator prefers). If this node
        was cut off from the DHT (its seed restarted), it first dials its seeds again.
        Nothing new (empty) when `address` was looked up so within `look_again_every` s.
        """
        now = self._discovery.clock.now()
        last = self._looked_again.pop(address, None)
        if last is not None and now - last < self._look_again_every:
            self._looked_again[address] = last
            return ()
        self._looked_again[address] = now
        if len(self._looked_again) > self._remembered:
            self._looked_again.popitem(last=False)
        try:
            record = await self._discovery.resolve(address, fresh=True)
        except PeerUnreachable:
            return ()
        return record.endpoints()
