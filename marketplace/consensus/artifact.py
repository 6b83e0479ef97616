"""The compiled consensus contract, as shipped: ABI and bytecode read from a committed JSON.

Users need no compiler: `contracts/consensus.json` is what PyPI's `vyper` (the version it
names, pinned in the dev extra) made of `contracts/consensus.vy`. `python -m
marketplace.consensus.compile` rewrites it after the source changes, and a test recompiles
to check that the committed bytecode is what the source gives.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from typing import Any

SOURCE = "consensus.vy"
ARTIFACT = "consensus.json"
EVM_VERSION = "shanghai"
"""No Cancun opcodes (MCOPY, transient storage): the bytecode runs on older consortium chains."""


@dataclass(frozen=True, kw_only=True)
class Artifact:
    """A compiled contract: what deploying and calling it needs."""

    vyper: str
    """The compiler version that produced `bytecode`."""
    evm_version: str
    """The EVM fork the bytecode targets."""
    source_sha256: str
    """SHA-256 of the Vyper source it was compiled from, to spot a stale artifact."""
    abi: list[dict[str, Any]]
    """The contract's ABI, as web3 takes it."""
    bytecode: str
    """Deployment bytecode, 0x-prefixed hex."""


def source_text() -> str:
    """The contract's Vyper source, shipped as package data beside this module."""
    return (files(__package__) / "contracts" / SOURCE).read_text()


@cache
def load_artifact() -> Artifact:
    """The committed artifact (read once per process)."""
    document = json.loads((files(__package__) / "contracts" / ARTIFACT).read_text())
    return Artifact(**document)
