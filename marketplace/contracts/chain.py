"""The ledger's hash chain: how an entry is hashed, what it moves, and the replay that audits it.

Pure functions and one replayer, no SQLite: marketplace.contracts.ledger stores entries and feeds
them back here in `verify`. Keeping this apart means the rules an auditor needs (the hash,
the effect of each kind, the checks on each entry) read on their own.

``hash = sha256("aaex/ledger/1" || 0 || prev_hash || seq (8 bytes, big-endian) || kind || 0
|| body)``, where `body` is the canonical JSON of the entry and the first entry's
`prev_hash` is the ledger's `genesis`: a hash of its owner's address and of a random id
drawn when the file was created. Because the hash covers the position and the predecessor,
an entry cannot be edited, moved or dropped without breaking the chain at a nameable place;
because the chain starts at the genesis, every entry commits to whose ledger it is, and a
removed or swapped owner breaks the chain at entry 1.

A deposit or withdrawal is signed by the owner over its body *and its place*: the previous
entry's hash and its own seq (`money_signing_bytes`). A genuine money entry copied to
another place, in this ledger or another, no longer verifies.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Literal

from aaex_agents.errors import UsageError
from aaex_agents.identity import verify_signature
from aaex_agents.money import Credits

from .agreement import SignedAgreement
from .dispute import SignedDispute, SignedResolution
from .errors import ContractRejected, LedgerTampered
from .expiry import SignedExpiry
from .payment import SignedPayment
from .receipt import SignedReceipt

EntryKind = Literal["deposit", "withdraw", "agreement", "hold", "delivery", "release", "refund",
                    "expire", "notified", "access", "dispute", "resolve", "payment"]
_HASH_TAG = b"aaex/ledger/1\x00"
_GENESIS_TAG = b"aaex/ledger-genesis/1\x00"
MONEY_TAG = b"aaex/ledger-money/2\x00"
"""Domain tag of the owner's signature on an entry that creates or removes money."""
MONEY_KINDS = ("deposit", "withdraw")


def genesis(owner: str | None, ledger_id: str | None) -> bytes:
    """The `prev_hash` of a ledger's first entry: it binds the owner and the file's id.

    A ledger without an owner (opened only to read and settle) hashes an empty owner; it
    can hold no money entries.
    """
    return hashlib.sha256(_GENESIS_TAG + (owner or "").encode() + b"\x00"
                          + (ledger_id or "").encode()).digest()


def money_signing_bytes(body: dict[str, Any], *, seq: int, prev_hash: bytes) -> bytes:
    """What the owner signs in a deposit or withdrawal: its place and its body.

    The place is the previous entry's hash (which commits to the owner and the ledger's id
    through the genesis) and the entry's own seq, so the signature holds for this one entry
    of this one ledger; the body is everything but `signature`.
    """
    return (MONEY_TAG + prev_hash + seq.to_bytes(8, "big")
            + canonical_body({k: v for k, v in body.items() if k != "signature"}))


@dataclass(frozen=True, slots=True)
class LedgerReport:
    """What `Ledger.verify` checked."""

    entries: int
    head: str
    """Hex hash of the last entry (the ledger's `genesis` when empty); publish it to pin
    history."""
    deposits: dict[str, Credits] = field(default_factory=dict)
    """Deposited less withdrawn per currency, counting a payment made outside the market as
    money in (on the payee's books) or out (what the payer's books held in the payee's name);
    equals the sum of every available and held balance."""
    agreements: int = 0
    settled: int = 0


def canonical_body(body: dict[str, Any]) -> bytes:
    """The bytes an entry body is stored and hashed as: sorted keys, compact, UTF-8."""
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def entry_hash(prev_hash: bytes, seq: int, kind: str, body: bytes) -> bytes:
    """The hash an entry must carry; see the module docstring."""
    return hashlib.sha256(_HASH_TAG + prev_hash + seq.to_bytes(8, "big") + kind.encode()
                          + b"\x00" + body).digest()


