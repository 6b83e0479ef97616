"""The in-process board checks commitments and reveals as the chain contract does."""

from __future__ import annotations

import pytest

from aaex_agents.clock import ManualClock
from marketplace.consensus.board import EpochTimes, MemoryChain
from marketplace.consensus.errors import EpochInputError

CAPABILITY = "forecast.demand"
SALT = b"s" * 32


def chain() -> MemoryChain:
    clock = ManualClock(start=0.0)
    record = MemoryChain(clock, EpochTimes(genesis=0, length=600, commit=240, reveal=120))
    record.registered[CAPABILITY] = ["a", "b"]
    return record


async def test_a_matching_reveal_in_its_window_counts() -> None:
    record = chain()
    board = record.account("v")
    await board.commit_weights(CAPABILITY, 0, {"a": 1, "b": 2}, SALT)
    record.clock.advance(250)  # type: ignore[attr-defined]
    await board.reveal_weights(CAPABILITY, 0, {"a": 1, "b": 2}, SALT)
    assert await board.revealed_weights(CAPABILITY, 0) == {"v": {"a": 1, "b": 2}}


@pytest.mark.parametrize(("revealed", "salt", "at", "named"), [
    ({"a": 1, "b": 3}, SALT, 250, "forged"),                 # other weights than committed
    ({"a": 1, "b": 2}, b"t" * 32, 250, "forged"),            # another salt
    ({"a": 1, "b": 2}, SALT, 100, "early"),                  # before the reveal window
    ({"a": 1, "b": 2}, SALT, 400, "late"),                   # after it
    ({"a": 1}, SALT, 250, "forged"),                         # a seller left out
])
async def test_a_reveal_that_does_not_match_or_is_out_of_time_is_refused(
        revealed: dict[str, int], salt: bytes, at: float, named: str) -> None:
    record = chain()
    board = record.account("v")
    await board.commit_weights(CAPABILITY, 0, {"a": 1, "b": 2}, SALT)
    record.clock.advance(at)  # type: ignore[attr-defined]
    with pytest.raises(EpochInputError, match=named):
        await board.reveal_weights(CAPABILITY, 0, revealed, salt)
    assert await board.revealed_weights(CAPABILITY, 0) == {}


async def test_commitments_close_with_the_commit_window_and_the_first_one_counts() -> None:
    record = chain()
    board = record.account("v")
    first = await board.commit_weights(CAPABILITY, 0, {"a": 1, "b": 2}, SALT)
    again = await board.commit_weights(CAPABILITY, 0, {"a": 9, "b": 9}, SALT)
    assert first != again and record.commitments[(CAPABILITY, 0)]["v"] == first
    record.clock.advance(240)  # type: ignore[attr-defined]
    with pytest.raises(EpochInputError, match="commit window"):
        await board.commit_weights(CAPABILITY, 0, {"a": 1, "b": 2}, SALT)
    # a reveal for a seller set other than the registered one is malformed
    record.registered[CAPABILITY] = ["a", "b", "c"]
    record.clock.advance(10)  # type: ignore[attr-defined]
    with pytest.raises(EpochInputError, match="malformed"):
        await board.reveal_weights(CAPABILITY, 0, {"a": 1, "b": 2}, SALT)
