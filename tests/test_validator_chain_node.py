"""A node whose config has a ``[chain]`` section runs its validator on the consensus contract.

The embedded chain (py-evm in the node, which deploys the contract, funds and stakes its
validator and makes a block every 0.2 s): the validator probes a seller through the node's
market, commits and reveals on the contract, attests, the epoch becomes final and the
validator has its emission minted. Then the operator stakes, unstakes and withdraws through
`aaex validator`, and what the contract refuses comes back in one line.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest

from aaex_agents import Credits
from marketplace.consensus.chain_board import ChainBoard
from marketplace.consensus.chain_keys import chain_account
from marketplace.node.accounts import agent_key_path, load_or_create_identity
from marketplace.node.config import load_config
from marketplace.node.node import open_node
from marketplace.trade.validator import Validator
from tests.node_kit import ROOT, aaex
from tests.test_validator_node import poll

CAPABILITY = "forecast.demand"


def _toml(seller_account: str, seller_address: str) -> str:
    return f"""
[node]
http = "127.0.0.1:0"
admin = "127.0.0.1:0"
p2p = []
drain_timeout = 0

[[agents]]
name = "forecaster"
class = "tests.test_validators:SeasonalForecaster"
settings = {{ cost = 0.1 }}

[[agents]]
name = "validator"
class = "marketplace:Validator"
settings = {{ capabilities = ["{CAPABILITY}"], stake = 5, probes_per_epoch = 1, budget = "0.5" }}

[chain]
rpc = "embedded"
block_seconds = 0.2
epoch_blocks = 60
commit_blocks = 25
reveal_blocks = 10

[chain.sellers."{CAPABILITY}"]
"{seller_account}" = "{seller_address}"
"""


@pytest.mark.timeout(180)
async def test_a_validator_on_the_embedded_chain_finalizes_an_epoch_and_stakes_through_the_cli(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    toml = tmp_path / "node.toml"
    toml.write_text(_toml("0x" + "0" * 39 + "1", "aaex1placeholder"))
    seller = load_or_create_identity(agent_key_path(load_config(toml), "forecaster"))
    seller_account = chain_account(seller).address
    toml.write_text(_toml(seller_account, seller.address))
    config = load_config(toml)
    async with open_node(config) as node:
        validator = next(a for a in node.runtime.agents.values() if isinstance(a, Validator))
        assert isinstance(validator.board, ChainBoard)
        client = validator.board.client
        await node.ledger.deposit(validator.address, Credits.parse("20"))
        url = node.admin_url
        await poll(url + "/consensus", lambda d: CAPABILITY in d
                   and d[CAPABILITY]["sellers"][0]["incentive"] == 1.0, timeout=120)
        epoch = validator.last_epoch
        assert epoch is not None
        final = await client.finalized_hash(CAPABILITY, epoch)
        assert final is not None  # the validator holds all the stake: its attestation decides
        for _ in range(150):  # 30 s: the validator pays once the epoch is final
            if await client.distributed(CAPABILITY, epoch):
                break
            await asyncio.sleep(0.2)
        else:
            pytest.fail(f"epoch {epoch} was final but its emission was never minted")
        seller_state = await client.account_state(seller_account)
        assert seller_state.balance > Credits(0)  # 41% of the emission, all its incentive
        # The validator's account: 5 granted and staked at start, its dividends since.
        status = await poll(url + "/validators", lambda d: "chain" in d[0])
        chain_state = status[0]["chain"]
        assert chain_state["stake_on_chain"] == "5"
        earned = Credits.parse(chain_state["balance"], allow_zero=True)
        code, _, err = await aaex(capsys, "validator", "stake", "validator",
                                  str(earned + Credits.parse("1")), "--config", str(toml))
        assert code == 2 and one_line(err) == "aaex: the node refused (409): chain refused " \
            "stake: stake exceeds balance", err
        code, out, _ = await aaex(capsys, "validator", "stake", "validator", "0.1",
                                  "--config", str(toml), "--json")
        assert code == 0 and json.loads(out)["stake_on_chain"] == "5.1"
        code, out, _ = await aaex(capsys, "validator", "unstake", "validator", "0.1",
                                  "--config", str(toml))
        assert code == 0 and "5 credits staked" in out and "0.1 unbonding until block" in out
        code, _, err = await aaex(capsys, "validator", "withdraw", "validator",
                                  "--config", str(toml))
        assert code == 2 and one_line(err).endswith("withdraw: still unbonding"), err



def one_line(err: str) -> str:
    """The CLI's error line (the node's own log lines share stderr in this process)."""
    assert "Traceback" not in err
    [line] = [line for line in err.splitlines() if line.startswith("aaex:")]
    return line


async def test_aaex_validator_run_runs_a_node_hosting_a_validator_and_refuses_one_without(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plain = tmp_path / "plain.toml"
    plain.write_text('[node]\np2p = []\nhttp = "127.0.0.1:0"\nadmin = "127.0.0.1:0"\n\n'
                     '[[agents]]\nname = "shopper"\nclass = "marketplace:Buyer"\n')
    code, _, err = await aaex(capsys, "validator", "run", "--config", str(plain))
    assert code == 2 and one_line(err).endswith("no [[agents]] entry is a validator; add one "
                                                'with class = "marketplace:Validator" '
                                                "(docs/consensus.md)"), err
    toml = tmp_path / "node.toml"
    toml.write_text(_toml("0x" + "0" * 39 + "1", "aaex1unused"))
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "marketplace.cli", "validator", "run", "--config", str(toml),
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    try:
        assert process.stdout is not None
        ready = json.loads(await asyncio.wait_for(process.stdout.readline(), 60))
        assert ready["ready"] is True
        code, out, err = await aaex(capsys, "validator", "status", "--config", str(toml),
                                    "--json")
        assert code == 0, err
        assert json.loads(out)[0]["chain"]["stake_on_chain"] == "5"  # the sandbox staked it
    finally:
        process.terminate()
        assert await asyncio.wait_for(process.wait(), 30) == 0
