"""`aaex demo NAME`: the demos installed under the `aaex.demos` entry point group.

Each entry point names a module with `HELP`, `add_arguments(parser)` and `run(args) -> int`
(the supply-chain demo is ``aaex_examples.supply_chain.command``). The CLI knows no demo
by name and imports none of them until it builds its parser.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Any

GROUP = "aaex.demos"


def register(commands: Any) -> None:
    """Add `demo` with one subcommand per installed demo."""
    demo = commands.add_parser("demo", help="run an example market on this machine")
    demo_commands = demo.add_subparsers(dest="demo_command", required=True)
    for point in sorted(entry_points(group=GROUP), key=lambda p: p.name):
        module = point.load()
        sub = demo_commands.add_parser(point.name, help=module.HELP)
        module.add_arguments(sub)
        sub.set_defaults(run=module.run)

