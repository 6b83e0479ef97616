"""``aaex consensus show`` and ``aaex validator status``: the validators and their consensus.

    aaex consensus show --config node.toml | --admin URL [--epoch N] [--json]
    aaex validator run --config node.toml
    aaex validator status --config node.toml | --admin URL [--json]
    aaex validator stake|unstake --config node.toml VALIDATOR AMOUNT [--json]
    aaex validator withdraw --config node.toml VALIDATOR [--json]
    aaex validator arbitrate --config node.toml VALIDATOR EVIDENCE --task TASK --out DECISION

Asks the running node (``GET /consensus``): per capability, the epoch and every seller's
incentive (its share of the emission) and quality (incentive over the best seller's, which
the node's awards blend with receipt reputation; docs/consensus.md). ``validator status``
asks ``GET /validators``: each validator the node hosts, its stake, the last epoch it
computed and each seller's probe score and moving average (and, on a chain, its
account's credits there). ``stake``, ``unstake`` and ``withdraw`` move a validator's credits
on the chain (``[chain]`` in the node's config) through the node, which signs as the
validator's chain account.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path
from typing import Any

from aaex_agents.errors import UsageError
from aaex_agents.money import Credits

from .admin_client import explicit_access, must_run, reach, request
from .console import render_table
from .files import read_json_file


def register(commands: Any) -> None:
    """Add `consensus` to the CLI's subcommands."""
    group = commands.add_parser("consensus", help="the validators' consensus on sellers")
    sub = group.add_subparsers(dest="consensus_command", required=True)
    show = sub.add_parser("show", help="each seller's incentive and quality, per capability")
    through = show.add_mutually_exclusive_group(required=True)
    through.add_argument("--config", help="the running node's TOML file")
    through.add_argument("--admin", help="the running node's admin URL")
    show.add_argument("--epoch", type=int, help="an epoch the node still keeps "
                      "(default: the latest)")
    show.add_argument("--json", action="store_true", help="machine-readable output")
    show.set_defaults(run=_show)
    validator = commands.add_parser("validator", help="the validators this node hosts")
    vsub = validator.add_subparsers(dest="validator_command", required=True)
    status = vsub.add_parser("status", help="stake, last epoch and scores of each validator")
    through = status.add_mutually_exclusive_group(required=True)
    through.add_argument("--config", help="the running node's TOML file")
    through.add_argument("--admin", help="the running node's admin URL")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(run=_status)
    run = vsub.add_parser("run", help="run the node that hosts the validator(s), until "
                          "SIGTERM (a node run that refuses a config without a validator)")
    run.add_argument("--config", required=True, help="the node's TOML file")
    run.set_defaults(run=_run)
    arbitrate = vsub.add_parser("arbitrate", help="as the arbiter a disputed per-token sale "
                                "names, re-execute its task and sign the decision")
    arbitrate.add_argument("agent", help="the validator's name in the config, or its address")
    arbitrate.add_argument("evidence", help="the dispute's bundle (aaex dispute export)")
    arbitrate.add_argument("--task", required=True, help="the sale's task, as JSON")
    arbitrate.add_argument("--config", required=True, help="the running node's TOML file")
    arbitrate.add_argument("--out", required=True, help="where to write the signed decision")
    arbitrate.set_defaults(run=_arbitrate)
    for action, verb in (("stake", "stake credits on the chain (they vote from next epoch)"),
                         ("unstake", "start unbonding staked credits"),
                         ("withdraw", "take back the credits that have unbonded")):
        move = vsub.add_parser(action, help=verb)
        move.add_argument("agent", help="the validator's name in the config, or its address")
        if action != "withdraw":
            move.add_argument("amount", help="credits, e.g. 10 or 2.5")
        move.add_argument("--config", required=True, help="the running node's TOML file")
        move.add_argument("--json", action="store_true", help="machine-readable output")
        move.set_defaults(run=_move, action=action)


