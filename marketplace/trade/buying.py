"""The buyer's side as an agent: an agent that buys through `ctx.delegate` and keeps books.

A node buys for its agents through its market (`marketplace.trade.market`), and the
purchases land on the node's ledger. `Buyer` is the base class of an agent whose job is to
buy: given the node's ledger (the node passes it, as it does to a `ServiceSeller`), it
answers its sellers' `StatementQuery`, so either side can reconcile.

    [[agents]]
    name = "shopper"
    class = "marketplace:Buyer"        # buys from the terminal: aaex market buy ...
"""

from __future__ import annotations

from aaex_agents import Agent, Context, Identity, handler

from ..contracts.ledger import Ledger
from .negotiation import Decline
from .statements import StatementDesk, StatementQuery, StatementReply


class Buyer(Agent):
    """An agent that buys; subclass it, or host it as is to buy from the terminal.

    Pass `ledger` (the node does) so it can answer statements of its purchases.
    """

    def __init__(self, identity: Identity | None = None, *, name: str | None = None,
                 ledger: Ledger | None = None) -> None:
        super().__init__(identity, name=name)
        self.ledger = ledger
        self._statements = StatementDesk()

    @handler
    async def on_statement_query(self, ctx: Context,
                                 msg: StatementQuery) -> StatementReply | Decline:
        """Our books' statement of our trades with the asker, and nothing else."""
        return await self._statements.answer(self.ledger, self.address, ctx.sender,
                                             ctx.clock.now())
