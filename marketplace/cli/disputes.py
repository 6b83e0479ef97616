"""`aaex dispute list|show|export|verify|resolve|decide`: disputes, from the terminal.

    aaex dispute list    --config node.toml [--json]
    aaex dispute show    --config node.toml AGREEMENT_ID [--json]
    aaex dispute export  --config node.toml AGREEMENT_ID [--out FILE]
    aaex dispute verify  FILE [--json]                      # offline; exit 1 if it fails
    aaex dispute resolve --config node.toml AGREEMENT_ID --to-seller CREDITS [--penalty CREDITS]
    aaex dispute resolve --config node.toml AGREEMENT_ID --decision FILE
    aaex dispute decide  FILE --to-seller CREDITS [--penalty CREDITS] --key ARBITER.key --out OUT

`resolve` signs the terms as this node's party: the first party to sign makes an offer, the
second signing the same terms ends the dispute on both books. `decide` is the arbiter's: it
signs a decision from an evidence bundle, offline, which either party submits with
`resolve --decision`. AGREEMENT_ID may be shortened to its first 8 or more characters.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from aaex_agents.errors import UsageError
from aaex_agents.identity import Identity
from aaex_agents.money import Credits

from ..contracts.dispute import Resolution, SignedResolution
from ..contracts.errors import ContractRejected
from ..contracts.evidence import verify_evidence
from ..node.config import load_config
from .admin_client import must_run, reach, request
from .console import render_table
from .files import read_json_file


def register(commands: Any) -> None:
    """Add `dispute` to the CLI's subcommands."""
    group = commands.add_parser("dispute", help="agreements whose parties' signed facts "
                                "contradict: list, show, export, verify, resolve")
    sub = group.add_subparsers(dest="dispute_command", required=True)
    listing = sub.add_parser("list", help="every dispute on the node's books")
    listing.set_defaults(run=_list)
    show = sub.add_parser("show", help="one dispute: the conflicting fields, offers")
    show.set_defaults(run=_show)
    export = sub.add_parser("export", help="write the signed evidence bundle")
    export.add_argument("--out", help="file to write (default: stdout)")
    export.set_defaults(run=_export)
    resolve = sub.add_parser("resolve", help="sign a resolution, or submit an arbiter's")
    resolve.add_argument("--decision", help="an arbiter's signed decision (aaex dispute decide)")
    resolve.set_defaults(run=_resolve)
    for command in (show, export, resolve):
        command.add_argument("agreement", metavar="AGREEMENT_ID")
    for command in (listing, show, export, resolve):
        command.add_argument("--config", required=True, help="the node's TOML file")
    verify = sub.add_parser("verify", help="check an evidence bundle offline")
    verify.add_argument("file", metavar="FILE")
    verify.set_defaults(run=_verify)
    decide = sub.add_parser("decide", help="as the agreement's arbiter, sign a decision")
    decide.add_argument("file", metavar="FILE", help="the dispute's evidence bundle")
    decide.add_argument("--key", required=True, help="the arbiter's key file")
    decide.add_argument("--out", required=True, help="where to write the signed decision")
    decide.add_argument("--note", default="", help="the reason, kept with the decision")
    decide.set_defaults(run=_decide)
    for command in (resolve, decide):
        command.add_argument("--to-seller", help="credits of the held price paid to the seller")
        command.add_argument("--penalty", default="0", help="credits the seller owes besides")
    for command in (listing, show, verify):
        command.add_argument("--json", action="store_true", help="machine-readable output")


def _call(config_path: str, method: str, path: str,
          body: dict[str, Any] | None = None) -> Any:
    config = load_config(config_path)

    async def run() -> Any:
        access = must_run(await reach(config))
        return await request(access, method, path, body=body)
    return asyncio.run(run())


def _list(args: argparse.Namespace) -> int:
    disputes = _call(args.config, "GET", "/disputes")
    if args.json:
        print(json.dumps(disputes))
        return 0
    if not disputes:
        print("no disputes")
        return 0
    print(render_table(
        ["agreement", "capability", "we are", "raised by", "status", "price", "conflicts"],
        [(d["agreement_id"][:16], d["capability"], d["role"], d["raised_by"], d["status"],
          d["price"], ", ".join(c["field"] for c in d["conflicts"])) for d in disputes],
        align="lllllrl"))
    return 0


