"""The node's ledger: append-only, hash-chained, in SQLite (WAL), settled exactly once.

Every event is an *entry*: ``(seq, kind, body, prev_hash, hash)``, where `body` is canonical
JSON and the hash covers the previous hash, the position, the kind and the body (the rules
are in marketplace.contracts.chain, which `verify` replays). Each entry commits to the one before it
and to its own position, so `verify` finds an entry that was edited (its hash no longer
matches), reordered (it no longer follows its predecessor) or deleted (a gap, or a head
that no longer matches the last entry).

Kinds and what they move (``available``/``held`` per address and currency):

- ``deposit``   credit an address from outside (funding a buying agent); signed by the
  ledger's owner, the node's key, like ``withdraw`` (money paid out of the market), over
  the entry's place (seq, previous hash) as well as its body, so a copy does not verify.
- ``agreement`` a signed agreement, verified, booked as a purchase (``role`` buyer, with its
  task and its ``hold``) or as a sale (``role`` seller: nothing held).
- ``hold``      escrow of a purchase: the buyer's price moves from available to held.
  Refused with `InsufficientFunds` when it cannot cover it.
- ``delivery``  the seller-signed delivery, kept by both sides until the receipt.
- ``release``   on a *met* receipt: on a purchase, the price goes to the seller.
- ``refund``    on a *breached* or *not_delivered* receipt: on a purchase, the price goes
  back to the buyer; the penalty is a debt of the seller (`books`), not money held here.
  On a sale either kind records the receipt and moves nothing.
- ``notified``  the seller took the receipt of a purchase (until then it is sent again).
- ``access``    an audit event: who used which data, when, for what purpose.
- ``dispute``   a party's signed dispute of the other's facts (marketplace.contracts.dispute),
  with the seller's delivery in evidence; from then on no receipt settles the agreement.
- ``resolve``   the resolution both parties (or the agreement's arbiter) signed: it settles
  the held price as it says, or, on books a receipt settled before the dispute arrived,
  moves the difference between buyer and seller.

Balances are kept in a table updated in the same transaction as the entry that moves them,
and `verify` recomputes them from the entries. Each operation is one SQLite transaction
(``BEGIN IMMEDIATE`` … ``COMMIT``, ``synchronous=FULL``), so a process killed at any point
leaves either all of an operation or none of it. Settlement is idempotent: the settling
entry carries the agreement id and the receipt id in UNIQUE columns, so the database itself
refuses a second payout even if the check in Python were bypassed; the same receipt again
returns the first settlement, a different receipt for a settled agreement raises
`AlreadySettled`.

What the chain cannot do alone: someone who rewrites the whole file (every hash after an
edit, and the head), cuts the newest entries or appends one with a correct hash makes a
consistent forgery. `checkpoint()` signs the head with the owner's key; a checkpoint that
left the node (to a partner, to a file) pins history up to it: `verify(against=...)` finds
the cut, the rewrite, or a forged checkpoint (see marketplace.contracts.checkpoint).

The chain starts at a genesis that binds the owner and a random id of the file: removing or
swapping the owner breaks it at entry 1. The owner's key opens a ledger only once its whole
chain verifies, so a node never starts on (nor pays out of) a tampered one.

A new file is created 0600 in a 0700 folder; `LedgerConfig(read_only=True)` audits one.

SQLite blocks, so each ledger runs its connection on one worker thread of its own, like
aaex_agents.storage: the event loop never waits on the disk.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from collections.abc import AsyncIterator, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from aaex_agents.address import public_key_from_address
from aaex_agents.clock import Clock, SystemClock
from aaex_agents.errors import UsageError
from aaex_agents.identity import Identity
from aaex_agents.money import ZERO, Credits

from . import dispute_store as disputes
from . import ledger_store as store
from .agreement import SignedAgreement
from .books import Line, Position, Statement, line_of, positions, statement
from .chain import LedgerReport
from .checkpoint import Checkpoint
from .errors import (
    AgreementExpired,
    InsufficientFunds,
)
from .expiry import SignedExpiry
from .ledger_audit import AuditBooks
from .ledger_disputes import DisputeBooks
from .ledger_disputes import DisputeRecord as DisputeRecord
from .ledger_offers import OfferBooks
from .ledger_payments import PaymentBooks, payment_lines
from .ledger_store import AccessEvent as AccessEvent
from .ledger_store import Balance as Balance
from .ledger_store import Entry as Entry
from .ledger_store import OpenAgreement as OpenAgreement
from .ledger_store import Role as Role
from .ledger_store import Settlement as Settlement
from .receipt import SignedReceipt

logger = logging.getLogger(__name__)

T = TypeVar("T")

WITHDRAW_ADVICE = ("what partners owe it becomes available here once their payment outside the "
                   "market is recorded by both sides (`aaex account settle`)")



@dataclass(frozen=True, kw_only=True)
class LedgerConfig:
    """How a ledger is opened.

    Attributes:
        max_bytes: size limit of the database file (default None: only the disk limits it).
            Writing past it fails with `LedgerFull` and changes nothing, as a full disk does.
        clock: where entry times come from (default: the system clock).
        owner: the node's key, which signs every entry that creates or removes money
            (deposits and withdrawals) and every `Checkpoint`; None opens the ledger for
            reading and settling only.
        read_only: open an existing file read-only, to audit it (``aaex ledger verify``):
            nothing is created or written, and every write raises LedgerError. A missing
            file raises LedgerError instead of being created.
    """

    max_bytes: int | None = None
    clock: Clock = field(default_factory=SystemClock)
    owner: Identity | None = None
    read_only: bool = False

    def __post_init__(self) -> None:
        if self.max_bytes is not None and self.max_bytes < 64 * 1024:
            raise UsageError(f"LedgerConfig.max_bytes must be at least 65536, "
                             f"got {self.max_bytes!r}")


class Ledger(DisputeBooks, PaymentBooks, OfferBooks, AuditBooks):
    """A node's ledger. Open with `open_ledger`; every method runs off the event loop.

    Methods that write are each one transaction: on any error nothing was written, and a
    cancelled call either committed or did not (the worker thread finishes the transaction
    it started; the result is then lost, so retry: every write but `deposit` and
    `record_access` is idempotent).
    """

    def __init__(self, connection: sqlite3.Connection, executor: ThreadPoolExecutor,
                 path: Path | None, config: LedgerConfig) -> None:
        self._connection = connection
        self._executor = executor
        self._config = config
        self._closed = False
        self.path = path
        self._lines: tuple[int, list[Line]] | None = None

    @property
    def owner(self) -> str | None:
        """The address of the key that signs this ledger's money and checkpoints, if given."""
        return self._config.owner.address if self._config.owner is not None else None

    # -- plumbing -------------------------------------------------------------------------

    def _now_ms(self) -> int:
        return self._config.clock.now_ms()

    def _signer(self) -> Identity | None:
        return self._config.owner

    async def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        if self._closed:
            raise UsageError("the ledger is closed; use it inside `async with open_ledger(...)`")
        return await asyncio.get_running_loop().run_in_executor(
            self._executor, store.guarded, self._connection, work, self.path)

    async def _write(self, work: Callable[[sqlite3.Connection], T]) -> T:
        return await self._run(lambda c: store.transaction(c, work))

    # -- writes ---------------------------------------------------------------------------

    async def deposit(self, address: str, amount: Credits, *, currency: str = "credit",
                      memo: str = "") -> Entry:
        """Credit `amount` to `address` (funding from outside the market).

        The entry is signed by the ledger's owner, so a deposit added by editing the file
        fails `verify`. Not idempotent: each call credits again.

        Raises:
            UsageError: `address` is not an agent address, `amount` is not positive Credits,
                or the ledger was opened without an owner key.
            LedgerFull, LedgerError: nothing was credited.
        """
        body, sign = self._money_body("deposit", address, amount, currency, memo)
        return await self._write(lambda c: store.append_money(c, "deposit", body, sign))

    async def withdraw(self, address: str, amount: Credits, *, currency: str = "credit",
                       memo: str = "") -> Entry:
        """Debit `amount` of `address`'s available funds (paid out of the market).

        Signed by the ledger's owner, like a deposit.

        Raises:
            InsufficientFunds: `address` has less than `amount` available (held escrow
                cannot be withdrawn).
            UsageError, LedgerFull, LedgerError: as for `deposit`; nothing was debited.
        """
        body, sign = self._money_body("withdraw", address, amount, currency, memo)

        def debit(c: sqlite3.Connection) -> Entry:
            available = store.balance(c, address, currency).available
            if amount > available:
                raise InsufficientFunds(address, amount, available, currency,
                                        advice=WITHDRAW_ADVICE)
            return store.append_money(c, "withdraw", body, sign)
        return await self._write(debit)

    def _money_body(self, kind: str, address: str, amount: Credits, currency: str,
                    memo: str) -> tuple[dict[str, Any], Callable[[bytes], bytes]]:
        """The unsigned body and the owner's `sign`, which `store.append_money` uses."""
        owner = self._config.owner
        if owner is None:
            raise UsageError(f"{kind}: this ledger was opened without the node's key; money "
                             "entries are signed (open it with LedgerConfig(owner=...))")
        public_key_from_address(address)  # a mistyped address would strand the money
        if not isinstance(amount, Credits) or amount <= ZERO:
            raise UsageError(f"{kind} amount must be positive Credits, got {amount!r}")
        body: dict[str, Any] = {"address": address, "currency": currency,
                                "amount": amount.micro,
                                "memo": memo, "at_ms": self._config.clock.now_ms(),
                                "signer": owner.address}
        return body, owner.sign

    async def record_agreement(self, signed: SignedAgreement, *, role: Role = "buyer",
                               task: Mapping[str, Any] | None = None,
                               use: Mapping[str, Any] | None = None) -> Entry:
        """Verify `signed` and record it on these books as a purchase or a sale.

        A purchase (`role="buyer"`) holds the buyer's price in escrow in the same
        transaction and keeps the `task` and its data's grant `use` (a restarted buyer sends
        them again). A sale (`role="seller"`) holds nothing: the money is on the buyer's
        books; what the seller is owed or owes follows from the receipt. The same agreement
        again returns its first entry and holds nothing more.

        Raises:
            BadContractSignature: either party's signature does not verify.
            InsufficientFunds: the buyer cannot cover the price.
            LedgerFull, LedgerError: nothing was recorded.
        """
        signed.verify()
        agreement, terms = signed.agreement, signed.agreement.terms
        agreement_id = signed.id
        now = self._config.clock.now_ms()
        body: dict[str, Any] = {"agreement_id": agreement_id, "wire": signed.to_wire().hex(),
                                "role": role, "at_ms": now}
        if role == "buyer":
            body.update({k: dict(v) for k, v in (("task", task), ("use", use)) if v is not None})

        def record(c: sqlite3.Connection) -> Entry:
            existing = c.execute("SELECT seq FROM entries WHERE recorded = ?",
                                 (agreement_id,)).fetchone()
            if existing is not None:
                if store.expiry_of(c, agreement_id) is not None:
                    raise AgreementExpired(f"agreement {agreement_id[:12]} was closed as never "
                                           "escrowed; nothing was held")
                return store.entry_at(c, existing[0])
            if role == "buyer":
                available = store.balance(c, agreement.buyer, terms.currency).available
                if terms.price > available:
                    raise InsufficientFunds(agreement.buyer, terms.price, available,
                                            terms.currency)
            entry = store.append(c, "agreement", body, agreement_id=agreement_id,
                                 recorded=agreement_id)
            if role == "buyer":
                store.append(c, "hold", {
                    "agreement_id": agreement_id, "buyer": agreement.buyer,
                    "seller": agreement.seller, "currency": terms.currency,
                    "price": terms.price.micro, "at_ms": now}, agreement_id=agreement_id)
            return entry

        entry = await self._write(record)
        logger.debug("agreement %s recorded at entry %d", agreement_id[:12], entry.seq)
        return entry

    async def settle(self, signed: SignedReceipt) -> Settlement:
        """Settle the agreement `signed` refers to, exactly once.

        On a purchase's books, a met receipt releases the held price to the seller and a
        breached or not_delivered one refunds it to the buyer. On a sale's books nothing
        moves: the receipt is recorded, and the seller is owed the price (met) or owes the
        penalty (otherwise), which `marketplace.contracts.books` reads from it.

        Raises:
            UnknownAgreement: the agreement was never recorded here.
            BadContractSignature, ReceiptMismatch: the receipt does not verify against it.
            AlreadySettled: a different receipt already settled that agreement (or it expired).
            LedgerFull, LedgerError: nothing was paid.
        """
        now = self._config.clock.now_ms()

        settlement = await self._write(lambda c: store.settle(c, signed, now))
        logger.debug("agreement %s settled (%s) at entry %d%s", settlement.agreement_id[:12],
                     settlement.verdict, settlement.seq,
                     " (duplicate receipt)" if settlement.duplicate else "")
        return settlement

    async def close_expired(self, signed: SignedAgreement, expiry: SignedExpiry, *,
                            role: Role) -> Settlement:
        """Close `signed` as never escrowed, by its buyer's signed `expiry`, exactly once.

        The agreement is recorded first when these books never saw it (a buyer that never
        got the countersignature). Nothing moves and nobody owes anything. Closing again by
        the same expiry returns the first closing (`duplicate=True`); from then on these
        books refuse to escrow the agreement (`record_agreement` raises AgreementExpired).

        Raises:
            BadContractSignature, ReceiptMismatch: the expiry does not verify against it.
            AlreadySettled: a receipt (or another expiry) already closed the agreement.
            EscrowHeld: these books escrowed the agreement: a receipt will close it.
            LedgerFull, LedgerError: nothing was written.
        """
        expiry.verify_against(signed)
        now = self._config.clock.now_ms()

        settlement = await self._write(
            lambda c: store.close_expired(c, signed, expiry, role, now))
        logger.debug("agreement %s expired at entry %d", signed.id[:12], settlement.seq)
        return settlement

    async def expiry(self, agreement_id: str) -> SignedExpiry | None:
        """The buyer-signed expiry that closed `agreement_id`, or None."""
        return await self._run(lambda c: store.expiry_of(c, agreement_id))

    async def record_delivery(self, agreement_id: str, delivery: Mapping[str, Any]) -> Entry:
        """Keep what was delivered for `agreement_id`: its result and the seller-signed times.

        The seller records it when it delivers and keeps serving it until the receipt
        arrives; the buyer records it on arrival, before judging it, so a buyer that dies
        in between judges it after its restart. Recording again returns the first entry.

        Raises:
            UnknownAgreement: the agreement was never recorded here.
            LedgerFull, LedgerError: nothing was recorded.
        """
        body = {"agreement_id": agreement_id, "delivery": dict(delivery),
                "at_ms": self._config.clock.now_ms()}

        def record(c: sqlite3.Connection) -> Entry:
            existing = c.execute("SELECT seq FROM entries WHERE delivered = ?",
                                 (agreement_id,)).fetchone()
            if existing is not None:
                return store.entry_at(c, existing[0])
            store.role_of(c, agreement_id)
            return store.append(c, "delivery", body, agreement_id=agreement_id,
                                delivered=agreement_id)
        return await self._write(record)

    async def record_notified(self, agreement_id: str) -> Entry:
        """Note that the seller has taken the receipt of purchase `agreement_id`.

        Until then the node sends it again on every recovery pass (see
        `unnotified_receipts`). Noting twice returns the first entry.
        """
        body = {"agreement_id": agreement_id, "at_ms": self._config.clock.now_ms()}

        def note(c: sqlite3.Connection) -> Entry:
            done = c.execute("SELECT seq FROM entries WHERE kind = 'notified' AND "
                             "agreement_id = ?", (agreement_id,)).fetchone()
            if done is not None:
                return store.entry_at(c, done[0])
            store.role_of(c, agreement_id)
            return store.append(c, "notified", body, agreement_id=agreement_id)
        return await self._write(note)

    async def unnotified_receipts(self) -> list[tuple[SignedAgreement, SignedReceipt]]:
        """Settled purchases whose seller has not taken the receipt yet."""
        def read(c: sqlite3.Connection) -> list[tuple[SignedAgreement, SignedReceipt]]:
            rows = c.execute(
                "SELECT a.body, s.body FROM entries s JOIN entries a ON a.recorded = s.settled "
                "WHERE s.kind IN ('release', 'refund') AND json_extract(s.body, '$.role') = "
                "'buyer' "
                "AND s.settled NOT IN (SELECT agreement_id FROM entries WHERE kind = 'notified')"
                " ORDER BY s.seq").fetchall()
            return [(store.decode_agreement(a), SignedReceipt.from_wire(
                bytes.fromhex(json.loads(s)["receipt"]))) for a, s in rows]
        return await self._run(read)

    # -- reads ----------------------------------------------------------------------------

    async def balance(self, address: str, currency: str = "credit") -> Balance:
        """The available and held funds of `address` (zero when it never had any)."""
        return await self._run(lambda c: store.balance(c, address, currency))

    async def balances(self, currency: str = "credit") -> dict[str, Balance]:
        """Every address's balance in `currency`."""
        rows = await self._run(lambda c: c.execute(
            "SELECT address, available, held FROM balances WHERE currency = ? ORDER BY address",
            (currency,)).fetchall())
        return {address: Balance(Credits(available), Credits(held))
                for address, available, held in rows}

    async def agreement(self, agreement_id: str) -> SignedAgreement:
        """The signed agreement recorded under `agreement_id`.

        Raises:
            UnknownAgreement: none was recorded.
        """
        return await self._run(lambda c: store.agreement(c, agreement_id))

    async def agreements(self, *, unsettled: bool = False) -> list[SignedAgreement]:
        """Every recorded agreement in order; only those not yet settled if `unsettled`."""
        query = "SELECT body FROM entries WHERE recorded IS NOT NULL"
        if unsettled:
            query += " AND recorded NOT IN (SELECT settled FROM entries WHERE settled NOT NULL)"
        rows = await self._run(lambda c: c.execute(query + " ORDER BY seq").fetchall())
        return [store.decode_agreement(row[0]) for row in rows]

    async def open_agreements(self) -> list[OpenAgreement]:
        """Every agreement not yet settled nor disputed, with its role, task and delivery."""
        def read(c: sqlite3.Connection) -> list[OpenAgreement]:
            rows = c.execute(
                "SELECT a.body, d.body FROM entries a LEFT JOIN entries d "
                "ON d.delivered = a.recorded WHERE a.recorded IS NOT NULL AND a.recorded NOT IN "
                "(SELECT settled FROM entries WHERE settled IS NOT NULL) AND a.recorded NOT IN "
                "(SELECT agreement_id FROM entries WHERE kind = 'dispute') "
                "ORDER BY a.seq").fetchall()
            found = []
            for raw, delivered in rows:
                body = json.loads(raw)
                delivery = json.loads(delivered)["delivery"] if delivered is not None else None
                found.append(OpenAgreement(store.decode_agreement(raw), body["role"],
                                           body.get("task"), delivery, body.get("use")))
            return found
        return await self._run(read)

    async def delivery(self, agreement_id: str) -> dict[str, Any] | None:
        """The delivery recorded for `agreement_id`, or None."""
        def read(c: sqlite3.Connection) -> dict[str, Any] | None:
            row = c.execute("SELECT body FROM entries WHERE delivered = ?",
                            (agreement_id,)).fetchone()
            return None if row is None else dict(json.loads(row[0])["delivery"])
        return await self._run(read)

    async def lines(self) -> list[Line]:
        """Every agreement on these books with its debt (books.Line), then every payment.

        Decoding every agreement and receipt is linear in the books, and the admin views and
        the web view ask every few seconds: the lines are kept until the head moves.
        """
        cached = self._lines

        def read(c: sqlite3.Connection) -> tuple[int, list[Line]]:
            seq, _ = store.head(c)
            if cached is not None and cached[0] == seq:
                return cached
            rows = c.execute(
                "SELECT a.body, s.kind, s.body, d.body, r.body FROM entries a "
                "LEFT JOIN entries s ON s.settled = a.recorded "
                "LEFT JOIN entries d ON d.agreement_id = a.recorded AND d.kind = 'dispute' "
                "LEFT JOIN entries r ON r.agreement_id = a.recorded AND r.kind = 'resolve' "
                "WHERE a.recorded IS NOT NULL ORDER BY a.seq").fetchall()
            return seq, [line_of(store.decode_agreement(a), store.closing(kind, s),
                                 disputed=d is not None,
                                 resolution=disputes.resolution_in(r))
                         for a, kind, s, d, r in rows] + payment_lines(c)
        self._lines = await self._run(read)
        return list(self._lines[1])

    async def statement(self, partner: str) -> Statement:
        """Every agreement with `partner` and what it nets to (see books.statement)."""
        return statement(await self.lines(), partner)

    async def positions(self, currency: str = "credit") -> dict[str, Position]:
        """Per address: funds available and held here, and what signed receipts say.

        `receivable` is what the address is owed and `payable` what it owes.
        """
        balances = await self.balances(currency)
        return positions({a: (b.available, b.held) for a, b in balances.items()},
                         await self.lines())

    async def settlement(self, agreement_id: str) -> Settlement | None:
        """How `agreement_id` was settled, or None while it is open."""
        return await self._run(lambda c: store.settlement_of(c, agreement_id))

    async def settled_receipts(self) -> list[tuple[SignedAgreement, SignedReceipt]]:
        """Every settled agreement with the receipt that settled it; reputation's input."""
        def read(c: sqlite3.Connection) -> list[tuple[SignedAgreement, SignedReceipt]]:
            rows = c.execute(
                "SELECT a.body, s.body FROM entries s JOIN entries a ON a.recorded = s.settled "
                "WHERE s.kind IN ('release', 'refund') AND s.settled NOT IN "
                "(SELECT agreement_id FROM entries WHERE kind = 'dispute') "
                "ORDER BY s.seq").fetchall()
            return [(store.decode_agreement(a), SignedReceipt.from_wire(
                bytes.fromhex(json.loads(s)["receipt"]))) for a, s in rows]
        return await self._run(read)

    async def entries(self, *, after: int = 0, limit: int = 1000) -> list[Entry]:
        """Up to `limit` entries with seq greater than `after`, in order."""
        rows = await self._run(lambda c: c.execute(
            "SELECT seq, kind, body, prev_hash, hash FROM entries WHERE seq > ? ORDER BY seq "
            "LIMIT ?", (after, limit)).fetchall())
        return [store.row_entry(row) for row in rows]

    async def counts(self) -> tuple[int, int]:
        """(agreements recorded, agreements settled), counted without decoding any (metrics)."""
        def read(c: sqlite3.Connection) -> tuple[int, int]:
            row = c.execute("SELECT COUNT(recorded), COUNT(settled) FROM entries").fetchone()
            return int(row[0]), int(row[1])
        return await self._run(read)

    async def head(self) -> tuple[int, str]:
        """(seq, hex hash) of the last entry; (0, its genesis hex) when empty."""
        def read(c: sqlite3.Connection) -> tuple[int, str]:
            seq, digest = store.head(c)
            return seq, digest.hex()
        return await self._run(read)

    async def checkpoint(self) -> Checkpoint:
        """The head of the chain, signed by the ledger's owner, as it is (no `verify`).

        Raises:
            UsageError: the ledger was opened without the owner's key.
        """
        owner = self._config.owner
        if owner is None:
            raise UsageError("checkpoint: this ledger was opened without the node's key; "
                             "checkpoints are signed (open it with LedgerConfig(owner=...))")
        seq, digest = await self.head()
        return Checkpoint.create(owner, seq=seq, hash=digest, entries=seq,
                                 at_ms=self._config.clock.now_ms())

    async def verify(self, *, expected_head: tuple[int, str] | None = None,
                     against: Checkpoint | None = None) -> LedgerReport:
        """Check the whole chain, every contract in it, and the balances it implies.

        Args:
            expected_head: a `head()` published earlier; history up to it must be unchanged.
            against: a checkpoint that left this node earlier: it must be signed by this
                ledger's owner, its entry must still be there, with the same hash.

        Raises:
            LedgerTampered: the first entry edited, reordered or deleted (the newest ones
                too, given `against`), or a balance the entries do not give; `seq` says which.
            BadContractSignature: `against` is not signed by this ledger's owner.
            LedgerCorrupt: SQLite finds the file damaged.
            UsageError: both `expected_head` and `against` were given.
        """
        if expected_head is not None and against is not None:
            raise UsageError("verify: give expected_head or against, not both")
        return await self._run(lambda c: store.verify(c, expected_head, against))

    # -- lifecycle ------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Close the database; further use raises UsageError. Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            await asyncio.get_running_loop().run_in_executor(self._executor,
                                                             self._connection.close)
        finally:
            self._executor.shutdown(wait=True)

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<Ledger {self.path or ':memory:'} {state}>"


