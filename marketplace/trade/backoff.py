"""Bans of failing sellers, with exponential backoff: who, why, until when.

A seller that took an award and did not deliver (or delivered what we dispute) is banned
for `base * 2 ** (failures - 1)` seconds, up to `cap`; a decline is an answer, never a ban
(marketplace.trade.delegation). The node shows the bans in force (status, web view, metrics).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Ban:
    """A peer banned now: why, until when (clock seconds), after how many failures."""

    peer: str
    reason: str
    until: float
    failures: int


@dataclass
class Backoff:
    """Bans a failing peer for `base * 2 ** (failures - 1)` seconds, up to `cap`."""

    base: float = 5.0
    cap: float = 600.0
    bans_total: int = 0
    """Bans imposed since start (the operator's counter)."""
    _until: dict[str, float] = field(default_factory=dict)
    _failures: dict[str, int] = field(default_factory=dict)
    _reasons: dict[str, str] = field(default_factory=dict)

    def ban(self, peer: str, now: float, reason: str = "failed") -> float:
        """Record a failure of `peer` (`reason`: what it did); return how long it is banned."""
        failures = self._failures.get(peer, 0) + 1
        self._failures[peer] = failures
        seconds: float = min(self.cap, self.base * float(2 ** (failures - 1)))
        self._until[peer] = now + seconds
        self._reasons[peer] = reason[:200]
        self.bans_total += 1
        return seconds

    def active(self, now: float) -> list[Ban]:
        """The bans in force at `now`, the soonest to expire first (status, web view)."""
        return sorted((Ban(peer, self._reasons.get(peer, "failed"), until,
                           self._failures.get(peer, 0))
                       for peer, until in self._until.items() if until > now),
                      key=lambda ban: ban.until)

    def banned(self, peer: str, now: float) -> bool:
        """True while `peer` is banned."""
        return self._until.get(peer, 0.0) > now

    def forgive(self, peer: str) -> None:
        """Forget `peer`'s failures after a success."""
        self._failures.pop(peer, None)
        self._until.pop(peer, None)
        self._reasons.pop(peer, None)
