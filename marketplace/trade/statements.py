"""Statements over the market protocol: two parties compare their books without a third.

    buyer agent                                   seller agent
    StatementQuery  ───────────────────────────▶  StatementReply(lines, net) | Decline

Each side keeps its own books (marketplace.contracts.books). To reconcile, an agent asks its
partner for the partner's statement of their trades; the asker is the envelope's signed
sender, and the answer lists only the agreements between the asker and the answering agent,
never another party's deals (a node's ledger holds the trades of every agent it hosts). The
asker restricts its own books the same way and compares the two with `books.differences`:
the lines name debtor and creditor, so they read the same from both sides, and the nets are
opposite.

A reply also carries the answering node's signed `Checkpoint` of its ledger, taken as it
answered: whoever asked keeps it, and the answering node can no longer cut or rewrite that
history without the checkpoint showing it (marketplace.contracts.checkpoint).

Only a partner is answered. A key with no agreement with the answering agent on its books
gets `Decline("no_trades")` and nothing else: no checkpoint, so no stranger learns the
node's ledger size or activity. And each sender may ask `STATEMENT_RATE` times (a burst,
then a steady rate); beyond, `Decline("rate_limited")` before the books are read. Every
agent that answers (`ServiceSeller`, `Buyer`, the node's `MarketDesk`) keeps a
`StatementDesk` for that; `reconcile` asks.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from aaex_agents import Context, Message
from aaex_agents.errors import AaexError
from aaex_agents.money import ZERO, Credits

from ..contracts.books import Line, Statement, differences, statement
from ..contracts.checkpoint import Checkpoint
from ..contracts.errors import ContractRejected
from ..contracts.ledger import Ledger
from .negotiation import Decline
from .policy import PeerBuckets, RateLimit

STATEMENT_RATE = RateLimit(per_second=1.0, burst=10)
"""Statement queries per sender: 10 at once, then one a second (a reconcile asks once)."""


class StatementQuery(Message, type="market.statement_query/1"):
    """Asks the receiving agent for its statement of its trades with the sender."""


class StatementReply(Message, type="market.statement/1"):
    """The answering agent's statement of its trades with the asker."""

    lines: tuple[Line, ...]
    """Every agreement between the two, in the order the answering books recorded them."""
    net: Credits
    """From the answering agent's side: > 0 the asker owes it that much."""
    checkpoint: Checkpoint | None = None
    """The answering node's ledger head, signed by its key as it answered (None: its
    ledger has no key to sign with)."""


def statement_between(lines: Iterable[Line], me: str, partner: str) -> Statement:
    """The lines between `me` and `partner` only, from `me`'s side (see books.statement)."""
    return statement((line for line in lines if {line.buyer, line.seller} == {me, partner}),
                     partner)


class StatementDesk:
    """Answers `StatementQuery` for one or more agents: partners only, at a rate per sender."""

    def __init__(self, rate: RateLimit = STATEMENT_RATE) -> None:
        self._rate = PeerBuckets(rate)

    async def answer(self, ledger: Ledger | None, me: str, asker: str | None,
                     now: float) -> StatementReply | Decline:
        """What the agent at `me` answers a `StatementQuery` from `asker` at `now` (s)."""
        if ledger is None or asker is None:
            return Decline(dialogue="", reason="no_books",
                           detail="this agent keeps no books (it was started without a ledger)")
        if not self._rate.take(asker, now):
            return Decline(dialogue="", reason="rate_limited",
                           detail=f"more than {self._rate.rate.per_second:g} statement "
                                  "queries a second; slow down")
        mine = statement_between(await ledger.lines(), me, asker)
        if not mine.lines:  # a stranger learns nothing, not even how big the books are
            return Decline(dialogue="", reason="no_trades",
                           detail="no agreement between you and this agent is on its books")
        checkpoint = await ledger.checkpoint() if ledger.owner is not None else None
        return StatementReply(lines=mine.lines, net=mine.net, checkpoint=checkpoint)


@dataclass(frozen=True)
class Reconciliation:
    """Our statement with a partner, the partner's, and every way they disagree."""

    agent: str
    """Our agent, whose trades with `partner` were compared."""
    partner: str
    ours: Statement
    theirs: Statement | None
    """None when the partner did not answer (then `differences` says why)."""
    differences: tuple[str, ...]
    checkpoint: Checkpoint | None = None
    """The partner node's signed ledger head, verified, when its answer carried one."""


async def reconcile(ctx: Context, ledger: Ledger, partner: str, *,
                    timeout: float = 10.0) -> Reconciliation:
    """Compare the books of `ctx`'s agent with `partner`'s statement of the same trades.

    Never raises for the partner: an unreachable or bookless partner is a difference.
    """
    me = ctx.address
    ours = statement_between(await ledger.lines(), me, partner)
    try:
        reply = await ctx.ask(partner, StatementQuery(), timeout=timeout)
    except (AaexError, TimeoutError) as exc:
        why = f"the partner did not answer: {exc or type(exc).__name__}"
        return Reconciliation(me, partner, ours, None, (why,))
    if isinstance(reply, Decline) and reply.reason == "no_trades":
        # The partner's books hold no trade with us: compared as the empty statement it is.
        reply = StatementReply(lines=(), net=ZERO)
    if not isinstance(reply, StatementReply):
        detail = (f"{reply.reason}: {reply.detail}" if isinstance(reply, Decline)
                  else type(reply).__name__)
        return Reconciliation(me, partner, ours, None,
                              (f"the partner gave no statement ({detail})",))
    theirs = Statement(me, reply.lines, reply.net)
    found = [f"{line.agreement_id[:16]}: the partner lists a trade that is not between us"
             for line in theirs.lines if {line.buyer, line.seller} != {me, partner}]
    checkpoint = reply.checkpoint
    if checkpoint is not None:
        try:
            checkpoint.verify()
        except ContractRejected as exc:
            found.append(f"checkpoint: the partner's does not verify ({exc})")
            checkpoint = None
    found += differences(ours, theirs)
    if ours.net != -theirs.net:
        found.append(f"net: ours {ours.net}, the partner's {theirs.net} (credits; they "
                     "should be opposite)")
    return Reconciliation(me, partner, ours, theirs, tuple(found), checkpoint)
