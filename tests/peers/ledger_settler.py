"""Settles agreements on a ledger in a loop, for the kill -9 test; run with -m.

    python -m tests.peers.ledger_settler LEDGER ROUND        # work until killed
    python -m tests.peers.ledger_settler LEDGER ROUND --finish   # recover, then exit 0

On start it does what a restarted node does: settle every recorded agreement still open,
and retry a few settled ones (which must pay nothing). Then, forever: fund a buyer and a
seller, record an agreement, and usually settle it at once, twice (the second must be a
duplicate). Lines on stdout, each printed only after its transaction committed:
``ready``, ``A <agreement id>``, ``S <agreement id>``; ``ERR <why>`` then exit 3 if the
ledger ever pays a receipt twice. Receipts are rebuilt deterministically from the recorded
agreement, so a retry after a kill submits the very same receipt.
"""

from __future__ import annotations

import asyncio
import sys

from aaex_agents import Identity
from marketplace.contracts.agreement import SignedAgreement
from marketplace.contracts.ledger import Ledger, LedgerConfig, open_ledger
from marketplace.contracts.receipt import SignedReceipt
from tests.market_kit import OWNER, agreement, identity, receipt

BUYERS = [identity(f"crash-buyer-{k}") for k in range(3)]
SELLERS = [identity(f"crash-seller-{k}") for k in range(3)]
BY_ADDRESS = {i.address: i for i in BUYERS}


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def number(signed: SignedAgreement) -> int:
    return int(signed.agreement.dialogue_id.rsplit("-", 1)[1])


def receipt_for(signed: SignedAgreement) -> SignedReceipt:
    n = number(signed)
    latency = None if n % 5 == 0 else (5_000 if n % 3 == 0 else 200)  # some breaches
    return receipt(signed, BY_ADDRESS[signed.agreement.buyer], latency_ms=latency)


async def settle_once(ledger: Ledger, signed: SignedAgreement) -> None:
    first = await ledger.settle(receipt_for(signed))
    say(f"S {signed.id}")
    again = await ledger.settle(receipt_for(signed))
    if not again.duplicate or again.seq != first.seq:
        say(f"ERR receipt for {signed.id} settled twice")
        raise SystemExit(3)


async def main(path: str, round_: int, finish: bool) -> None:
    async with open_ledger(path, config=LedgerConfig(owner=OWNER)) as ledger:
        say("ready")
        for signed in await ledger.agreements(unsettled=True):
            await settle_once(ledger, signed)
        for signed in (await ledger.agreements())[:5]:
            if not (await ledger.settle(receipt_for(signed))).duplicate:
                say(f"ERR settled agreement {signed.id} paid again")
                raise SystemExit(3)
        if finish:
            return
        n = round_ * 1_000_000
        while True:
            n += 1
            buyer: Identity = BUYERS[n % 3]
            seller: Identity = SELLERS[(n // 3) % 3]
            signed = agreement(buyer, seller, n=n, price=1_000 + n % 7, penalty=n % 4 * 100)
            await ledger.deposit(buyer.address, signed.agreement.terms.price)
            if signed.agreement.terms.penalty:
                await ledger.deposit(seller.address, signed.agreement.terms.penalty)
            await ledger.record_agreement(signed)
            say(f"A {signed.id}")
            if n % 4:  # every fourth stays open until the next start recovers it
                await settle_once(ledger, signed)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), "--finish" in sys.argv[3:]))
