"""Recompile the consensus contract with PyPI's `vyper` and rewrite the committed artifact.

Run `python -m marketplace.consensus.compile` after editing `contracts/consensus.vy`; only
this module needs the compiler (a dev dependency), the market itself reads the JSON.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

from .artifact import ARTIFACT, EVM_VERSION, Artifact, source_text


def compile_contract() -> Artifact:
    """Compile the shipped source with the installed vyper, for `EVM_VERSION`."""
    import vyper
    from vyper.compiler import compile_code
    from vyper.compiler.settings import Settings

    source = source_text()
    out = compile_code(source, output_formats=["abi", "bytecode"],
                       settings=Settings(evm_version=EVM_VERSION))
    return Artifact(vyper=vyper.__version__, evm_version=EVM_VERSION,
                    source_sha256=hashlib.sha256(source.encode()).hexdigest(),
                    abi=out["abi"], bytecode=out["bytecode"])


def main() -> None:
    """Write `contracts/consensus.json` beside the source."""
    artifact = compile_contract()
    target = Path(__file__).parent / "contracts" / ARTIFACT
    target.write_text(json.dumps(dataclasses.asdict(artifact), indent=1) + "\n")


if __name__ == "__main__":
    main()
