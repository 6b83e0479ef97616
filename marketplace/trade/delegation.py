"""Delegation: getting a subtask done by the market, rerouting when a provider fails.

Discover -> negotiate with the top k -> award (escrow) -> send the task -> await within the
SLA -> keep the signed delivery -> verify -> receipt -> settle -> tell the seller; on a
timeout, a breach or a dead peer, ban that peer with exponential backoff and re-award only
that subtask inside the end-to-end deadline.

    delegator = Delegator(identity, find=..., wallet=Wallet(...), books=ledger)
    done = await delegator.delegate(ctx, "forecast.demand", {"stores": [1, 2]},
                                    budget=Credits.parse("5"), deadline=60)

Every step that moves money is on the buyer's books before the next starts, so a buyer that
dies anywhere resumes with `resolve` (marketplace.trade.recovery drives it): a kept delivery
is judged and settled, a missed one is asked for, and one that never came is refunded once
its deadline and the grace have passed. Sellers are `marketplace.trade.selling.ServiceSeller`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, Unpack

from aaex_agents import Context, Identity
from aaex_agents.errors import AaexError, UsageError
from aaex_agents.money import ZERO, Credits
from aaex_agents.services import DelegateTerms, DelegationProgress
from discovery.schema import schema_fault

from ..consensus.board import ConsensusBook
from ..contracts.agreement import SignedAgreement
from ..contracts.checkpoint import Checkpoint
from ..contracts.dispute import Dispute, SignedDispute, seller_delivery, timing_conflicts
from ..contracts.errors import AgreementExpired, LedgerError
from ..contracts.ledger_store import Balance
from ..contracts.provenance import SignedProvenance, problems
from ..contracts.receipt import SignedReceipt, make_receipt
from ..contracts.reputation import ReputationBook, Score
from ..contracts.sla import Delivery, TokenUsage
from .awards import Fallback, award_reason, bid_document, runner_up
from .backoff import Backoff as Backoff
from .backoff import Ban as Ban
from .contracting import buyer_signer, task_hash
from .disputes import raise_dispute
from .errors import BadTask, DelegationFailed
from .grants import DataUse, use_record, uses_for
from .metering import metered_usage
from .negotiation import (
    CallForProposals,
    Decline,
    negotiate,
    new_dialogue_id,
)
from .policy import Wallet
from .selling import Deliver, DeliveryQuery, ReceiptNotice, Task, delivery_is_genuine
from .standing import standing
from .strategies import BuyerStrategy, BuyerUtility, Weights

logger = logging.getLogger(__name__)

OVER_BUDGET = "over_budget"
"""The reason a seller declines a call whose budget is below its quote (not a failure)."""
FAILED = "error:"
"""How `negotiate` marks a seller that did not answer usably (a timeout, a transport error):
a failure, banned with backoff. A signed `Decline`, whatever its reason, is an answer: that
seller is not asked again in the same delegation, and not banned."""


class Books(Protocol):
    """Where a buyer keeps its purchases (a `marketplace.contracts.ledger.Ledger`)."""

    async def record_agreement(self, signed: SignedAgreement, *, role: Any = "buyer",
                               task: Mapping[str, Any] | None = None,
                               use: Mapping[str, Any] | None = None) -> object:
        """Record the purchase and hold its price in escrow."""

    async def record_delivery(self, agreement_id: str,
                              delivery: Mapping[str, Any]) -> object:
        """Keep the seller-signed delivery before judging it."""

    async def settle(self, signed: SignedReceipt) -> object:
        """Pay or refund by the receipt, exactly once."""

    async def record_notified(self, agreement_id: str) -> object:
        """Note that the seller took the receipt."""

    async def balance(self, address: str, currency: str = "credit") -> Balance:
        """What `address` has available (and held) on these books."""

    async def record_dispute(self, dispute: SignedDispute,
                             delivery: Mapping[str, Any] | None = None) -> bool:
        """Hold the agreement as disputed (no receipt settles it from then on)."""

    async def keep_offer(self, kind: str, key: str, side: str, body: dict[str, Any]) -> None:
        """Keep a note that waits for the partner (a dispute it has not heard of)."""

    @property
    def owner(self) -> str | None:
        """The node key that signs these books' checkpoints (None: it cannot sign)."""

    async def checkpoint(self) -> Checkpoint:
        """The books' head, signed by `owner`, to send along with a receipt."""


