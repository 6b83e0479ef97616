"""Enforcing data grants on the seller's side: before a price is quoted and before work starts.

A buyer whose task carries someone's data sends the owner's grant with it (`DataUse`, on
the call for proposals and again on the task), naming the action and purpose it asks for
and which field of the task holds the data. The seller's `GrantDesk` checks the use with
`marketplace.contracts.grant.check_use` (signature, grantee, the data's hash, action,
purpose, time window, revocation) and refuses with a one-line reason; a refused call never
becomes an agreement, so nothing is escrowed or paid. Each refusal, and each use the seller
makes of granted data, is an audit event on the node's ledger (`record_access`).

An owner revokes a grant by sending its signed revocation (`GrantRevoked`) to any agent of
the grantee's node; the desk keeps it (in a file beside the ledger, so it outlives a
restart) and refuses every later use under that grant.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import OrderedDict, defaultdict, deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from aaex_agents import Message
from aaex_agents.clock import Clock, SystemClock
from aaex_agents.errors import AaexError, UsageError

from ..contracts.agreement import GrantTerms
from ..contracts.errors import ContractRejected, LedgerError
from ..contracts.grant import SignedGrant, SignedRevocation, check_use, is_purpose
from ..contracts.ledger import Ledger
from ..contracts.signing import sha256_hex
from .errors import Refusal

logger = logging.getLogger(__name__)

MAX_REVOCATIONS = 100_000
"""Revocations a node keeps in all; more are refused (``revocations_full``)."""
MAX_REVOCATIONS_PER_OWNER = 1_000
"""Revocations one owner may have kept on a node; more from it are refused."""
AUDITED_REFUSALS_PER_MINUTE = 10
"""Refused uses recorded on the books per buyer and minute; more are refused unrecorded, so
a buyer cannot grow another node's books by sending refused calls."""
AUDITED_REFUSALS_TOTAL_PER_MINUTE = 600
"""Refused uses recorded per minute from all buyers together (a flood of fresh keys)."""
AUDIT_BUYERS = 10_000
"""Buyers whose recent recorded refusals are remembered; the oldest is forgotten first."""


def data_hash(value: Any) -> str:
    """sha256 (hex) of a value's canonical JSON: how a grant names its dataset's content."""
    return sha256_hex(json.dumps(value, sort_keys=True, separators=(",", ":"),
                                 ensure_ascii=False).encode())


class DataUse(BaseModel):
    """The grant a task's data is used under, and the use asked for."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    grant: bytes = Field(max_length=4096)
    """The owner-signed grant in its wire form (`SignedGrant.to_wire`)."""
    action: str = Field(pattern=r"^[a-z][A-Za-z]{0,31}$")
    purpose: str = Field(pattern=r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$", max_length=64)
    field: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
    """The task's field that holds the data; None: the whole task is the data."""

    def signed(self) -> SignedGrant:
        """The grant, decoded and its signature checked.

        Raises:
            ContractRejected: not a canonical grant, or a bad signature.
        """
        return SignedGrant.from_wire(self.grant)

    def data(self, task: Mapping[str, Any]) -> Any:
        """The granted data inside `task` (KeyError when its field is missing)."""
        return dict(task) if self.field is None else task[self.field]

    def terms(self) -> GrantTerms:
        """What the agreement binds of this use.

        Raises:
            ContractRejected: the grant does not decode.
        """
        return GrantTerms(grant_id=self.signed().id, action=self.action, purpose=self.purpose)


SellerUses = Callable[[str], Awaitable[DataUse | None]]
"""The data owner's grant for each seller (seller address -> its use, or None: not granted).

A grant names one grantee, so a task whose data may go to any of several sellers needs one
grant per seller; a buyer passes this as ``use=`` when the owner grants each seller apart
(the supply-chain demo's warehouse grants each forecaster the planner is about to call)."""

GRANT_ASK_TIMEOUT = 10.0
"""Seconds a `SellerUses` may take to answer for one seller; a seller not answered for in
time is not asked to bid."""


