"""`aaex grant issue|show|export|revoke` and `aaex provenance verify`: data grants and provenance.

    aaex grant issue --key owner.key --grantee ADDRESS --dataset-id sales-2025 \
        --data history.json --action read --purpose forecast.demand --days 30 \
        [--from ISO] [--until ISO] [--pass-on] --out grant.json
    aaex grant show grant.json [--json]
    aaex grant export grant.json                  # ODRL 2.2 JSON-LD on stdout
    aaex grant revoke grant.json --key owner.key --out revocation.json \
        [--config node.toml --agent NAME]         # and send it to the grantee's node
    aaex provenance verify FILE [--task task.json] [--json]

A grant file is the owner-signed grant as JSON; `--data` hashes the JSON file that holds the
dataset as a task carries it (`marketplace.trade.grants.data_hash`). `provenance verify`
reads a provenance record, a delivery or the final document of ``aaex market buy --json``
and checks it offline: the seller's signature, the result's hash when the result is there,
the task's hash with ``--task``. It exits 1 naming the first problem.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from aaex_agents import Identity
from aaex_agents.errors import UsageError

from ..contracts.errors import ContractRejected
from ..contracts.grant import ACTIONS, Grant, SignedGrant, SignedRevocation, odrl_document
from ..contracts.provenance import SignedProvenance, problems
from ..contracts.signing import sha256_hex
from .admin_client import must_run, reach, request
from .files import read_json_file


def register(commands: Any) -> None:
    """Add `grant` and `provenance` to the CLI's subcommands."""
    grant = commands.add_parser("grant", help="issue, show, export and revoke data grants")
    sub = grant.add_subparsers(dest="grant_command", required=True)
    issue = sub.add_parser("issue", help="sign a purpose-bound grant as the data owner")
    issue.add_argument("--key", required=True, help="the data owner's key file")
    issue.add_argument("--grantee", required=True, help="the address allowed to use the data")
    issue.add_argument("--dataset-id", required=True, help="your name for the dataset")
    data = issue.add_mutually_exclusive_group(required=True)
    data.add_argument("--data", help="JSON file with the data as the task carries it")
    data.add_argument("--dataset-hash", help="sha256 (hex) of the data's canonical JSON")
    issue.add_argument("--action", action="append", required=True, choices=ACTIONS,
                       help="an action granted (repeatable)")
    issue.add_argument("--purpose", action="append", required=True,
                       help="a purpose granted (repeatable): inference, training, analytics, "
                       "research or a capability name such as forecast.demand")
    issue.add_argument("--from", dest="start", help="ISO time the grant starts (default: now)")
    window = issue.add_mutually_exclusive_group(required=True)
    window.add_argument("--until", help="ISO time the grant ends (exclusive)")
    window.add_argument("--days", type=float, help="days the grant lasts")
    issue.add_argument("--pass-on", action="store_true",
                       help="the grantee may pass the data on (ODRL distribute)")
    issue.add_argument("--out", required=True, help="file to write the signed grant to")
    issue.set_defaults(run=_issue)
    show = sub.add_parser("show", help="check a grant's signature and print its terms")
    show.add_argument("file")
    show.add_argument("--json", action="store_true")
    show.set_defaults(run=_show)
    export = sub.add_parser("export", help="print a grant as ODRL 2.2 JSON-LD")
    export.add_argument("file")
    export.set_defaults(run=_export)
    revoke = sub.add_parser("revoke", help="sign the revocation of a grant as its owner")
    revoke.add_argument("file")
    revoke.add_argument("--key", required=True, help="the data owner's key file")
    revoke.add_argument("--out", required=True, help="file to write the revocation to")
    revoke.add_argument("--config", help="send it through this running node (its TOML) ...")
    revoke.add_argument("--agent", help="... as this agent of it, to the grantee")
    revoke.set_defaults(run=_revoke)
    provenance = commands.add_parser("provenance", help="check a delivery's provenance")
    psub = provenance.add_subparsers(dest="provenance_command", required=True)
    verify = psub.add_parser("verify", help="check a provenance record offline")
    verify.add_argument("file", help="a provenance record, a delivery, or the output of "
                        "`aaex market buy --json`")
    verify.add_argument("--task", help="JSON file with the task that was sent")
    verify.add_argument("--json", action="store_true")
    verify.set_defaults(run=_verify)


def _ms(text: str, flag: str) -> int:
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"{flag}: {text!r} is not an ISO time such as "
                         "2026-01-31T00:00:00Z") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1000)


def read_grant(path: str) -> SignedGrant:
    """The verified grant in the file at `path`.

    Raises:
        UsageError: unreadable, not a grant, or a bad signature (names the file).
    """
    try:
        return SignedGrant.from_json(json.dumps(read_json_file(path, "grant")))
    except ContractRejected as exc:
        raise UsageError(f"{path}: {exc}") from None


