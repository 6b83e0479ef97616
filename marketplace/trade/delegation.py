"""Delegation: getting a subtask done by the market, rerouting when a provider fails.

Discover -> negotiate with the top k -> award -> await within the SLA -> verify -> receipt ->
settle; on a timeout, a breach or a dead peer, ban that peer with exponential backoff and
re-award only that subtask inside the end-to-end deadline.

    delegator = Delegator(identity, find=..., wallet=Wallet(...), settle=ledger_settle)
    done = await delegator.delegate(ctx, "forecast.demand", {"stores": [1, 2]},
                                    budget=5.0, deadline=60)

Sellers answer tasks by subclassing `ServiceSeller` and implementing `perform`.
Independent subtasks run in parallel with `delegate_all` (Petals reroutes only the failed
span of a chain; here only the failed subtask is redone).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aaex_agents import Context, Identity, Message, handler
from aaex_agents.clock import Clock
from aaex_agents.errors import AaexError, UsageError

from ..contracts.agreement import MINOR_UNITS, SignedAgreement
from ..contracts.errors import ContractRejected
from ..contracts.ledger import Ledger
from ..contracts.receipt import SignedReceipt, make_receipt
from ..contracts.reputation import ReputationBook, Score
from ..contracts.sla import Delivery
from .contracting import buyer_signer, task_hash
from .errors import DelegationFailed
from .negotiation import CallForProposals, Decline, Seller, negotiate, new_dialogue_id
from .policy import Wallet
from .strategies import BuyerStrategy, BuyerUtility, Weights

logger = logging.getLogger(__name__)


class Task(Message, type="market.task/1"):
    """The work itself, sent to the seller with the agreement both signed."""

    agreement: bytes
    task: dict[str, Any]


class Deliver(Message, type="market.deliver/1"):
    """The seller's result, with its hash and the seller's own timings (informative)."""

    agreement_id: str
    result: dict[str, Any]
    result_hash: str
    started_at_ms: int
    finished_at_ms: int


class ReceiptNotice(Message, type="market.receipt/1"):
    """The buyer's signed receipt, sent to the seller for its records and reputation."""

    receipt: bytes


def result_hash(result: dict[str, Any]) -> str:
    """sha256 of a result's canonical JSON."""
    return hashlib.sha256(json.dumps(result, sort_keys=True, separators=(",", ":"),
                                     default=str).encode()).hexdigest()


class ServiceSeller(Seller):
    """A seller that also performs the work it sold. Implement `perform`."""

    async def perform(self, ctx: Context, task: dict[str, Any]) -> dict[str, Any]:
        """Do the task and return the result (JSON-like). Subclasses implement it."""
        raise UsageError(f"{type(self).__name__} must implement perform(ctx, task)")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.receipts: list[SignedReceipt] = []
        self._results: dict[str, Deliver] = {}

    @handler
    async def on_task(self, ctx: Context, msg: Task) -> Deliver | Decline:
        """Perform a task we agreed to, once; a repeated task gets the same delivery."""
        try:
            signed = SignedAgreement.from_wire(msg.agreement)
        except ContractRejected as exc:
            return Decline(dialogue="", reason="bad_agreement", detail=str(exc))
        agreement = signed.agreement
        dialogue = self.dialogues.get(agreement.dialogue_id)
        if (agreement.seller != self.address or agreement.buyer != ctx.sender
                or dialogue is None or dialogue.agreement != msg.agreement):
            # The wire form is canonical, so the agreement we countersigned compares as bytes.
            return Decline(dialogue=agreement.dialogue_id, reason="unknown_agreement")
        if agreement.terms.task_hash != task_hash(msg.task):
            return Decline(dialogue=agreement.dialogue_id, reason="task_mismatch",
                           detail="the task is not the one that was priced")
        if signed.id in self._results:
            return self._results[signed.id]
        started = _ms(ctx.clock)
        self.queue_depth += 1
        try:
            result = await self.perform(ctx, msg.task)
        except (KeyError, TypeError, ValueError) as exc:
            # The task does not have the shape `perform` needs: say so to the buyer (who
            # settles it as not delivered) instead of an anonymous handler failure.
            return Decline(dialogue=agreement.dialogue_id, reason="bad_task",
                           detail=f"{type(exc).__name__}: {exc}")
        finally:
            self.queue_depth -= 1
        delivered = Deliver(agreement_id=signed.id, result=result,
                            result_hash=result_hash(result), started_at_ms=started,
                            finished_at_ms=_ms(ctx.clock))
        self._results[signed.id] = delivered
        return delivered

    @handler
    async def on_receipt(self, ctx: Context, msg: ReceiptNotice) -> None:
        """Keep verified receipts for our own agreements (the input of reputation)."""
        try:
            receipt = SignedReceipt.from_wire(msg.receipt)
            receipt.verify()
        except ContractRejected as exc:
            ctx.logger.warning("receipt from %s refused: %s", ctx.sender, exc)
            return
        if receipt.receipt.seller == self.address and receipt.receipt.buyer == ctx.sender:
            self.receipts.append(receipt)


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

    @property
    def seller(self) -> str:
        """The provider that delivered."""
        return self.agreement.agreement.seller

    @property
    def agreement_id(self) -> str:
        """The id of the agreement both sides signed."""
        return self.agreement.id

    @property
    def price(self) -> float:
        """What the agreement cost, in credits."""
        return self.agreement.agreement.terms.price / MINOR_UNITS


