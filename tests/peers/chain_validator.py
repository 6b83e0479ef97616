"""A validator in its own process on a shared dev chain, for the multi-process anvil test.

    python -m tests.peers.chain_validator RPC CONTRACT SEED_HEX CAPABILITY EPOCH WEIGHTS_JSON

Its chain account is derived from the Ed25519 identity seed, as a node's is. It commits
WEIGHTS (seller -> weight) in EPOCH's commit window, reveals them in the reveal window, then
reads every validator's revealed weights, computes the epoch's outputs from them, attests
their hash and waits for the epoch to be final. The test mines the chain from one window to
the next; this process only polls the chain's clock (every 50 ms, 60 s at most a window).
Lines on stdout: ``committed``, ``revealed``, ``attested <hash>``, ``final <hash>``.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import sys
import time

from aaex_agents.identity import Identity
from marketplace.consensus import (
    ChainClient,
    EpochOutputs,
    Phase,
    RpcChain,
    chain_account,
)

WAIT = 60.0


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def outputs_from(revealed: dict[str, dict[str, int]]) -> EpochOutputs:
    """A stand-in for the consensus function: incentive is the sum of the weights a seller
    received, each validator that revealed earns one equal dividend share. Deterministic:
    every node that reads the same reveals computes the same outputs, in the same order."""
    sellers = sorted({s for weights in revealed.values() for s in weights}, key=str.lower)
    incentive = [sum(w.get(s, 0) for w in revealed.values()) for s in sellers]
    validators = sorted(revealed, key=str.lower)
    return EpochOutputs(sellers=tuple(sellers), incentive=tuple(incentive),
                        validators=tuple(validators), dividends=tuple(1 for _ in validators))


async def wait_for(client: ChainClient, epoch: int, phase: Phase) -> None:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        clock = await client.clock()
        if (clock.epoch, clock.phase) == (epoch, phase):
            return
        await asyncio.sleep(0.05)
    raise TimeoutError(f"the chain never reached epoch {epoch}, {phase.value} window")


async def main(rpc: str, contract: str, seed: str, capability: str, epoch: int,
               weights: dict[str, int]) -> None:
    account = chain_account(Identity(bytes.fromhex(seed)))
    salt = secrets.token_bytes(32)  # published with the reveal: never reuse a key here
    async with RpcChain(rpc) as chain:
        client = await ChainClient.connect(chain, contract, account)
        await wait_for(client, epoch, Phase.COMMIT)
        await client.commit_weights(capability, epoch, weights, salt)
        say("committed")
        await wait_for(client, epoch, Phase.REVEAL)
        await client.reveal_weights(capability, epoch, weights, salt)
        say("revealed")
        await wait_for(client, epoch, Phase.ATTEST)
        digest = outputs_from(await client.revealed_weights(capability, epoch)).digest()
        await client.attest(capability, epoch, digest)
        say(f"attested {digest.hex()}")
        deadline = time.monotonic() + WAIT
        while (final := await client.finalized_hash(capability, epoch)) is None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"epoch {epoch} never became final")
            await asyncio.sleep(0.05)
        say(f"final {final.hex()}")


if __name__ == "__main__":
    rpc, contract, seed, capability, epoch, weights = sys.argv[1:7]
    asyncio.run(main(rpc, contract, seed, capability, int(epoch), json.loads(weights)))
