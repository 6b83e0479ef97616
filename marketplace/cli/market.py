"""`aaex market search|buy`: find sellers of a capability, or buy through a running node.

    aaex market search forecast.demand --config node.toml [--where ...] [--json]
    aaex market search forecast.demand --seed /ip4/.../p2p/...
    aaex market buy forecast.demand --config node.toml --agent shopper --task task.json \
        --budget 5 --deadline 60 [--where "region == 'eu'"] [--json]
        [--grant grant.json --use-purpose forecast.demand [--use-action read]
         [--data-field history]]

`search --config` (or `--admin URL`) asks the running node (``GET /market/search``): the search
goes out through its DHT host, and each seller carries its reputation as that node knows it.
`--seed` joins the network with a host of its own for the one search (nobody rates then).

`buy` asks the node (its admin API, with the token from its data dir; or `--admin URL
--token-file FILE`) to delegate the task as one of its agents, and prints each step as the
node reports it: sellers found, offers, the agreement and its terms, the delivery, the
receipt, the settlement, then the result. It names every seller that declined and why (a
decline is an answer: that seller is neither asked again nor banned). It exits 0 on a met
delivery and 1 when no seller delivered (with every attempt's reason). With `--grant` the
task carries the owner's grant for its data: a seller whose use it does not cover declines
(``grant_refused`` and the reason) before anything is agreed or paid. The final document
carries the seller-signed ``provenance`` of the result and what the buyer found wrong with
it (``provenance_problems``); `aaex provenance verify` checks a saved copy offline.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from aaex_agents.errors import UsageError
from aaex_agents.money import Credits

from .admin_client import explicit_access, must_run, reach, stream
from .console import render_table

if TYPE_CHECKING:
    from discovery.records import PriceModel, ServiceAd


def register(commands: Any) -> None:
    """Add `market` to the CLI's subcommands."""
    market = commands.add_parser("market", help="search the market")
    market_commands = market.add_subparsers(dest="market_command", required=True)
    search = market_commands.add_parser("search", help="find sellers of a capability")
    search.add_argument("capability")
    through = search.add_mutually_exclusive_group(required=True)
    through.add_argument("--config", help="search through this running node (its TOML file); "
                         "shows each seller's reputation as it knows it")
    through.add_argument("--admin", help="search through the running node at this admin URL")
    through.add_argument("--seed", action="append",
                         help="multiaddr of a node to join through for this search alone "
                         "(repeatable)")
    search.add_argument("--where", help="attribute constraints, e.g. \"region == 'eu'\"")
    search.add_argument("--max-price", help="decimal credits, e.g. 2.5")
    search.add_argument("--limit", type=int)
    search.add_argument("--json", action="store_true")
    search.set_defaults(run=_market_search)
    buy = market_commands.add_parser("buy", help="buy a task through a running node")
    buy.add_argument("capability")
    node = buy.add_mutually_exclusive_group(required=True)
    node.add_argument("--config", help="the node's TOML file (finds its admin API and token)")
    node.add_argument("--admin", help="the node's admin URL (with --token-file)")
    buy.add_argument("--token-file", help="the node's admin.token, with --admin")
    buy.add_argument("--agent", required=True, help="the node's agent that buys (name or "
                     "address)")
    buy.add_argument("--task", required=True, help="JSON file with the task")
    buy.add_argument("--budget", required=True, help="the most to pay, in credits")
    buy.add_argument("--deadline", required=True, type=float, help="seconds to get it done")
    buy.add_argument("--where", help="constraints on the sellers' ads, e.g. \"region == 'eu'\"")
    buy.add_argument("--grant", help="the data owner's grant file (aaex grant issue) for the "
                     "data the task carries; with --use-action and --use-purpose")
    buy.add_argument("--use-action", default="read", help="what the seller may do with the "
                     "granted data (default: read)")
    buy.add_argument("--use-purpose", help="what for, e.g. forecast.demand")
    buy.add_argument("--data-field", help="the task's field holding the granted data "
                     "(default: the whole task)")
    buy.add_argument("--json", action="store_true", help="print only the final JSON document; "
                     "progress goes to stderr")
    buy.set_defaults(run=_market_buy)



def _market_search(args: argparse.Namespace) -> int:
    found = _search_by_node(args) if args.seed is None else _search_by_seed(args)
    _show_found(found, args)
    return 0


