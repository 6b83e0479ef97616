"""Why a trade did not happen: a seller refused, the wallet refused, or nobody delivered.

Part of the AAEX error tree (see aaex_agents.errors)::

    AaexError
    └── TradeError                  a negotiation or delegation did not end in a delivery
        ├── Refusal                 a seller's check said no; answered as a signed Decline
        ├── SpendingRefused         the buyer's wallet would not sign: over a spending limit
        └── DelegationFailed        no provider delivered within the deadline (`attempts`)
            └── BadTask             the task fits none of the sellers' advertised schemas
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aaex_agents.errors import AaexError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from aaex_agents.services import DelegationAttempt


class TradeError(AaexError):
    """A negotiation or delegation did not end in a delivery; nothing was paid for it."""


class Refusal(TradeError):
    """Raised inside a seller's checks; answered as a signed Decline with `reason`."""

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


class SpendingRefused(TradeError):
    """The wallet refused to sign: the agreement would break the spending policy."""


class DelegationFailed(TradeError):
    """No provider delivered within the deadline; `attempts` says what happened to each."""

    def __init__(self, message: str, attempts: Sequence[DelegationAttempt]) -> None:
        self.attempts = list(attempts)
        super().__init__(message)


class BadTask(DelegationFailed):
    """The task fits the advertised task schema of none of the sellers found.

    Raised before any call for proposals, so nothing was negotiated, escrowed or paid;
    `fault` names the field (``history: required``).
    """

    def __init__(self, message: str, attempts: Sequence[DelegationAttempt], *,
                 fault: str) -> None:
        self.fault = fault
        super().__init__(message, attempts)
