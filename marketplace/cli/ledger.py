"""`aaex ledger show|verify|checkpoint`: read a node's ledger file, never writing to it.

`show` and `verify` open the file read-only (a missing file is an error, not a new ledger).
`checkpoint` signs the verified head with the node's key and writes it to a file; `verify
--against CHECKPOINT` later finds the newest entries cut, history rewritten up to the
checkpoint, or a forged checkpoint (see marketplace.contracts.checkpoint).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
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
    verify.add_argument("--against", metavar="CHECKPOINT",
                        help="a checkpoint file (aaex ledger checkpoint): the ledger must still "
                        "hold its entry, unchanged, and the node's key must have signed it")
    checkpoint = ledger_commands.add_parser(
        "checkpoint", help="sign the verified head with the node's key (keep it elsewhere)")
    checkpoint.add_argument("--config", required=True, help="the node's TOML file")
    checkpoint.add_argument("--out", metavar="FILE", help="write it here (default: stdout)")
    for sub in (show_ledger, verify):
        sub.add_argument("--json", action="store_true")
    show_ledger.set_defaults(run=_ledger_show)
    verify.set_defaults(run=_ledger_verify)
    checkpoint.set_defaults(run=_ledger_checkpoint)



def _ledger_show(args: argparse.Namespace) -> int:
    from ..contracts.ledger import LedgerConfig, open_ledger

    async def read() -> tuple[dict[str, Any], list[Any]]:
        async with open_ledger(args.path, config=LedgerConfig(read_only=True)) as ledger:
            balances = await ledger.balances()
            head, _ = await ledger.head()
            entries = await ledger.entries(after=max(0, head - args.limit), limit=args.limit)
            return {a: (b.available, b.held) for a, b in balances.items()}, entries

    balances, entries = asyncio.run(read())
    if args.json:
        print(json.dumps({"balances": {a: {**v.document("available"), **h.document("held")}
                                       for a, (v, h) in balances.items()},
                          "entries": [{"seq": e.seq, "kind": e.kind, "hash": e.hash,
                                       "body": e.body} for e in entries]}))
        return 0
    print(render_table(["address", "available (credits)", "held (credits)"],
                       [(a, str(v), str(h))
                        for a, (v, h) in balances.items()], align="lrr"))
    print()
    print(render_table(["seq", "kind", "hash", "agreement"],
                 [(e.seq, e.kind, e.hash[:16], str(e.body.get("agreement_id", ""))[:16])
                  for e in entries]))
    return 0


def _ledger_verify(args: argparse.Namespace) -> int:
    from ..contracts.checkpoint import Checkpoint
    from ..contracts.errors import BadContractSignature, LedgerTampered
    from ..contracts.ledger import LedgerConfig, open_ledger

    against = Checkpoint.load(args.against) if args.against else None

    async def check() -> dict[str, Any]:
        async with open_ledger(args.path, config=LedgerConfig(read_only=True)) as ledger:
            report = await ledger.verify(against=against)
            return {"ok": True, "entries": report.entries, "head": report.head,
                    "agreements": report.agreements,
                    "checkpoint": None if against is None else against.seq}

    try:
        result = asyncio.run(check())
    except LedgerTampered as exc:
        result = {"ok": False, "seq": exc.seq, "problem": exc.problem}
    except BadContractSignature as exc:
        result = {"ok": False, "seq": None, "problem": f"checkpoint {args.against}: {exc}"}
    if args.json:
        print(json.dumps(result))
    elif result["ok"]:
        pinned = ("" if against is None else
                  f", unchanged up to the checkpoint at entry {against.seq}")
        print(f"ledger verified: {result['entries']} entries, {result['agreements']} "
              f"agreements, head {result['head']}{pinned}")
    elif result["seq"] is None:
        print(f"checkpoint FORGED: {result['problem']}", file=sys.stderr)
    else:
        print(f"ledger TAMPERED at entry {result['seq']}: {result['problem']}",
              file=sys.stderr)
    return 0 if result["ok"] else 1


def _ledger_checkpoint(args: argparse.Namespace) -> int:
    from aaex_agents import Identity

    from ..contracts.checkpoint import Checkpoint
    from ..contracts.errors import LedgerTampered
    from ..contracts.ledger import LedgerConfig, open_ledger
    from ..node.config import load_config

    config = load_config(args.config)
    owner = Identity.load(config.node.identity)

    async def sign() -> Checkpoint:
        async with open_ledger(config.ledger_path,
                               config=LedgerConfig(owner=owner, read_only=True)) as ledger:
            await ledger.verify()  # never sign a head the chain does not support
            return await ledger.checkpoint()

    try:
        checkpoint = asyncio.run(sign())
    except LedgerTampered as exc:
        print(f"ledger TAMPERED at entry {exc.seq}: {exc.problem}; no checkpoint signed",
              file=sys.stderr)
        return 1
    if args.out is None:
        print(checkpoint.to_json(), end="")
        return 0
    out = Path(args.out)
    try:
        out.write_text(checkpoint.to_json(), encoding="utf-8")
    except OSError as exc:
        print(f"aaex: cannot write {out}: {exc.strerror}", file=sys.stderr)
        return 2
    print(f"checkpoint of entry {checkpoint.seq} ({checkpoint.hash[:16]}...) signed by "
          f"{checkpoint.ledger}, written to {out}; keep it off this machine")
    return 0
