"""Why the consensus refused to compute an epoch, or the chain did not do what was asked.

Part of the AAEX error tree (see aaex_agents.errors)::

    AaexError
    ├── UsageError
    │   └── EpochInputError         stake, weights, bonds or parameters of the wrong shape or range
    └── ChainError                  the chain did not record what was asked; nothing changed
        ├── ChainRefused            the contract reverted; `reason` is its one-line why
        └── ChainUnavailable        no answer from the chain's endpoint, or none in time

The epoch is a pure function: it raises before computing anything, and never half-way.
web3, eth-tester and HTTP errors are translated once, in `chain_client`, and never leave it.
"""

from __future__ import annotations

from aaex_agents.errors import AaexError, UsageError


class EpochInputError(UsageError):
    """An epoch's input does not fit its contract; the message names the field and the value."""


class ChainError(AaexError):
    """The chain did not record what was asked; the caller's state on chain is unchanged."""


class ChainRefused(ChainError):
    """The contract refused the transaction (a revert): `reason` is the contract's message."""

    def __init__(self, action: str, reason: str) -> None:
        self.action = action
        self.reason = reason
        super().__init__(f"chain refused {action}: {reason}")


class ChainUnavailable(ChainError):
    """The chain's endpoint did not answer, or a transaction was not mined within the timeout.

    A transaction that timed out may still be mined later; reading the state tells.
    """
