"""AAEX agents and a real uAgents 0.26.1 agent (its own process), both ways, on loopback.

Needs ``AAEX_UAGENTS_PYTHON``: a Python with ``uagents==0.26.1`` (it cannot share a
virtualenv with libp2p); .ci/run makes one and runs ``pytest -m uagents``. Offline: the
uAgents agent resolves our agents from a rules table, and we reach it through
``UAgentsConfig.peers``.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from aaex_agents import Agent, Context, Message, handler, open_runtime
from aaex_agents.interop import (
    ChatAcknowledgement,
    ChatMessage,
    SchemaTable,
    UAgentsConfig,
    UAgentsGateway,
    serve_uagents,
)
from aaex_agents.runtime import Runtime
from marketplace.node.config import parse_config
from marketplace.node.node import open_node
from tests.peers.uagents_launch import (
    UAgentsPeer,
    free_port,
    run_uagents_peer,
    uagents_address_of_seed,
)

UAGENTS_PYTHON = os.environ.get("AAEX_UAGENTS_PYTHON", "")
pytestmark = [
    pytest.mark.uagents,
    pytest.mark.skipif(not UAGENTS_PYTHON, reason=(
        "AAEX_UAGENTS_PYTHON is not set: point it to a Python with uagents==0.26.1, e.g. "
        "python3 -m venv .venv-uagents && .venv-uagents/bin/pip install uagents==0.26.1")),
    pytest.mark.asyncio(loop_scope="module"),
]

# Schema digests of tests/peers/uagents_peer.py's Ping and Pong, computed by uagents-core.
PING_DIGEST = "model:64d85c393a306c7a194a88dd36b06bd8665dd84c9c1f078611b3ce7c614203bd"
PONG_DIGEST = "model:16222561a1092a38c50d8c8e9871711acb66518643953da53873131fbca16ca3"


class Ping(Message, type="tests.e2e_ping/1"):
    text: str


class Pong(Message, type="tests.e2e_pong/1"):
    text: str


SCHEMAS = SchemaTable({Ping: PING_DIGEST, Pong: PONG_DIGEST})


class Shop(Agent):
    """Chats ("echo: ..."), answers Ping, records what comes back."""

    def __init__(self, name: str) -> None:
        super().__init__(name=name)
        self.chats: list[tuple[str | None, str]] = []
        self.acks: list[str] = []
        self.pongs: list[str] = []
        self.changed = asyncio.Event()

    @handler
    async def on_chat(self, ctx: Context, msg: ChatMessage) -> ChatMessage | None:
        self.chats.append((ctx.sender, msg.text()))
        self.changed.set()
        return None if msg.text().startswith("echo:") else ChatMessage.of_text(
            "echo: " + msg.text())

    @handler
    async def on_ack(self, ctx: Context, msg: ChatAcknowledgement) -> None:
        self.acks.append(str(msg.acknowledged_msg_id))
        self.changed.set()

    @handler
    async def on_ping(self, ctx: Context, msg: Ping) -> Pong:
        return Pong(text="pong: " + msg.text)

    @handler
    async def on_pong(self, ctx: Context, msg: Pong) -> None:
        self.pongs.append(msg.text)
        self.changed.set()


class Quiet(Agent):
    """Has no chat handler."""


@dataclass
class World:
    peer: UAgentsPeer
    alice: Shop  # behind a gateway that asks in sync mode
    carol: Shop  # behind one that asks in async mode
    quiet: Quiet
    sync_gw: UAgentsGateway
    async_gw: UAgentsGateway
    sync_rt: Runtime
    async_rt: Runtime

    def context(self, agent: Agent) -> Context:
        return (self.async_rt if agent is self.carol else self.sync_rt).context(agent)


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def world() -> AsyncIterator[World]:
    alice, carol, quiet = Shop("alice"), Shop("carol"), Quiet(name="Quiet")
    sync_gw = UAgentsGateway(UAgentsConfig(schemas=SCHEMAS))
    async_gw = UAgentsGateway(UAgentsConfig(schemas=SCHEMAS, ask_mode="async"))
    async with open_runtime([alice, quiet], gateways=[sync_gw]) as rt_sync, \
            open_runtime([carol], gateways=[async_gw]) as rt_async, \
            serve_uagents(sync_gw) as sync_url, serve_uagents(async_gw) as async_url:
        rules = {sync_gw.address_of(alice): sync_url, sync_gw.address_of(quiet): sync_url,
                 async_gw.address_of(carol): async_url}
        async with run_uagents_peer(UAGENTS_PYTHON, seed="aaex e2e peer", rules=rules) as peer:
            sync_gw.add_peer(peer.address, peer.endpoint)
            async_gw.add_peer(peer.address, peer.endpoint)
            yield World(peer, alice, carol, quiet, sync_gw, async_gw, rt_sync, rt_async)


async def until(event: asyncio.Event, check: Callable[[], Any]) -> None:
    async with asyncio.timeout(20):
        while not check():
            event.clear()
            if not check():
                await event.wait()


async def peer_log_until(peer: UAgentsPeer, check: Callable[[list[dict[str, Any]]], bool]
                         ) -> list[dict[str, Any]]:
    """Poll the peer's log (it is another process) until `check` holds, at most 20 s."""
    async with asyncio.timeout(20):
        while not check(entries := await peer.log()):  # noqa: ASYNC110 - another process
            await asyncio.sleep(0.05)
    return entries