@dataclass
class Attempt:
    """One award and how it ended (an `aaex_agents.services.DelegationAttempt`)."""

    seller: str
    verdict: str
    agreement_id: str | None = None
    detail: str = ""


@dataclass
class Delegated:
    """A subtask done: its result and the contracts that prove and settled it.

    What `ctx.delegate` returns (it fulfils `aaex_agents.services.Delegated`).
    """

    result: dict[str, Any]
    agreement: SignedAgreement
    receipt: SignedReceipt
    attempts: list[Attempt] = field(default_factory=list)
    provenance: SignedProvenance | None = None
    """The seller-signed provenance that came with the result (None: it sent none)."""
    provenance_problems: list[str] = field(default_factory=list)
    """What the buyer found wrong with it (signature, result or task hash); [] if nothing."""

    @property
    def seller(self) -> str:
        """The provider that delivered."""
        return self.agreement.agreement.seller

    @property
    def agreement_id(self) -> str:
        """The id of the agreement both sides signed."""
        return self.agreement.id

    @property
    def price(self) -> Credits:
        """What was agreed (for a per-token sale: the cap escrowed)."""
        return self.agreement.agreement.terms.price


@dataclass(frozen=True)
class Found:
    """A seller a finder found, with the JSON Schema of the task its ad states."""

    address: str
    task_schema: Mapping[str, Any] | None = None
    """None: the ad states none, and the seller alone checks the task."""


Finder = Callable[[str, str | None], Awaitable[Sequence[str | Found]]]
"""(capability, where) -> candidate sellers (addresses, or `Found` with their task schema),
best first (e.g. discovery lookup and ranking); `where` holds constraints on the ads in the
query language, or None."""


def fitting(found: Sequence[str | Found], task: Mapping[str, Any]) -> tuple[list[str], str | None]:
    """The sellers whose advertised task schema `task` fits, and why it fit none.

    A seller whose ad states no schema is kept (it checks the task itself). The reason is
    None unless every seller found states a schema and the task fits none of them; then it
    names the field (``history: required``), and nothing should be negotiated.
    """
    kept: list[str] = []
    faults: list[str] = []
    for one in found:
        seller = one if isinstance(one, Found) else Found(one)
        fault = None if seller.task_schema is None else schema_fault(seller.task_schema, task)
        if fault is None:
            kept.append(seller.address)
        else:
            faults.append(fault)
    return kept, (faults[0] if faults and not kept else None)


def shortlist(found: Sequence[str], scores: Mapping[str, Score], top_k: int) -> list[str]:
    """The `top_k` sellers to invite: best reputation first, one place kept for a newcomer.

    Sorting is stable, so the finder's order breaks ties. Sorting alone would never invite
    an unrated seller (scored `NEUTRAL`) while `top_k` rated sellers score above it, and it
    could then never earn the ratings that would let it in; so when `top_k` is 2 or more
    and no unrated seller made the cut, the first unrated one in that order takes the last
    place. Whether it wins is the buyer utility's call (a newcomer is judged at face value).
    A seller rated below the newcomer's neutral score is never invited in its stead, so the
    newcomer's place cannot let a badly rated seller past a well rated one.

    Raises:
        KeyError: a seller in `found` has no score.
    """
    chosen = sorted(found, key=lambda s: -scores[s].score)
    rest, chosen = chosen[top_k:], chosen[:top_k]
    if top_k >= 2 and not any(scores[s].raters == 0 for s in chosen):
        newcomer = next((s for s in rest if scores[s].raters == 0), None)
        if newcomer is not None:
            chosen[-1] = newcomer
    return chosen


