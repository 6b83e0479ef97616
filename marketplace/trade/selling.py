"""The seller's side of a delegation: do the work sold, deliver it signed, keep the books.

A `ServiceSeller` negotiates (it is a `Seller`), then performs the tasks it agreed to. With a
ledger (the node passes its own) it records every sale it countersigns, the delivery it made
and the receipt it gets, so its books show what it is owed and owes without trusting the
buyer's. A delivery is kept until its receipt arrives: a buyer that died before reading it
asks again with `DeliveryQuery` and gets the same signed delivery; a task for an agreement
on the books is served after a restart too. It answers a buyer's `StatementQuery` from the
same books (marketplace.trade.statements). With each receipt comes the buyer node's signed
checkpoint of its ledger; the seller keeps the newest one per node in `checkpoints` (in
memory), so that node cannot later cut or rewrite its books up to there unnoticed.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from contextvars import ContextVar
from typing import Any

from aaex_agents import Context, Identity, Message, handler
from aaex_agents.errors import UsageError
from aaex_agents.money import ZERO

from ..contracts.agreement import SignedAgreement
from ..contracts.checkpoint import Checkpoint
from ..contracts.delivery import delivery_signed_by, delivery_signing_bytes, result_hash
from ..contracts.dispute import Dispute, receipt_conflicts
from ..contracts.errors import AlreadySettled, ContractRejected, LedgerError, UnknownAgreement
from ..contracts.ledger import Ledger
from ..contracts.provenance import InputRef, ModelRef, Provenance, SignedProvenance, code_model
from ..contracts.receipt import SignedReceipt
from .contracting import task_hash
from .disputes import raise_dispute
from .errors import Refusal
from .escrow import ESCROW_QUERY_AFTER_MS, ask_escrow
from .grants import DataUse, data_hash
from .negotiation import Decline, DialogueState, Seller
from .statements import StatementDesk, StatementQuery, StatementReply
from .task_models import task_fault

logger = logging.getLogger(__name__)

_performing: ContextVar[tuple[str, DataUse | None] | None] = ContextVar("performing",
                                                                       default=None)
"""While `perform` runs: the agreement id and the grant its task came with."""

class Task(Message, type="market.task/1"):
    """The work itself, sent to the seller with the agreement both signed."""

    agreement: bytes
    task: dict[str, Any]
    use: DataUse | None = None
    """The grant the task's data is used under, as the agreement's terms bind it."""


class Deliver(Message, type="market.deliver/2"):
    """The seller's result, its hash and the seller's timings, signed by the seller.

    The signature binds the times to the agreement, so a buyer that reads the delivery late
    (after a restart) judges it by when the seller says it finished, and can prove it.
    """

    agreement_id: str
    result: dict[str, Any]
    result_hash: str
    started_at_ms: int
    finished_at_ms: int
    signature: str
    """The seller's Ed25519 signature (hex) of `delivery_signing_bytes`."""
    provenance: SignedProvenance | None = None
    """The seller-signed record of the inputs, model and code that produced the result."""


class DeliveryQuery(Message, type="market.delivery_query/1"):
    """A buyer asks for the delivery of an agreement (after a restart, or when it is late)."""

    agreement_id: str


class ReceiptNotice(Message, type="market.receipt/1"):
    """The buyer's signed receipt, sent to the seller for its records and reputation."""

    receipt: bytes
    """The buyer-signed receipt, in its wire form (`SignedReceipt.to_wire`)."""
    checkpoint: Checkpoint | None = None
    """The buyer node's ledger head, signed by its key after it settled this receipt; the
    seller keeps the newest from each node (None: the buyer's books have no key)."""


def sign_delivery(identity: Identity, agreement_id: str, result: dict[str, Any],
                  started_at_ms: int, finished_at_ms: int,
                  provenance: SignedProvenance | None = None) -> Deliver:
    """A delivery of `result`, signed by the seller `identity`."""
    digest = result_hash(result)
    signature = identity.sign(delivery_signing_bytes(agreement_id, digest, started_at_ms,
                                                     finished_at_ms))
    return Deliver(agreement_id=agreement_id, result=result, result_hash=digest,
                   started_at_ms=started_at_ms, finished_at_ms=finished_at_ms,
                   signature=signature.hex(), provenance=provenance)