def _ask(args: argparse.Namespace, path: str, params: dict[str, str] | None = None) -> Any:
    from ..node.config import load_config

    async def ask() -> Any:
        if args.config is not None:
            access = must_run(await reach(load_config(args.config)))
        else:
            access = explicit_access(args.admin, None)
        return await request(access, "GET", path, params=params)
    return asyncio.run(ask())


def _status(args: argparse.Namespace) -> int:
    validators = _ask(args, "/validators")
    if args.json:
        print(json.dumps(validators))
        return 0
    if not validators:
        print("this node hosts no validator")
        return 0
    for v in validators:
        epoch = "none yet" if v["last_epoch"] is None else v["last_epoch"]
        print(f"{v['name']} ({v['address']}): stake {v['stake']} credits, "
              f"{', '.join(v['capabilities'])}, last epoch {epoch}")
        for capability, scored in v["scored"].items():
            print(render_table([f"{capability} seller (epoch {scored['epoch']})", "probes",
                                "score", "average"],
                               [(s["seller"], s["probes"], s["score"], s["average"])
                                for s in scored["sellers"]], align="lrrr"))
    return 0


def _run(args: argparse.Namespace) -> int:
    """`aaex node run`, once the config is seen to host a validator."""
    from ..node.config import load_config
    from ..trade.validator import Validator
    from .nodes import node_run

    config = load_config(args.config)
    if not any(issubclass(spec.load_class(), Validator) for spec in config.agents):
        raise UsageError(f"{args.config}: no [[agents]] entry is a validator; add one with "
                         "class = \"marketplace:Validator\" (docs/consensus.md)")
    return node_run(args)


def _arbitrate(args: argparse.Namespace) -> int:
    """Have the node's validator re-execute the sale and sign a decision (a file)."""
    from ..node.config import load_config

    body = {"agent": args.agent, "evidence": read_json_file(args.evidence, "EVIDENCE"),
            "task": read_json_file(args.task, "--task")}

    async def send() -> Any:
        access = must_run(await reach(load_config(args.config)))
        return await request(access, "POST", "/validators/arbitrate", body=body, timeout=300)
    decision = asyncio.run(send())
    Path(args.out).write_text(json.dumps(decision, indent=1) + "\n", encoding="utf-8")
    resolution = decision["resolution"]
    print(f"decision signed: {resolution['to_seller']} credits to the seller, "
          f"{resolution['to_buyer']} back to the buyer ({resolution['note']}); written to "
          f"{args.out}; either party submits it with aaex dispute resolve --decision")
    return 0


def _move(args: argparse.Namespace) -> int:
    """Stake, unstake or withdraw through the running node (``POST /validators/...``)."""
    from ..node.config import load_config

    body = {"agent": args.agent}
    if args.action != "withdraw":
        body["amount"] = str(Credits.parse(args.amount, "AMOUNT"))

    async def send() -> Any:
        access = must_run(await reach(load_config(args.config)))
        return await request(access, "POST", f"/validators/{args.action}", body=body)
    state = asyncio.run(send())
    if args.json:
        print(json.dumps(state))
        return 0
    print(f"{state['agent']} ({state['account']}): {state['stake_on_chain']} credits staked, "
          f"{state['balance']} free, {state['unbonding']} unbonding"
          + (f" until block {state['unbond_at_block']}" if state["unbond_at_block"] else ""))
    return 0


def _show(args: argparse.Namespace) -> int:
    params = {} if args.epoch is None else {"epoch": str(args.epoch)}
    document: dict[str, Any] = _ask(args, "/consensus", params)
    if args.json:
        print(json.dumps(document))
        return 0
    if not document:
        print("no consensus computed" + ("" if args.epoch is None else
                                         f" for epoch {args.epoch}"))
        return 0
    for capability, standing in document.items():
        print(f"{capability}, epoch {standing['epoch']}")
        print(render_table(["seller", "incentive", "quality"],
                           [(s["seller"], f"{s['incentive']:.4f}", f"{s['quality']:.4f}")
                            for s in standing["sellers"]], align="lrr"))
    return 0
