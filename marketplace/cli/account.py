"""`aaex account deposit|withdraw|show|statement|reconcile`: a node's money, from the terminal.

    aaex account deposit   --config node.toml shopper 25       # credits
    aaex account withdraw  --config node.toml shopper 5
    aaex account show      --config node.toml [--json]
    aaex account statement --config node.toml --with aaex1... [--json]
    aaex account reconcile --config node.toml --with aaex1... [--json]   # exit 1 on a difference
    aaex account settle    --config node.toml --with aaex1... 12.5 --reference BANK-REF [--agent A]
    aaex account show      --config node.toml --by-partner               # who owes whom

While the node runs, each command goes through its admin API (found through the config's
data dir); while it is stopped, deposit, withdraw, show and statement work on the ledger
file itself, with the node's key signing the money entries. Reconcile asks the partner over
the market protocol, and settle (recording a payment made outside the market, which the
partner's operator records too) signs and sends it there, so both need the running node.
AGENT is a name from the config or an address; amounts are decimal credits.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

from aaex_agents.money import Credits

from ..contracts.books import Position
from ..contracts.ledger import LedgerConfig, open_ledger
from ..node.accounts import (
    account_document,
    accounts_document,
    agent_addresses,
    check_address,
    create_missing_keys,
    partners_document,
    resolve_agent,
    statement_document,
)
from ..node.config import load_config
from .admin_client import must_run, note, reach, request
from .console import render_table


def register(commands: Any) -> None:
    """Add `account` to the CLI's subcommands."""
    account = commands.add_parser("account", help="fund agents and read and reconcile books")
    sub = account.add_subparsers(dest="account_command", required=True)
    for kind, verb in (("deposit", "credit an agent from outside the market"),
                       ("withdraw", "pay an agent's available credits out of the market")):
        move = sub.add_parser(kind, help=verb)
        move.add_argument("agent", help="agent name from the config, or its address")
        move.add_argument("amount", help="credits, e.g. 25 or 2.5")
        move.add_argument("--memo", default="", help="a note kept with the entry")
        move.set_defaults(run=_move, kind=kind)
    show = sub.add_parser("show", help="each agent's available, held, receivable, payable")
    show.add_argument("--by-partner", action="store_true",
                      help="per partner: who owes whom, netted")
    show.set_defaults(run=_show)
    settle = sub.add_parser("settle", help="record a payment made outside the market with a "
                            "partner; it counts once the partner's operator records it too")
    settle.add_argument("--with", dest="partner", required=True, metavar="ADDRESS",
                        help="the partner agent's address")
    settle.add_argument("amount", help="credits paid, e.g. 2.5")
    settle.add_argument("--reference", required=True,
                        help="the transfer's reference, the same on both sides")
    settle.add_argument("--agent", help="our agent (default: the one with a debt with the "
                        "partner)")
    settle.set_defaults(run=_settle)
    statement = sub.add_parser("statement", help="our agreements with a partner and the net")
    statement.set_defaults(run=_statement)
    reconcile = sub.add_parser("reconcile", help="compare our books with the partner's; "
                               "exit 1 on any difference")
    reconcile.add_argument("--agent", help="only this agent's trades (default: every agent)")
    reconcile.set_defaults(run=_reconcile)
    for command in (statement, reconcile):
        command.add_argument("--with", dest="partner", required=True, metavar="ADDRESS",
                             help="the partner agent's address")
    for command in (*[sub.choices[k] for k in ("deposit", "withdraw")], show, statement,
                    reconcile, settle):
        command.add_argument("--config", required=True, help="the node's TOML file")
        command.add_argument("--json", action="store_true", help="machine-readable output")