@pytest.mark.parametrize("sync", [False, True], ids=["async", "sync"])
async def test_uagents_asks_aaex_ping(world: World, sync: bool) -> None:
    to = world.sync_gw.address_of(world.alice)
    result = await world.peer.command(to=to, kind="ping", text=f"hi {sync}", sync=sync)
    assert result["status"] == "ok", result
    assert (result["reply_kind"], result["reply_text"]) == ("pong", f"pong: hi {sync}")


@pytest.mark.parametrize("sync", [False, True], ids=["async", "sync"])
async def test_uagents_chats_with_aaex(world: World, sync: bool) -> None:
    to = world.sync_gw.address_of(world.alice)
    text = f"hello {'sync' if sync else 'async'}"
    result = await world.peer.command(to=to, kind="chat", text=text, sync=sync)
    assert (result["status"], result["reply_kind"]) == ("ok", "ack"), result
    await until(world.alice.changed, lambda: (world.peer.address, text) in world.alice.chats)
    # Our answer reached the uAgents agent's chat handler, and it acknowledged it.
    entries = await peer_log_until(world.peer, lambda log: any(
        e["kind"] == "chat" and e["text"] == f"echo: {text}" for e in log))
    answer = next(e for e in entries if e["text"] == f"echo: {text}")
    assert answer["sender"] == to
    await until(world.alice.changed, lambda: len(world.alice.acks) >= 1)


async def test_aaex_asks_uagents_in_sync_and_async_mode(world: World) -> None:
    for agent in (world.alice, world.carol):
        reply = await world.context(agent).ask(world.peer.address, Ping(text=agent.name),
                                               reply_type=Pong)
        assert reply == Pong(text=f"pong: {agent.name}")
    assert world.async_gw.metrics.received["uagents"] >= 1  # carol's reply came to /submit


async def test_aaex_sends_to_uagents_and_gets_the_answer_at_its_handler(world: World) -> None:
    await world.context(world.carol).send(world.peer.address, Ping(text="later"))
    await until(world.carol.changed, lambda: "pong: later" in world.carol.pongs)


@pytest.mark.parametrize("who", ["alice", "carol"])
async def test_aaex_chats_with_uagents(world: World, who: str) -> None:
    agent = world.alice if who == "alice" else world.carol
    message = ChatMessage.of_text(f"hi from {who}")
    ack = await world.context(agent).ask(world.peer.address, message)
    assert isinstance(ack, ChatAcknowledgement)
    assert ack.acknowledged_msg_id == message.msg_id
    await until(agent.changed, lambda: (world.peer.address, f"echo: hi from {who}")
                in agent.chats)


async def test_agent_without_chat_handler_tells_uagents_what_it_is(world: World) -> None:
    to = world.sync_gw.address_of(world.quiet)
    result = await world.peer.command(to=to, kind="chat", text="what do you sell?")
    assert (result["status"], result["reply_kind"]) == ("ok", "ack"), result
    # The peer echoes every text; Quiet acknowledges the echo and does not answer it again
    # (it describes itself once per session), so the exchange ends with that acknowledgement.
    entries = await peer_log_until(world.peer, lambda log: any(
        e["kind"] == "ack" and e["sender"] == to for e in log))
    chats = [e["text"] for e in entries if e["kind"] == "chat" and e["sender"] == to]
    assert len(chats) == 1 and "Quiet does not chat" in chats[0]


async def test_every_real_uagents_signature_verifies(world: World) -> None:
    # python-ecdsa leaves about half its signatures high-s; libsecp256k1 refuses those as
    # sent, so this fails unless s is folded before verifying.
    to = world.sync_gw.address_of(world.alice)
    before = world.sync_gw.metrics.received["uagents"]
    for n in range(20):
        result = await world.peer.command(to=to, kind="ping", text=str(n))
        assert result["reply_text"] == f"pong: {n}", result
    assert world.sync_gw.metrics.received["uagents"] - before == 20
    assert not world.sync_gw.metrics.rejected
    assert not world.async_gw.metrics.rejected


async def test_a_configured_node_tells_uagents_what_it_sells(tmp_path: Path) -> None:
    # The node learns where the uAgents agent is from [interop.uagents.peers], so its address
    # and port are fixed before either starts.
    seed, port = "aaex e2e node peer", free_port()
    peer_address = uagents_address_of_seed(seed)
    config = parse_config({
        "node": {"http": "127.0.0.1:0", "admin": "127.0.0.1:0", "p2p": []},
        "agents": [{"name": "forecaster", "class": "tests.peers.seller_peer:ForecastSeller",
                    "settings": {"cost": 2.0}}],
        "interop": {"listen": "127.0.0.1:0", "uagents": {
            "peers": {peer_address: f"http://127.0.0.1:{port}/submit"}}}}, base=tmp_path)
    async with open_node(config) as node:
        assert node.interop is not None
        target = next(iter(node.interop.bindings.values())).uagents
        async with run_uagents_peer(UAGENTS_PYTHON, seed=seed, port=port, rules={
                target: node.interop.url + "/submit"}) as peer:
            assert peer.address == peer_address
            result = await peer.command(to=target, kind="chat", text="what do you sell?",
                                        sync=True)
            assert (result["status"], result["reply_kind"]) == ("ok", "ack"), result
            entries = await peer_log_until(peer, lambda log: any(
                e["kind"] == "chat" and e["sender"] == target for e in log))
        text = next(e["text"] for e in entries if e["sender"] == target)
        assert "forecast.demand" in text and "credit per task" in text
        assert not node.interop.metrics.rejected
