"""The chain client's edges: the shipped artifact, node accounts, backend choice, failures."""

from __future__ import annotations

import asyncio
import hashlib
import socket

import pytest
from eth_account import Account

from aaex_agents.errors import UsageError
from aaex_agents.identity import Identity
from aaex_agents.money import Credits
from marketplace.consensus import (
    ChainClient,
    ChainConfig,
    ChainParams,
    ChainUnavailable,
    EmbeddedChain,
    EpochOutputs,
    RpcChain,
    backend_for,
    capability_id,
    chain_account,
    load_artifact,
    open_chain,
)
from marketplace.consensus import (
    chain_weights_commitment as weights_commitment,
)
from marketplace.consensus.artifact import source_text
from marketplace.consensus.chain_encoding import MAX_SELLERS
from marketplace.consensus.compile import compile_contract
from tests.conftest import ROOT


def test_the_committed_artifact_is_what_the_pinned_vyper_makes_of_the_source() -> None:
    shipped = load_artifact()
    assert shipped.source_sha256 == hashlib.sha256(source_text().encode()).hexdigest(), \
        "consensus.vy changed: run `python -m marketplace.consensus.compile`"
    fresh = compile_contract()
    assert fresh.vyper == shipped.vyper, "recompile with the vyper version the artifact names"
    assert (fresh.bytecode, fresh.abi) == (shipped.bytecode, shipped.abi)


def test_a_node_always_has_the_same_chain_account_and_only_it() -> None:
    seed = bytes(range(32))
    account = chain_account(Identity(seed))
    assert account.address == chain_account(Identity(seed)).address
    assert account.key != seed
    assert chain_account(Identity.generate()).address != account.address


def test_the_config_value_picks_the_backend() -> None:
    assert isinstance(backend_for(), EmbeddedChain)
    assert isinstance(backend_for("embedded"), EmbeddedChain)
    assert isinstance(backend_for("http://127.0.0.1:8545"), RpcChain)
    with pytest.raises(UsageError, match="neither 'embedded' nor an http"):
        backend_for("ws://somewhere")


def test_chain_params_refuse_an_epoch_without_attestation_window() -> None:
    with pytest.raises(UsageError, match="no block is left for attestations"):
        ChainParams(epoch_length=20, commit_blocks=10, reveal_blocks=10)


async def test_a_production_chain_neither_funds_nor_mines() -> None:
    async with RpcChain("http://127.0.0.1:9") as chain:
        with pytest.raises(UsageError, match=r"fund .* by a transfer from the operator's"):
            await chain.fund("0x" + "11" * 20, 1)
        with pytest.raises(UsageError, match="blocks come at its own pace"):
            await chain.mine(1)


async def test_a_chain_that_does_not_answer_is_unavailable() -> None:
    with socket.socket() as probe:  # a loopback port with nothing listening
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with RpcChain(f"http://127.0.0.1:{port}") as chain:
        with pytest.raises(ChainUnavailable, match="no consensus contract answers"):
            await ChainClient.connect(chain, "0x" + "22" * 20, Account.create(), timeout=5)


async def test_an_endpoint_that_never_answers_is_unavailable_after_the_rpc_timeout() -> None:
    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(-1)  # read the request, answer nothing until the client hangs up
        writer.close()

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server, RpcChain(f"http://127.0.0.1:{port}", timeout=0.5) as chain:
        with pytest.raises(ChainUnavailable, match="no consensus contract answers"):
            await asyncio.wait_for(
                ChainClient.connect(chain, "0x" + "22" * 20, Account.create(), timeout=60),
                timeout=30)


def test_the_docs_example_runs(capsys: pytest.CaptureFixture[str]) -> None:
    text = (ROOT / "docs" / "consensus.md").read_text()
    section = text[text.index("### The client and its three backends"):]
    start = section.index("```python\n") + 10
    code = section[start:section.index("\n```", start)]
    exec(compile(code, "docs/consensus.md", "exec"), {"__name__": "docs_example"})  # noqa: S102
    assert "stake=Credits(5)" in capsys.readouterr().out


def test_the_client_knows_the_contracts_bounds() -> None:
    assert f"MAX_SELLERS: constant(uint256) = {MAX_SELLERS}\n" in source_text()
    too_many = {Account.create().address: 1 for _ in range(MAX_SELLERS + 1)}
    with pytest.raises(UsageError, match="65 sellers in one reveal; the contract takes at most"):
        weights_commitment(capability_id("x"), 0, Account.create().address, too_many, bytes(32))
    with pytest.raises(UsageError, match="sellers and incentive differ in length"):
        EpochOutputs(sellers=("0x" + "11" * 20,), incentive=(), validators=(), dividends=())


def test_a_malformed_address_is_a_one_line_usage_error() -> None:
    with pytest.raises(UsageError, match="seller 'not-an-address' is not an Ethereum address"):
        weights_commitment(capability_id("x"), 0, Account.create().address,
                           {"not-an-address": 1}, bytes(32))
    with pytest.raises(UsageError, match="EpochOutputs: entry '0x12' is not an Ethereum"):
        EpochOutputs(sellers=("0x12",), incentive=(1,), validators=(), dividends=())


async def test_the_embedded_evm_works_off_the_event_loop() -> None:
    async with EmbeddedChain() as chain:
        await chain.web3.eth.block_number
        order: list[str] = []
        asyncio.get_running_loop().call_soon(order.append, "the loop ran")
        await chain.web3.eth.block_number  # a request that ran inline would finish first
        order.append("request answered")
        assert order == ["the loop ran", "request answered"]


async def test_open_chain_deploys_on_the_embedded_chain_with_the_node_as_admin() -> None:
    node = chain_account(Identity.generate())
    async with open_chain(ChainConfig(), node) as chain:
        assert (await chain.clock()).epoch == 0
        await chain.grant(node.address, Credits(10))  # only the admin may
        assert (await chain.account_state()).balance == Credits(10)


def test_a_chain_config_names_what_is_wrong() -> None:
    with pytest.raises(UsageError, match=r"chain.contract is required with an RPC chain"):
        ChainConfig(rpc="http://127.0.0.1:8545")
    with pytest.raises(UsageError, match=r"chain.rpc 'ws://x' is neither 'embedded' nor"):
        ChainConfig(rpc="ws://x", contract="0x" + "11" * 20)
    with pytest.raises(UsageError, match=r"chain.contract '0xnope' is not an Ethereum address"):
        ChainConfig(contract="0xnope")
    with pytest.raises(UsageError, match=r"chain.timeout must be positive"):
        ChainConfig(timeout=0)