def _move(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    amount = Credits.parse(args.amount, "AMOUNT")

    async def run() -> dict[str, Any]:
        reached = await reach(config)
        if reached.access is not None:
            body = {"agent": args.agent, "amount": args.amount, "memo": args.memo or None}
            document: dict[str, Any] = await request(reached.access, "POST",
                                                     f"/account/{args.kind}", body=body)
            return document
        note(f"{reached.why_not}; writing {config.ledger_path} directly")
        owner = create_missing_keys(config)  # a node that never ran can be funded
        name, address = resolve_agent(agent_addresses(config), args.agent, field="AGENT",
                                      config=config)
        async with open_ledger(config.ledger_path, config=LedgerConfig(owner=owner)) as ledger:
            write = ledger.deposit if args.kind == "deposit" else ledger.withdraw
            entry = await write(address, amount, memo=args.memo or f"{args.kind} offline")
            position = (await ledger.positions()).get(address, Position())
        return {args.kind: True, "entry": entry.seq, **amount.document("amount"),
                "account": account_document(name, address, position)}

    document = asyncio.run(run())
    if args.json:
        print(json.dumps(document))
        return 0
    account = document["account"]
    done = "deposited" if args.kind == "deposit" else "withdrew"
    print(f"{done} {document['amount']} credits {'to' if args.kind == 'deposit' else 'from'} "
          f"{account['agent']} ({account['address']}), ledger entry {document['entry']}")
    print(_accounts_table([account]))
    return 0


def _show(args: argparse.Namespace) -> int:
    config = load_config(args.config)

    async def run() -> list[dict[str, Any]]:
        reached = await reach(config)
        if reached.access is not None:
            path = "/accounts/partners" if args.by_partner else "/accounts"
            document: list[dict[str, Any]] = await request(reached.access, "GET", path)
            return document
        note(f"{reached.why_not}; reading {config.ledger_path}")
        async with open_ledger(config.ledger_path) as ledger:
            if args.by_partner:
                return partners_document(agent_addresses(config), await ledger.lines())
            return accounts_document(agent_addresses(config), await ledger.positions())

    accounts = asyncio.run(run())
    if args.json:
        print(json.dumps(accounts))
    elif args.by_partner:
        print(render_table(["agent", "partner", "who owes", "credits"],
                           [(a["agent"], a["partner"], a["owes"], a["amount"]) for a in accounts],
                           align="lllr") if accounts else "nobody owes anybody")
    else:
        print(_accounts_table(accounts))
    return 0


def _settle(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    partner = check_address(args.partner, "--with")
    Credits.parse(args.amount, "AMOUNT")

    async def run() -> dict[str, Any]:
        access = must_run(await reach(config))
        body = {"with": partner, "amount": args.amount, "reference": args.reference,
                "agent": args.agent}
        document: dict[str, Any] = await request(access, "POST", "/account/settle", body=body)
        return document

    document = asyncio.run(run())
    if args.json:
        print(json.dumps(document))
        return 0
    if document["outcome"] == "recorded":
        print(f"recorded payment {document['payment_id'][:16]} of {document['amount']} "
              f"credits from {document['payer']} to {document['payee']}, signed by both; "
              f"the partner's books: {document['partner']}")
    else:
        print(f"offered payment {document['payment_id'][:16]} of {document['amount']} credits "
              f"from {document['payer']} to {document['payee']}: it counts once the partner's "
              f"operator records it too (the partner: {document['partner']})")
    return 0


def _accounts_table(accounts: list[dict[str, Any]]) -> str:
    return render_table(
        ["agent", "address", "available", "held", "receivable", "payable"],
        [(a["agent"], a["address"], a["available"], a["held"], a["receivable"], a["payable"])
         for a in accounts], align="llrrrr")


def _statement(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    partner = check_address(args.partner, "--with")

    async def run() -> dict[str, Any]:
        reached = await reach(config)
        if reached.access is not None:
            document: dict[str, Any] = await request(reached.access, "GET", "/statement",
                                                     params={"with": partner})
            return document
        note(f"{reached.why_not}; reading {config.ledger_path}")
        async with open_ledger(config.ledger_path) as ledger:
            return statement_document(await ledger.statement(partner))

    document = asyncio.run(run())
    print(json.dumps(document) if args.json else render_statement(document))
    return 0


def render_statement(document: dict[str, Any]) -> str:
    """A statement for a person: one row per agreement, then who owes whom."""
    partner = document["with"]
    rows = [(line["agreement_id"][:16], line["capability"],
             "we buy" if line["seller"] == partner else "we sell", line["price"],
             line["verdict"], line["amount"] if line["debtor"] else "",
             "" if line["debtor"] is None else
             ("partner owes" if line["debtor"] == partner else "we owe"))
            for line in document["lines"]]
    net = document["net"]
    if document["net_micro"] > 0:
        bottom = f"net: the partner owes us {net} credits"
    elif document["net_micro"] < 0:
        bottom = f"net: we owe the partner {net.lstrip('-')} credits"
    else:
        bottom = "net: even"
    table = render_table(["agreement", "capability", "side", "price", "verdict", "owed", ""],
                         rows, align="lllrlrl") if rows else "no agreements"
    return f"statement with {partner}\n{table}\n{bottom}"


def _reconcile(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    partner = check_address(args.partner, "--with")

    async def run() -> dict[str, Any]:
        access = must_run(await reach(config))
        body = {"with": partner, "agent": args.agent}
        document: dict[str, Any] = await request(access, "POST", "/reconcile", body=body)
        return document

    document = asyncio.run(run())
    if args.json:
        print(json.dumps(document))
    else:
        for agent in document["agents"]:
            ours = agent["ours"]
            state = "agree" if not agent["differences"] else "DISAGREE"
            print(f"{agent['agent']} and {partner}: {len(ours['lines'])} agreement(s), "
                  f"net {ours['net']} credits: {state}")
            for gap in agent["differences"]:
                print(f"  {gap}")
            for payment in agent.get("pending", []):
                print(f"  pending payment {payment['payment_id'][:16]}: {payment['amount']} "
                      f"credits from {payment['payer']} to {payment['payee']}, reference "
                      f"{payment['reference']!r}, waiting for {payment['waiting_for']}")
            if agent.get("checkpoint"):
                head = agent["checkpoint"]
                print(f"  the partner's node signed its ledger at entry {head['seq']} "
                      f"({head['hash'][:16]}...); --json gives the checkpoint to keep")
    return 0 if document["agreed"] else 1
