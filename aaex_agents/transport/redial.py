"""When a peer whose dial failed may be dialed again: exponential backoff, per peer.

The libp2p transport dials a peer again whenever it has no live connection to it: after the
peer restarted, or after a broken connection was dropped. A dial that fails starts a
backoff for that peer (`first`, doubled on each further failure up to `most`); until it
has passed, requests to that peer fail at once instead of dialing, and the first request
after it dials again. A successful dial forgets the peer.

This replaces py-libp2p's own negative cache, which blocks a peer for a fixed 60 s after
one failed dial, so a peer that restarted within a second stayed unreachable for a minute.

Pure bookkeeping on an injected `Clock`: no I/O, no trio, safe to test with a ManualClock.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..clock import Clock
from ..errors import UsageError

MAX_PEERS = 4096
"""Peers whose backoff is remembered at once; past it the ones whose wait is over, then the
oldest, are forgotten (a forgotten peer is dialed at once, as a new one is)."""


@dataclass(slots=True)
class _Failing:
    failures: int
    not_before: float


class RedialBackoff:
    """Per-peer backoff between failed dials, in seconds of `clock` time."""

    def __init__(self, clock: Clock, *, first: float = 0.5, most: float = 10.0) -> None:
        if not 0 < first <= most:
            raise UsageError(f"RedialBackoff needs 0 < first <= most, got first={first!r}, "
                             f"most={most!r}")
        self._clock, self._first, self._most = clock, first, most
        self._peers: dict[str, _Failing] = {}

    def wait_left(self, peer: str) -> float:
        """Seconds until `peer` may be dialed again; 0 when it may be dialed now."""
        failing = self._peers.get(peer)
        if failing is None:
            return 0.0
        return max(0.0, failing.not_before - self._clock.now())

    def failed(self, peer: str) -> float:
        """Note a failed dial of `peer`; returns the wait before the next one.

        Dials that fail while a backoff is running (concurrent requests that all dialed)
        count once: the backoff grows per round of dialing, not per request.
        """
        now = self._clock.now()
        failing = self._peers.get(peer)
        if failing is not None and now < failing.not_before:
            return failing.not_before - now
        failures = 1 if failing is None else failing.failures + 1
        wait = min(self._most, self._first * 2.0 ** min(failures - 1, 32))
        self._peers.pop(peer, None)  # re-inserted last: the dict stays oldest first
        self._peers[peer] = _Failing(failures, now + wait)
        self._bound(now)
        return wait

    def succeeded(self, peer: str) -> None:
        """Forget `peer`'s failures: it answered."""
        self._peers.pop(peer, None)

    def _bound(self, now: float) -> None:
        if len(self._peers) <= MAX_PEERS:
            return
        for peer in [p for p, f in self._peers.items() if f.not_before <= now]:
            del self._peers[peer]
        while len(self._peers) > MAX_PEERS:
            del self._peers[next(iter(self._peers))]

    def __repr__(self) -> str:
        return f"<RedialBackoff peers_backing_off={len(self._peers)}>"
