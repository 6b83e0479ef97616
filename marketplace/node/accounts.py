"""An operator's view of a node's money, and how the terminal finds the running node.

Shared by the admin API (`admin_writes`) and the CLI (`aaex account`), so both print the
same thing whether the node runs or not: amounts in decimal credits with the exact
micro-credits next to them (``available`` and ``available_micro``), agents by name.

A running node leaves two files in its data dir: ``admin.token`` (a fresh random token each
start, mode 0600, that write routes require as ``Authorization: Bearer``) and ``admin.json``
(its admin URL, so the CLI finds a node whose admin port was 0). Whoever can read the data
dir already holds the agents' keys; the token gives nothing more than that.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aaex_agents import Identity
from aaex_agents.address import public_key_from_address
from aaex_agents.errors import KeyFileError, UsageError
from aaex_agents.money import ZERO

from ..contracts.books import Line, Position, Statement, nets
from ..contracts.payment import SignedPayment
from ..trade.payments import PaymentDesk
from ..trade.statements import Reconciliation
from .config import NodeConfig

logger = logging.getLogger(__name__)

TOKEN_FILE = "admin.token"  # noqa: S105 - the file's name, not a secret
INFO_FILE = "admin.json"


@dataclass(frozen=True)
class AdminAccess:
    """Where a running node's admin API is and the token its write routes take."""

    url: str
    token: str
    node: str
    """The node's address, as the node wrote it."""


def _write_private(path: Path, text: str) -> None:
    """Write `text` to `path` with mode 0600 from the first byte, replacing it atomically."""
    partial = path.with_name(path.name + ".partial")
    partial.unlink(missing_ok=True)
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(partial, path)


def issue_token(data_dir: Path) -> str:
    """A fresh admin token, written to ``data_dir/admin.token`` (0600; the folder 0700)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        os.chmod(data_dir, 0o700)  # it also holds the agents' keys
    except OSError as exc:
        logger.warning("cannot restrict %s to its owner: %s", data_dir, exc.strerror)
    token = secrets.token_urlsafe(32)
    _write_private(data_dir / TOKEN_FILE, token + "\n")
    return token


def publish_admin(data_dir: Path, url: str, node: str) -> None:
    """Write ``data_dir/admin.json``: where the CLI finds this node's admin API."""
    _write_private(data_dir / INFO_FILE, json.dumps({"url": url, "node": node,
                                                     "pid": os.getpid()}) + "\n")


def withdraw_admin(data_dir: Path, url: str) -> None:
    """Remove ``admin.json`` if it still names `url` (a newer node may have replaced it)."""
    path = data_dir / INFO_FILE
    try:
        if json.loads(path.read_text(encoding="utf-8")).get("url") == url:
            path.unlink()
    except (OSError, ValueError):
        logger.debug("admin.json left as it is", exc_info=True)


def find_admin(data_dir: Path) -> AdminAccess | None:
    """The admin URL and token a node left in `data_dir`; None when there are none.

    A node killed without a chance to clean up leaves stale files: callers must still be
    ready for nobody answering at the URL.
    """
    try:
        info = json.loads((data_dir / INFO_FILE).read_text(encoding="utf-8"))
        token = (data_dir / TOKEN_FILE).read_text(encoding="utf-8").strip()
    except (OSError, ValueError):
        return None
    if not isinstance(info, dict) or not isinstance(info.get("url"), str) or not token:
        return None
    return AdminAccess(info["url"], token, str(info.get("node", "")))


def agent_key_path(config: NodeConfig, name: str) -> Path:
    """Where the node keeps the key of its agent `name` (see node.build_agent)."""
    return config.node.data_dir / "agents" / f"{name}.key"


def load_or_create_identity(path: Path) -> Identity:
    """The key at `path`, created (mode 0600) when missing."""
    try:
        return Identity.load(path)
    except KeyFileError:
        if path.exists():
            raise
        identity = Identity.generate()
        identity.save(path)
        logger.info("created key %s for %s", path, identity.address)
        return identity


def create_missing_keys(config: NodeConfig) -> Identity:
    """The node's key, after making every key of the node that is missing.

    The keys a node's first start would make: so an operator can fund the agents of a
    node that has not run yet, and the node then starts with those very keys.
    """
    owner = load_or_create_identity(config.node.identity)
    for spec in config.agents:
        load_or_create_identity(agent_key_path(config, spec.name))
    return owner


def agent_addresses(config: NodeConfig) -> dict[str, str]:
    """Name -> address of the configured agents whose keys exist (the node made them)."""
    found = {}
    for spec in config.agents:
        try:
            found[spec.name] = Identity.load(agent_key_path(config, spec.name)).address
        except KeyFileError:
            continue
    return found