async def uses_for(use: object, sellers: Sequence[str], *,
                   timeout: float = GRANT_ASK_TIMEOUT) -> dict[str, DataUse]:
    """The use each of `sellers` would get the task's data under (a seller without one: none).

    `use` is None (no data of anyone's: an empty map), one `DataUse` (the same grant for every
    seller; only its grantee will take it) or a `SellerUses` asked for every seller at once.
    A seller whose grant could not be had (the function raised, timed out or gave None) is
    missing from the answer and is logged.

    Raises:
        UsageError: `use` is none of these.
    """
    if use is None:
        return {}
    if isinstance(use, DataUse):
        return dict.fromkeys(sellers, use)
    if not callable(use):
        raise UsageError(f"use: give a DataUse or an async function of the seller's address, "
                         f"not {type(use).__name__}")
    ask: SellerUses = use

    async def one(seller: str) -> DataUse | None:
        try:
            got = await asyncio.wait_for(ask(seller), timeout)
        except TimeoutError:
            logger.warning("no grant for %s: not given within %.0f s", seller, timeout)
            return None
        except (AaexError, ValueError) as exc:
            logger.warning("no grant for %s: %s", seller, exc)
            return None
        if got is not None and not isinstance(got, DataUse):
            raise UsageError(f"use: the function gave {type(got).__name__} for {seller}, "
                             "not a DataUse or None")
        return got

    found = await asyncio.gather(*(one(s) for s in sellers))
    return {s: u for s, u in zip(sellers, found, strict=True) if u is not None}


def use_record(use: DataUse) -> dict[str, Any]:
    """`use` as the buyer's books keep it with a purchase (JSON: the grant in hex)."""
    return {"grant": use.grant.hex(), "action": use.action, "purpose": use.purpose,
            "field": use.field}


def use_from_record(record: Mapping[str, Any] | None) -> DataUse | None:
    """The use a purchase was recorded with (`use_record`), or None.

    None also for one unreadable: its task, sent again without it, is then refused by the
    seller, and nothing is paid.
    """
    if record is None:
        return None
    try:
        return DataUse.model_validate({**record, "grant": bytes.fromhex(str(record["grant"]))})
    except (KeyError, ValueError, ValidationError):
        logger.warning("a purchase's recorded grant is unreadable; its task goes without it")
        return None


def use_from_document(document: Any) -> DataUse:
    """A `DataUse` from its JSON form: the grant file's document, action, purpose, field.

    ``{"grant": {...what aaex grant issue wrote...}, "action": "read", "purpose":
    "forecast.demand", "field": "history"}`` (``field`` optional).

    Raises:
        UsageError: a part is missing or wrong, or the grant does not verify; names it.
    """
    if not isinstance(document, Mapping):
        raise UsageError("use: give an object with grant, action, purpose[, field]")
    try:
        signed = SignedGrant.from_json(json.dumps(document.get("grant")))
    except ContractRejected as exc:
        raise UsageError(f"use.grant: {exc}") from None
    try:
        return DataUse.model_validate({"grant": signed.to_wire(),
                                       "action": document.get("action"),
                                       "purpose": document.get("purpose"),
                                       "field": document.get("field")})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise UsageError(f"use.{where}: {first['msg']}") from None


class GrantRevoked(Message, type="market.grant_revoked/1"):
    """A data owner's signed revocation of a grant, for the grantee's node to keep."""

    revocation: SignedRevocation


class RevocationTaken(Message, type="market.revocation_taken/1"):
    """The node keeps the revocation: every later use under the grant is refused."""

    grant_id: str


