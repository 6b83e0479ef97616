"""The admin API's payment routes: record a payment made outside the market, list by partner.

    POST /account/settle   {"with": ADDRESS, "amount": CREDITS, "reference": TEXT[, "agent"]}
    GET  /accounts/partners        per hosted agent and partner: who owes whom

`settle` records that money moved outside the market (a bank transfer) between one of our
agents and a partner agent, in the direction the books say the debt runs, at most what is
owed. Settling a payment already on our books (same partner, amount and reference) sends it
to the partner again: the answer that booked it on ours may never have reached it.

Our agent signs it and the node sends it to the partner (`market.payment/1`): when the
partner's operator recorded the same transfer first, that offer is countersigned and the
payment is booked on both sides; otherwise it waits, listed by `reconcile` as pending, until
the partner's operator records it. POSTs need the admin token.
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from aaex_agents import Agent
from aaex_agents.errors import AaexError, UsageError
from aaex_agents.money import ZERO, Credits

from ..contracts.books import nets
from ..contracts.payment import Payment, SignedPayment
from ..trade.payments import PaymentNotice, PaymentTaken
from .accounts import check_address, partners_document, payment_document, resolve_agent
from .admin_disputes import DisputeView
from .admin_writes import json_body
from .responses import json_response

logger = logging.getLogger(__name__)

SEND_TIMEOUT_S = 5.0



def add_payment_routes(app: web.Application, node: DisputeView, guarded: Any) -> None:
    """Add the payment routes; `guarded(view, write=...)` applies the token and the errors."""
    routes = _PaymentRoutes(node)
    app.router.add_post("/account/settle", guarded(routes.settle, write=True))
    app.router.add_get("/accounts/partners", guarded(routes.partners, write=False))


class _PaymentRoutes:
    def __init__(self, node: DisputeView) -> None:
        self.node = node

    def hosted(self) -> dict[str, str]:
        return {agent.name: agent.address for agent in self.node.runtime.agents.values()}

    async def partners(self, request: web.Request) -> web.Response:
        return json_response(partners_document(self.hosted(), await self.node.ledger.lines()))

    async def settle(self, request: web.Request) -> web.Response:
        body = await json_body(request)
        partner = check_address(body.get("with"), "with")
        if partner in self.hosted().values():
            raise UsageError("with: that agent is hosted on this node; a payment is between "
                             "two operators")
        amount = Credits.parse(body.get("amount"), "amount")
        reference = body.get("reference")
        if not isinstance(reference, str) or not 0 < len(reference) <= 200:
            raise UsageError("reference: the transfer's reference, 1 to 200 characters")
        found = nets(await self.node.ledger.lines())
        agent = await self.agent(body.get("agent"), partner, found, amount, reference)
        booked = await self.booked(agent.address, partner, amount, reference)
        if booked is not None:  # recorded before: the partner may never have got it
            answer = await self.send(agent, partner, booked)
            return json_response({"outcome": "recorded", "partner": answer,
                                  **payment_document(booked)})
        net = found.get(agent.address, {}).get(partner, ZERO)
        if net == ZERO:
            raise UsageError(f"nothing is owed between {agent.name} and {partner}; a payment "
                             "settles a debt on the books")
        owed = net if net > ZERO else -net
        if amount > owed:
            raise UsageError(f"amount: at most what is owed, {owed} credits")
        payer, payee = (partner, agent.address) if net > ZERO else (agent.address, partner)
        mine = SignedPayment(payment=Payment(
            payer=payer, payee=payee, amount=amount, reference=reference,
            at_ms=self.node.runtime.clock.now_ms()), signatures={})
        desk = self.node.desk.payments
        offer = desk.matching(mine)
        if offer is None:
            signed = mine.signed_by(agent.identity)
            await desk.keep_sent(signed)
            answer = await self.send(agent, partner, signed)
            return json_response({"outcome": "offered", "partner": answer,
                                  **payment_document(signed)})
        signed = offer.signed_by(agent.identity)
        await self.node.ledger.record_payment(signed, agent.address)
        await desk.recorded(signed)
        answer = await self.send(agent, partner, signed)
        return json_response({"outcome": "recorded", "partner": answer, **payment_document(signed)})

    async def booked(self, ours: str, partner: str, amount: Credits,
                     reference: str) -> SignedPayment | None:
        """A payment with these terms already on our books between `ours` and `partner`."""
        for signed in await self.node.ledger.payments():
            p = signed.payment
            if {p.payer, p.payee} == {ours, partner} and (p.amount, p.reference) == (
                    amount, reference):
                return signed
        return None

    async def agent(self, value: object, partner: str, found: dict[str, dict[str, Credits]],
                    amount: Credits, reference: str) -> Agent:
        """The agent named, else the one hosted agent with a debt to or from `partner`.

        Failing that, the one that booked this very payment with it.
        """
        agents = self.node.runtime.agents
        if value is not None:
            _, address = resolve_agent(self.hosted(), value, field="agent")
            return agents[address]
        owing = [a for a in agents.values() if found.get(a.address, {}).get(partner, ZERO)]
        if not owing:
            owing = [a for a in agents.values()
                     if await self.booked(a.address, partner, amount, reference) is not None]
        if len(owing) != 1:
            raise UsageError(f"agent: {len(owing)} of our agents have a debt with {partner}; "
                             "name one with --agent")
        return owing[0]

    async def send(self, agent: Agent, partner: str, signed: SignedPayment) -> str:
        """Hand the partner the payment; what it did, in a word."""
        try:
            reply = await self.node.runtime.context(agent).ask(
                partner, PaymentNotice(payment=signed.model_dump(mode="json")),
                timeout=SEND_TIMEOUT_S)
        except (AaexError, TimeoutError) as exc:
            logger.info("payment not delivered to %s: %s", partner, exc)
            return f"unreachable: {exc}"
        if isinstance(reply, PaymentTaken):
            return reply.outcome
        return f"refused: {getattr(reply, 'reason', type(reply).__name__)}"