def delivery_is_genuine(deliver: Deliver, seller: str) -> bool:
    """True when `deliver` hashes right and is signed by `seller`."""
    return delivery_signed_by(deliver.model_dump(), seller)


class ServiceSeller(Seller):
    """A seller that also performs the work it sold. Implement `perform`.

    Pass `ledger` (the node does) to keep the seller's books: sales, deliveries, receipts.
    """

    async def perform(self, ctx: Context, task: dict[str, Any]) -> dict[str, Any]:
        """Do the task and return the result (JSON-like). Subclasses implement it."""
        raise UsageError(f"{type(self).__name__} must implement perform(ctx, task)")

    def __init__(self, *args: Any, ledger: Ledger | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.ledger = ledger
        self._statements = StatementDesk()
        self.receipts: list[SignedReceipt] = []
        self._results: dict[str, Deliver] = {}
        self._working: set[str] = set()
        self._receipted: set[str] = set()
        """Agreements whose receipt arrived: their work is over, whatever the verdict."""
        self.checkpoints: dict[str, Checkpoint] = {}
        """The newest verified checkpoint from each buyer node, by node address."""
        self._escrowed: set[str] = set()
        """Sales whose buyer said it escrowed them (asked once per process)."""
        self._expired: set[str] = set()
        """Sales the buyer closed as never escrowed."""
        self._code: tuple[ModelRef, str] | None = None

    async def use_data(self, ctx: Context, task: Mapping[str, Any], *, purpose: str,
                       action: str = "use") -> str | None:
        """Ask, from `perform`, to use the task's granted data for `purpose` as well.

        The grant the task came with decides, as it did for the agreed use: None when it
        covers `action` for `purpose` (the use is recorded on the books, as the agreed one
        was); otherwise the one-line reason, and the refused attempt is on this node's audit
        log, which the data's owner is sent like every use. A task that came with no grant
        is nobody's data under this market's rules: None, and nothing is recorded.

        Raises:
            UsageError: called outside `perform`.
            LedgerError: an allowed use could not be recorded (do not use the data then).
        """
        performing = _performing.get()
        if performing is None:
            raise UsageError("use_data is for the task being performed: call it in perform")
        agreement_id, use = performing
        if use is None:
            return None
        asked = use.model_copy(update={"action": action, "purpose": purpose})
        try:
            await self.grants.check(asked, task, user=self.address, buyer=self.address)
        except Refusal as refusal:
            return refusal.detail
        await self.grants.record_use(asked, self.address, agreement_id)
        return None

    def provenance_model(self) -> tuple[ModelRef, str]:
        """The model and code version a delivery's provenance names (computed once).

        The default names this class and hashes its module's source; a seller that runs a
        model file (`LlmSeller`) names that file's hash instead.
        """
        if self._code is None:
            self._code = code_model(type(self))
        return self._code

    def provenance(self, signed: SignedAgreement, task: dict[str, Any], use: DataUse | None,
                   result: dict[str, Any], at_ms: int) -> SignedProvenance:
        """The signed record of what produced `result` for the sale `signed`."""
        inputs = [InputRef(hash=signed.agreement.terms.task_hash, role="task")]
        if use is not None and signed.agreement.terms.grant is not None:
            inputs.append(InputRef(hash=data_hash(use.data(task)), role="data",
                                   grant_id=signed.agreement.terms.grant.grant_id))
        model, code_version = self.provenance_model()
        return SignedProvenance.sign(Provenance(
            agreement_id=signed.id, seller=self.address, result_hash=result_hash(result),
            inputs=tuple(inputs), model=model, code_version=code_version,
            produced_at_ms=at_ms), self.identity)

    async def _grant_fault(self, ctx: Context, signed: SignedAgreement,
                           msg: Task) -> Decline | None:
        """Refuse a task whose grant is not the agreed one or no longer covers the use.

        A covered use is recorded on the books before the work starts.
        """
        bound, use = signed.agreement.terms.grant, msg.use
        if bound is None and use is None:
            return None
        dialogue = signed.agreement.dialogue_id
        try:
            same = use is not None and bound is not None and use.terms() == bound
        except ContractRejected:
            same = False
        if not same or use is None:
            return Decline(dialogue=dialogue, reason="grant_refused",
                           detail="the task's grant and use are not the ones agreed")
        try:
            await self.grants.check(use, msg.task, user=self.address, buyer=str(ctx.sender))
            await self.grants.record_use(use, self.address, signed.id)
        except Refusal as refusal:
            return Decline(dialogue=dialogue, reason=refusal.reason, detail=refusal.detail)
        except LedgerError as exc:
            return Decline(dialogue=dialogue, reason="books_unavailable", detail=str(exc))
        return None

    async def on_start(self, ctx: Context) -> None:
        """Give standing to every buyer whose receipt paid us, as our books remember it.

        Standing (see `marketplace.trade.dialogues`) outlives a restart this way.
        """
        await super().on_start(ctx)
        if self.ledger is None:
            return
        try:
            settled = await self.ledger.settled_receipts()
        except LedgerError as exc:
            logger.warning("%s: buyers' standing not read from the books (%s); receipts "
                           "give it again", self.name, exc)
            return
        self.regulars.update(signed.agreement.buyer for signed, receipt in settled
                             if signed.agreement.seller == self.address
                             and receipt.receipt.release > ZERO)

    async def agreed(self, wire: bytes) -> None:
        """Record the sale we just countersigned on our own books (no escrow: see books).

        Raises:
            Refusal: the books cannot be written; the sale is declined rather than unbooked.
        """
        signed = SignedAgreement.from_wire(wire)
        if self.ledger is not None:
            try:
                await self.ledger.record_agreement(signed, role="seller")
            except (LedgerError, ContractRejected) as exc:
                raise Refusal("books_unavailable", str(exc)) from exc
        logger.info("sale %s countersigned for %s", signed.id[:12], signed.agreement.buyer,
                    extra={"event": "countersigned", "agreement_id": signed.id})

    async def check_escrow(self, ctx: Context, signed: SignedAgreement) -> str:
        """Ask the buyer of an open sale with no task yet whether it escrowed (see escrow).

        Only once `ESCROW_QUERY_AFTER_MS` have passed since the agreed-at, and once per
        process for a sale the buyer said it escrowed. Returns ``escrowed``, ``expired``,
        ``unanswered`` or ``waiting`` (not asked).
        """
        sale = signed.id
        if (self.ledger is None or sale in self._working or sale in self._escrowed
                or sale in self._receipted or sale in self._results
                or ctx.clock.now_ms() < signed.agreement.agreed_at_ms + ESCROW_QUERY_AFTER_MS):
            return "waiting"
        outcome = await ask_escrow(ctx, self.ledger, signed)
        if outcome == "escrowed":
            self._escrowed.add(sale)
        elif outcome == "expired":
            self._expired.add(sale)
        return outcome

    def owed_work(self, now_ms: int) -> int:
        """Agreements we countersigned and have not delivered whose deadline is still ahead.

        The node's drain waits for these before it stops (see marketplace.node).
        """
        return sum(1 for d in self.dialogues.values()
                   if d.state is DialogueState.AGREED and d.agreement is not None
                   and (signed := SignedAgreement.from_wire(d.agreement)).id not in self._results
                   and signed.id not in self._receipted and signed.id not in self._expired
                   and signed.agreement.terms.deadline_ms > now_ms)

    async def _sale(self, signed: SignedAgreement, wire: bytes) -> str | None:
        """Whether `signed` is a sale of ours, and how we know.

        ``live`` (countersigned in this process), ``booked`` (on our books from before a
        restart), ``expired`` (its buyer closed it unfunded) or None (not ours). Only a sale
        from before a restart costs a read of the books.
        """
        if signed.id in self._expired:  # this process booked the expiry
            return "expired"
        dialogue = self.dialogue(signed.agreement.buyer, signed.agreement.dialogue_id)
        # The wire form is canonical, so the agreement we countersigned compares as bytes.
        if dialogue is not None and dialogue.agreement == wire:
            return "live"
        if self.ledger is None:
            return None
        try:  # after a restart the dialogue is gone, but the books remember the sale
            if await self.ledger.agreement(signed.id) != signed:
                return None
        except UnknownAgreement:
            return None
        return "expired" if await self.ledger.expiry(signed.id) is not None else "booked"

    async def _kept_delivery(self, agreement_id: str) -> Deliver | None:
        kept = self._results.get(agreement_id)
        if kept is None and self.ledger is not None:
            stored = await self.ledger.delivery(agreement_id)
            if stored is not None:
                kept = Deliver.model_validate(stored)
                self._results[agreement_id] = kept
        return kept

    @handler
    async def on_task(self, ctx: Context, msg: Task) -> Deliver | Decline:
        """Perform a task we agreed to, once; a repeated task gets the same delivery."""
        try:
            signed = SignedAgreement.from_wire(msg.agreement)
        except ContractRejected as exc:
            return Decline(dialogue="", reason="bad_agreement", detail=str(exc))
        agreement = signed.agreement
        sale = (await self._sale(signed, msg.agreement)
                if agreement.seller == self.address and agreement.buyer == ctx.sender else None)
        if sale is None:
            return Decline(dialogue=agreement.dialogue_id, reason="unknown_agreement")
        if sale == "expired":
            return Decline(dialogue=agreement.dialogue_id, reason="agreement_expired",
                           detail="you closed this agreement as never escrowed")
        if agreement.terms.task_hash != task_hash(msg.task):
            return Decline(dialogue=agreement.dialogue_id, reason="task_mismatch",
                           detail="the task is not the one that was priced")
        kept = await self._kept_delivery(signed.id)
        if kept is not None:
            return kept
        if (fault := task_fault(self.task_model, msg.task)) is not None:
            return Decline(dialogue=agreement.dialogue_id, reason="bad_task", detail=fault)
        if signed.id in self._working:
            return Decline(dialogue=agreement.dialogue_id, reason="in_progress",
                           detail="the task is being performed; ask for the delivery later")
        self._working.add(signed.id)  # held across the grant check's await
        if (refused := await self._grant_fault(ctx, signed, msg)) is not None:
            self._working.discard(signed.id)
            return refused
        started = ctx.clock.now_ms()
        self.queue_depth += 1
        logger.info("task of %s started", signed.id[:12],
                    extra={"event": "sale_task_started", "agreement_id": signed.id})
        performing = _performing.set((signed.id, msg.use))
        try:
            result = await self.perform(ctx, msg.task)
        except (KeyError, TypeError, ValueError) as exc:
            # The task does not have the shape `perform` needs: say so to the buyer (who
            # settles it as not delivered) instead of an anonymous handler failure.
            return Decline(dialogue=agreement.dialogue_id, reason="bad_task",
                           detail=f"{type(exc).__name__}: {exc}")
        finally:
            _performing.reset(performing)
            self.queue_depth -= 1
            self._working.discard(signed.id)
        finished = ctx.clock.now_ms()
        delivered = sign_delivery(self.identity, signed.id, result, started, finished,
                                  self.provenance(signed, msg.task, msg.use, result, finished))
        if self.ledger is not None:
            await self.ledger.record_delivery(signed.id, delivered.model_dump())
        self._results[signed.id] = delivered
        return delivered

    @handler
    async def on_delivery_query(self, ctx: Context, msg: DeliveryQuery) -> Deliver | Decline:
        """Hand a buyer the delivery it missed; say why when there is none."""
        kept = await self._kept_delivery(msg.agreement_id)
        if kept is not None and await self._buyer_of(msg.agreement_id) == ctx.sender:
            return kept
        if kept is None and msg.agreement_id in self._working:
            return Decline(dialogue="", reason="in_progress", detail="the task is being performed")
        return Decline(dialogue="", reason="not_delivered",
                       detail="no delivery of this agreement to you is kept here")

    async def _buyer_of(self, agreement_id: str) -> str | None:
        for dialogue in self.dialogues.values():
            if dialogue.agreement is not None and \
                    SignedAgreement.from_wire(dialogue.agreement).id == agreement_id:
                return dialogue.buyer
        if self.ledger is not None:
            try:
                return (await self.ledger.agreement(agreement_id)).agreement.buyer
            except UnknownAgreement:
                return None
        return None

    @handler
    async def on_statement_query(self, ctx: Context,
                                 msg: StatementQuery) -> StatementReply | Decline:
        """Our books' statement of our trades with the asker, and nothing else."""
        return await self._statements.answer(self.ledger, self.address, ctx.sender,
                                             ctx.clock.now())

    @handler
    async def on_receipt(self, ctx: Context, msg: ReceiptNotice) -> None:
        """Keep verified receipts for our own agreements; settle them on our books."""
        try:
            receipt = SignedReceipt.from_wire(msg.receipt)
            receipt.verify()
        except ContractRejected as exc:
            ctx.logger.warning("receipt from %s refused: %s", ctx.sender, exc)
            return
        if receipt.receipt.seller != self.address or receipt.receipt.buyer != ctx.sender:
            return
        self.receipts.append(receipt)
        if self.ledger is not None:
            ours = await self._book_receipt(ctx, self.ledger, receipt)
        else:
            ours = await self._buyer_of(receipt.receipt.agreement_id) == ctx.sender
        if ours and receipt.receipt.release > ZERO:  # it paid us for a delivery: standing
            self.regulars.add(ctx.sender)
        self._results.pop(receipt.receipt.agreement_id, None)
        self._receipted.add(receipt.receipt.agreement_id)
        if msg.checkpoint is not None:
            self._keep_checkpoint(ctx, msg.checkpoint)

    async def _book_receipt(self, ctx: Context, ledger: Ledger, receipt: SignedReceipt) -> bool:
        """Settle `receipt` on our books if it states our signed delivery; else dispute it.

        True when the receipt is (or already was) booked as ours.
        """
        agreement_id = receipt.receipt.agreement_id
        try:
            # `settle`, or `record_dispute` with the receipt inside, verifies it against the
            # agreement: checked once, where it is booked.
            signed = await ledger.agreement(agreement_id)
            kept = await ledger.delivery(agreement_id)
            conflicts = receipt_conflicts(signed.agreement, kept, receipt.receipt)
            if conflicts:
                await raise_dispute(ctx, ledger, self.identity, Dispute(
                    agreement_id=agreement_id, raised_by=self.address, party="seller",
                    conflicts=tuple(conflicts), receipt=receipt.to_wire().hex(),
                    at_ms=ctx.clock.now_ms()), kept, receipt.receipt.buyer)
                return False
            await ledger.settle(receipt)
        except (UnknownAgreement, ContractRejected, AlreadySettled, LedgerError) as exc:
            ctx.logger.warning("receipt %s not booked: %s", receipt.id[:12], exc)
            return isinstance(exc, AlreadySettled)
        logger.info("receipt of %s booked: %s", agreement_id[:12], receipt.receipt.verdict,
                    extra={"event": "receipt_booked", "agreement_id": agreement_id})
        return True

    def _keep_checkpoint(self, ctx: Context, checkpoint: Checkpoint) -> None:
        """Keep `checkpoint` if it verifies and is newer than the one kept for its node."""
        try:
            checkpoint.verify()
        except ContractRejected as exc:
            ctx.logger.warning("checkpoint from %s refused: %s", ctx.sender, exc)
            return
        kept = self.checkpoints.get(checkpoint.ledger)
        if kept is not None and kept.seq == checkpoint.seq and kept.hash != checkpoint.hash:
            ctx.logger.error("node %s signed two different heads at entry %d (%s..., %s...): "
                             "its books forked; keeping the first", checkpoint.ledger,
                             checkpoint.seq, kept.hash[:12], checkpoint.hash[:12])
            return
        if kept is None or checkpoint.seq > kept.seq:
            self.checkpoints[checkpoint.ledger] = checkpoint