def _usage(signed: SignedAgreement, task: Mapping[str, Any],
           result: Mapping[str, Any]) -> TokenUsage | None:
    """The metered usage of a per-token sale's result; None for a fixed-price one."""
    if signed.agreement.terms.tokens is None:
        return None
    return metered_usage(task, result)


Progress = DelegationProgress
"""(event, details) as a delegation goes: ``sellers`` (those invited), ``offers`` (each
seller's last bid: price, latency_ms, deadline_s, penalty, its reputation and the buyer's
utility of it; or why it dropped out: ``declined`` is a decline's reason, or ``error:
<type>`` for a seller that did not answer usably, with ``detail``), ``agreement`` (the award,
with ``why``: the winner's utility against the runner-up's), then ``delivery``, ``receipt``
and ``settled`` for each award. Amounts are decimal credits (strings) with their ``*_micro``
integer twin. What an operator watching a purchase sees (``aaex market buy``) and what the
supply-chain demo shows per subtask."""


def _report_award(progress: Progress, signed: SignedAgreement, receipt: SignedReceipt,
                  delivered: bool, detail: str) -> None:
    """The delivery, receipt and settlement events of one award."""
    agreement_id, seller = signed.id, signed.agreement.seller
    r = receipt.receipt
    progress("delivery", {"agreement_id": agreement_id, "seller": seller,
                          "delivered": delivered, "detail": detail})
    progress("receipt", {"agreement_id": agreement_id, "receipt_id": receipt.id,
                         "verdict": r.verdict})
    progress("settled", {"agreement_id": agreement_id, "verdict": r.verdict,
                         **r.release.document("to_seller"), **r.refund.document("to_buyer")})
