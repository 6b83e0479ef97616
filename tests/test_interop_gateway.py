"""The uAgents gateway on loopback: two AAEX runtimes speaking uAgents envelopes to each other,
and hand-made envelopes POSTed to /submit for each of AAEX's rules.

The real uAgents agent is in tests/test_interop_e2e.py (marked `uagents`).
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import aiohttp
import pytest

from aaex_agents import Agent, Context, Message, handler, open_runtime
from aaex_agents.errors import PeerUnreachable, RemoteHandlerError, UsageError
from aaex_agents.interop import (
    CHAT_ACK_DIGEST,
    ChatAcknowledgement,
    ChatMessage,
    SchemaTable,
    UAgentsConfig,
    UAgentsGateway,
    UAgentsKey,
    UEnvelope,
    seal_envelope,
    serve_uagents,
)
from aaex_agents.interop.config import AskMode
from aaex_agents.runtime import Runtime

PING_DIGEST = "model:64d85c393a306c7a194a88dd36b06bd8665dd84c9c1f078611b3ce7c614203bd"
PONG_DIGEST = "model:16222561a1092a38c50d8c8e9871711acb66518643953da53873131fbca16ca3"
# Not mapped by anyone (a made-up digest) and a key that no test agent holds.
UNKNOWN_DIGEST = "model:" + "ab" * 32
STRANGER = UAgentsKey(bytes.fromhex("11" * 32))


class Ping(Message, type="tests.gw_ping/1"):
    text: str


class Pong(Message, type="tests.gw_pong/1"):
    text: str


class Boom(Message, type="tests.gw_boom/1"):
    pass


SCHEMAS = SchemaTable({Ping: PING_DIGEST, Pong: PONG_DIGEST,
                       Boom: "model:" + "cd" * 32})


class Shop(Agent):
    """Chats ("echo: ..."), answers Ping, fails on Boom, records acknowledgements."""

    def __init__(self, name: str) -> None:
        super().__init__(name=name)
        self.chats: list[tuple[str | None, str]] = []
        self.acks: list[str] = []
        self.heard = asyncio.Event()

    @handler
    async def on_chat(self, ctx: Context, msg: ChatMessage) -> ChatMessage | None:
        self.chats.append((ctx.sender, msg.text()))
        self.heard.set()
        if msg.text().startswith("echo:"):
            return None
        return ChatMessage.of_text("echo: " + msg.text())

    @handler
    async def on_ack(self, ctx: Context, msg: ChatAcknowledgement) -> None:
        self.acks.append(str(msg.acknowledged_msg_id))
        self.heard.set()

    @handler
    async def on_ping(self, ctx: Context, msg: Ping) -> Pong:
        return Pong(text="pong: " + msg.text)

    @handler
    async def on_boom(self, ctx: Context, msg: Boom) -> Pong:
        raise RuntimeError("fails on purpose")


class Quiet(Agent):
    """No chat handler at all."""


@dataclass
class Side:
    runtime: Runtime
    gateway: UAgentsGateway
    url: str


Pair = tuple[Side, Side, Shop, Shop, Quiet]


@asynccontextmanager
async def open_pair(ask_mode: AskMode = "sync") -> AsyncIterator[Pair]:
    """alice on one runtime, bob and Quiet on another, each behind a gateway and /submit."""
    alice, bob, quiet = Shop("alice"), Shop("bob"), Quiet(name="Quiet")
    config = UAgentsConfig(schemas=SCHEMAS, ask_mode=ask_mode)
    gw_a, gw_b = UAgentsGateway(config), UAgentsGateway(config)
    async with open_runtime([alice], gateways=[gw_a]) as rt_a, \
            open_runtime([bob, quiet], gateways=[gw_b]) as rt_b, \
            serve_uagents(gw_a) as url_a, serve_uagents(gw_b) as url_b:
        gw_a.add_peer(gw_b.address_of(bob), url_b)
        gw_a.add_peer(gw_b.address_of(quiet), url_b)
        gw_b.add_peer(gw_a.address_of(alice), url_a)
        yield Side(rt_a, gw_a, url_a), Side(rt_b, gw_b, url_b), alice, bob, quiet


@pytest.fixture
async def pair() -> AsyncIterator[Pair]:
    async with open_pair() as sides:
        yield sides


async def wait_for(event: asyncio.Event, check: Callable[[], object]) -> None:
    """Wait until `check()` holds; `event` is set whenever it may have changed."""
    async with asyncio.timeout(20):
        while not check():
            event.clear()
            if check():
                return
            await event.wait()


async def test_ask_reaches_an_agent1_address_like_any_other(pair: Pair) -> None:
    a, b, alice, bob, _ = pair
    to = b.gateway.address_of(bob)
    assert to.startswith("agent1") and len(to) == 65
    reply = await a.runtime.context(alice).ask(to, Ping(text="hi"), reply_type=Pong)
    assert reply == Pong(text="pong: hi")
    assert b.gateway.metrics.received["uagents"] == 1
    assert a.gateway.metrics.sent["uagents"] == 1


async def test_ask_in_async_mode_gets_the_reply_posted_back() -> None:
    async with open_pair("async") as (a, b, alice, bob, _):
        reply = await a.runtime.context(alice).ask(b.gateway.address_of(bob), Ping(text="x"))
        assert reply == Pong(text="pong: x")
        assert a.gateway.metrics.received["uagents"] == 1  # the reply came in through /submit


async def test_chat_is_acknowledged_then_answered_both_ways(pair: Pair) -> None:
    a, b, alice, bob, _ = pair
    message = ChatMessage.of_text("hello")
    await a.runtime.context(alice).send(b.gateway.address_of(bob), message)
    await wait_for(alice.heard, lambda: alice.acks and alice.chats)
    assert bob.chats == [(a.gateway.address_of(alice), "hello")]
    assert alice.acks == [str(message.msg_id)]
    assert alice.chats == [(b.gateway.address_of(bob), "echo: hello")]
    await wait_for(bob.heard, lambda: bob.acks)  # alice's gateway acknowledged the echo


async def test_agent_without_chat_handler_says_what_it_is(pair: Pair) -> None:
    a, b, alice, _, quiet = pair
    ack = await a.runtime.context(alice).ask(b.gateway.address_of(quiet),
                                             ChatMessage.of_text("what do you sell?"))
    assert isinstance(ack, ChatAcknowledgement)
    # alice echoes what Quiet says; Quiet acknowledges the echo but describes itself only
    # once per session (else two agents that answer everything would talk forever).
    await wait_for(alice.heard, lambda: alice.acks)  # Quiet acknowledged the echo
    async with asyncio.timeout(20):  # without the once-per-session rule this never ends
        while not (a.gateway.idle and b.gateway.idle):
            await a.gateway.wait_idle()
            await b.gateway.wait_idle()
    assert len(alice.chats) == 1 and "Quiet does not chat" in alice.chats[0][1]


async def test_handler_failure_comes_back_as_remote_handler_error(pair: Pair) -> None:
    a, b, alice, bob, _ = pair
    with pytest.raises(RemoteHandlerError, match="handler_failed"):
        await a.runtime.context(alice).ask(b.gateway.address_of(bob), Boom())


async def test_unknown_peer_and_unmapped_type_name_the_fix(pair: Pair) -> None:
    a, _, alice, _, _ = pair
    with pytest.raises(PeerUnreachable, match=r"interop\.uagents\.peers"):
        await a.runtime.context(alice).ask(STRANGER.address, Ping(text="x"))

    class Unmapped(Message, type="tests.gw_unmapped/1"):
        pass

    with pytest.raises(UsageError, match=r"schema digest.*model:"):
        await a.runtime.context(alice).send(STRANGER.address, Unmapped())


def envelope_to(target: str, *, digest: str = CHAT_ACK_DIGEST, expires: int | None = -1,
                key: UAgentsKey | None = STRANGER, payload: dict[str, object] | None = None,
                session: uuid.UUID | None = None) -> UEnvelope:
    body = payload if payload is not None else {
        "timestamp": "2025-06-15T15:06:40+00:00",
        "acknowledged_msg_id": str(uuid.uuid4()), "metadata": None}
    return seal_envelope(key, sender=None if key else "user1qqqq", target=target,
                         schema_digest=digest, payload_json=json.dumps(body),
                         session=session or uuid.uuid4(),
                         expires=int(time.time()) + 30 if expires == -1 else expires)


async def post(url: str, data: bytes | str, headers: dict[str, str] | None = None) -> tuple[
        int, dict[str, object]]:
    async with aiohttp.ClientSession() as session, session.post(
            url, data=data, headers=headers or {"Content-Type": "application/json"}) as response:
        return response.status, json.loads(await response.read() or b"{}")


async def test_submit_applies_our_rules_each_with_its_reason(pair: Pair) -> None:
    _, b, _, bob, _ = pair
    target = b.gateway.address_of(bob)
    good = envelope_to(target)
    assert await post(b.url, good.to_json()) == (200, {})
    tampered = good.model_copy(update={"payload": base64.b64encode(b'{"x": 1}').decode()})
    cases = {
        "replayed": good.to_json(),
        "bad_signature": tampered.to_json(),
        "unsigned": envelope_to(target, key=None).to_json(),
        "no_expiry": envelope_to(target, expires=None).to_json(),
        "expired": envelope_to(target, expires=int(time.time()) - 3600).to_json(),
        "lifetime_too_long": envelope_to(target, expires=int(time.time()) + 86400).to_json(),
        "wrong_target": envelope_to(STRANGER.address).to_json(),
        "unknown_type": envelope_to(target, digest=UNKNOWN_DIGEST).to_json(),
        "invalid_payload": envelope_to(target, payload={"nonsense": True}).to_json(),
        "malformed": json.dumps({**json.loads(good.to_json()),
                                 "session": str(uuid.uuid1())}).encode(),
    }
    for reason, data in cases.items():
        status, answer = await post(b.url, data)
        assert (status, answer["reason"]) == (400, reason), answer
        assert answer["error"]
    rejected = {r: n for (p, r), n in b.gateway.metrics.rejected.items() if p == "uagents"}
    assert rejected == dict.fromkeys(cases, 1)
    assert b.gateway.metrics.received["uagents"] == 1
    await wait_for(bob.heard, lambda: bob.acks)
    assert len(bob.acks) == 1  # only the good envelope reached the handler


async def test_submit_refuses_a_wrong_content_type_and_probes_readiness(pair: Pair) -> None:
    _, b, _, bob, _ = pair
    status, answer = await post(b.url, b"{}", headers={"Content-Type": "text/plain"})
    assert (status, answer["reason"]) == (400, "malformed")
    async with aiohttp.ClientSession() as session:
        for header, expected in ((b.gateway.address_of(bob), "ready"),
                                 (STRANGER.address, "not-ready"), (None, "indeterminate")):
            headers = {"x-uagents-address": header} if header else {}
            async with session.head(b.url, headers=headers) as response:
                assert response.headers["x-uagents-status"] == expected


async def sync_exchange(url: str, request: UEnvelope) -> UEnvelope:
    async with aiohttp.ClientSession() as session, session.post(
            url, data=request.to_json(), headers={"Content-Type": "application/json",
                                                  "x-uagents-connection": "sync"}) as response:
        return UEnvelope.model_validate_json(await response.read())


async def test_sync_request_gets_the_first_answer_in_the_response(pair: Pair) -> None:
    _, b, _, bob, _ = pair
    request = envelope_to(b.gateway.address_of(bob), digest=PING_DIGEST, payload={"text": "s"})
    reply = await sync_exchange(b.url, request)
    assert (reply.sender, reply.target, reply.session) == (request.target, request.sender,
                                                           request.session)
    assert reply.schema_digest == PONG_DIGEST and reply.verify()  # we sign our sync replies
    assert json.loads(reply.payload_json()) == {"text": "pong: s"}


async def test_sync_replies_can_go_unsigned_as_uagents_sends_them() -> None:
    bob = Shop("bob")
    gateway = UAgentsGateway(UAgentsConfig(schemas=SCHEMAS, sign_sync_replies=False))
    async with open_runtime(bob, gateways=[gateway]), serve_uagents(gateway) as url:
        reply = await sync_exchange(url, envelope_to(gateway.address_of(bob), digest=PING_DIGEST,
                                                     payload={"text": "u"}))
    assert reply.signature is None and json.loads(reply.payload_json()) == {"text": "pong: u"}


def test_config_checks_name_the_field() -> None:
    with pytest.raises(UsageError, match="peers"):
        UAgentsConfig(peers={"aaex1nope": "http://x/submit"})
    with pytest.raises(UsageError, match="submit URL"):
        UAgentsConfig(peers={STRANGER.address: "ftp://x"})
    with pytest.raises(UsageError, match="ask_mode"):
        UAgentsConfig(ask_mode="later")  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="sync_timeout"):
        UAgentsConfig(sync_timeout=3600)
    with pytest.raises(UsageError, match="sync_holds_per_ip <= sync_holds"):
        UAgentsConfig(sync_holds=4, sync_holds_per_ip=8)


async def test_a_gateway_serves_one_runtime_once() -> None:
    gateway = UAgentsGateway(UAgentsConfig(schemas=SCHEMAS))
    async with open_runtime(Shop("a"), gateways=[gateway]) as runtime:
        assert runtime.gateways == (gateway,)
    # Raised while the runtime starts, so inside its task group (see open_runtime).
    with pytest.RaisesGroup(pytest.RaisesExc(UsageError, match="one per runtime")):
        async with open_runtime(Shop("b"), gateways=[gateway]):
            pass
