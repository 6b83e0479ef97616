"""What the data owner's node takes of an audit notice, and what it refuses (AuditDesk).

Real ledgers, real signatures: the user's ledger builds the notice (`audit_report`), the
owner's desk checks it. A refused notice leaves nothing on the owner's books.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from aaex_agents.clock import ManualClock
from marketplace.contracts.ledger import Ledger, LedgerConfig, open_ledger
from marketplace.trade.audit import AUDIT_RATE, AuditDesk, AuditNotice, AuditTaken, ProvenEntry
from marketplace.trade.negotiation import Decline
from tests.market_kit import BUYER, OWNER, SELLER, STRANGER


@pytest.fixture
async def books() -> AsyncIterator[tuple[Ledger, Ledger]]:
    clock = ManualClock()
    async with open_ledger(None, config=LedgerConfig(clock=clock, owner=OWNER)) as user, \
            open_ledger(None, config=LedgerConfig(clock=clock, owner=STRANGER)) as owner:
        for n in range(3):
            await user.record_access(SELLER.address, f"sales/{n}", "forecast",
                                     owner=BUYER.address)
        yield user, owner


async def notice(user: Ledger) -> AuditNotice:
    head, found, proof = await user.audit_report(BUYER.address, 0, 64, None)
    return AuditNotice(head=head, first=None, proof=tuple(p.hex() for p in proof),
                       entries=tuple(ProvenEntry(index=i, entry=e,
                                                 proof=tuple(p.hex() for p in path))
                                     for i, e, path in found))


async def test_a_proven_notice_is_taken(books: tuple[Ledger, Ledger]) -> None:
    user, owner = books
    reply = await AuditDesk(owner).receive(BUYER.address, SELLER.address, await notice(user),
                                           0.0)
    assert isinstance(reply, AuditTaken) and (reply.outcome, reply.have) == ("first", 3)
    assert len(await owner.audit_received()) == 3


def _flip(text: str) -> str:
    return ("1" if text[0] != "1" else "2") + text[1:]


@pytest.mark.parametrize("change", ["foreign_owner", "other_sender", "bad_inclusion",
                                    "forged_head", "not_hex"])
async def test_a_notice_that_does_not_check_is_refused_and_nothing_kept(
        books: tuple[Ledger, Ledger], change: str) -> None:
    user, owner = books
    sent = await notice(user)
    me, sender = BUYER.address, SELLER.address
    if change == "foreign_owner":
        me = STRANGER.address  # the entries are about BUYER, not about the addressee
    elif change == "other_sender":
        sender = STRANGER.address
    elif change == "bad_inclusion":
        first = sent.entries[0]
        sent = sent.model_copy(update={"entries": (first.model_copy(update={
            "proof": (_flip(first.proof[0]), *first.proof[1:])}), *sent.entries[1:])})
    elif change == "forged_head":
        sent = sent.model_copy(update={"head": sent.head.model_copy(update={
            "root": _flip(sent.head.root)})})
    else:
        first = sent.entries[0]
        sent = sent.model_copy(update={"entries": (first.model_copy(update={
            "proof": ("zz" * 32, *first.proof[1:])}), *sent.entries[1:])})
    reply = await AuditDesk(owner).receive(me, sender, sent, 0.0)
    assert isinstance(reply, Decline) and reply.reason == "audit_refused", reply
    assert await owner.audit_partners() == [] and await owner.audit_received() == []


async def test_each_sender_has_its_own_rate(books: tuple[Ledger, Ledger]) -> None:
    user, owner = books
    desk, sent = AuditDesk(owner), await notice(user)
    for _ in range(AUDIT_RATE.burst):
        assert isinstance(await desk.receive(BUYER.address, SELLER.address, sent, 0.0),
                          AuditTaken)
    refused = await desk.receive(BUYER.address, SELLER.address, sent, 0.0)
    assert isinstance(refused, Decline) and refused.reason == "rate_limited"
    other = await desk.receive(BUYER.address, STRANGER.address, sent, 0.0)
    assert isinstance(other, Decline) and other.reason == "audit_refused"  # its own bucket
    later = await desk.receive(BUYER.address, SELLER.address, sent, 1.0)
    assert isinstance(later, AuditTaken) and later.outcome == "same"