class Delegator:
    """A buyer's delegation engine. It alone signs agreements, through its wallet.

    `weights` say how the buyer values price, latency, deadline, penalty and the seller's
    reputation (from `reputation`, the book of verified receipts) when it awards; see
    `BuyerUtility` for how reputation discounts price and the bound that gives.
    """

    def __init__(self, identity: Identity, *, find: Finder, wallet: Wallet,
                 books: Books | None = None, strategy: BuyerStrategy | None = None,
                 backoff: Backoff | None = None, negotiation_window: float = 2.0,
                 reputation: ReputationBook | None = None,
                 weights: Weights | None = None, arbiter: str | None = None,
                 consensus: ConsensusBook | None = None) -> None:
        self._identity = identity
        self.consensus = consensus
        """Validators' consensus; where it covers a capability, it outweighs receipts."""
        self._arbiter = arbiter
        """The key our calls name to decide a dispute alone (None: both parties must)."""
        self.reputation = reputation or ReputationBook()
        self.weights = weights or Weights()
        self._find = find
        self._wallet = wallet
        self._books = books
        self.in_flight: set[str] = set()
        """Agreements a `delegate` call of this process is working on (recovery skips them)."""
        self._strategy = strategy or BuyerStrategy()
        self.backoff = backoff or Backoff()
        self._window = negotiation_window

    async def delegate(self, ctx: Context, capability: str, task: Mapping[str, Any], *,
                       progress: Progress | None = None,
                       **terms: Unpack[DelegateTerms]) -> Delegated:
        """Get `task` done by the best provider of `capability` within the deadline.

        The terms are `aaex_agents.services.DelegateTerms` (``budget=`` and ``deadline=``
        required; ``where``, ``max_latency_ms``, ``penalty`` and ``top_k`` defaulted here).
        `ctx` is the context of the delegator's own agent (the node's market hands each
        agent its own delegator); every time read and wait goes through `ctx.clock`.
        `progress`, when given, hears each step as it happens (see `Progress`). The term
        ``use``, for a task carrying someone's data, is the owner's grant and the use asked
        (a `DataUse`), or a `SellerUses` giving each seller its own: it travels with the call
        and the task, the agreement binds it, and a seller it does not cover declines before
        anything is agreed or escrowed; a seller the function grants nothing is not asked.

        Raises:
            BadTask: the task fits the advertised task schema of none of the sellers found
                (a `DelegationFailed`; nothing was negotiated for it).
            DelegationFailed: every attempt failed or the deadline passed.
            UsageError: a non-positive budget or deadline, or a term that is not one.
        """
        unknown = sorted(terms.keys() - DelegateTerms.__annotations__.keys())
        if unknown or "budget" not in terms or "deadline" not in terms:
            raise UsageError(f"delegate takes the terms {sorted(DelegateTerms.__annotations__)}"
                             f" with budget and deadline required; got {sorted(terms)}")
        budget, deadline = terms["budget"], terms["deadline"]
        where = terms.get("where")
        max_latency_ms = terms.get("max_latency_ms", 30_000)
        penalty = terms.get("penalty", ZERO)
        top_k = terms.get("top_k", 3)
        use = terms.get("use")
        if not isinstance(budget, Credits) or budget <= ZERO or deadline <= 0:
            raise UsageError(f"delegate needs a positive budget and deadline, got budget="
                             f"{budget} and deadline={deadline}")
        task = dict(task)
        report = progress or (lambda event, details: None)
        clock = ctx.clock
        end = clock.now() + deadline
        attempts: list[Attempt] = []
        declined: set[str] = set()
        held: Fallback | None = None  # the last award's runner-up, asked if the winner fails
        granted: dict[str, DataUse] = {}  # each seller's use of the data, asked once
        while (now := clock.now()) < end:
            takers, fault = fitting(await self._find(capability, where), task)
            if fault is not None:  # refused here: no call, no agreement, no money
                raise BadTask(f"{capability}: the task does not fit what its sellers take: "
                              f"{fault}", attempts, fault=fault)
            found = [s for s in takers if not self.backoff.banned(s, now) and s not in declined]
            # Reputation (verified receipts, blended with validators' consensus where there is
            # one: `standing`) orders the candidates, keeping a place for a newcomer, and
            # weighs in the award (`BuyerUtility`).
            rated = {s: standing(self.reputation.score(s), self.consensus, capability, s)
                     for s in found}
            candidates = shortlist(found, rated, top_k)
            fallback, held = (held if held is not None and held.seller in found else None), None
            if fallback is not None:
                # The winner failed: its runner-up is asked alone, held to the price it bid.
                candidates = [fallback.seller]
                report("fallback", {"seller": fallback.seller,
                                    **fallback.price.document("price")})
            if use is not None:
                candidates = await self._granted(use, candidates, granted, declined, attempts)
                if not candidates and any(s not in declined for s in found):
                    continue  # the shortlist was granted nothing: the next sellers found
            scores = {s: rated[s].score for s in candidates}
            report("sellers", {"capability": capability, "found": candidates})
            if not candidates:
                break
            remaining = end - now
            spendable = await self._spendable(capability, budget, attempts)
            ceiling = None if fallback is None else min(spendable, fallback.price)
            cfp = CallForProposals(
                dialogue=new_dialogue_id(), capability=capability, task=task,
                max_price=ceiling or spendable,
                max_latency_ms=max_latency_ms, max_deadline_s=remaining,
                wanted_penalty=penalty, respond_by=now + min(self._window, remaining / 2),
                arbiter=self._arbiter,
                hold=fallback.dialogue if fallback is not None else None)
            utility = BuyerUtility(max_price=spendable, max_latency_ms=max_latency_ms,
                                   max_deadline_s=remaining, wanted_penalty=penalty,
                                   weights=self.weights, ceiling=ceiling)
            logger.info("negotiating %s with %d seller(s)", capability, len(candidates),
                        extra={"event": "negotiating", "dialogue": cfp.dialogue})
            outcome = await negotiate(ctx, candidates, cfp, utility=utility,
                                      strategy=self._strategy,
                                      sign=self._wallet.guard(buyer_signer(self._identity, clock)),
                                      reputation=scores,
                                      release=self._wallet.release,
                                      timeout=min(5.0, remaining), uses=granted)
            report("offers", {"offers": [bid_document(bid, scores.get(bid.seller))
                                         for bid in outcome.bids]})
            if outcome.agreement is None or outcome.winner is None:
                for bid in outcome.bids:
                    attempts.append(Attempt(bid.seller, "no_agreement", detail=str(bid.declined)))
                    if bid.declined is not None and bid.declined.startswith(FAILED):
                        # no usable answer: a failure
                        self.backoff.ban(bid.seller, clock.now(), bid.declined)
                    elif fallback is None:  # a decline, or an offer we did not take: answers
                        # (a fallback that will not hold its old price may still bid afresh)
                        declined.add(bid.seller)
                continue
            signed = SignedAgreement.from_wire(outcome.agreement)
            second = runner_up(outcome)
            held = None if second is None or second.offer is None else Fallback(
                second.seller, outcome.dialogue, second.offer.price)
            agreed = signed.agreement.terms
            report("agreement", {
                "agreement_id": signed.id, "seller": outcome.winner,
                **agreed.price.document("price"), **agreed.penalty.document("penalty"),
                "max_latency_ms": agreed.max_latency_ms, "deadline_ms": agreed.deadline_ms,
                **award_reason(outcome)})
            try:
                result, receipt, detail, deliver = await self._perform(
                    ctx, signed, task, end, granted.get(outcome.winner))
            except AgreementExpired as exc:  # we closed it unfunded when its seller asked
                self._wallet.release(outcome.winner, agreed.price)
                attempts.append(Attempt(outcome.winner, "expired", signed.id, str(exc)))
                continue
            if receipt is None:  # we contested the delivery: held until resolved
                report("disputed", {"agreement_id": signed.id, "seller": outcome.winner,
                                    "detail": detail})
                attempts.append(Attempt(outcome.winner, "disputed", signed.id, detail))
                self.backoff.ban(outcome.winner, clock.now(), "disputed")
                continue
            if progress is not None:
                _report_award(progress, signed, receipt, result is not None, detail)
            attempts.append(Attempt(outcome.winner, receipt.receipt.verdict, signed.id, detail))
            if receipt.receipt.verdict == "met" and result is not None:
                self.backoff.forgive(outcome.winner)
                provenance = deliver.provenance if deliver is not None else None
                found = ["none: the seller sent no provenance"] if provenance is None else \
                    problems(provenance, result=result, task_hash=task_hash(task),
                             seller=outcome.winner, agreement_id=signed.id,
                             grant_id=None if agreed.grant is None else agreed.grant.grant_id)
                if found:
                    logger.warning("provenance of %s: %s", signed.id[:12], found[0])
                return Delegated(result, signed, receipt, attempts, provenance, found)
            banned = self.backoff.ban(outcome.winner, clock.now(), receipt.receipt.verdict)
            logger.warning("%s failed %s (%s); banned %.0f s, re-awarding", outcome.winner,
                           capability, receipt.receipt.verdict, banned)
        raise DelegationFailed(f"{capability}: no provider delivered within {deadline} s",
                               attempts)

    @staticmethod
    async def _granted(use: object, candidates: list[str], granted: dict[str, DataUse],
                       declined: set[str], attempts: list[Attempt]) -> list[str]:
        """The candidates the data may go to (`use` asked once per seller; none: ``no_grant``)."""
        fresh = [s for s in candidates if s not in granted]
        if fresh:
            got = await uses_for(use, fresh)
            granted.update(got)
            for seller in fresh:
                if seller not in got:
                    declined.add(seller)
                    attempts.append(Attempt(seller, "no_grant",
                                            detail="the data's owner granted it nothing"))
        return [s for s in candidates if s in granted]

    async def _spendable(self, capability: str, budget: Credits,
                         attempts: list[Attempt]) -> Credits:
        """The budget capped at what our books can escrow now.

        A seller countersigns only a price within the call's maximum, so no seller is left
        holding a sale we could not fund (it would otherwise wait for the expiry).

        Raises:
            DelegationFailed: nothing is available to escrow.
        """
        if self._books is None:
            return budget
        available = (await self._books.balance(self._identity.address)).available
        if available <= ZERO:
            raise DelegationFailed(f"{capability}: {self._identity.address} has no credits "
                                   "available to escrow; fund it with `aaex account deposit`",
                                   attempts)
        return min(budget, available)

    async def _perform(self, ctx: Context, signed: SignedAgreement, task: dict[str, Any],
                       end: float, use: DataUse | None = None
                       ) -> tuple[dict[str, Any] | None, SignedReceipt | None, str,
                                  Deliver | None]:
        """Escrow, send the task, wait within the SLA, keep and judge the delivery, settle.

        Never raises for a failing seller: that is a `not_delivered` or `breached` receipt,
        returned with what went wrong (empty when it delivered) and the delivery kept; a
        delivery we contest returns no receipt (the dispute holds the money).
        """
        agreement = signed.agreement
        self.in_flight.add(signed.id)
        try:
            if self._books is not None:
                await self._books.record_agreement(
                    signed, role="buyer", task=task, use=None if use is None else use_record(use))
            logger.info("escrowed %s with %s", signed.id[:12], agreement.seller,
                        extra={"event": "escrowed", "agreement_id": signed.id})
            clock = ctx.clock
            started = clock.now_ms()
            wait = max(0.05, min(end - clock.now(), agreement.terms.max_latency_ms / 1000 * 1.5,
                                 (agreement.terms.deadline_ms - started) / 1000))
            delivery, result, detail, kept = None, None, "", None
            try:
                reply = await ctx.ask(agreement.seller,
                                      Task(agreement=signed.to_wire(), task=task, use=use),
                                      timeout=wait)
                if isinstance(reply, Deliver) and reply.agreement_id == signed.id \
                        and delivery_is_genuine(reply, agreement.seller):
                    kept = reply
                    if self._books is not None:
                        await self._books.record_delivery(signed.id, reply.model_dump())
                    logger.info("delivery of %s kept", signed.id[:12],
                                extra={"event": "delivered", "agreement_id": signed.id})
                    result = reply.result
                    delivery, detail = await self._judge(ctx, signed, reply, task, started)
                elif isinstance(reply, Decline):
                    detail = f"{reply.reason}: {reply.detail}" if reply.detail else reply.reason
                else:
                    detail = f"unusable delivery ({type(reply).__name__})"
            except (AaexError, TimeoutError) as exc:
                detail = str(exc) or type(exc).__name__
                logger.info("%s did not deliver: %s", agreement.seller, detail)
            if result is not None and delivery is None:  # contested: held, no receipt
                return None, None, detail, kept
            receipt = await self._settle(ctx, signed, delivery)
        finally:
            self.in_flight.discard(signed.id)
        return result, receipt, detail, kept

    async def _judge(self, ctx: Context, signed: SignedAgreement, reply: Deliver,
                     task: Mapping[str, Any], dispatched_ms: int) -> tuple[Delivery | None, str]:
        """The delivery facts a receipt states: the seller's signed ones, unless contested.

        The seller's timings are its signed facts; they stand when they agree with what we
        saw (sent at `dispatched_ms`, received now) or the difference does not change the
        verdict. Otherwise we sign a dispute and the money stays held: (None, why).
        """
        agreement, facts = signed.agreement, reply.model_dump()
        usage = _usage(signed, task, reply.result)
        received = max(dispatched_ms, ctx.clock.now_ms())
        conflicts = timing_conflicts(agreement, facts, usage, dispatched_ms=dispatched_ms,
                                     received_ms=received)
        if not conflicts:
            return seller_delivery(agreement, facts, usage), ""
        await raise_dispute(ctx, self._books, self._identity, Dispute(
            agreement_id=signed.id, raised_by=self._identity.address, party="buyer",
            conflicts=tuple(conflicts), dispatched_ms=dispatched_ms, received_ms=received,
            at_ms=ctx.clock.now_ms()), facts, agreement.seller)
        return None, "disputed: " + ", ".join(c.field for c in conflicts)

    async def _settle(self, ctx: Context, signed: SignedAgreement,
                      delivery: Delivery | None) -> SignedReceipt:
        """Sign the receipt for `delivery` (None: nothing came), book it, tell the seller."""
        agreement = signed.agreement
        receipt = SignedReceipt.create(
            make_receipt(agreement, delivery, issued_at_ms=ctx.clock.now_ms()), self._identity)
        if receipt.receipt.refund:  # all of it unless met; a per-token sale's unused rest
            self._wallet.release(agreement.seller, receipt.receipt.refund)
        self.reputation.add_agreement(signed)
        self.reputation.add_receipt(receipt)
        if self._books is not None:
            await self._books.settle(receipt)
        logger.info("settled %s: %s", signed.id[:12], receipt.receipt.verdict,
                    extra={"event": "settled", "agreement_id": signed.id,
                           "verdict": receipt.receipt.verdict})
        await self.notify(ctx, signed, receipt)
        return receipt

    async def notify(self, ctx: Context, signed: SignedAgreement,
                     receipt: SignedReceipt) -> bool:
        """Hand the seller its receipt; True once it took it (then noted on the books).

        A seller that is down gets it again on a later recovery pass, so its own books
        learn of the settlement, a penalty included, once it is back.
        """
        seller = signed.agreement.seller
        checkpoint = None
        if self._books is not None and self._books.owner is not None:
            try:
                checkpoint = await self._books.checkpoint()
            except LedgerError as exc:  # the receipt matters more than the checkpoint
                logger.warning("no checkpoint sent with receipt %s: %s", receipt.id[:12], exc)
        try:
            await ctx.send(seller, ReceiptNotice(receipt=receipt.to_wire(), checkpoint=checkpoint),
                           timeout=2)
        except (AaexError, TimeoutError) as exc:
            logger.info("receipt not delivered to %s (sent again later): %s", seller, exc)
            return False
        if self._books is not None:
            await self._books.record_notified(signed.id)
        return True

    async def resolve(self, ctx: Context, signed: SignedAgreement, task: dict[str, Any] | None,
                      kept: Mapping[str, Any] | None, *, grace: float,
                      use: DataUse | None = None) -> str:
        """Bring one open purchase found on the books (after a restart) to its end.

        A delivery kept on the books is judged and settled. Otherwise the seller is asked
        for the delivery it keeps; when it never got the task and time is left, the task is
        sent again, with `use` (the grant its data went under). With no delivery once the
        deadline and `grace` seconds have passed, the purchase is settled as not delivered:
        the price comes back, the seller owes the penalty. A kept or recovered delivery is
        judged by the seller-signed times.

        Returns what happened: ``settled``, ``waiting`` (ask again later) or ``resent``.
        """
        if signed.id in self.in_flight:
            return "waiting"
        agreement = signed.agreement
        deliver = Deliver.model_validate(kept) if kept is not None else None
        if deliver is None:
            try:
                reply = await ctx.ask(agreement.seller, DeliveryQuery(agreement_id=signed.id),
                                      timeout=5)
            except (AaexError, TimeoutError) as exc:
                reply = Decline(dialogue="", reason="unreachable", detail=str(exc))
            if isinstance(reply, Deliver) and reply.agreement_id == signed.id \
                    and delivery_is_genuine(reply, agreement.seller):
                deliver = reply
                if self._books is not None:
                    await self._books.record_delivery(signed.id, reply.model_dump())
            elif (isinstance(reply, Decline) and reply.reason in ("not_delivered", "no_task")
                    and task is not None
                    and ctx.clock.now_ms() < agreement.terms.deadline_ms):
                end = agreement.terms.deadline_ms / 1000
                await self._perform(ctx, signed, task, end, use)
                return "resent"
        if deliver is not None:
            started = max(agreement.agreed_at_ms, deliver.started_at_ms)
            await self._settle(ctx, signed, Delivery(
                result_hash=deliver.result_hash, started_at_ms=started,
                finished_at_ms=max(started, deliver.finished_at_ms),
                usage=_usage(signed, task or {}, deliver.result)))
            return "settled"
        if ctx.clock.now_ms() > agreement.terms.deadline_ms + grace * 1000:
            await self._settle(ctx, signed, None)
            return "settled"
        return "waiting"
