"""A `Directory` backed by the DHT: routing by address for the runtime."""

from __future__ import annotations

from collections.abc import Sequence

from typing_extensions import override

from aaex_agents.directory import Directory
from aaex_agents.errors import PeerUnreachable

from .dht import Discovery


class DhtDirectory(Directory):
    """Resolves addresses through verified agent records (cached until they expire).

    Endpoints come back fastest transport first (HTTP, then libp2p); the runtime uses the
    first one it has a transport for, so two nodes meet on the fastest transport both serve.
    """

    def __init__(self, discovery: Discovery) -> None:
        self._discovery = discovery

    @override
    async def resolve(self, address: str) -> Sequence[str]:
        try:
            record = await self._discovery.resolve(address)
        except PeerUnreachable:
            return ()
        return record.endpoints()

    @override
    async def resolve_again(self, address: str) -> Sequence[str]:
        """The endpoints of `address`'s record as the DHT holds it now, not as cached.

        A restarted node re-publishes its agents' records with its new endpoints (and a
        higher sequence number, which every DHT node's validator prefers). If this node
        was cut off from the DHT (its seed restarted), it first dials its seeds again.
        """
        try:
            record = await self._discovery.resolve(address, fresh=True)
        except PeerUnreachable:
            return ()
        return record.endpoints()