def _show(args: argparse.Namespace) -> int:
    document = _call(args.config, "GET", f"/disputes/{args.agreement}")
    if args.json:
        print(json.dumps(document))
        return 0
    print(f"agreement {document['agreement_id']} ({document['capability']}, price "
          f"{document['price']} credits): {document['status']}, raised by the "
          f"{document['raised_by']}; we are the {document['role']}")
    print(render_table(["field", "the seller signed", "the buyer signed or saw"],
                       [(c["field"], c["seller"], c["buyer"]) for c in document["conflicts"]],
                       align="lll"))
    for key, label in (("offer", "the partner offers"), ("resolution", "resolved")):
        if key in document:
            terms = document[key]
            print(f"{label}: {terms['to_seller']} to the seller, {terms['to_buyer']} back to "
                  f"the buyer, penalty {terms['penalty']} (signed by "
                  f"{', '.join(terms['signed_by'])})")
    return 0


def _export(args: argparse.Namespace) -> int:
    bundle = _call(args.config, "GET", f"/disputes/{args.agreement}/evidence")
    text = json.dumps(bundle, indent=1)
    if args.out:
        Path(args.out).write_text(text + "\n")
        print(f"evidence of the dispute over {args.agreement} written to {args.out}",
              file=sys.stderr)
    else:
        print(text)
    return 0


def _verify(args: argparse.Namespace) -> int:
    try:
        checked = verify_evidence(read_json_file(args.file))
    except ContractRejected as exc:
        print(json.dumps({"valid": False, "error": str(exc)}) if args.json
              else f"INVALID: {exc}")
        return 1
    a = checked.signed.agreement
    document = {"valid": True, "agreement_id": checked.signed.id, "buyer": a.buyer,
                "seller": a.seller, "raised_by": checked.dispute.dispute.party,
                "conflicts": [c.model_dump() for c in checked.conflicts],
                "resolved": checked.resolution is not None}
    if args.json:
        print(json.dumps(document))
    else:
        print(f"valid: agreement {checked.signed.id[:16]} between buyer {a.buyer} and seller "
              f"{a.seller}; every signature verifies and the {document['raised_by']}'s "
              f"{len(checked.conflicts)} conflict(s) follow from the signed facts"
              + ("; resolved" if checked.resolution is not None else ""))
        for conflict in checked.conflicts:
            print(f"  {conflict.field}: seller {conflict.seller} / buyer {conflict.buyer}")
    return 0


def _resolve(args: argparse.Namespace) -> int:
    if args.decision:
        body: dict[str, Any] = {"decision": read_json_file(args.decision)}
    elif args.to_seller is None:
        raise UsageError("give --to-seller CREDITS (and --penalty), or --decision FILE")
    else:
        body = {"to_seller": args.to_seller, "penalty": args.penalty}
    answer = _call(args.config, "POST", f"/disputes/{args.agreement}/resolve", body)
    if answer["outcome"] == "resolved":
        print(f"resolved: {answer['to_seller']} credits to the seller, {answer['to_buyer']} "
              f"back to the buyer, penalty {answer['penalty']}; the partner: "
              f"{answer['partner']}")
    else:
        print(f"offered: {answer['to_seller']} credits to the seller, penalty "
              f"{answer['penalty']}; the dispute ends when the partner signs the same terms "
              f"(the partner: {answer['partner']})")
    return 0


def _decide(args: argparse.Namespace) -> int:
    try:
        checked = verify_evidence(read_json_file(args.file))
    except ContractRejected as exc:
        raise UsageError(f"{args.file}: {exc}") from None
    if args.to_seller is None:
        raise UsageError("give --to-seller CREDITS")
    arbiter = Identity.load(args.key)
    terms = checked.signed.agreement.terms
    if terms.arbiter != arbiter.address:
        raise UsageError(f"the agreement names arbiter {terms.arbiter}, not this key "
                         f"({arbiter.address})")
    to_seller = Credits.parse(args.to_seller, "--to-seller", allow_zero=True)
    if to_seller > terms.price:
        raise UsageError(f"--to-seller: at most the price, {terms.price} credits")
    resolution = Resolution(
        agreement_id=checked.signed.id, to_seller=to_seller, to_buyer=terms.price - to_seller,
        penalty=Credits.parse(args.penalty, "--penalty", allow_zero=True), note=args.note,
        at_ms=max(1, checked.dispute.dispute.at_ms))
    decision = SignedResolution(resolution=resolution, signatures={}).signed_by(arbiter)
    decision.verify_against(checked.signed)
    Path(args.out).write_text(json.dumps(decision.model_dump(mode="json"), indent=1) + "\n")
    print(f"decision signed by arbiter {arbiter.address}: {to_seller} credits to the seller; "
          f"written to {args.out}")
    return 0