def _ms(clock: Clock) -> int:
    return int(clock.now() * 1000)


@dataclass
class Backoff:
    """Bans a failing peer for `base * 2 ** (failures - 1)` seconds, up to `cap`."""

    base: float = 5.0
    cap: float = 600.0
    _until: dict[str, float] = field(default_factory=dict)
    _failures: dict[str, int] = field(default_factory=dict)

    def ban(self, peer: str, now: float) -> float:
        """Record a failure of `peer`; return how long it is banned."""
        failures = self._failures.get(peer, 0) + 1
        self._failures[peer] = failures
        seconds: float = min(self.cap, self.base * float(2 ** (failures - 1)))
        self._until[peer] = now + seconds
        return seconds

    def banned(self, peer: str, now: float) -> bool:
        """True while `peer` is banned."""
        return self._until.get(peer, 0.0) > now

    def forgive(self, peer: str) -> None:
        """Forget `peer`'s failures after a success."""
        self._failures.pop(peer, None)
        self._until.pop(peer, None)


Finder = Callable[[str, str | None], Awaitable[Sequence[str]]]
"""(capability, where) -> candidate seller addresses, best first (e.g. discovery lookup and
ranking); `where` holds constraints on the ads in the query language, or None."""
Settle = Callable[[SignedAgreement, SignedReceipt | None], Awaitable[None]]
"""Called with (agreement, None) when awarded (escrow hold), then (agreement, receipt)."""


def settle_on(ledger: Ledger) -> Settle:
    """Settle delegations on `ledger`: hold escrow at award, pay or refund on the receipt."""
    async def settle(agreement: SignedAgreement, receipt: SignedReceipt | None) -> None:
        if receipt is None:
            await ledger.record_agreement(agreement)
        else:
            await ledger.settle(receipt)
    return settle


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


