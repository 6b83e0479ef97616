"""The negotiation protocol: FIPA contract-net plus alternating offers, with deadlines.

    buyer                                   seller
    CallForProposals  ───────────────────▶  Propose | Decline(reason)
    CounterOffer(round n) ───────────────▶  Propose | Decline(reason)      (0..k rounds)
    Accept(buyer-signed agreement) ──────▶  Agreed(countersigned) | Decline(reason)

Every message is a signed envelope, so every refusal is a signed `Decline` with a reason.
Each side keeps a dialogue per id; a seller keys it by (buyer, id), so a message can only
ever reach the sender's own dialogues. A message for an unknown or finished dialogue, out of
order (wrong round), or after the deadline is declined with a reason and changes nothing.
How many dialogues a seller holds open, for how long, and whose give way when it is full is
`marketplace.trade.dialogues`. A buyer negotiates with many sellers at once (`negotiate`), counters
them in parallel each round, and awards the best offer by its own utility.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import os
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pydantic import BaseModel

from aaex_agents import Agent, Context, Message, Protocol, handler
from aaex_agents.clock import Clock, SystemClock
from aaex_agents.errors import AaexError, TransportError, UsageError
from aaex_agents.money import ZERO, Credits, NonNegativeCredits

from ..contracts.agreement import TokenTerms
from ..contracts.reputation import NEUTRAL
from .dialogues import DialogueKey, DialogueLimits, OpenDialogues, task_weight
from .errors import Refusal
from .grants import DataUse, GrantDesk
from .quotes import StandingQuotes
from .strategies import BuyerStrategy, BuyerUtility, Offer, SellerStrategy
from .task_models import task_fault, task_hash

logger = logging.getLogger(__name__)


class CallForProposals(Message, type="market.cfp/2", supersedes="market.cfp/1"):
    """A buyer asks sellers to bid for a task (v2: amounts in integer micro-credits)."""

    dialogue: str
    """Random id of this negotiation (hex), chosen by the buyer."""
    capability: str
    task: dict[str, Any] = {}  # noqa: RUF012 - pydantic copies field defaults
    """The task description the seller prices (its hash goes into the agreement)."""
    max_price: NonNegativeCredits
    max_latency_ms: float
    max_deadline_s: float
    wanted_penalty: NonNegativeCredits = ZERO
    respond_by: float
    """Unix time at which the negotiation ends, agreed or not (a seller refuses one too far
    ahead: `DialogueLimits.max_window`)."""
    arbiter: str | None = None
    """A key the buyer proposes to decide a dispute alone; it goes into the agreement's
    terms, and a seller that does not trust it declines (``untrusted_arbiter``)."""
    hold: str | None = None
    """An earlier dialogue with this seller, for the same task, whose last offer the buyer
    asks it to stand by (its fallback after the winner failed: `marketplace.trade.quotes`)."""
    use: DataUse | None = None
    """The grant the task's data is used under and the use asked; it goes into the
    agreement's terms, and a seller whose use it does not cover declines
    (``grant_refused``, see marketplace.trade.grants). None: no one's data under a grant."""


class Propose(Message, type="market.propose/2", supersedes="market.propose/1"):
    """A seller's offer for round `round` (0 answers the call for proposals)."""

    dialogue: str
    round: int
    price: NonNegativeCredits
    latency_ms: float
    deadline_s: float
    penalty: NonNegativeCredits
    tokens: TokenTerms | None = None
    """Per-token prices and token cap; None for a fixed-price offer."""


class CounterOffer(Message, type="market.counter/2", supersedes="market.counter/1"):
    """The buyer's counter for round `round` (1, 2, ...): the price it would pay."""

    dialogue: str
    round: int
    price: NonNegativeCredits


class Decline(Message, type="market.decline/1"):
    """A refusal, with the reason (a stable code) and a human-readable detail."""

    dialogue: str
    reason: str
    detail: str = ""


