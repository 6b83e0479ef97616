"""`aaex ledger show|verify`: read a node's ledger file."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from .console import render_table


def register(commands: Any) -> None:
    """Add `ledger` to the CLI's subcommands."""
    ledger = commands.add_parser("ledger", help="inspect and verify a node's ledger")
    ledger_commands = ledger.add_subparsers(dest="ledger_command", required=True)
    show_ledger = ledger_commands.add_parser("show", help="balances and the latest entries")
    show_ledger.add_argument("path", help="ledger file (data_dir/ledger.sqlite)")
    show_ledger.add_argument("--limit", type=int, default=20)
    verify = ledger_commands.add_parser("verify", help="check the hash chain; exit 1 if broken")
    verify.add_argument("path")
    for sub in (show_ledger, verify):
        sub.add_argument("--json", action="store_true")
    show_ledger.set_defaults(run=_ledger_show)
    verify.set_defaults(run=_ledger_verify)



def _ledger_show(args: argparse.Namespace) -> int:
    from ..contracts.credits import format_credits
    from ..contracts.ledger import open_ledger

    async def read() -> tuple[dict[str, Any], list[Any]]:
        async with open_ledger(args.path) as ledger:
            balances = await ledger.balances()
            head, _ = await ledger.head()
            entries = await ledger.entries(after=max(0, head - args.limit), limit=args.limit)
            return {a: (b.available, b.held) for a, b in balances.items()}, entries

    balances, entries = asyncio.run(read())
    if args.json:
        print(json.dumps({"balances": {a: {"available": format_credits(v), "available_micro": v,
                                           "held": format_credits(h), "held_micro": h}
                                       for a, (v, h) in balances.items()},
                          "entries": [{"seq": e.seq, "kind": e.kind, "hash": e.hash,
                                       "body": e.body} for e in entries]}))
        return 0
    print(render_table(["address", "available (credits)", "held (credits)"],
                       [(a, format_credits(v), format_credits(h))
                        for a, (v, h) in balances.items()], align="lrr"))
    print()
    print(render_table(["seq", "kind", "hash", "agreement"],
                 [(e.seq, e.kind, e.hash[:16], str(e.body.get("agreement_id", ""))[:16])
                  for e in entries]))
    return 0


def _ledger_verify(args: argparse.Namespace) -> int:
    from ..contracts.errors import LedgerTampered
    from ..contracts.ledger import open_ledger

    async def check() -> dict[str, Any]:
        async with open_ledger(args.path) as ledger:
            report = await ledger.verify()
            return {"ok": True, "entries": report.entries, "head": report.head,
                    "agreements": report.agreements}

    try:
        result = asyncio.run(check())
    except LedgerTampered as exc:
        result = {"ok": False, "seq": exc.seq, "problem": exc.problem}
    if args.json:
        print(json.dumps(result))
    elif result["ok"]:
        print(f"ledger verified: {result['entries']} entries, {result['agreements']} "
              f"agreements, head {result['head']}")
    else:
        print(f"ledger TAMPERED at entry {result['seq']}: {result['problem']}",
              file=sys.stderr)
    return 0 if result["ok"] else 1
