"""Three validator nodes and four seller nodes on one anvil dev chain, as separate processes.

Each node is an `aaex node run` process with its own key, config and ledger. The sellers
sell forecasts; one of them, the cheapest, turns partly dishonest after a while (every fifth
answer wrong: tests/peers/probe_sellers.py). The validator nodes have a ``[chain]`` section
naming the contract: each validator probes every seller through its node's market (real
purchases on its node's books, funded through `aaex account deposit`), commits and reveals
its weights on the contract, computes Yuma consensus from what the chain holds, attests,
and the first to see the epoch final has its emission minted. The test only mines a block
every `BLOCK_S` seconds and watches, through the admin API, the CLI and the chain:

- within 5 epochs of the lying, the liar's incentive falls by half or more, honest sellers
  keep at least 90% of theirs, and a customer whose awards read the consensus stops
  choosing the liar;
- every epoch the three validators attested the same hash, and it is the final one;
- a validator that reveals other weights than it committed is refused by the contract;
- the emission is conserved to the micro-credit: every credit the contract ever granted or
  minted is in some account's balance, stake or unbonding.

Marked `anvil` (skips, saying why, without an anvil binary; .ci/run installs one).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from aaex_agents.identity import Identity
from aaex_agents.money import Credits
from marketplace.consensus import ChainParams, ChainRefused, DevChain, Phase, chain_account
from marketplace.consensus.chain_client import ChainClient, ChainClock
from marketplace.node.accounts import agent_key_path, load_or_create_identity
from marketplace.node.config import load_config
from tests.chain_kit import ChainKit, anvil_or_skip, open_anvil, open_test_chain
from tests.node_kit import NodeProcess, aaex, running_node

pytestmark = pytest.mark.anvil
CAP = "forecast.demand"
BLOCK_S = 0.25
PARAMS = ChainParams(epoch_length=60, commit_blocks=32, reveal_blocks=12, unbond_delay=20,
                     emission_per_epoch=Credits(1_000_000_007))
"""15 s epochs at a block every 0.25 s: 8 s to probe and commit, 3 s to reveal."""
LIE_AFTER_S = 40.0
STAKE = 500
EPOCHS_AFTER = 5

SELLER = """
[node]
http = "127.0.0.1:0"
admin = "127.0.0.1:0"
p2p = ["/ip4/127.0.0.1/tcp/0"]
{seeds}
drain_timeout = 1

[[agents]]
name = "forecaster"
class = "{cls}"
settings = {{ cost = {cost}{extra} }}
"""

VALIDATOR = """
[node]
http = "127.0.0.1:0"
admin = "127.0.0.1:0"
p2p = ["/ip4/127.0.0.1/tcp/0"]
seeds = ["{seed}"]
drain_timeout = 1

[market]
negotiation_window = 3.0

[[agents]]
name = "validator"
class = "marketplace:Validator"
settings = {{ capabilities = ["{cap}"], stake = {stake}, probes_per_epoch = 5, budget = "0.5" }}

[[agents]]
name = "shopper"
class = "marketplace:Buyer"

[chain]
rpc = "{rpc}"
contract = "{contract}"
block_seconds = {block_s}

[chain.sellers."{cap}"]
{sellers}
"""


@asynccontextmanager
async def making_blocks(chain: ChainKit) -> AsyncIterator[None]:
    """A block every `BLOCK_S` seconds, as a live chain makes them."""
    async def make() -> None:
        while True:
            await asyncio.sleep(BLOCK_S)
            await chain.backend.mine(1)

    task = asyncio.create_task(make())
    try:
        yield
    finally:
        task.cancel()


def _key(folder: Path, name: str) -> Identity:
    """The agent's identity, made where its node will read it, before the node starts."""
    toml = folder / "bare.toml"
    toml.write_text('[node]\np2p = []\n')
    return load_or_create_identity(agent_key_path(load_config(toml), name))


