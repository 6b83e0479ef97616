"""The node's market desk: what a node answers on behalf of every agent it hosts.

A partner reconciling its books, or a seller asking whether a sale was escrowed, talks to an
agent; but the books are the node's, and the agent may be any class an operator wrote (a
planner that only buys through `ctx.delegate` declares no market handlers). The node passes
a `MarketDesk` to its runtime as the shared handlers (`open_runtime(shared=...)`): for any
hosted agent whose own class does not answer a `StatementQuery`, an `EscrowQuery`, a
partner's dispute, a resolution or an audit head, the desk answers from the node's ledger,
as that agent and only about that agent's trades (statements to its partners only, at
`STATEMENT_RATE` per sender; audit heads at `AUDIT_RATE`). A data owner's `GrantRevoked` is
kept by the node's `GrantDesk`, whichever of its agents it was sent to.
"""

from __future__ import annotations

from collections.abc import Mapping

from aaex_agents import Agent, Context, handler

from ..contracts.ledger import Ledger
from .audit import AuditDesk, AuditNotice, AuditTaken
from .disputes import (
    DisputeNotice,
    DisputeTaken,
    ResolutionDesk,
    ResolutionNotice,
    ResolutionTaken,
    answer_dispute,
)
from .errors import Refusal
from .escrow import Escrowed, EscrowQuery, Expired, answer_escrow_query
from .grants import GrantDesk, GrantRevoked, RevocationTaken
from .negotiation import Decline
from .payments import PaymentDesk, PaymentNotice, PaymentTaken
from .statements import StatementDesk, StatementQuery, StatementReply


class MarketDesk(Agent):
    """Answers market bookkeeping for the node's `agents` from the node's `ledger`.

    Never hosted itself (its own identity signs nothing): each answer is sealed by the
    runtime as the agent the message was addressed to.
    """

    def __init__(self, agents: Mapping[str, Agent], ledger: Ledger,
                 grants: GrantDesk | None = None) -> None:
        super().__init__(name="market-desk")
        self._agents = agents
        self._ledger = ledger
        self.grants = grants or GrantDesk(ledger=ledger)
        """The node's revocations (shared with its sellers)."""
        self.resolutions = ResolutionDesk(ledger)
        """Resolution offers partners sent, until our operator signs the same terms."""
        self.payments = PaymentDesk(ledger)
        """Payments made outside the market that one partner signed so far."""
        self._statements = StatementDesk()
        self._audit = AuditDesk(ledger)

    async def load(self) -> None:
        """Read back the half-signed offers kept on the ledger before a restart."""
        await self.resolutions.load()
        await self.payments.load()

    @handler
    async def on_statement_query(self, ctx: Context,
                                 msg: StatementQuery) -> StatementReply | Decline:
        """The addressed agent's statement of its trades with the asker, and nothing else."""
        return await self._statements.answer(self._ledger, ctx.address, ctx.sender,
                                             ctx.clock.now())

    @handler
    async def on_escrow_query(self, ctx: Context,
                              msg: EscrowQuery) -> Escrowed | Expired | Decline:
        """Whether the addressed agent escrowed the agreement its seller asks about."""
        agent = self._agents.get(ctx.address)
        if agent is None:
            return Decline(dialogue="", reason="unknown_agent")
        return await answer_escrow_query(self._ledger, agent.identity, ctx.sender, msg,
                                         ctx.clock.now_ms())

    @handler
    async def on_dispute(self, ctx: Context, msg: DisputeNotice) -> DisputeTaken | Decline:
        """Check and record a partner's dispute of one of the addressed agent's agreements."""
        if ctx.sender is None or ctx.address not in self._agents:
            return Decline(dialogue="", reason="unknown_agent")
        return await answer_dispute(self._ledger, ctx.address, ctx.sender, msg)

    @handler
    async def on_resolution(self, ctx: Context,
                            msg: ResolutionNotice) -> ResolutionTaken | Decline:
        """A partner's resolution: ends the dispute when complete, else kept as an offer."""
        if ctx.sender is None or ctx.address not in self._agents:
            return Decline(dialogue="", reason="unknown_agent")
        return await self.resolutions.receive(ctx.address, ctx.sender, msg)

    @handler
    async def on_payment(self, ctx: Context, msg: PaymentNotice) -> PaymentTaken | Decline:
        """A partner's payment record: booked once both signed, else kept as an offer."""
        if ctx.sender is None or ctx.address not in self._agents:
            return Decline(dialogue="", reason="unknown_agent")
        return await self.payments.receive(ctx.address, ctx.sender, msg)

    @handler
    async def on_grant_revoked(self, ctx: Context,
                               msg: GrantRevoked) -> RevocationTaken | Decline:
        """Keep a data owner's revocation; every later use under that grant is refused."""
        if ctx.address not in self._agents:
            return Decline(dialogue="", reason="unknown_agent")
        try:
            await self.grants.revoke(msg.revocation)
        except Refusal as refusal:
            return Decline(dialogue="", reason=refusal.reason, detail=refusal.detail)
        return RevocationTaken(grant_id=msg.revocation.revocation.grant_id)

    @handler
    async def on_audit_notice(self, ctx: Context, msg: AuditNotice) -> AuditTaken | Decline:
        """A partner's signed audit head with its entries about the addressed agent."""
        if ctx.sender is None or ctx.address not in self._agents:
            return Decline(dialogue="", reason="unknown_agent")
        return await self._audit.receive(ctx.address, ctx.sender, msg, ctx.clock.now())
