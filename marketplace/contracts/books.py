"""What each party owes the other, read from the signed agreements and receipts alone.

Both sides of a trade keep books (marketplace.contracts.ledger): the buyer records the
purchase and escrows its price, the seller records the sale. Neither trusts the other's
arithmetic: a debt follows from a signed agreement and the buyer-signed receipt that settled
it, so the two books give the same lines to the micro-credit.

=============  ==========================================
receipt        debt
=============  ==========================================
met            the buyer owes the seller the price
breached       the seller owes the buyer the penalty
not_delivered  the seller owes the buyer the penalty
(expiry)       nothing: the buyer never escrowed it
(none yet)     nothing yet: the agreement is open
(payment)      the payee owes the payer what it was paid
=============  ==========================================

A payment made outside the market and signed by both partners
(marketplace.contracts.payment) is a line of its own: it owes back exactly what it paid, so
the debt it settled nets to zero.

On the buyer's books the met price is paid at once out of escrow (it moves to the seller's
account there); the penalty is a debt the seller carries on its own books, so a seller never
has to lodge money with a buyer it has never met (see docs/settlement.md).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict

from aaex_agents.money import ZERO, Credits

from .agreement import SignedAgreement
from .dispute import SignedResolution
from .expiry import SignedExpiry
from .payment import SignedPayment
from .receipt import SignedReceipt


class Line(BaseModel):
    """One agreement between two parties and the debt it created (none while open).

    A pydantic model because partners exchange lines as they are (a statement's answer,
    `marketplace.trade.statements`): the books and the wire share one shape.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    agreement_id: str
    """The agreement's id (hex sha256 of what both signed), or a payment's."""
    buyer: str
    """The buyer's address (of a payment: the payer)."""
    seller: str
    """The seller's address (of a payment: the payee)."""
    capability: str
    """What was bought."""
    price: Credits
    """Agreed price."""
    verdict: str
    """``met``, ``breached``, ``not_delivered``, ``expired`` (closed by the buyer's signed word
    that it never escrowed: nothing owed), ``disputed`` (the parties' signed facts
    contradict: nothing owed, the money held, until a resolution), ``resolved`` (by the
    resolution both parties or the arbiter signed), ``paid`` (a payment both partners signed:
    the payee owes back what it was paid), or ``open`` while nothing closed it."""
    debtor: str | None
    """Who owes `amount` (None while open)."""
    creditor: str | None
    """Who is owed `amount` (None while open)."""
    amount: Credits
    """What `debtor` owes `creditor` (0 while open)."""
    receipt_id: str | None = None
    """The id of the buyer-signed receipt that settled it (or of the expiry)."""


def line_of(signed: SignedAgreement,
            receipt: SignedReceipt | SignedExpiry | SignedResolution | None, *,
            disputed: bool = False, resolution: SignedResolution | None = None) -> Line:
    """The line of one agreement, whatever closed it or holds it open.

    Settled by `receipt`, expired unfunded, disputed (nothing owed until a `resolution`),
    resolved, or still open.
    """
    a = signed.agreement
    if isinstance(receipt, SignedResolution):
        resolution, receipt = receipt, None
    debtor: str | None = None
    creditor: str | None = None
    amount, receipt_id = ZERO, None
    if resolution is not None:
        net = resolution.resolution.to_seller - resolution.resolution.penalty
        verdict, receipt_id = "resolved", resolution.resolution.id
        if net != ZERO:
            debtor, creditor = (a.buyer, a.seller) if net > ZERO else (a.seller, a.buyer)
            amount = net if net > ZERO else -net
    elif disputed:
        verdict = "disputed"
    elif receipt is None:
        verdict = "open"
    elif isinstance(receipt, SignedExpiry):
        verdict, receipt_id = "expired", receipt.id
    elif receipt.receipt.verdict == "met":
        verdict, debtor, creditor = "met", a.buyer, a.seller
        amount, receipt_id = receipt.receipt.release, receipt.id
    else:
        verdict, debtor, creditor = receipt.receipt.verdict, a.seller, a.buyer
        amount, receipt_id = receipt.receipt.penalty, receipt.id
    return Line(agreement_id=signed.id, buyer=a.buyer, seller=a.seller,
                capability=a.terms.capability, price=a.terms.price, verdict=verdict,
                debtor=debtor, creditor=creditor, amount=amount, receipt_id=receipt_id)