class Accept(Message, type="market.accept/1"):
    """The buyer accepts the seller's latest offer; carries the agreement it signed."""

    dialogue: str
    round: int
    agreement: bytes


class Agreed(Message, type="market.agreed/1"):
    """The seller's countersignature: the agreement now signed by both."""

    dialogue: str
    agreement: bytes


NEGOTIATION = Protocol("market.negotiation/1", {
    CallForProposals: (Propose, Decline),
    CounterOffer: (Propose, Decline),
    Accept: (Agreed, Decline),
})


class DialogueState(enum.Enum):
    """Where a seller's dialogue stands; transitions only go forward."""

    PROPOSED = "proposed"
    AGREED = "agreed"
    CLOSED = "closed"


@dataclass
class Dialogue:
    """One negotiation as the seller sees it."""

    id: str
    buyer: str
    cfp: CallForProposals
    started: float
    round: int = 0
    state: DialogueState = DialogueState.PROPOSED
    offer: Offer | None = None
    agreement: bytes | None = None
    held: Offer | None = None
    """The standing quote this dialogue opened with: no later offer in it asks more."""

    def __repr__(self) -> str:
        return f"<Dialogue {self.id[:8]} {self.state.name} round={self.round}>"


AgreementSigner = Callable[[str, str, CallForProposals, Offer], bytes]
"""Buyer side: (dialogue, seller address, cfp, offer) -> agreement signed by the buyer."""
Countersigner = Callable[[bytes, str, CallForProposals, Offer], bytes]
"""Seller side: (buyer-signed agreement, buyer, cfp, offer) -> countersigned agreement;
raises Refusal if the agreement does not state exactly the offer."""
Admission = Callable[[str, CallForProposals], Awaitable[None]]
"""Seller side: raise Refusal to decline a buyer (whitelist, rate limit, ...)."""