async def _consensus(url: str, epoch: int) -> dict[str, float] | None:
    async with aiohttp.ClientSession() as http, \
            http.get(f"{url}/consensus", params={"epoch": str(epoch)}) as response:
        document = await response.json()
    if CAP not in document:
        return None
    return {s["seller"]: s["incentive"] for s in document[CAP]["sellers"]}


async def _buy(capsys: pytest.CaptureFixture[str], toml: Path, task: Path) -> str:
    code, out, err = await aaex(capsys, "market", "buy", CAP, "--config", str(toml), "--agent",
                                "shopper", "--task", str(task), "--budget", "1",
                                "--deadline", "20", "--json")
    assert code == 0, err
    return str(json.loads(out)["seller"])


async def _phase(client: ChainClient, phase: Phase) -> ChainClock:
    """The chain's clock once its next transaction falls in `phase` (a block at a time)."""
    for _ in range(int(2 * PARAMS.epoch_length)):
        clock = await client.clock()
        if clock.phase is phase:
            return clock
        await asyncio.sleep(BLOCK_S)
    raise AssertionError(f"the chain never reached a {phase.value} window")


async def _refused_reveal(client: ChainClient, sellers: list[str]) -> str:
    """Commit weights, then reveal other ones: the contract must refuse the reveal."""
    clock = await _phase(client, Phase.COMMIT)
    epoch, salt = clock.epoch, secrets.token_bytes(32)
    committed = dict.fromkeys(sellers, 100)
    await client.commit_weights(CAP, epoch, committed, salt)
    assert (await _phase(client, Phase.REVEAL)).epoch == epoch
    changed = {**committed, sellers[0]: 65_535}
    with pytest.raises(ChainRefused) as refused:
        await client.reveal_weights(CAP, epoch, changed, salt)
    return refused.value.reason


