"""The interop listener's ``/submit`` under the hostile review's attacks.

- A flood of envelopes from fresh keys does not lock other uAgents senders out: replay
  state is per sender, as for AAEX envelopes (small configured bounds stand in for the
  100,001 envelopes of the review).
- Sync requests that are never answered are held at most ``sync_timeout``, at most
  ``sync_holds_per_ip`` from one address and ``sync_holds`` in all; beyond, 503 ``busy`` at
  once, while other addresses and other requests are served.
- A valid envelope of several hundred kB is read whole, and a field longer than any valid
  one is refused as ``malformed`` before anything is decoded.

Real signatures, real listeners on loopback; the node ones run `open_node` in-process.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from aaex_agents import EnvelopePolicy, open_runtime
from aaex_agents.interop import (
    CHAT_ACK_DIGEST,
    ERROR_MESSAGE_DIGEST,
    UAgentsConfig,
    UAgentsGateway,
    UAgentsKey,
    UEnvelope,
    seal_envelope,
    serve_uagents,
)
from marketplace.node.config import parse_config
from marketplace.node.node import Node, open_node
from tests.peers.interop_agents import Chatty

SAFETY_S = 30.0
"""Bound on waits that must end much sooner; a failure, never a timing assert."""
CHATTY = {"name": "chatty", "class": "tests.peers.interop_agents:Chatty"}
JSON = {"Content-Type": "application/json"}
SYNC = {**JSON, "x-uagents-connection": "sync"}


def key(n: int) -> UAgentsKey:
    """The n-th test key (deterministic, so a failure replays the same way)."""
    return UAgentsKey(hashlib.sha256(b"interop-limits %d" % n).digest())


def ack(sender: UAgentsKey, target: str, *, expires: int,
        metadata: dict[str, str] | None = None) -> UEnvelope:
    """A signed chat acknowledgement: every agent takes one, and none answers it."""
    payload = {"timestamp": "2025-06-15T15:06:40+00:00",
               "acknowledged_msg_id": str(uuid.uuid4()), "metadata": metadata}
    return seal_envelope(sender, target=target, schema_digest=CHAT_ACK_DIGEST,
                         payload_json=json.dumps(payload), session=uuid.uuid4(),
                         expires=expires)


def unanswered(sender: UAgentsKey, target: str) -> UEnvelope:
    """An ErrorMessage: taken, answered by nobody, so a sync request for it is held."""
    return seal_envelope(sender, target=target, schema_digest=ERROR_MESSAGE_DIGEST,
                         payload_json=json.dumps({"error": "x"}), session=uuid.uuid4(),
                         expires=int(time.time()) + 300)


async def post(url: str, data: bytes, headers: dict[str, str] = JSON, *,
               local: str = "127.0.0.1") -> tuple[int, dict[str, Any]]:
    """POST from the loopback address `local`; the status and the JSON answer."""
    connector = aiohttp.TCPConnector(local_addr=(local, 0))
    async with aiohttp.ClientSession(connector=connector) as session, session.post(
            url, data=data, headers=headers,
            timeout=aiohttp.ClientTimeout(total=SAFETY_S)) as response:
        document: dict[str, Any] = json.loads(await response.read() or b"{}")
        return response.status, document


async def until(check: Callable[[], bool]) -> None:
    """Poll `check` until it holds (a failure after SAFETY_S)."""
    async with asyncio.timeout(SAFETY_S):
        while not check():  # noqa: ASYNC110 - the server's count; it offers no event
            await asyncio.sleep(0.01)


# -- replay: per sender ---------------------------------------------------------------------
async def test_a_flood_from_fresh_keys_does_not_lock_other_senders_out() -> None:
    policy = EnvelopePolicy(replay_capacity=8, replay_senders=4, replay_floors=64)
    chatty = Chatty(name="chatty")
    gateway = UAgentsGateway(UAgentsConfig(policy=policy))
    async with open_runtime(chatty, gateways=[gateway]), serve_uagents(gateway) as url:
        target = gateway.address_of(chatty)
        now = int(time.time())
        honest = key(0)
        first = ack(honest, target, expires=now + 30)
        assert await post(url, first.to_json()) == (200, {})
        # Three times the whole replay memory, each envelope from a key never seen before,
        # each living as long as the policy allows (with one shared window, these pushed
        # its floor past every honest envelope's expiry: all were refused as replayed).
        flood = [ack(key(n), target, expires=now + 590) for n in range(1, 25)]
        for envelope in flood:
            assert await post(url, envelope.to_json()) == (200, {})
        # The honest sender, displaced meanwhile, goes on (its next envelope expires later
        # than its last), and a sender never seen before gets in too.
        assert await post(url, ack(honest, target, expires=now + 31).to_json()) == (200, {})
        assert await post(url, ack(key(99), target, expires=now + 30).to_json()) == (200, {})
        # Nothing is accepted twice: not the displaced sender's, not the flood's.
        for replay in (first, flood[0], flood[-1]):
            status, answer = await post(url, replay.to_json())
            assert (status, answer["reason"]) == (400, "replayed")
        assert gateway.metrics.received["uagents"] == 27


# -- sync requests: bounded holds --------------------------------------------------------------
@pytest.fixture
async def holding_node(tmp_path: Path) -> AsyncIterator[Node]:
    """A node that holds 2 sync requests per address and 3 in all, for as long as 300 s."""
    config = parse_config({"node": {"http": "127.0.0.1:0", "admin": "127.0.0.1:0", "p2p": []},
                           "agents": [CHATTY],
                           "interop": {"listen": "127.0.0.1:0", "sync_timeout": 300,
                                       "sync_holds": 3, "sync_holds_per_ip": 2}},
                          base=tmp_path)
    async with open_node(config) as node:
        yield node


async def test_held_sync_requests_are_bounded_per_address_and_in_all(
        holding_node: Node, caplog: pytest.LogCaptureFixture) -> None:
    interop = holding_node.interop
    assert interop is not None
    url = interop.url + "/submit"
    chatty = next(iter(holding_node.runtime.agents.values()))
    target = interop.gateway.address_of(chatty)

    def hold(n: int, local: str) -> asyncio.Task[tuple[int, dict[str, Any]]]:
        return asyncio.create_task(post(url, unanswered(key(n), target).to_json(), SYNC,
                                        local=local))

    held = [hold(1, "127.0.0.1"), hold(2, "127.0.0.1")]
    try:
        await until(lambda: interop.gateway.held == 2)
        # A third from the same address is refused at once, naming the limit...
        status, answer = await post(url, unanswered(key(3), target).to_json(), SYNC)
        assert (status, answer["reason"]) == (503, "busy")
        assert "127.0.0.1 already holds 2 sync requests" in answer["error"]
        # ...while another address still gets one held, up to the total.
        held.append(hold(4, "127.0.0.2"))
        await until(lambda: interop.gateway.held == 3)
        status, answer = await post(url, unanswered(key(5), target).to_json(), SYNC,
                                    local="127.0.0.3")
        assert (status, answer["reason"]) == (503, "busy")
        assert "already holds 3 sync requests open" in answer["error"]
        # Everything but more held requests is still served, from every address.
        envelope = ack(key(6), target, expires=int(time.time()) + 30)
        assert await post(url, envelope.to_json(), local="127.0.0.3") == (200, {})
        assert not any(task.done() for task in held)
        metrics = holding_node.metrics_text()
        assert 'aaex_interop_rejected_total{protocol="uagents",reason="busy"} 2' in metrics
        # Unsolicited ErrorMessages are anyone's to send: none is a warning in the log.
        assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
    finally:
        for task in held:
            task.cancel()
        await asyncio.gather(*held, return_exceptions=True)


async def test_a_held_sync_request_is_released_at_the_timeout_naming_it(
        tmp_path: Path) -> None:
    config = parse_config({"node": {"http": "127.0.0.1:0", "admin": "127.0.0.1:0", "p2p": []},
                           "agents": [CHATTY],
                           "interop": {"listen": "127.0.0.1:0", "sync_timeout": 0.5}},
                          base=tmp_path)
    async with open_node(config) as node:
        assert node.interop is not None
        chatty = next(iter(node.runtime.agents.values()))
        request = unanswered(key(1), node.interop.gateway.address_of(chatty))
        # The envelope lives 300 s; without the bound, the request would be held as long.
        status, answer = await post(node.interop.url + "/submit", request.to_json(), SYNC)
        assert status == 200
        reply = UEnvelope.model_validate(answer)
        assert reply.schema_digest == ERROR_MESSAGE_DIGEST and reply.verify()
        error = json.loads(reply.payload_json())["error"]
        assert "no answer within the 0.5 s" in error and "sync_timeout" in error
        assert node.interop.gateway.held == 0


# -- bodies: read whole, fields bounded ------------------------------------------------------
@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    config = parse_config({"node": {"http": "127.0.0.1:0", "admin": "127.0.0.1:0", "p2p": []},
                           "agents": [CHATTY], "interop": {"listen": "127.0.0.1:0"}},
                          base=tmp_path)
    async with open_node(config) as running:
        yield running


async def test_a_large_valid_envelope_is_read_whole(node: Node) -> None:
    assert node.interop is not None
    chatty = next(iter(node.runtime.agents.values()))
    target = node.interop.gateway.address_of(chatty)
    for size in (300_000, 700_000):  # the review saw every one from 267 kB refused
        envelope = ack(key(size), target, expires=int(time.time()) + 30,
                       metadata={"padding": "p" * size})
        assert await post(node.interop.url + "/submit", envelope.to_json()) == (200, {})
    assert node.interop.gateway.metrics.received["uagents"] == 2


@pytest.mark.parametrize("field", ["sender", "target", "signature", "schema_digest"])
async def test_an_overlong_field_is_malformed_before_it_is_decoded(node: Node,
                                                                    field: str) -> None:
    assert node.interop is not None
    chatty = next(iter(node.runtime.agents.values()))
    envelope = ack(key(1), node.interop.gateway.address_of(chatty),
                   expires=int(time.time()) + 30)
    document = json.loads(envelope.to_json())
    document[field] = document[field][:6] + "q" * 900_000  # a 900 kB "address"
    status, answer = await post(node.interop.url + "/submit", json.dumps(document).encode())
    assert (status, answer["reason"]) == (400, "malformed")
    assert field in answer["error"] and len(answer["error"]) < 200