@asynccontextmanager
async def open_ledger(path: str | Path | None, *,
                      config: LedgerConfig | None = None) -> AsyncIterator[Ledger]:
    """Open (creating if needed, unless read-only) the ledger at `path`; None: in memory.

    The ledger is closed when the block exits. Opening checks the file is an AAEX ledger;
    with the owner's key (not read-only) it also runs `verify` (linear in the entries), so
    nothing is written on top of a tampered file.

    Raises:
        LedgerCorrupt: the file is not an SQLite database or not an AAEX ledger.
        LedgerTampered: with the owner's key, the chain does not verify; nothing was written.
        LedgerError: it cannot be opened (permissions, a missing directory that cannot be
            created, a missing file when read-only, another node's ledger or one that lost
            its owner record, an older format...); the message has the reason.
    """
    config = config or LedgerConfig()
    target = Path(path) if path is not None else None
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="aaex-ledger")
    try:
        connection = await asyncio.get_running_loop().run_in_executor(
            executor, store.guarded, None, lambda _: store.connect(
                target, config.max_bytes, config.owner.address if config.owner else None,
                read_only=config.read_only), target)
    except BaseException:
        executor.shutdown(wait=False)
        raise
    ledger = Ledger(connection, executor, target, config)
    logger.info("ledger %s opened", target or ":memory:")
    try:
        yield ledger
    finally:
        await ledger.aclose()