@pytest.mark.timeout(600)
async def test_validators_on_a_dev_chain_catch_a_seller_wrong_on_a_fifth_of_probes(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    binary = anvil_or_skip()
    folders = {name: tmp_path / name for name in
               ("liar", "honest1", "honest2", "honest3", "v1", "v2", "v3")}
    for folder in folders.values():
        folder.mkdir()
    sellers = {name: _key(folders[name], "forecaster")
               for name in ("liar", "honest1", "honest2", "honest3")}
    validators = {name: _key(folders[name], "validator") for name in ("v1", "v2", "v3")}
    task = tmp_path / "task.json"
    task.write_text(json.dumps({"history": [float(10 + d % 7) for d in range(28)],
                                "horizon": 7}))
    async with open_anvil(binary, tmp_path / "anvil.log") as url, DevChain(url) as backend, \
            AsyncExitStack() as stack:
        chain = await open_test_chain(backend, PARAMS)
        await chain.admin.register_capability(CAP)
        for identity in sellers.values():
            await chain.admin.register_seller(CAP, chain_account(identity).address)
        for identity in validators.values():
            await chain.account(credits=STAKE, stake=STAKE, key=chain_account(identity))
        tester = await chain.account(credits=1, stake=1)  # the one that tries to cheat
        await stack.enter_async_context(making_blocks(chain))

        nodes: dict[str, NodeProcess] = {}
        seed = ""
        for name in sellers:
            liar = name == "liar"
            toml = folders[name] / "node.toml"
            toml.write_text(SELLER.format(
                seeds=f'seeds = ["{seed}"]' if seed else "",
                cls="tests.peers.probe_sellers:WrongOnAFifth",
                cost=0.05 if liar else 0.1,
                extra=f", lie_after = {LIE_AFTER_S}" if liar else ", lie_after = 1e9"))
            nodes[name] = await stack.enter_async_context(running_node(toml))
            seed = seed or nodes[name].ready["p2p"][0]
        mapping = "\n".join(f'"{chain_account(i).address}" = "{i.address}"'
                            for i in sellers.values())
        for name in validators:
            toml = folders[name] / "node.toml"
            toml.write_text(VALIDATOR.format(
                seed=seed, cap=CAP, stake=STAKE, rpc=url,
                contract=chain.admin.contract_address, block_s=BLOCK_S, sellers=mapping))
            nodes[name] = await stack.enter_async_context(running_node(toml))
            for agent in ("validator", "shopper"):
                code, _, err = await aaex(capsys, "account", "deposit", "--config", str(toml),
                                          agent, "100")
                assert code == 0, err
        admin = {name: nodes[name].ready["admin"] for name in validators}
        v1_toml = folders["v1"] / "node.toml"

        # While the liar is honest and cheapest, a customer reading the consensus picks it.
        before = [await _buy(capsys, v1_toml, task) for _ in range(3)]
        lying = await nodes["liar"].event("lying_from_now", timeout=LIE_AFTER_S + 60)
        assert lying
        lie_epoch = (await chain.admin.clock()).epoch
        refusal = await _refused_reveal(tester, sorted(
            chain_account(i).address for i in sellers.values()))
        history: dict[int, dict[str, float]] = {}
        last = lie_epoch + EPOCHS_AFTER
        async with asyncio.timeout((EPOCHS_AFTER + 3) * PARAMS.epoch_length * BLOCK_S * 2):
            while last not in history:
                for epoch in range(max(0, lie_epoch - 2), last + 1):
                    if epoch not in history and (got := await _consensus(admin["v1"], epoch)):
                        history[epoch] = got
                await asyncio.sleep(1)
        after = [await _buy(capsys, v1_toml, task) for _ in range(3)]

        liar_address = sellers["liar"].address
        honest = [sellers[n].address for n in ("honest1", "honest2", "honest3")]
        names = {i.address: n for n, i in sellers.items()}
        print("lie epoch", lie_epoch, "history", json.dumps(
            {e: {names[a]: v for a, v in h.items()} for e, h in sorted(history.items())}))
        baseline_epoch = max(e for e in history if e < lie_epoch)
        baseline = history[baseline_epoch]
        window = [history[e] for e in range(lie_epoch + 1, last + 1) if e in history]
        assert min(h[liar_address] for h in window) <= 0.5 * baseline[liar_address], history
        for seller in honest:
            assert all(h[seller] >= 0.9 * baseline[seller] for h in window), history
        assert before.count(liar_address) >= 2 and liar_address not in after, (before, after)
        # The three validators' nodes hold the same consensus, and attested the same hash.
        for name in ("v2", "v3"):
            assert await _consensus(admin[name], last) == history[last]
        accounts = [chain_account(i).address for i in validators.values()]
        for epoch in range(baseline_epoch, last + 1):
            final = await chain.admin.finalized_hash(CAP, epoch)
            attested = [await chain.admin.attestation(CAP, epoch, a) for a in accounts]
            print("epoch", epoch, "final", final and final.hex()[:8],
                  [a and a.hex()[:8] for a in attested], file=sys.stderr)
        for name in validators:
            for e in nodes[name].events:
                if e.get("level") in ("WARNING", "ERROR"):
                    print(name, e.get("time", ""), e.get("message"), file=sys.stderr)
        for epoch in range(baseline_epoch, last + 1):
            final = await chain.admin.finalized_hash(CAP, epoch)
            attested = [await chain.admin.attestation(CAP, epoch, a) for a in accounts]
            assert final is not None and set(attested) == {final}, epoch
        assert refusal == "reveal does not match commitment"
        # Every credit granted or minted is in an account: emission conserved to the unit.
        everyone = [chain.admin.address, tester.address, *accounts,
                    *(chain_account(i).address for i in sellers.values())]
        held = 0
        for account in everyone:
            state = await chain.admin.account_state(account)
            held += state.balance.micro + state.stake.micro + state.unbonding.micro
        assert held == (await chain.admin.total_supply()).micro
        paid = [e for e in range(baseline_epoch, last + 1)
                if await chain.admin.distributed(CAP, e)]
        assert paid, "no epoch's emission was minted"
        status: Any = json.loads((await aaex(capsys, "validator", "status", "--config",
                                             str(v1_toml), "--json"))[1])
        assert status[0]["chain"]["stake_on_chain"] == str(Credits(STAKE))