def effects(kind: str, body: dict[str, Any]) -> list[tuple[str, str, int, int]]:
    """(address, currency, change in available, change in held) that an entry causes."""
    if kind == "deposit":
        return [(body["address"], body["currency"], body["amount"], 0)]
    if kind == "withdraw":
        return [(body["address"], body["currency"], -body["amount"], 0)]
    if kind == "hold":
        return [(body["buyer"], body["currency"], -body["price"], body["price"])]
    if kind in ("release", "refund") and body["role"] == "buyer":
        # Only the buyer's books hold escrow; a seller's books record the receipt, and what
        # it owes or is owed follows from it (see marketplace.contracts.books).
        cur = body["currency"]
        return [(body["buyer"], cur, body["to_buyer"], -body["price"]),
                (body["seller"], cur, body["to_seller"], 0)]
    if kind == "resolve" and body["role"] == "buyer":
        cur = body["currency"]
        if body["settles"]:  # the held price, split as the resolution says
            return [(body["buyer"], cur, body["to_buyer"], -body["price"]),
                    (body["seller"], cur, body["to_seller"], 0)]
        # Settled by a receipt before the dispute reached these books: move the difference.
        return [(body["buyer"], cur, -body["adjust"], 0), (body["seller"], cur, body["adjust"], 0)]
    if kind == "payment":
        # Paid outside the market: on the payee's books the money is now its own, available
        # to spend or withdraw; on the payer's books it leaves what was held there in the
        # payee's name (the prices released to it), up to the amount.
        if body["role"] == "payee":
            return [(body["payee"], body["currency"], body["amount"], 0)]
        return [(body["payee"], body["currency"], -body["taken"], 0)] if body["taken"] else []
    return []