def _search_by_node(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Search through the running node's DHT host (its admin API).

    Nothing joins and leaves the network, and each seller carries its reputation as that
    node knows it.
    """
    from ..node.config import load_config
    from .admin_client import request

    if args.max_price is not None:
        Credits.parse(args.max_price, "--max-price")  # refused here, before the node is asked
    params = {key: str(value) for key, value in (
        ("capability", args.capability), ("where", args.where),
        ("max_price", args.max_price), ("limit", args.limit)) if value is not None}

    async def search() -> list[dict[str, Any]]:
        if args.config is not None:
            access = must_run(await reach(load_config(args.config)))
        else:
            access = explicit_access(args.admin, None)
        found: list[dict[str, Any]] = await request(access, "GET", "/market/search",
                                                    params=params, timeout=60)
        return found
    return asyncio.run(search())


def _search_by_seed(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Search through a host of our own, joined by `--seed` for this search alone.

    No node of ours rates the sellers, so their reputation is null.
    """
    from aaex_agents.transport.libp2p import open_libp2p_host
    from discovery.dht import open_discovery
    from discovery.query import Query, Utility, parse_where

    query = Query(args.capability, where=parse_where(args.where) if args.where else None,
                  max_price=None if args.max_price is None
                  else Credits.parse(args.max_price, "--max-price"), limit=args.limit)

    async def search() -> list[Any]:
        async with open_libp2p_host() as host, open_discovery(host, seeds=args.seed) as found:
            return [ad for _, ad in Utility().rank(await found.lookup(query))]

    return [{**ad_document(ad), "reputation": None} for ad in asyncio.run(search())]


def _show_found(found: list[dict[str, Any]], args: argparse.Namespace) -> None:
    if args.json:
        print(json.dumps(found))
        return
    if not found:
        print(f"no seller of {args.capability} matches")
        return
    print(render_table(["address", "price", "p95 ms", "deadline s", "reputation",
                        "incentive", "attributes", "task"],
                       [(ad["address"], _found_price_text(ad),
                         ad["sla"]["p95_ms"], ad["sla"]["deadline_s"],
                         _reputation_text(ad.get("reputation")),
                         "-" if ad.get("incentive") is None else f"{ad['incentive']:.3f}",
                         json.dumps(ad["attributes"]), task_text(ad.get("task_schema")))
                        for ad in found]))


def _reputation_text(reputation: dict[str, Any] | None) -> str:
    """A seller's standing in a few words: its score and what it rests on."""
    if reputation is None:
        return "-"  # searched by seed: no node of ours rated anyone
    if reputation["raters"] == 0:
        return "unrated"
    return (f"{reputation['score']:.2f} ({reputation['raters']} rater(s), "
            f"{reputation['receipts']} receipt(s))")


def _found_price_text(found: dict[str, Any]) -> str:
    """`price_text` of a found seller's JSON document (the node's answer)."""
    kind = found.get("price_kind", "fixed")
    return f"{found['price']} {found.get('price_currency', 'credit')}{_PER.get(kind, ' ' + kind)}"


_PER = {"fixed": "", "per_unit": " per unit", "per_1k_tokens": " per 1k output tokens"}


def price_text(price: PriceModel) -> str:
    """An ad's price for a person: decimal credits and what they buy.

    ``0.02 credit per 1k output tokens``, never a float's ``2e-05``.
    """
    return f"{price.amount} {price.currency}{_PER.get(price.kind, ' ' + price.kind)}"


def ad_document(ad: ServiceAd) -> dict[str, Any]:
    """An ad for ``--json``: the signed ad's fields and its price in the one JSON form.

    The price as decimal credits with the ``price_micro`` twin (`Credits.document`), and how
    it is charged (``price_kind``, ``price_currency``), which the flat price alone would lose.
    """
    return {**json.loads(ad.model_dump_json()), **ad.price.amount.document("price"),
            "price_kind": ad.price.kind, "price_currency": ad.price.currency}


def task_text(schema: dict[str, Any] | None) -> str:
    """An ad's task schema in one line: each field, its JSON type, and whether it is required.

    ``history: array (required), window: integer``; `--json` prints the whole schema.
    """
    if schema is None:
        return "(not stated)"
    properties = schema.get("properties")
    if not isinstance(properties, dict):
        return str(schema.get("type", "any"))
    required = schema.get("required")
    needed = set(required) if isinstance(required, list) else set()
    return ", ".join(f"{name}: {_json_type(field)}" + (" (required)" if name in needed else "")
                     for name, field in properties.items())


def _json_type(field: Any) -> str:
    if not isinstance(field, dict):
        return "any"
    if isinstance(field.get("anyOf"), list):
        return " | ".join(_json_type(choice) for choice in field["anyOf"])
    if "enum" in field:
        return " | ".join(json.dumps(value) for value in field["enum"])
    return str(field.get("type", "object" if "$ref" in field else "any"))


def _read_task(path: str, flag: str = "--task") -> dict[str, Any]:
    try:
        task = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"{flag} {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise UsageError(f"{flag} {path}: not JSON ({exc})") from None
    if not isinstance(task, dict):
        raise UsageError(f"{flag} {path}: it must hold a JSON object")
    return task


def _market_buy(args: argparse.Namespace) -> int:
    from ..node.config import load_config

    Credits.parse(args.budget, "--budget")  # refused here, before the node is asked
    body: dict[str, Any] = {
        "agent": args.agent, "capability": args.capability, "task": _read_task(args.task),
        "budget": args.budget, "deadline": args.deadline, "where": args.where}
    if args.grant is not None:
        if args.use_purpose is None:
            raise UsageError("--grant needs --use-purpose: what the data is used for")
        body["use"] = {"grant": _read_task(args.grant, "--grant"), "action": args.use_action,
                       "purpose": args.use_purpose, "field": args.data_field}
    if args.admin is not None and args.token_file is None:
        raise UsageError("--admin needs --token-file (the node's data_dir/admin.token)")
    out = sys.stderr if args.json else sys.stdout

    async def run() -> dict[str, Any]:
        if args.config is not None:
            access = must_run(await reach(load_config(args.config)))
        else:
            access = explicit_access(args.admin, args.token_file)
        last: dict[str, Any] = {"event": "failed", "reason": "the node's answer broke off",
                                "attempts": []}
        async with stream(access, "/market/buy", body, timeout=args.deadline + 60) as events:
            async for event in events:
                _show_event(event, out)
                last = event
        return last

    last = asyncio.run(run())
    if args.json:
        print(json.dumps(last))
    return 0 if last.get("event") == "done" else 1


def _show_event(event: dict[str, Any], out: TextIO) -> None:
    """One progress line for a person."""
    kind = event.get("event")
    if kind == "sellers":
        found = event.get("found", [])
        text = f"found {len(found)} seller(s) of {event.get('capability')}"
    elif kind == "fallback":
        text = (f"the winner failed: asking the runner-up {event['seller']} to hold its bid of "
                f"{event['price']} credits")
    elif kind == "offers":
        text = "offers: " + ("; ".join(_offer_text(o) for o in event.get("offers", []))
                             or "none")
    elif kind == "agreement":
        text = (f"agreement {event['agreement_id'][:16]} with {event['seller']}: "
                f"{event['price']} credits, penalty {event['penalty']}, "
                f"latency ≤ {event['max_latency_ms']} ms"
                + (f" ({event['why']})" if event.get("why") else ""))
    elif kind == "delivery":
        text = ("delivered" if event.get("delivered") else
                f"not delivered: {event.get('detail') or 'no answer'}")
    elif kind == "receipt":
        text = f"receipt {event['receipt_id'][:16]}: {event['verdict']}"
    elif kind == "settled":
        text = (f"settled: paid {event['to_seller']} credits to the seller, "
                f"{event['to_buyer']} back to us"
                if event.get("verdict") == "met" else
                f"settled: {event['to_buyer']} credits back to us ({event.get('verdict')})")
    elif kind == "done":
        text = "\n".join([
            f"done: held {event['price']}, paid {event.get('paid', event['price'])}, "
            f"refunded {event.get('refunded', '0')} credits; seller {event['seller']}",
            *_declined_lines(event), f"result: {json.dumps(event.get('result'))}",
            *_provenance_lines(event)])
    elif kind == "failed":
        declined = {d["seller"] for d in event.get("declined", [])}
        reasons = [f"  {a['seller']}: {a['verdict']} {a.get('detail') or ''}".rstrip()
                   for a in event.get("attempts", [])
                   if not (a["verdict"] == "no_agreement" and a["seller"] in declined)]
        text = "\n".join([f"failed: {event.get('reason')}", *_declined_lines(event),
                          *reasons])
    else:
        text = json.dumps(event)
    print(text, file=out, flush=True)


def _offer_text(offer: dict[str, Any]) -> str:
    """One seller's standing in a round: its price, its decline, or its failure."""
    seller = f"{offer['seller'][:16]}…"
    if offer.get("price") is not None:
        latency = offer.get("latency_ms")
        return f"{seller} {offer['price']} credits" + (
            "" if latency is None else f", {latency:.0f} ms")
    reason = str(offer.get("declined"))
    detail = f": {offer['detail']}" if offer.get("detail") else ""
    verb = "failed" if reason.startswith("error:") else "declined"
    return f"{seller} {verb} ({reason}{detail})"


def _provenance_lines(event: dict[str, Any]) -> list[str]:
    """How the result was produced, as the seller signed it, or what is wrong with that."""
    problems = event.get("provenance_problems") or []
    record = (event.get("provenance") or {}).get("provenance")
    if problems or record is None:
        return [f"provenance: NOT VERIFIED: {problems[0] if problems else 'none sent'}"]
    model = record["model"]
    return [f"provenance: signed by the seller; model {model['name']} "
            f"(sha256 {model['file_hash'][:16]}…), code {record['code_version']}"]


def _declined_lines(event: dict[str, Any]) -> list[str]:
    """The sellers that declined during a purchase, each with its reason, one a line."""
    return [f"declined by {d['seller']}: {d['reason']}"
            + (f" ({d['detail']})" if d.get("detail") else "")
            for d in event.get("declined", [])]