class Delegator:
    """A buyer's delegation engine. It alone signs agreements, through its wallet.

    `weights` say how the buyer values price, latency, deadline, penalty and the seller's
    reputation (from `reputation`, the book of verified receipts) when it awards; see
    `BuyerUtility` for how reputation discounts price and the bound that gives.
    """

    def __init__(self, identity: Identity, *, find: Finder, wallet: Wallet,
                 settle: Settle | None = None, strategy: BuyerStrategy | None = None,
                 backoff: Backoff | None = None, negotiation_window: float = 2.0,
                 reputation: ReputationBook | None = None,
                 weights: Weights | None = None) -> None:
        self._identity = identity
        self.reputation = reputation or ReputationBook()
        self.weights = weights or Weights()
        self._find = find
        self._wallet = wallet
        self._settle = settle
        self._strategy = strategy or BuyerStrategy()
        self.backoff = backoff or Backoff()
        self._window = negotiation_window

    async def delegate(self, ctx: Context, capability: str, task: Mapping[str, Any], *,
                       budget: float, deadline: float, where: str | None = None,
                       max_latency_ms: float = 30_000, penalty: float = 0.0,
                       top_k: int = 3) -> Delegated:
        """Get `task` done by the best provider of `capability` within `deadline` seconds.

        `ctx` is the context of the delegator's own agent (the node's market hands each
        agent its own delegator); every time read and wait goes through `ctx.clock`.

        Raises:
            DelegationFailed: every attempt failed or the deadline passed.
            UsageError: a non-positive budget or deadline.
        """
        if budget <= 0 or deadline <= 0:
            raise UsageError(f"delegate needs a positive budget and deadline, got budget="
                             f"{budget} and deadline={deadline}")
        task = dict(task)
        clock = ctx.clock
        end = clock.now() + deadline
        attempts: list[Attempt] = []
        while (now := clock.now()) < end:
            found = [s for s in await self._find(capability, where)
                     if not self.backoff.banned(s, now)]
            # Reputation (from verified receipts only) orders the candidates, keeping a place
            # for a newcomer, and weighs in the award (`BuyerUtility`).
            rated = {s: self.reputation.score(s) for s in found}
            candidates = shortlist(found, rated, top_k)
            scores = {s: rated[s].score for s in candidates}
            if not candidates:
                break
            remaining = end - now
            cfp = CallForProposals(
                dialogue=new_dialogue_id(), capability=capability, task=task, max_price=budget,
                max_latency_ms=max_latency_ms, max_deadline_s=remaining,
                wanted_penalty=penalty, respond_by=now + min(self._window, remaining / 2))
            utility = BuyerUtility(max_price=budget, max_latency_ms=max_latency_ms,
                                   max_deadline_s=remaining, wanted_penalty=penalty,
                                   weights=self.weights)
            outcome = await negotiate(ctx, candidates, cfp, utility=utility,
                                      strategy=self._strategy,
                                      sign=self._wallet.guard(buyer_signer(self._identity, clock)),
                                      reputation=scores,
                                      release=self._wallet.release,
                                      timeout=min(5.0, remaining))
            if outcome.agreement is None or outcome.winner is None:
                for bid in outcome.bids:
                    attempts.append(Attempt(bid.seller, "no_agreement", detail=str(bid.declined)))
                    self.backoff.ban(bid.seller, clock.now())
                continue
            signed = SignedAgreement.from_wire(outcome.agreement)
            result, receipt, detail = await self._perform(ctx, signed, task, end)
            attempts.append(Attempt(outcome.winner, receipt.receipt.verdict, signed.id, detail))
            if receipt.receipt.verdict == "met" and result is not None:
                self.backoff.forgive(outcome.winner)
                return Delegated(result, signed, receipt, attempts)
            banned = self.backoff.ban(outcome.winner, clock.now())
            logger.warning("%s failed %s (%s); banned %.0f s, re-awarding", outcome.winner,
                           capability, receipt.receipt.verdict, banned)
        raise DelegationFailed(f"{capability}: no provider delivered within {deadline} s",
                               attempts)

    async def _perform(self, ctx: Context, signed: SignedAgreement, task: dict[str, Any],
                       end: float) -> tuple[dict[str, Any] | None, SignedReceipt, str]:
        """Send the task, wait within the SLA, judge the delivery, settle.

        Never raises for a failing seller: that is a `not_delivered` or `breached` receipt,
        returned with what went wrong (empty when it delivered).
        """
        agreement = signed.agreement
        if self._settle is not None:
            await self._settle(signed, None)
        clock = ctx.clock
        started = _ms(clock)
        wait = max(0.05, min(end - clock.now(), agreement.terms.max_latency_ms / 1000 * 1.5,
                             (agreement.terms.deadline_ms - started) / 1000))
        delivery, result, detail = None, None, ""
        try:
            reply = await ctx.ask(agreement.seller, Task(agreement=signed.to_wire(), task=task),
                                  timeout=wait)
            if isinstance(reply, Deliver) and reply.agreement_id == signed.id \
                    and reply.result_hash == result_hash(reply.result):
                result = reply.result
                delivery = Delivery(result_hash=reply.result_hash, started_at_ms=started,
                                    finished_at_ms=max(started, _ms(clock)))
            elif isinstance(reply, Decline):
                detail = f"{reply.reason}: {reply.detail}" if reply.detail else reply.reason
            else:
                detail = f"unusable delivery ({type(reply).__name__})"
        except (AaexError, TimeoutError) as exc:
            detail = str(exc) or type(exc).__name__
            logger.info("%s did not deliver: %s", agreement.seller, detail)
        receipt = SignedReceipt.create(
            make_receipt(agreement, delivery, issued_at_ms=_ms(clock)),
            self._identity)
        if receipt.receipt.verdict != "met":
            self._wallet.release(agreement.seller, agreement.terms.price / MINOR_UNITS)
        self.reputation.add_agreement(signed)
        self.reputation.add_receipt(receipt)
        if self._settle is not None:
            await self._settle(signed, receipt)
        try:
            await ctx.send(agreement.seller, ReceiptNotice(receipt=receipt.to_wire()), timeout=2)
        except (AaexError, TimeoutError) as exc:
            logger.debug("receipt not delivered to %s: %s", agreement.seller, exc)
        return result, receipt, detail

    async def delegate_all(self, ctx: Context, subtasks: Sequence[tuple[str, dict[str, Any]]],
                           *, budget: float, deadline: float) -> list[Delegated | DelegationFailed]:
        """Delegate independent subtasks in parallel; each fails or succeeds on its own."""
        async def one(capability: str, task: dict[str, Any]) -> Delegated | DelegationFailed:
            try:
                return await self.delegate(ctx, capability, task, budget=budget,
                                           deadline=deadline)
            except DelegationFailed as failed:
                return failed
        return list(await asyncio.gather(*(one(c, t) for c, t in subtasks)))