def resolve_agent(agents: Mapping[str, str], name_or_address: object, *,
                  field: str = "agent", config: NodeConfig | None = None) -> tuple[str, str]:
    """(name, address) of a hosted agent given by name or address.

    Raises:
        UsageError: not a hosted agent; the message names `field` and the agents there are.
    """
    if not isinstance(name_or_address, str) or not name_or_address:
        raise UsageError(f"{field}: name an agent of this node ({_names(agents)})")
    if name_or_address in agents:
        return name_or_address, agents[name_or_address]
    for name, address in agents.items():
        if address == name_or_address:
            return name, address
    if config is not None and any(s.name == name_or_address for s in config.agents):
        raise UsageError(f"{field}: agent {name_or_address!r} has no key yet at "
                         f"{agent_key_path(config, name_or_address)}; start the node once")
    raise UsageError(f"{field}: {name_or_address!r} is not an agent of this node "
                     f"({_names(agents)})")


def _names(agents: Mapping[str, str]) -> str:
    return "agents: " + ", ".join(sorted(agents)) if agents else "it hosts none"


def check_address(value: object, field: str) -> str:
    """`value` as an agent address.

    Raises:
        UsageError: it is not one; the message names `field`.
    """
    if not isinstance(value, str) or not value:
        raise UsageError(f"{field}: give the partner's agent address (aaex1...)")
    try:
        public_key_from_address(value)
    except UsageError as exc:
        raise UsageError(f"{field}: {exc}") from None
    return value




def account_document(name: str, address: str, position: Position) -> dict[str, Any]:
    """One agent's money: available, held, receivable and payable."""
    return {"agent": name, "address": address, **position.available.document("available"),
            **position.held.document("held"), **position.receivable.document("receivable"),
            **position.payable.document("payable")}


def accounts_document(agents: Mapping[str, str],
                      positions: Mapping[str, Position]) -> list[dict[str, Any]]:
    """Every hosted agent's money (zero for one that never had any)."""
    return [account_document(name, address, positions.get(address, Position()))
            for name, address in sorted(agents.items())]


def line_document(line: Line) -> dict[str, Any]:
    """One agreement of a statement, amounts in credits."""
    return {"agreement_id": line.agreement_id, "buyer": line.buyer, "seller": line.seller,
            "capability": line.capability, **line.price.document("price"),
            "verdict": line.verdict, "debtor": line.debtor, "creditor": line.creditor,
            **line.amount.document("amount"), "receipt_id": line.receipt_id}


def statement_document(statement: Statement) -> dict[str, Any]:
    """A statement: its lines and its net (> 0: the partner owes this side)."""
    return {"with": statement.partner, "lines": [line_document(x) for x in statement.lines],
            **statement.net.document("net")}


def reconciliation_document(name: str, found: Reconciliation) -> dict[str, Any]:
    """One agent's reconciliation with a partner, and the partner node's signed checkpoint.

    Keep the checkpoint (``aaex ledger verify --against``): it pins the partner's books.
    """
    return {"agent": name, "address": found.agent, "with": found.partner,
            "ours": statement_document(found.ours),
            "theirs": None if found.theirs is None else statement_document(found.theirs),
            "differences": list(found.differences),
            "checkpoint": None if found.checkpoint is None else found.checkpoint.model_dump()}


def partners_document(agents: Mapping[str, str], lines: Iterable[Line]) -> list[dict[str, Any]]:
    """Who owes whom: per hosted agent and partner, the net (> 0: the partner owes the agent)."""
    found = nets(lines)
    return [{"agent": name, "address": address, "partner": partner,
             "owes": "partner owes us" if net > ZERO else "we owe the partner",
             **(net if net > ZERO else -net).document("amount"), **net.document("net")}
            for name, address in sorted(agents.items())
            for partner, net in sorted(found.get(address, {}).items()) if net != ZERO]


def payment_document(signed: SignedPayment, side: str | None = None) -> dict[str, Any]:
    """One payment as the admin API and the CLI show it.

    `side`: whose signature a pending one carries (``ours`` or ``theirs``).
    """
    p = signed.payment
    document = {"payment_id": p.id, "payer": p.payer, "payee": p.payee,
                **p.amount.document("amount"), "reference": p.reference, "at_ms": p.at_ms,
                "signed_by": sorted(signed.signatures)}
    if side is not None:
        document["waiting_for"] = "the partner" if side == "ours" else "us"
    return document


def pending_documents(desk: PaymentDesk, ours: str, partner: str) -> list[dict[str, Any]]:
    """The half-signed payments between `ours` and `partner` (reconcile lists them)."""
    return [payment_document(p, side) for side, p in desk.pending(ours, partner)]
