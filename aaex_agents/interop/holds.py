"""Sync requests held open, bounded per client address and in total.

A uAgents sync request (``x-uagents-connection: sync``) keeps its HTTP connection open until
the agent answers. Whoever sends requests that are never answered would otherwise hold a
connection each until the gateway's `sync_timeout`, and with enough of them take every
connection of the listener. `SyncHolds` admits a sync request only while its address holds
fewer than `per_address` and the listener fewer than `total`; a request beyond either is
refused at once (`ReceiverBusy`) before anything is parsed, and can be sent again later.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

from ..errors import ReceiverBusy, UsageError


class SyncHolds:
    """Counts the sync requests held now, by client address.

    Args:
        total: most requests held at once, from every address together.
        per_address: most held at once from one client address.
    """

    def __init__(self, *, total: int, per_address: int) -> None:
        if not 0 < per_address <= total:
            raise UsageError(f"SyncHolds: need 0 < per_address <= total, got {per_address} "
                             f"and {total}")
        self._total = total
        self._per_address = per_address
        self._held: Counter[str] = Counter()
        self._count = 0

    def __len__(self) -> int:
        """Requests held now."""
        return self._count

    @contextmanager
    def hold(self, address: str) -> Iterator[None]:
        """Hold one request from `address` for the block's duration.

        Raises:
            ReceiverBusy: `address` already holds `per_address` requests, or all addresses
                together hold `total`; the message names the limit.
        """
        if self._held[address] >= self._per_address:
            raise ReceiverBusy(f"{address} already holds {self._per_address} sync requests "
                               "open here, the most one address may; wait for their answers, "
                               "or send without x-uagents-connection: sync")
        if self._count >= self._total:
            raise ReceiverBusy(f"this gateway already holds {self._total} sync requests open, "
                               "the most it holds at once; retry later, or send without "
                               "x-uagents-connection: sync")
        self._held[address] += 1
        self._count += 1
        try:
            yield
        finally:
            self._count -= 1
            self._held[address] -= 1
            if self._held[address] <= 0:
                del self._held[address]

    def __repr__(self) -> str:
        return (f"<SyncHolds {self._count}/{self._total} from {len(self._held)} addresses, "
                f"{self._per_address} each>")
