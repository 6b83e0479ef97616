"""`aaex demo supply-chain`, registered with the CLI through the `aaex.demos` entry point.

The CLI lists whatever demos are installed under that group and knows none of them by name;
this module is light (argument definitions only) so that building the CLI's parser stays
fast. The demo itself, with numpy, statsmodels and PyVRP, is imported when it runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

HELP = "a planner buys forecasts and routes from four provider nodes"
DESCRIPTION = """\
A planner node (in this process) buys demand forecasts and truck routes from four provider
nodes (`aaex node run` children), each with its own key, ledger and LLM. The planner's budget
is deposited through its node's admin API, as `aaex account deposit` does. A forecaster is
killed mid-task and started again; at the end the summary shows both sides' books for each
provider and whether they agree.

The output folder keeps every run: a previous run's files there (keys, ledgers, logs,
configs, report, pictures) are moved to OUT/previous-<UTC time>/ first, never deleted.
The provider nodes die with the demo, even when it is killed (Linux: PR_SET_PDEATHSIG).
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The demo's options."""
    parser.description = DESCRIPTION
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--out", default="supply-chain-demo",
                        help="folder for the report, the pictures, configs, logs and ledgers; "
                             "a previous run there is moved to OUT/previous-<time>/")
    parser.add_argument("--stores", type=int, default=20)
    parser.add_argument("--groups", type=int, default=4, help="forecast subtasks")
    parser.add_argument("--zones", type=int, default=1,
                        help="routing subtasks (1: one solve of every store, the cheapest routes)")
    parser.add_argument("--trucks", type=int, default=3)
    parser.add_argument("--capacity", type=int, help="units per truck (default: from sales)")
    parser.add_argument("--llm", choices=["llamacpp", "none"], default="llamacpp",
                        help="the model every node runs (llamacpp: the CPU model)")
    parser.add_argument("--no-kill", action="store_true",
                        help="do not kill a provider mid-task")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def run(args: argparse.Namespace) -> int:
    """Run the demo with the parsed options; exit status 1 if the report shows a failure."""
    try:
        from .demo import (
            DEMO_STEPS,
            PLANNER_LOG,
            DemoOptions,
            failures,
            run_demo,
            set_aside_previous,
        )
        from .summary import render_summary
    except ImportError as exc:
        print(f"aaex: the demo needs the demo extra: pip install 'aaex-agents[cpu,demo]' "
              f"({exc})", file=sys.stderr)
        return 2
    from marketplace.cli.console import Progress
    from marketplace.cli.logs import log_to_file

    options = DemoOptions(out=Path(args.out), stores=args.stores, groups=args.groups,
                          zones=args.zones, trucks=args.trucks, capacity=args.capacity,
                          llm=args.llm, kill=not args.no_kill)
    moved = set_aside_previous(options.out.resolve())  # before the new log replaces the old
    if moved is not None:
        print(f"aaex: the previous run's files are now in {moved}", file=sys.stderr)
    log_to_file(options.out / PLANNER_LOG, args.verbose)
    with Progress(total=DEMO_STEPS, label="supply-chain demo") as progress:
        report = asyncio.run(run_demo(
            options, step=lambda text: progress.update(advance=1, status=text),
            note=progress.log))
    print(json.dumps(report) if args.json else render_summary(report))
    problems = failures(report)
    for problem in problems:
        print(f"aaex: {problem}", file=sys.stderr)
    return 1 if problems else 0