class Replay:
    """Walks the entries in stored order and raises `LedgerTampered` at the first bad one.

    Feed every row with `feed`, then call `finish` with what the store says its head and
    balances are.
    """

    def __init__(self, expected_head: tuple[int, str] | None = None, *,
                 owner: str | None = None, ledger_id: str | None = None) -> None:
        self._expected_head = expected_head
        self._owner = owner
        self._prev_hash = self._genesis = genesis(owner, ledger_id)
        self._next_seq = 1
        self._balances: dict[tuple[str, str], list[int]] = {}
        self._deposits: dict[str, int] = {}
        self._agreements: dict[str, SignedAgreement] = {}
        self._holds: dict[str, dict[str, Any]] = {}
        self._roles: dict[str, str] = {}
        self._settled = 0
        self._disputed: set[str] = set()
        # (seq, prev_hash) of the entry being checked: what a money signature covers.
        self._place = (0, self._prev_hash)

    def feed(self, seq: int, kind: str, raw: object, stored_prev: object, stored_hash: object,
             columns: tuple[str | None, str | None, str | None]) -> None:
        """Check one stored entry; `columns` are its (recorded, settled, receipt_id).

        Raises:
            LedgerTampered: this entry is missing, moved, edited or inconsistent.
        """
        if seq != self._next_seq:
            raise LedgerTampered(self._next_seq, f"missing: the next entry present is {seq} "
                                 "(entries were deleted)")
        if not (isinstance(raw, bytes) and isinstance(stored_prev, bytes)
                and isinstance(stored_hash, bytes)):
            raise LedgerTampered(seq, "was edited: a hash or the body is no longer a blob")
        if stored_prev != self._prev_hash:
            if seq == 1:
                raise LedgerTampered(seq, "does not start at this ledger's genesis, which binds "
                                     f"its owner ({self._owner or 'none recorded'}) and its id: "
                                     "the owner or id record was removed or swapped")
            raise LedgerTampered(seq, "does not follow the entry before it (entries were "
                                 "reordered, or the one before was rewritten)")
        if entry_hash(self._prev_hash, seq, kind, raw) != stored_hash:
            raise LedgerTampered(seq, f"its {kind} content was edited (hash mismatch)")
        head = self._expected_head
        if head is not None and seq == head[0] and stored_hash.hex() != head[1]:
            raise LedgerTampered(seq, "differs from the head published earlier (a checkpoint):"
                                 " history up to it was rewritten")
        try:
            body = json.loads(raw)
            self._place = (seq, stored_prev)
            problem = self._check(kind, body, *columns)
            moves = effects(kind, body)
        except (ValueError, KeyError, TypeError) as exc:
            raise LedgerTampered(seq, f"is not a well-formed {kind} entry: {exc!r}") from None
        if problem:
            raise LedgerTampered(seq, problem)
        for address, currency, d_available, d_held in moves:
            totals = self._balances.setdefault((address, currency), [0, 0])
            totals[0] += d_available
            totals[1] += d_held
            if totals[0] < 0 or totals[1] < 0:
                raise LedgerTampered(seq, f"drives {address}'s {currency} balance negative")
        self._prev_hash, self._next_seq = stored_hash, seq + 1

    def finish(self, head: tuple[int, bytes],
               stored_balances: dict[tuple[str, str], list[int]]) -> LedgerReport:
        """Compare the replay with the stored head and balances.

        Raises:
            LedgerTampered: the newest entries are gone, or a stored balance differs.
        """
        last = self._next_seq - 1
        if head != (last, self._prev_hash):
            raise LedgerTampered(last + 1, f"missing: the ledger's head is entry {head[0]}, "
                                 f"but entries stop at {last} (the newest entries were deleted)")
        expected = self._expected_head
        if expected is not None and expected[0] == 0 and expected[1] != self._genesis.hex():
            raise LedgerTampered(1, "does not start at the genesis published earlier (a "
                                 "checkpoint of the empty ledger): its owner or id was swapped")
        if self._expected_head is not None and self._expected_head[0] > last:
            raise LedgerTampered(last + 1, f"missing: entry {self._expected_head[0]} was "
                                 "published as the head earlier (a checkpoint): the newest "
                                 "entries were cut")
        for key in sorted(set(stored_balances) | set(self._balances)):
            stored, replayed = stored_balances.get(key, [0, 0]), self._balances.get(key, [0, 0])
            if stored != replayed:
                raise LedgerTampered(last, f"stored balance of {key[0]} in {key[1]} is "
                                     f"{stored}, but the entries give {replayed}")
        return LedgerReport(entries=last, head=self._prev_hash.hex(),
                            deposits={c: Credits(v) for c, v in self._deposits.items()},
                            agreements=len(self._agreements), settled=self._settled)

    def _check(self, kind: str, body: dict[str, Any], recorded: str | None,
               settles: str | None, receipt_id: str | None) -> str | None:
        """What is wrong with an entry whose hash is right (a bug, or a rewritten chain)."""
        if kind == "agreement":
            try:
                signed = SignedAgreement.from_wire(bytes.fromhex(body["wire"]))
            except ContractRejected as exc:
                return f"recorded agreement does not verify: {exc}"
            if signed.id != body["agreement_id"] or recorded != signed.id:
                return "recorded agreement id does not match its content"
            if body["role"] not in ("buyer", "seller"):
                return f"records an agreement in an unknown role {body['role']!r}"
            self._agreements[signed.id] = signed
            self._roles[signed.id] = body["role"]
        elif kind == "hold":
            agreement = self._agreements.get(body["agreement_id"])
            if agreement is None or self._roles[body["agreement_id"]] != "buyer":
                return "holds escrow for an agreement not recorded before it as a purchase"
            a, terms = agreement.agreement, agreement.agreement.terms
            if (body["price"], body["currency"], body["buyer"], body["seller"]) != (
                    terms.price.micro, terms.currency, a.buyer, a.seller):
                return "hold does not match its agreement's terms"
            self._holds[body["agreement_id"]] = body
        elif kind in ("release", "refund"):
            return self._check_settlement(kind, body, settles, receipt_id)
        elif kind == "expire":
            return self._check_expiry(body, settles, receipt_id)
        elif kind == "dispute":
            return self._check_dispute(body)
        elif kind == "resolve":
            return self._check_resolution(body, settles, receipt_id)
        elif kind == "payment":
            return self._check_payment(body, receipt_id)
        elif kind in MONEY_KINDS:
            return self._check_money(kind, body)
        elif kind == "delivery":
            if body["agreement_id"] not in self._agreements:
                return "records a delivery for an agreement not recorded before it"
        elif kind == "notified":
            if body["agreement_id"] not in self._agreements:
                return "notes a receipt sent for an agreement not recorded before it"
        elif kind != "access":
            return f"has an unknown kind {kind!r}"
        return None

    def _check_money(self, kind: str, body: dict[str, Any]) -> str | None:
        """A deposit or withdrawal must be signed by the ledger's owner at this very place."""
        if type(body["amount"]) is not int or body["amount"] <= 0:
            return f"{kind}s a non-positive amount"
        signer = body.get("signer")
        if self._owner is None:
            return (f"{kind} in a ledger that records no owner (it never had one, or the "
                    "record was removed): money entries are signed by the owner's key")
        if signer != self._owner:
            return f"{kind} is signed by {signer}, not by the ledger's owner {self._owner}"
        seq, prev_hash = self._place
        try:
            valid = verify_signature(
                signer, money_signing_bytes(body, seq=seq, prev_hash=prev_hash),
                bytes.fromhex(body["signature"]))
        except (UsageError, ValueError):
            valid = False
        if not valid:
            return (f"{kind} of {body['amount']} is not signed by the ledger's owner for this "
                    "entry (forged, or a genuine one copied from another place)")
        sign = 1 if kind == "deposit" else -1
        self._deposits[body["currency"]] = (self._deposits.get(body["currency"], 0)
                                            + sign * body["amount"])
        return None

    def _check_settlement(self, kind: str, body: dict[str, Any], settles: str | None,
                          receipt_id: str | None) -> str | None:
        agreement = self._agreements.get(body["agreement_id"])
        role = self._roles.get(body["agreement_id"])
        if agreement is None or settles != body["agreement_id"] or role != body["role"]:
            return "settles an agreement not recorded before it in this role"
        if role == "buyer" and body["agreement_id"] not in self._holds:
            return "settles a purchase with no escrow held before it"
        try:
            signed = SignedReceipt.from_wire(bytes.fromhex(body["receipt"]))
            signed.verify_against(agreement)
        except ContractRejected as exc:
            return f"settling receipt does not verify: {exc}"
        receipt = signed.receipt
        expected = (receipt.release.micro, receipt.refund.micro, receipt.penalty.micro)
        if ((body["to_seller"], body["to_buyer"], body["penalty"]) != expected
                or receipt_id != signed.id
                or kind != ("release" if receipt.verdict == "met" else "refund")):
            return "pays out other amounts than its receipt states"
        self._settled += 1
        return None

    def _check_expiry(self, body: dict[str, Any], settles: str | None,
                      receipt_id: str | None) -> str | None:
        """An expiry closes an agreement recorded before it and never escrowed; it moves nothing."""
        agreement_id = body["agreement_id"]
        agreement = self._agreements.get(agreement_id)
        if agreement is None or settles != agreement_id or \
                self._roles.get(agreement_id) != body["role"]:
            return "expires an agreement not recorded before it in this role"
        try:
            signed = SignedExpiry.from_wire(bytes.fromhex(body["expiry"]))
            signed.verify_against(agreement)
        except ContractRejected as exc:
            return f"expiry does not verify: {exc}"
        if agreement_id in self._holds:
            return "expires an agreement that was escrowed (only a receipt closes those)"
        if receipt_id != signed.id or (body["to_buyer"], body["to_seller"]) != (0, 0):
            return "an expiry pays out money"
        self._settled += 1
        return None

    def _check_dispute(self, body: dict[str, Any]) -> str | None:
        """A dispute names an agreement recorded before it and is signed by one of its parties."""
        agreement = self._agreements.get(body["agreement_id"])
        if agreement is None or body["agreement_id"] in self._disputed:
            return "disputes an agreement not recorded before it, or disputed twice"
        try:
            SignedDispute.from_wire(bytes.fromhex(body["dispute"])).verify_against(agreement)
        except ContractRejected as exc:
            return f"dispute does not verify: {exc}"
        self._disputed.add(body["agreement_id"])
        return None

    def _check_resolution(self, body: dict[str, Any], settles: str | None,
                          receipt_id: str | None) -> str | None:
        """A resolution ends a dispute recorded before it, signed by both parties or the arbiter."""
        agreement_id = body["agreement_id"]
        agreement = self._agreements.get(agreement_id)
        if agreement is None or agreement_id not in self._disputed or \
                self._roles.get(agreement_id) != body["role"]:
            return "resolves an agreement not disputed before it in this role"
        try:
            signed = SignedResolution.model_validate(body["resolution"])
            signed.verify_against(agreement)
        except ContractRejected as exc:
            return f"resolution does not verify: {exc}"
        except ValueError as exc:
            return f"resolution is malformed: {exc}"
        resolution = signed.resolution
        if (body["to_seller"], body["to_buyer"], body["penalty"]) != (
                resolution.to_seller.micro, resolution.to_buyer.micro, resolution.penalty.micro):
            return "pays out other amounts than its resolution states"
        if body["settles"]:
            if settles != agreement_id or receipt_id != resolution.id:
                return "a settling resolution is not marked as the agreement's settlement"
            if body["role"] == "buyer" and agreement_id not in self._holds:
                return "settles a purchase with no escrow held before it"
            self._settled += 1
        elif settles is not None:
            return "an adjusting resolution is marked as a settlement"
        return None

    def _check_payment(self, body: dict[str, Any], receipt_id: str | None) -> str | None:
        """A payment carries both partners' signatures and moves what its role allows."""
        try:
            signed = SignedPayment.model_validate(body["payment"])
            signed.verify()
        except ContractRejected as exc:
            return f"payment does not verify: {exc}"
        except ValueError as exc:
            return f"payment is malformed: {exc}"
        p = signed.payment
        if (receipt_id, body["payer"], body["payee"], body["amount"], body["currency"]) != (
                p.id, p.payer, p.payee, p.amount.micro, p.currency):
            return "records other parties or amounts than its payment states"
        if body["role"] == "payee":
            self._deposits[p.currency] = self._deposits.get(p.currency, 0) + p.amount.micro
        elif body["role"] == "payer" and type(body["taken"]) is int \
                and 0 <= body["taken"] <= p.amount.micro:
            self._deposits[p.currency] = self._deposits.get(p.currency, 0) - body["taken"]
        else:
            return "records a payment in an unknown role, or takes more than it paid"
        return None