class GrantDesk:
    """A node's revocations and its check of every use of granted data.

    `path` (None: kept in memory only) is the JSON-lines file of kept revocations, read
    here (a blocking read: the node builds the desk in a worker thread); `ledger` (None: not
    recorded) gets the audit events.
    """

    def __init__(self, *, path: Path | None = None, ledger: Ledger | None = None,
                 clock: Clock | None = None) -> None:
        self._path = path
        self.ledger = ledger
        self._clock = clock or SystemClock()
        self._revoked: dict[str, SignedRevocation] = {}
        self._per_owner: dict[str, int] = defaultdict(int)
        self._audited: OrderedDict[str, list[float]] = OrderedDict()
        self._audited_all: deque[float] = deque()
        if path is not None and path.exists():
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    self._keep(SignedRevocation.model_validate_json(line))
                except (ValidationError, ValueError):
                    logger.warning("%s: an unreadable revocation line was skipped", path)

    def _keep(self, revocation: SignedRevocation) -> bool:
        key = revocation.revocation.grant_id + revocation.revocation.owner
        if key in self._revoked:
            return False
        self._revoked[key] = revocation
        self._per_owner[revocation.revocation.owner] += 1
        return True

    def revocation(self, grant: SignedGrant) -> SignedRevocation | None:
        """The kept revocation of `grant` by its owner, if any."""
        return self._revoked.get(grant.id + grant.grant.owner)

    async def revoke(self, signed: SignedRevocation) -> None:
        """Keep an owner's revocation (idempotent).

        Raises:
            Refusal: a bad signature (``bad_revocation``) or no room (``revocations_full``).
        """
        try:
            signed.verify()
        except ContractRejected as exc:
            raise Refusal("bad_revocation", str(exc)) from None
        owner = signed.revocation.owner
        if len(self._revoked) >= MAX_REVOCATIONS or \
                self._per_owner[owner] >= MAX_REVOCATIONS_PER_OWNER:
            raise Refusal("revocations_full", f"this node keeps no more revocations from "
                          f"{owner} (at most {MAX_REVOCATIONS_PER_OWNER} per owner)")
        if not self._keep(signed):
            return
        if self._path is not None:
            line = signed.model_dump_json() + "\n"
            await asyncio.to_thread(_append, self._path, line)
        logger.info("grant %s revoked by its owner", signed.revocation.grant_id[:12],
                    extra={"event": "grant_revoked", "grant_id": signed.revocation.grant_id})

    def fault(self, use: DataUse, task: Mapping[str, Any], user: str) -> str | None:
        """Why `use` of `task`'s data by `user` is not covered now; None if it is."""
        try:
            signed = use.signed()
        except ContractRejected as exc:
            return f"bad grant: {exc}"
        if not is_purpose(use.purpose):
            return f"outside purpose: {use.purpose!r} is not a purpose of the vocabulary"
        try:
            digest = data_hash(use.data(task))
        except KeyError:
            return f"dataset hash mismatch: the task has no field {use.field!r}"
        return check_use(signed, user=user, action=use.action, purpose=use.purpose,
                         dataset_hash=digest, now_ms=self._clock.now_ms(),
                         revocation=self.revocation(signed))

    async def check(self, use: DataUse, task: Mapping[str, Any], *, user: str,
                    buyer: str) -> None:
        """Refuse (``grant_refused``, the reason in one line) a use the grant does not cover.

        The refusal is recorded on the books against `buyer`, with the purpose asked.

        Raises:
            Refusal: the use is not covered.
        """
        reason = self.fault(use, task, user)
        if reason is None:
            return
        logger.info("grant refused for %s: %s", buyer, reason,
                    extra={"event": "grant_refused", "buyer": buyer})
        await self._audit_refusal(use, buyer, reason)
        raise Refusal("grant_refused", reason)

    async def _audit_refusal(self, use: DataUse, buyer: str, reason: str) -> None:
        if self.ledger is None:
            return
        now = self._clock.now()
        while self._audited_all and now - self._audited_all[0] >= 60:
            self._audited_all.popleft()
        recent = [t for t in self._audited.pop(buyer, []) if now - t < 60]
        full = (len(recent) >= AUDITED_REFUSALS_PER_MINUTE
                or len(self._audited_all) >= AUDITED_REFUSALS_TOTAL_PER_MINUTE)
        self._audited[buyer] = recent if full else [*recent, now]
        while len(self._audited) > AUDIT_BUYERS:
            self._audited.popitem(last=False)
        if full:
            return
        self._audited_all.append(now)
        try:
            await self.ledger.record_access(buyer, _dataset_name(use),
                                            f"{use.action} for {use.purpose} refused: {reason}",
                                            event="refused", **_about(use))
        except LedgerError as exc:  # the refusal stands; only its record is missing
            logger.warning("refusal of %s not recorded: %s", buyer, exc)

    async def record_use(self, use: DataUse, user: str, agreement_id: str) -> None:
        """Record on the books that `user` used the granted data, for the agreed purpose.

        Raises:
            LedgerError: it could not be recorded (the work must not start unrecorded).
        """
        if self.ledger is not None:
            await self.ledger.record_access(user, _dataset_name(use),
                                            f"{use.action} for {use.purpose}",
                                            agreement_id=agreement_id, event="used",
                                            **_about(use))


def _about(use: DataUse) -> dict[str, str]:
    """The data owner, content hash and grant of a use, for its audit entry.

    With an owner, the entry is reported to the owner's node with a signed head of our audit
    log (marketplace.trade.audit), so the owner can prove what we recorded.
    """
    try:
        grant = use.signed()
    except ContractRejected:
        return {}
    return {"owner": grant.grant.owner, "content_hash": grant.grant.dataset_hash,
            "grant": grant.id}


def _dataset_name(use: DataUse) -> str:
    try:
        grant = use.signed()
    except ContractRejected:
        return "unreadable grant"
    return f"{grant.grant.dataset_id}@{grant.grant.dataset_hash[:16]} (grant {grant.id[:16]})"


def _append(path: Path, line: str) -> None:
    with path.open("a", encoding="utf-8") as f:
        f.write(line)
