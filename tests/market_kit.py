"""Deterministic parties, agreements and receipts for the market tests (and their child).

Identities come from fixed seeds and Ed25519 signatures are deterministic, so a process
that rebuilds a receipt from a recorded agreement gets the very same receipt (same id).
"""

from __future__ import annotations

import hashlib

from aaex_agents import Credits, Identity
from marketplace.contracts.agreement import Agreement, SignedAgreement, Terms
from marketplace.contracts.receipt import SignedReceipt, make_receipt
from marketplace.contracts.sla import Delivery

AGREED_AT_MS = 1_800_000_000_000
PRICE = Credits(5_000)
PENALTY = Credits(1_500)


def identity(name: str) -> Identity:
    return Identity(hashlib.sha256(f"aaex-test/{name}".encode()).digest())


OWNER = identity("owner")
"""The node key that signs a test ledger's deposits and withdrawals."""
BUYER = identity("buyer")
SELLER = identity("seller")
STRANGER = identity("stranger")


def agreement(buyer: Identity = BUYER, seller: Identity = SELLER, *, n: int = 0,
              price: Credits = PRICE, penalty: Credits = PENALTY, max_latency_ms: int = 1_000,
              deadline_after_ms: int = 10_000) -> SignedAgreement:
    terms = Terms(task_hash=hashlib.sha256(f"task {n}".encode()).hexdigest(),
                  capability="forecast.demand", price=price, penalty=penalty,
                  max_latency_ms=max_latency_ms, deadline_ms=AGREED_AT_MS + deadline_after_ms)
    body = Agreement(dialogue_id=f"dialogue-{n}", buyer=buyer.address, seller=seller.address,
                     terms=terms, agreed_at_ms=AGREED_AT_MS,
                     nonce=hashlib.sha256(f"nonce {n}".encode()).hexdigest()[:32])
    return SignedAgreement.create(body, buyer, seller)


def receipt(signed: SignedAgreement, buyer: Identity, *, latency_ms: int | None = 200,
            start_after_ms: int = 100) -> SignedReceipt:
    """The buyer's receipt; `latency_ms=None` means nothing was delivered."""
    delivery = None
    if latency_ms is not None:
        started = signed.agreement.agreed_at_ms + start_after_ms
        delivery = Delivery(result_hash=hashlib.sha256(b"result").hexdigest(),
                            started_at_ms=started, finished_at_ms=started + latency_ms)
    body = make_receipt(signed.agreement, delivery,
                        issued_at_ms=signed.agreement.terms.deadline_ms + 1)
    return SignedReceipt.create(body, buyer)


def flip_bit(data: bytes, bit: int) -> bytes:
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


def cr(credits: float | int | str) -> Credits:
    """Decimal credits as a test writes them (``cr(2.5)``), exactly, zero allowed."""
    return Credits.parse(credits, allow_zero=True)
