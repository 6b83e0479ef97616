"""`aaex keys new|show`: agent key files (0600, optionally sealed with a passphrase)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from aaex_agents import Identity


def register(commands: Any) -> None:
    """Add `keys` to the CLI's subcommands."""
    keys = commands.add_parser("keys", help="create and inspect agent keys")
    key_commands = keys.add_subparsers(dest="keys_command", required=True)
    new = key_commands.add_parser("new", help="generate a key and write it with mode 0600")
    new.add_argument("path")
    new.add_argument("--force", action="store_true", help="replace an existing file")
    show = key_commands.add_parser("show", help="print the address of a key file")
    show.add_argument("path")
    for sub in (new, show):
        sub.add_argument("--passphrase-env", metavar="VAR",
                         help="seal/open the key with the passphrase in environment variable VAR")
        sub.add_argument("--json", action="store_true", help="machine-readable output")
    new.set_defaults(run=_keys_new)
    show.set_defaults(run=_keys_show)



def _passphrase(variable: str | None) -> str | None:
    if variable is None:
        return None
    value = os.environ.get(variable)
    if value is None:
        raise SystemExit(f"aaex: --passphrase-env names {variable}, but it is not set")
    return value


def _keys_new(args: argparse.Namespace) -> int:
    if os.path.exists(args.path) and not args.force:
        print(f"aaex: {args.path} already exists; pass --force to replace it", file=sys.stderr)
        return 2
    identity = Identity.generate()
    path = identity.save(args.path, passphrase=_passphrase(args.passphrase_env),
                         overwrite=args.force)
    if args.json:
        print(json.dumps({"address": identity.address, "path": str(path)}))
    else:
        print(f"address  {identity.address}\nkey file {path} (mode 0600"
              f"{', sealed' if args.passphrase_env else ''})")
    return 0


def _keys_show(args: argparse.Namespace) -> int:
    identity = Identity.load(args.path, passphrase=_passphrase(args.passphrase_env))
    if args.json:
        print(json.dumps({"address": identity.address,
                          "public_key": identity.public_key.hex()}))
    else:
        print(f"address    {identity.address}\npublic key {identity.public_key.hex()}")
    return 0