def _issue(args: argparse.Namespace) -> int:
    from ..trade.grants import data_hash

    owner = Identity.load(args.key)
    digest = (data_hash(read_json_file(args.data, "--data")) if args.data is not None
              else args.dataset_hash)
    start = _ms(args.start, "--from") if args.start else \
        int(datetime.now(UTC).timestamp() * 1000)
    end = _ms(args.until, "--until") if args.until else \
        start + int(timedelta(days=args.days).total_seconds() * 1000)
    try:
        grant = Grant(owner=owner.address, grantee=args.grantee, dataset_id=args.dataset_id,
                      dataset_hash=digest, actions=tuple(args.action),
                      purposes=tuple(args.purpose), not_before_ms=start, not_after_ms=end,
                      transferable=args.pass_on)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "grant"
        raise UsageError(f"{where}: {first['msg']}") from None
    signed = SignedGrant.issue(grant, owner)
    Path(args.out).write_text(signed.model_dump_json(indent=1) + "\n", encoding="utf-8")
    print(f"grant {signed.id} for {grant.grantee} written to {args.out}")
    return 0


def _show(args: argparse.Namespace) -> int:
    signed = read_grant(args.file)
    g = signed.grant
    if args.json:
        print(json.dumps({"id": signed.id, **g.model_dump(mode="json")}))
        return 0
    window = (f"{datetime.fromtimestamp(g.not_before_ms / 1000, UTC).isoformat()} to "
              f"{datetime.fromtimestamp(g.not_after_ms / 1000, UTC).isoformat()}")
    print(f"grant    {signed.id} (signature valid)\nowner    {g.owner}\ngrantee  {g.grantee}\n"
          f"dataset  {g.dataset_id} sha256 {g.dataset_hash}\nactions  {', '.join(g.actions)}"
          f"{' (may pass on)' if g.transferable else ''}\npurposes {', '.join(g.purposes)}\n"
          f"window   {window}")
    return 0


def _export(args: argparse.Namespace) -> int:
    print(json.dumps(odrl_document(read_grant(args.file)), indent=1))
    return 0


def _revoke(args: argparse.Namespace) -> int:
    from ..node.config import load_config

    signed = read_grant(args.file)
    owner = Identity.load(args.key)
    try:
        revocation = SignedRevocation.revoke(signed, owner,
                                             int(datetime.now(UTC).timestamp() * 1000))
    except ContractRejected as exc:
        raise UsageError(str(exc)) from None
    Path(args.out).write_text(revocation.model_dump_json(indent=1) + "\n", encoding="utf-8")
    print(f"revocation of grant {signed.id[:16]} written to {args.out}")
    if args.config is None:
        return 0
    if args.agent is None:
        raise UsageError("--config needs --agent: the node's agent that sends the revocation")

    async def send() -> Any:
        access = must_run(await reach(load_config(args.config)))
        return await request(access, "POST", "/grants/revoke", body={
            "agent": args.agent, "to": signed.grant.grantee,
            "revocation": revocation.model_dump(mode="json")})

    answer = asyncio.run(send())
    print(f"the grantee's node keeps the revocation of {answer['grant_id'][:16]}")
    return 0


def _provenance_of(document: Any) -> tuple[Any, Any]:
    """(provenance document, result or None) from any of the files `verify` reads."""
    if isinstance(document, dict) and "provenance" in document and "signature" in document \
            and "result" not in document:
        return document, None
    if isinstance(document, dict) and "provenance" in document:
        return document["provenance"], document.get("result")
    raise UsageError("no provenance in this file (a record, a delivery or the output of "
                     "`aaex market buy --json` has one)")


def _verify(args: argparse.Namespace) -> int:
    raw, result = _provenance_of(read_json_file(args.file, "file"))
    task_hash = None
    if args.task is not None:
        task = read_json_file(args.task, "--task")
        task_hash = sha256_hex(json.dumps(task, sort_keys=True, separators=(",", ":")).encode())
    if raw is None:
        found = ["provenance: the seller sent none"]
        record = None
    else:
        try:
            record = SignedProvenance.parse(raw)
        except ContractRejected as exc:
            found, record = [str(exc)], None
        else:
            found = problems(record, result=result, task_hash=task_hash)
    if args.json:
        print(json.dumps({"valid": not found, "problems": found,
                          "provenance": None if record is None else record.model_dump()}))
    elif found or record is None:
        print(f"aaex: provenance invalid: {found[0]}", file=sys.stderr)
    else:
        p = record.provenance
        print(f"valid: signed by seller {p.seller}\nagreement {p.agreement_id}\n"
              f"result    sha256 {p.result_hash}"
              f"{' (matches the result)' if result is not None else ''}\n"
              f"model     {p.model.name} sha256 {p.model.file_hash}\ncode      "
              f"{p.code_version}\ninputs    " + "\n          ".join(
                  f"{i.role} {i.hash}" + (f" under grant {i.grant_id}" if i.grant_id else "")
                  for i in p.inputs))
    return 1 if found else 0
