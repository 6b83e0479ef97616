"""Why the consensus refused to compute an epoch.

Part of the AAEX error tree (see aaex_agents.errors)::

    AaexError
    └── UsageError
        └── EpochInputError     stake, weights, bonds or parameters of the wrong shape or range

The epoch is a pure function: it raises before computing anything, and never half-way.
"""

from __future__ import annotations

from aaex_agents.errors import UsageError


class EpochInputError(UsageError):
    """An epoch's input does not fit its contract; the message names the field and the value."""