class Seller(Agent):
    """An agent that sells `capability` by negotiation.

    Subclass it, set `capability`, and give the constructor a strategy and a countersigner.
    `limits` bound the negotiations it holds open (`marketplace.trade.dialogues`).
    """

    protocols = (NEGOTIATION,)
    capability: ClassVar[str] = ""
    task_model: ClassVar[type[BaseModel] | None] = None
    """The pydantic model of the task sold: its schema goes into the ad, and a call whose task
    does not fit it is declined (``bad_task``, naming the field). The node refuses to start a
    seller without one."""
    result_model: ClassVar[type[BaseModel] | None] = None
    """The pydantic model of the result delivered; its schema goes into the ad."""
    strategy_defaults: ClassVar[Mapping[str, Any]] = {}
    """Defaults of this class for `SellerStrategy` fields the node's settings leave out."""

    def __init__(self, *args: Any, strategy: SellerStrategy, countersign: Countersigner,
                 admit: Admission | None = None, limits: DialogueLimits | None = None,
                 clock: Clock | None = None, trusted_arbiters: frozenset[str] = frozenset(),
                 grants: GrantDesk | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.trusted_arbiters = trusted_arbiters
        """Keys this seller accepts as an agreement's arbiter (the node's market.arbiters)."""
        self.clock = clock or SystemClock()
        self.grants = grants or GrantDesk(clock=self.clock)
        """Where uses of granted data are checked and revocations kept (the node's desk)."""
        self.strategy = strategy
        self._countersign = countersign
        self._admit = admit
        self.limits = limits or DialogueLimits()
        self.open = OpenDialogues(self.limits)
        """The accounting of the dialogues still negotiating, under `limits`."""
        self.dialogues: dict[DialogueKey, Dialogue] = {}
        """Negotiating and agreed dialogues, by (buyer, dialogue id)."""
        self.quotes = StandingQuotes()
        """The last offers of dialogues that ended without an agreement, stood by a while."""
        self.regulars: set[str] = set()
        """Buyers with standing: a full table never displaces their dialogues for a
        stranger's (a `ServiceSeller` adds each buyer whose receipt paid it)."""
        self.queue_depth = 0
        self.accepting = True
        """False while the node drains: new calls are declined, open dialogues may finish."""

    async def agreed(self, wire: bytes) -> None:
        """Called with each agreement this seller countersigns, before the buyer hears of it.

        Subclasses keep books here (`ServiceSeller` records the sale); raise `Refusal` to
        decline after all.
        """

    def dialogue(self, buyer: str, dialogue_id: str) -> Dialogue | None:
        """`buyer`'s dialogue `dialogue_id`, negotiating or agreed; None if not held."""
        return self.dialogues.get((buyer, dialogue_id))

    def withdraw(self, buyer: str, dialogue_id: str) -> bool:
        """End `buyer`'s dialogue `dialogue_id` if it is still negotiating, keeping nothing.

        Only that buyer's own dialogue can be named (an A2A quote ends its own this way).
        Returns whether one was withdrawn.
        """
        dialogue = self.dialogues.get((buyer, dialogue_id))
        if dialogue is None or dialogue.state is not DialogueState.PROPOSED:
            return False
        dialogue.state = DialogueState.CLOSED
        self._drop([(buyer, dialogue_id)], quotes=False)
        return True

    def _drop(self, keys: Sequence[DialogueKey], *, quotes: bool = True) -> None:
        """Forget dialogues that stopped negotiating without an agreement.

        With `quotes`, their last offers stand a while (`StandingQuotes`); a dialogue its
        buyer withdrew (an A2A quote once answered) keeps nothing.
        """
        for key in keys:
            self.open.close(key)
            dialogue = self.dialogues.get(key)
            if dialogue is not None and dialogue.state is not DialogueState.AGREED:
                del self.dialogues[key]
                if quotes and dialogue.offer is not None:
                    self.quotes.keep(dialogue.buyer, dialogue.id, dialogue.offer,
                                     task_hash(dialogue.cfp.task), self.clock.now())

    def live_dialogues(self, now: float) -> int:
        """Dialogues still negotiating (not agreed or closed, deadline not passed)."""
        return sum(1 for d in self.dialogues.values()
                   if d.state is DialogueState.PROPOSED and d.cfp.respond_by >= now)

    def _standing(self, buyer: str, cfp: CallForProposals, now: float) -> Offer | None:
        """The offer `buyer` last had in dialogue ``cfp.hold`` for this task, if it stands.

        A dialogue the buyer left negotiating (it awarded another) still counts: it ends
        here, and its last offer is the quote.
        """
        if cfp.hold is None:
            return None
        earlier = self.dialogues.get((buyer, cfp.hold))
        if earlier is not None and earlier.state is DialogueState.PROPOSED:
            earlier.state = DialogueState.CLOSED
            self._drop([(buyer, cfp.hold)])
        if cfp.hold == cfp.dialogue:
            return None
        return self.quotes.take(buyer, cfp.hold, task_hash(cfp.task), now)

    def _elapsed(self, dialogue: Dialogue, now: float) -> tuple[float, float]:
        return now - dialogue.started, max(1e-3, dialogue.cfp.respond_by - dialogue.started)

    def quote(self, cfp: CallForProposals, offer: Offer) -> Offer:
        """The offer for this task, from the strategy's `offer`; raise Refusal to decline.

        The default bids the strategy's offer as it is. A seller that prices each task
        (per-token, by size) overrides it.
        """
        return offer

    def _propose(self, dialogue: Dialogue, offer: Offer) -> Propose:
        # Promise no later a deadline than the buyer can use: the work takes `latency_ms`,
        # so any deadline at least that long is one we can keep.
        offer = Offer(offer.price, offer.latency_ms,
                      min(offer.deadline_s, dialogue.cfp.max_deadline_s), offer.penalty,
                      offer.tokens)
        dialogue.offer = offer
        return Propose(dialogue=dialogue.id, round=dialogue.round, price=offer.price,
                       latency_ms=offer.latency_ms, deadline_s=offer.deadline_s,
                       penalty=offer.penalty, tokens=offer.tokens)

    def _open(self, ctx: Context, dialogue_id: str, round_: int, now: float, *,
              accepting: bool = False) -> Dialogue:
        """Checks every message of an existing dialogue must pass; raises Refusal.

        A counter-offer opens the next round; an accept names the round it accepts, which
        must be the latest one (an older offer cannot be accepted).
        """
        key = (str(ctx.sender), dialogue_id)
        dialogue = self.dialogues.get(key)
        if dialogue is None:  # another buyer's id names no dialogue of this sender
            raise Refusal("unknown_dialogue", f"you have no dialogue {dialogue_id[:16]} here "
                          "(it may have ended)")
        if dialogue.state is not DialogueState.PROPOSED:
            raise Refusal("dialogue_finished", f"the dialogue is {dialogue.state.value}")
        if now > dialogue.cfp.respond_by:
            dialogue.state = DialogueState.CLOSED
            self._drop([key])
            raise Refusal("deadline_passed", "the negotiation deadline has passed")
        expected = dialogue.round if accepting else dialogue.round + 1
        if round_ != expected:
            raise Refusal("out_of_order", f"expected round {expected}, got {round_}")
        return dialogue

    @handler
    async def on_cfp(self, ctx: Context, msg: CallForProposals) -> Propose | Decline:
        """Open a dialogue and bid, or decline.

        The call is checked against `limits` (its ``respond_by`` window, the buyer's quota,
        room in the table) only once it would be answered with an offer, so a call that is
        declined for its terms displaces no one.
        """
        now = self.clock.now()
        buyer = str(ctx.sender)
        key = (buyer, msg.dialogue)
        try:
            if not self.accepting:
                raise Refusal("shutting_down", "this seller is stopping; ask another")
            if msg.capability != self.capability:
                raise Refusal("unknown_capability", f"this agent sells {self.capability}")
            if now > msg.respond_by:
                raise Refusal("deadline_passed", "the call for proposals has expired")
            if msg.arbiter is not None and msg.arbiter not in self.trusted_arbiters:
                raise Refusal("untrusted_arbiter", "this seller does not accept that arbiter")
            self.limits.check_window(msg.respond_by, now)
            if self._admit is not None:
                await self._admit(buyer, msg)
            if (fault := task_fault(self.task_model, msg.task)) is not None:
                raise Refusal("bad_task", fault)
            if msg.use is not None:  # before any price: a refused use never gets agreed
                await self.grants.check(msg.use, msg.task, user=self.address, buyer=buyer)
            if key in self.dialogues:  # checked after the await: nothing runs in between
                raise Refusal("duplicate_dialogue", "you already use this dialogue id here")
            dialogue = Dialogue(msg.dialogue, buyer, msg, started=now)
            self._drop(self.open.lapse(now))  # a lapsed dialogue's offer becomes a quote
            dialogue.held = self._standing(buyer, msg, now)
            offer = dialogue.held or self.quote(msg, self.strategy.ask(
                *self._elapsed(dialogue, now), self.queue_depth))
            if offer.price * 2 > msg.max_price * 3 or offer.latency_ms > msg.max_latency_ms \
                    or offer.latency_ms / 1000 > msg.max_deadline_s:
                raise Refusal("cannot_meet_terms", "price, latency or deadline out of reach")
            self._drop(self.open.admit(key, task_weight(msg.task), msg.respond_by, now=now,
                                       standing=buyer in self.regulars))
            self.dialogues[key] = dialogue
            return self._propose(dialogue, offer)
        except Refusal as refusal:
            return Decline(dialogue=msg.dialogue, reason=refusal.reason, detail=refusal.detail)

    @handler
    async def on_counter(self, ctx: Context, msg: CounterOffer) -> Propose | Decline:
        """Concede towards the buyer's price, or take it if it is good enough."""
        now = self.clock.now()
        try:
            dialogue = self._open(ctx, msg.dialogue, msg.round, now)
        except Refusal as refusal:
            return Decline(dialogue=msg.dialogue, reason=refusal.reason, detail=refusal.detail)
        dialogue.round = msg.round
        elapsed, horizon = self._elapsed(dialogue, now)
        ask = self.strategy.ask(elapsed, horizon, self.queue_depth)
        if self.strategy.accepts(msg.price, elapsed, horizon, self.queue_depth):
            ask = Offer(msg.price, ask.latency_ms, ask.deadline_s,
                        self.strategy.penalty_for(msg.price.micro))
        try:
            ask = self.quote(dialogue.cfp, ask)
        except Refusal as refusal:
            return Decline(dialogue=msg.dialogue, reason=refusal.reason, detail=refusal.detail)
        if dialogue.held is not None and ask.price > dialogue.held.price:
            ask = dialogue.held  # a standing quote is a ceiling for the whole dialogue
        return self._propose(dialogue, ask)

    @handler
    async def on_accept(self, ctx: Context, msg: Accept) -> Agreed | Decline:
        """Countersign the agreement if it states exactly our latest offer."""
        now = self.clock.now()
        try:
            dialogue = self._open(ctx, msg.dialogue, msg.round, now, accepting=True)
            if dialogue.offer is None:
                raise Refusal("out_of_order", "nothing was offered yet")
            signed = self._countersign(msg.agreement, dialogue.buyer, dialogue.cfp,
                                       dialogue.offer)
            await self.agreed(signed)
        except Refusal as refusal:
            return Decline(dialogue=msg.dialogue, reason=refusal.reason, detail=refusal.detail)
        dialogue.state = DialogueState.AGREED
        dialogue.agreement = signed
        key = (dialogue.buyer, dialogue.id)
        self.open.close(key)
        self.dialogues[key] = dialogue  # a full table may have displaced it while we booked
        # The agreement names the task by its hash and the task comes again with it: an
        # agreed dialogue need not keep it.
        dialogue.cfp = dialogue.cfp.model_copy(update={"task": {}})
        return Agreed(dialogue=dialogue.id, agreement=signed)


@dataclass
class Bid:
    """One seller's standing in a buyer's negotiation."""

    seller: str
    offer: Offer | None = None
    utility: float = 0.0
    declined: str | None = None
    """Why it dropped out: a `Decline`'s reason, or ``error: <type>`` when it did not
    answer usably; None while it is in play."""
    detail: str = ""
    """The decline's detail, or the error's message."""
    rounds: int = 0


@dataclass
class NegotiationResult:
    """What `negotiate` ends with."""

    dialogue: str
    winner: str | None
    offer: Offer | None
    agreement: bytes | None
    bids: list[Bid] = field(default_factory=list)
    round_trips: int = 0
    """Sequential network round trips spent (parallel asks count once)."""


async def negotiate(ctx: Context, sellers: Sequence[str], cfp: CallForProposals, *,
                    utility: BuyerUtility, strategy: BuyerStrategy, sign: AgreementSigner,
                    reputation: dict[str, float] | None = None, max_rounds: int = 3,
                    timeout: float = 5.0, shortlist: int = 3,
                    release: Callable[[str, Credits], None] | None = None,
                    uses: Mapping[str, DataUse] | None = None) -> NegotiationResult:
    """Negotiate with every seller at once and award the best offer by `utility`.

    All sellers get the call for proposals at once; then only the `shortlist` best by
    utility are countered, in parallel: one network round trip per round however many
    sellers there are, and a number of messages that does not grow with them. The buyer
    accepts as soon as its best offer reaches its current aspiration (`strategy`), or at the
    last round if the best offer is above its reserve; then it signs the agreement and asks
    the winner to countersign. `reputation` maps sellers to their scores in [0, 1] (a seller
    missing from it counts as unrated, `NEUTRAL`); `utility` weighs them into every bid.
    A seller that declines, fails or times out drops out; it never stops the others. If the
    chosen seller does not countersign, `release(seller, price)` gives back what signing
    committed (e.g. `Wallet.release`) and the next best offer is tried. `uses` gives each
    seller the grant its copy of the call (and its agreement) carries, where the task's data
    is granted to each seller apart; a seller missing from it gets ``cfp`` as it is.

    Raises:
        UsageError: no sellers were given.
    """
    if not sellers:
        raise UsageError("negotiate needs at least one seller address")
    clock = ctx.clock
    started = clock.now()
    horizon = max(1e-3, cfp.respond_by - started)
    bids = {s: Bid(s) for s in dict.fromkeys(sellers)}
    calls = {s: cfp if uses is None or s not in uses else cfp.model_copy(update={"use": uses[s]})
             for s in bids}
    reputation = reputation or {}
    result = NegotiationResult(cfp.dialogue, None, None, None)

    async def ask(seller: str, message: Message) -> None:
        bid = bids[seller]
        try:
            reply = await ctx.ask(seller, message, timeout=timeout)
        except (AaexError, TimeoutError) as exc:
            bid.declined, bid.offer, bid.utility = f"error: {type(exc).__name__}", None, 0.0
            bid.detail = str(exc)
            return
        if isinstance(reply, Propose):
            bid.offer = Offer(reply.price, reply.latency_ms, reply.deadline_s, reply.penalty,
                              reply.tokens)
            bid.utility = utility.of(bid.offer, reputation.get(seller, NEUTRAL))
            bid.rounds = reply.round
        elif isinstance(reply, Decline):
            bid.declined, bid.offer, bid.utility = reply.reason, None, 0.0
            bid.detail = reply.detail

    await asyncio.gather(*(ask(s, calls[s]) for s in bids))
    result.round_trips = 1
    ranked_first = sorted((b for b in bids.values() if b.offer is not None),
                          key=lambda b: (-b.utility, b.seller))
    in_play = {b.seller for b in ranked_first[:max(1, shortlist)]}
    for round_ in range(1, max_rounds + 1):
        live = [b for b in bids.values()
                if b.offer is not None and b.declined is None and b.seller in in_play]
        if not live:
            break
        best = max(live, key=lambda b: (b.utility, b.seller))
        now = clock.now()
        target = strategy.target(now - started, horizon)
        if best.utility >= target or now >= cfp.respond_by:
            break
        counters = [(b.seller, CounterOffer(dialogue=cfp.dialogue, round=round_,
                                            price=utility.price_for(
                                                target, b.offer,
                                                reputation.get(b.seller, NEUTRAL))))
                    for b in live if b.offer is not None]
        await asyncio.gather(*(ask(s, m) for s, m in counters))
        result.round_trips += 1

    ranked = sorted((b for b in bids.values() if b.offer is not None and b.declined is None),
                    key=lambda b: (-b.utility, b.seller))
    for bid in ranked:
        if bid.utility < strategy.reserve or bid.offer is None:
            break
        agreement = sign(cfp.dialogue, bid.seller, calls[bid.seller], bid.offer)
        try:
            reply = await ctx.ask(bid.seller, Accept(dialogue=cfp.dialogue, round=bid.rounds,
                                                     agreement=agreement), timeout=timeout)
        except (AaexError, TimeoutError, TransportError) as exc:
            reply = Decline(dialogue=cfp.dialogue, reason=f"error: {type(exc).__name__}",
                            detail=str(exc))
        result.round_trips += 1
        if isinstance(reply, Agreed):
            result.winner, result.offer, result.agreement = bid.seller, bid.offer, reply.agreement
            break
        bid.declined = reply.reason if isinstance(reply, Decline) else "unexpected_reply"
        bid.detail = reply.detail if isinstance(reply, Decline) else type(reply).__name__
        if release is not None:
            release(bid.seller, bid.offer.price)
    result.bids = list(bids.values())
    return result


def new_dialogue_id() -> str:
    """A random 128-bit dialogue id, hex."""
    return os.urandom(16).hex()
