"""No money stranded: resume every open purchase on a node's books, at start and periodically.

A buyer can die between any two steps of a delegation (escrow held, task sent, delivery
received, receipt signed). Each step is on its books before the next begins, so after a
restart `resolve_open` finds every agreement still open and brings it to its end through
`Delegator.resolve`: settled by a kept or recovered delivery, the task sent again while time
is left, or refunded as not delivered once its deadline plus `grace` has passed. A receipt the
seller did not get (it was down) is sent again on every pass until the seller has taken it,
so a seller's books learn of every settlement, penalties included, once it is back; a
dispute the partner could not be told of is sent again the same way. A sale
whose buyer died before booking it stays open on the seller's books: no money is involved,
and reconciliation shows it.
Settlement is exactly once on the books (the ledger refuses a second payout), so running
this while a delegation is still live, or twice, is harmless.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable

from aaex_agents import Agent, Context
from aaex_agents.errors import AaexError

from ..contracts.ledger import Ledger
from .disputes import resend_disputes
from .grants import use_from_record
from .market import NodeMarket
from .selling import ServiceSeller

logger = logging.getLogger(__name__)


async def resolve_open(ledger: Ledger, market: NodeMarket, agents: dict[str, Agent],
                       context: Callable[[Agent], Context], *,
                       grace: float) -> Counter[str]:
    """One pass over the open purchases of the hosted `agents`; counts what happened.

    Never raises for one agreement: a failure is logged and the agreement stays open for
    the next pass.
    """
    outcomes: Counter[str] = Counter()
    for open_ in await ledger.open_agreements():
        if open_.role == "seller":
            seller = agents.get(open_.signed.agreement.seller)
            if isinstance(seller, ServiceSeller) and open_.delivery is None:
                outcomes[await seller.check_escrow(context(seller), open_.signed)] += 1
            continue
        buyer = agents.get(open_.signed.agreement.buyer)
        if buyer is None:
            continue
        try:
            outcome = await market.for_agent(buyer.address).resolve(
                context(buyer), open_.signed, open_.task, open_.delivery, grace=grace,
                use=use_from_record(open_.use))
        except (AaexError, TimeoutError):
            logger.warning("open agreement %s not resolved yet", open_.signed.id[:12],
                           exc_info=True)
            outcome = "failed"
        outcomes[outcome] += 1
        if outcome == "settled":
            logger.info("resolved open agreement %s with %s", open_.signed.id[:12],
                        open_.signed.agreement.seller)
    if told := await resend_disputes(ledger, agents, context):
        outcomes["disputes_told"] += told
    for signed, receipt in await ledger.unnotified_receipts():
        buyer = agents.get(signed.agreement.buyer)
        if buyer is not None and await market.for_agent(buyer.address).notify(
                context(buyer), signed, receipt):
            outcomes["notified"] += 1
    return outcomes