PAYMENT_CAPABILITY = "payment"
"""The `capability` of a payment's line."""


def payment_line(signed: SignedPayment) -> Line:
    """The line of a payment both partners signed: the payee owes the payer the amount back.

    That nets out the debt the payment settled.
    """
    p = signed.payment
    return Line(agreement_id=p.id, buyer=p.payer, seller=p.payee,
                capability=PAYMENT_CAPABILITY, price=p.amount, verdict="paid", debtor=p.payee,
                creditor=p.payer, amount=p.amount, receipt_id=p.id)


@dataclass(frozen=True, slots=True)
class Statement:
    """Every agreement with `partner` and the net position, from these books' side.

    `net` > 0: the partner owes this side that much; < 0: this side owes it.
    The partner's own statement of the same trades has the opposite `net`.
    """

    partner: str
    lines: tuple[Line, ...]
    net: Credits


def statement(lines: Iterable[Line], partner: str) -> Statement:
    """The lines where `partner` is a party, and what they net to."""
    mine = tuple(line for line in lines if partner in (line.buyer, line.seller))
    net = sum((line.amount if line.debtor == partner else -line.amount
               for line in mine if line.debtor is not None), ZERO)
    return Statement(partner, mine, net)


@dataclass(frozen=True, slots=True)
class Position:
    """An agent's money on these books."""

    available: Credits = ZERO
    held: Credits = ZERO
    receivable: Credits = ZERO
    """Owed to the agent, netted per partner: the sum of the partners' positive nets."""
    payable: Credits = ZERO
    """Owed by the agent, netted per partner: the sum of what it owes the partners it owes."""


def nets(lines: Iterable[Line]) -> dict[str, dict[str, Credits]]:
    """Per address, per partner: what the partner owes it (< 0: what it owes the partner).

    Netted per pair of partners, so a payment signed by both closes the debts it paid, and a
    penalty a seller owes offsets the prices owed to it by the same buyer.
    """
    found: dict[str, dict[str, Credits]] = {}
    for line in lines:
        if line.debtor is None or line.creditor is None or line.amount == ZERO:
            continue
        mine = found.setdefault(line.creditor, {})
        mine[line.debtor] = mine.get(line.debtor, ZERO) + line.amount
        theirs = found.setdefault(line.debtor, {})
        theirs[line.creditor] = theirs.get(line.creditor, ZERO) - line.amount
    return found


def positions(funds: Mapping[str, tuple[Credits, Credits]], lines: Iterable[Line]
              ) -> dict[str, Position]:
    """Per address: its (available, held) `funds` and what the `lines` say it is owed and owes.

    Netted per partner (see `nets`).
    """
    owed: dict[str, list[Credits]] = {}
    for address, partners in nets(lines).items():
        totals = owed.setdefault(address, [ZERO, ZERO])
        for net in partners.values():
            if net > ZERO:
                totals[0] += net
            elif net < ZERO:
                totals[1] -= net
    return {address: Position(*funds.get(address, (ZERO, ZERO)), *owed.get(address, [ZERO, ZERO]))
            for address in sorted(funds.keys() | owed.keys())}


def differences(ours: Statement, theirs: Statement) -> list[str]:
    """Every way two statements of the same trades disagree; empty when they reconcile."""
    mine = {line.agreement_id: line for line in ours.lines}
    other = {line.agreement_id: line for line in theirs.lines}
    found = []
    for agreement_id in sorted(mine.keys() - other.keys()):
        found.append(f"{agreement_id[:16]}: on our books, missing on the partner's")
    for agreement_id in sorted(other.keys() - mine.keys()):
        found.append(f"{agreement_id[:16]}: on the partner's books, missing on ours")
    for agreement_id in sorted(mine.keys() & other.keys()):
        a, b = mine[agreement_id], other[agreement_id]
        if (a.verdict, a.amount, a.receipt_id) != (b.verdict, b.amount, b.receipt_id):
            found.append(f"{agreement_id[:16]}: ours {a.verdict} {a.amount}, "
                         f"the partner's {b.verdict} {b.amount} (credits)"
                         + (" (a receipt the partner never got)" if b.verdict == "open" else "")
                         + (" (a receipt we never got)" if a.verdict == "open" else ""))
    return found
