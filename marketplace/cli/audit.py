"""`aaex audit log|verify|prove`: the node's audit trail of data uses, from the terminal.

    aaex audit log    --config node.toml | --admin URL [--limit N] [--json]
    aaex audit verify --config node.toml | --admin URL [--json]      # exit 1 if anything fails
    aaex audit prove  --config node.toml | --admin URL INDEX [--size M] [--json]
    aaex audit prove  --config node.toml | --admin URL --first A [--second B] [--json]

`log` lists the newest uses the node recorded (and those partners proved to it about its
agents). `verify` checks the node's own log against the last head it signed, and lists every
partner log it holds a head of: a partner caught rewriting, truncating or reordering its log
is named with the evidence, which the command re-checks here. `prove` fetches an inclusion
proof of one entry, or a consistency proof between two sizes, and checks it here: the node
is not trusted to say its proof is right.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

from ..contracts.audit_log import AuditEvidence, SignedTreeHead
from ..contracts.errors import ContractRejected
from ..contracts.merkle import verify_consistency, verify_inclusion
from ..node.config import load_config
from .admin_client import explicit_access, must_run, reach, request
from .console import render_table


def register(commands: Any) -> None:
    """Add `audit` to the CLI's subcommands."""
    group = commands.add_parser("audit", help="the audit trail of data uses: log, verify, "
                                "prove")
    sub = group.add_subparsers(dest="audit_command", required=True)
    log = sub.add_parser("log", help="the newest data uses on the node's audit log")
    log.add_argument("--limit", type=int, default=20, help="how many entries (default 20)")
    log.set_defaults(run=_log)
    verify = sub.add_parser("verify", help="our log against our last signed head, and every "
                            "partner's log we hold heads of")
    verify.set_defaults(run=_verify)
    prove = sub.add_parser("prove", help="an inclusion or consistency proof, checked here")
    prove.add_argument("index", nargs="?", type=int, metavar="INDEX",
                       help="the entry to prove included")
    prove.add_argument("--size", type=int, help="in the log of this size (default: now)")
    prove.add_argument("--first", type=int, help="prove the log of this size is a prefix")
    prove.add_argument("--second", type=int, help="of the log of this size (default: now)")
    prove.set_defaults(run=_prove)
    for command in (log, verify, prove):
        where = command.add_mutually_exclusive_group(required=True)
        where.add_argument("--config", help="the node's TOML file (finds its admin URL)")
        where.add_argument("--admin", help="the node's admin URL, e.g. http://127.0.0.1:8701")
        command.add_argument("--token-file", help="the node's admin.token, with --admin")
        command.add_argument("--json", action="store_true", help="machine-readable output")


def _get(args: argparse.Namespace, path: str, params: dict[str, str] | None = None) -> Any:
    async def run() -> Any:
        if args.config is not None:
            access = must_run(await reach(load_config(args.config)))
        else:
            access = explicit_access(args.admin, args.token_file)
        return await request(access, "GET", path, params=params)
    return asyncio.run(run())


def _log(args: argparse.Namespace) -> int:
    document = _get(args, "/audit", {"limit": str(args.limit)})
    if args.json:
        print(json.dumps(document))
        return 0
    print(f"audit log of {document['node']}: {document['size']} entries, root "
          f"{document['root'][:16]}")
    rows = [(e["index"], e["event"], e["agent"][:16], e["owner"][:16] or "-", e["dataset"],
             e["purpose"], e["grant"] or "-") for e in document["entries"]]
    print(render_table(["#", "event", "agent", "data owner", "dataset", "purpose", "grant"],
                       rows, align="rllllll") if rows else "no entries")
    if document["received"]:
        print("\nwhat partners recorded about our agents' data:")
        print(render_table(["partner log", "#", "event", "their agent", "dataset", "purpose"],
                           [(r["log"][:16], r["index"], r["event"], r["agent"][:16],
                             r["dataset"], r["purpose"]) for r in document["received"]],
                           align="lrllll"))
    return 0


def _verify(args: argparse.Namespace) -> int:
    own = _get(args, "/audit", {"limit": "1"})
    partners = _get(args, "/audit/partners")
    for partner in partners:
        partner["rechecked"] = [_recheck(e) for e in partner["evidence"]]
    failed = own["problem"] is not None or any(p["status"] != "ok" for p in partners)
    if args.json:
        print(json.dumps({"own": {"size": own["size"], "root": own["root"],
                                  "problem": own["problem"]}, "partners": partners,
                          "ok": not failed}))
        return 1 if failed else 0
    print(f"our log: {own['size']} entries, "
          + ("consistent with the last head we signed" if own["problem"] is None
             else f"PROBLEM: {own['problem']}"))
    if not partners:
        print("no partner has sent us a head of its log yet")
    for p in partners:
        if p["status"] == "ok":
            print(f"partner log {p['log']}: ok, {p['size']} entries proven consistent")
            continue
        print(f"partner log {p['log']}: CAUGHT ({p['status']}): {p['detail']}")
        for evidence, rechecked in zip(p["evidence"], p["rechecked"], strict=True):
            print(f"  evidence: head of {evidence['held']['size']} then of "
                  f"{evidence['new']['size']} entries, both signed by {p['log']}; "
                  f"re-checked here: {rechecked}")
    return 1 if failed else 0


def _recheck(document: dict[str, Any]) -> str:
    """Re-check one piece of evidence offline: both signatures and the contradiction."""
    try:
        return AuditEvidence.model_validate(document).recheck().outcome
    except (ContractRejected, ValueError) as exc:
        return f"not evidence ({exc})"


def _prove(args: argparse.Namespace) -> int:
    if (args.index is None) == (args.first is None):
        print("aaex: give INDEX (inclusion) or --first (consistency), not both")
        return 2
    if args.index is not None:
        params = {"index": str(args.index)}
        if args.size is not None:
            params["size"] = str(args.size)
        found = _get(args, "/audit/prove", params)
        problem = _check(lambda: verify_inclusion(
            found["index"], found["size"], bytes.fromhex(found["leaf_hash"]),
            [bytes.fromhex(p) for p in found["proof"]], bytes.fromhex(found["root"])), found,
            found["root"])
        what = f"entry {found['index']} is in the log of {found['size']}"
    else:
        params = {"first": str(args.first)}
        if args.second is not None:
            params["second"] = str(args.second)
        found = _get(args, "/audit/consistency", params)
        problem = _check(lambda: verify_consistency(
            found["first"], found["second"], bytes.fromhex(found["first_root"]),
            bytes.fromhex(found["second_root"]), [bytes.fromhex(p) for p in found["proof"]]),
            found, found["second_root"])
        what = f"the log of {found['first']} is a prefix of the log of {found['second']}"
    found["verified"] = problem is None
    if args.json:
        print(json.dumps(found))
    else:
        print(f"{what}: {'verified here' if problem is None else 'FAILED: ' + problem}")
        print("proof: " + (" ".join(p[:16] for p in found["proof"]) or "(empty)"))
        if found.get("head"):
            print(f"against the head signed by {found['head']['log']} at "
                  f"{found['head']['at_ms']} ms")
    return 0 if problem is None else 1


def _check(verify: Any, found: dict[str, Any], root: str) -> str | None:
    """None when the proof verifies (and the signed head, if sent, names the same root)."""
    try:
        verify()
        if found.get("head"):
            head = SignedTreeHead.model_validate(found["head"])
            head.verify()
            if head.root != root:
                return "the signed head names another root"
    except (ContractRejected, ValueError) as exc:
        return str(exc)
    return None
