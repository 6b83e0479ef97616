"""A node with `[interop]`: its configuration, its uAgents listener, its A2A cards and
SendMessage (driven by the real a2a-sdk 1.3.0 client), its status and its metrics."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest
from a2a.client import A2ACardResolver, ClientConfig, create_client
from a2a.types import Message as A2AMessage
from a2a.types import Part, Role, SendMessageRequest, TaskState
from google.protobuf.json_format import MessageToDict
from google.protobuf.struct_pb2 import Value

from aaex_agents import (
    Agent,
    Context,
    HttpTransport,
    StaticDirectory,
    handler,
    open_runtime,
)
from aaex_agents.interop import (
    AddressBinding,
    ChatAcknowledgement,
    ChatMessage,
    UAgentsConfig,
    UAgentsGateway,
    UAgentsKey,
    serve_uagents,
)
from marketplace.node.config import ConfigError, parse_config
from marketplace.node.node import Node, open_node
from marketplace.trade.contracting import buyer_signer
from marketplace.trade.negotiation import (
    Accept,
    Agreed,
    CallForProposals,
    Propose,
    Seller,
    new_dialogue_id,
)
from marketplace.trade.strategies import Offer
from tests.market_kit import cr

FORECASTER = {"name": "forecaster", "class": "tests.peers.seller_peer:ForecastSeller",
              "settings": {"cost": 2.0, "exponent": 4.0}}
CHATTY = {"name": "chatty", "class": "tests.peers.interop_agents:Chatty"}


def node_config(tmp_path: Path, interop: dict[str, Any] | None = None) -> Any:
    document: dict[str, Any] = {
        "node": {"http": "127.0.0.1:0", "admin": "127.0.0.1:0", "p2p": []},
        "agents": [FORECASTER, CHATTY]}
    if interop is not None:
        document["interop"] = interop
    return parse_config(document, base=tmp_path)


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    async with open_node(node_config(tmp_path, {"listen": "127.0.0.1:0"})) as running:
        yield running


def agent_named(node: Node, name: str) -> Agent:
    return next(a for a in node.runtime.agents.values() if a.name == name)


@pytest.mark.parametrize(("interop", "message"), [
    ({"listen": "nowhere"}, "interop.listen = 'nowhere': write host:port"),
    ({"listen": "127.0.0.1:0", "port": 1}, "interop.port: unknown key"),
    ({"ask_mode": "later"}, "interop.ask_mode = 'later'"),
    ({"uagents": {"peers": {"aaex1nope": "http://x/submit"}}}, "interop.uagents.peers"),
    ({"uagents": {"peers": {UAgentsKey(b"\x01" * 32).address: "x"}}}, "submit URL"),
    ({"uagents": {"schemas": {"demo.ping/1": "model:abc"}}}, "interop.uagents.schemas"),
    ({"uagents": {"relay": 1}}, "interop.uagents.relay: unknown key"),
    ({"public_url": "ftp://x"}, "interop.public_url"),
    ({"sign_sync_replies": "no"}, "interop.sign_sync_replies = 'no': write true or false"),
    ({"sync_timeout": 0}, "interop.sync_timeout"),
    ({"sync_holds": 2, "sync_holds_per_ip": 3}, "interop.sync_holds_per_ip = 3: must be at "
                                                "most interop.sync_holds (2)"),
])
def test_bad_interop_config_names_the_field(tmp_path: Path, interop: dict[str, Any],
                                            message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        node_config(tmp_path, interop)
    assert message in str(caught.value)


def test_interop_is_off_without_listen(tmp_path: Path) -> None:
    assert not node_config(tmp_path).interop.enabled
    config = node_config(tmp_path, {"listen": "127.0.0.1:8702", "uagents": {
        "peers": {UAgentsKey(b"\x01" * 32).address: "http://127.0.0.1:8000/submit"}}})
    assert config.interop.enabled and len(config.interop.peers) == 1


async def test_node_status_shows_interop_endpoints_and_agent1_addresses(node: Node) -> None:
    status = node.status()["interop"]
    assert node.interop is not None
    assert status["submit"] == node.interop.url + "/submit"
    assert status["a2a_card"] == node.interop.url + "/.well-known/agent-card.json"
    forecaster = agent_named(node, "forecaster")
    entry = status["agents"][forecaster.address]
    assert entry["uagents"] == UAgentsKey.from_identity(forecaster.identity).address
    assert entry["a2a"] == f"{node.interop.url}/a2a/{forecaster.address}"
    async with aiohttp.ClientSession() as http, http.head(
            status["submit"], headers={"x-uagents-address": entry["uagents"]}) as response:
        assert response.headers["x-uagents-status"] == "ready"


async def test_node_without_interop_still_shows_each_agent1_address(tmp_path: Path) -> None:
    async with open_node(node_config(tmp_path)) as running:
        status = running.status()["interop"]
        assert running.interop is None and status["listen"] is None
        chatty = agent_named(running, "chatty")
        assert status["agents"][chatty.address]["uagents"].startswith("agent1")


async def test_card_states_offers_prices_and_the_signed_binding(node: Node) -> None:
    assert node.interop is not None
    forecaster = agent_named(node, "forecaster")
    async with aiohttp.ClientSession() as http:
        async with http.get(node.interop.url + "/.well-known/agent-card.json") as response:
            first = await response.json()
        async with http.get(f"{node.interop.url}/a2a/{forecaster.address}"
                            "/.well-known/agent-card.json") as response:
            card = await response.json()
        async with http.get(f"{node.interop.url}/a2a/aaex1nobody/.well-known/"
                            "agent-card.json") as response:
            assert response.status == 404
    assert first == card  # the node's first agent
    assert card["supportedInterfaces"] == [{
        "url": f"{node.interop.url}/a2a/{forecaster.address}", "protocolBinding": "JSONRPC",
        "protocolVersion": "1.0"}]
    skill = next(s for s in card["skills"] if s["id"] == "forecast.demand")
    assert "credit per task" in skill["description"] and "p95" in skill["description"]
    binding = AddressBinding.model_validate(card["capabilities"]["extensions"][0]["params"])
    assert binding.holds() and binding.aaex == forecaster.address


async def test_a2a_sdk_client_chats_and_gets_quotes(node: Node) -> None:
    assert node.interop is not None
    forecaster = agent_named(node, "forecaster")
    chatty = agent_named(node, "chatty")
    async with httpx.AsyncClient(timeout=30) as http:
        config = ClientConfig(streaming=False, httpx_client=http)
        card = await A2ACardResolver(http, node.interop.url).get_agent_card()  # first agent
        assert card.name == "forecaster"
        assert card.skills[0].id == "forecast.demand"
        seller = await create_client(card, client_config=config)

        async def send(client: Any, part: Part) -> Any:
            request = SendMessageRequest(message=A2AMessage(
                message_id=str(uuid.uuid4()), role=Role.ROLE_USER, parts=[part]))
            return [event async for event in client.send_message(request)][-1]

        # A text part to an agent without a chat handler: it says what it sells.
        answer = await send(seller, Part(text="What do you sell?"))
        assert "forecast.demand" in answer.message.parts[0].text
        assert "credit per task" in answer.message.parts[0].text
        # A text part to an agent with one: its chat handler answers.
        talker = await create_client(f"{node.interop.url}/a2a/{chatty.address}",
                                     client_config=config)
        answer = await send(talker, Part(text="hello"))
        assert answer.message.parts[0].text == "echo: hello"
        # A call for proposals: a quote, as a completed task with the offer as data.
        cfp = {"capability": "forecast.demand", "task": {"history": [1, 2]}, "max_price": 10,
               "max_latency_ms": 1000, "max_deadline_s": 60}
        quoted = await send(seller, Part(data=_value(cfp)))
        assert quoted.task.status.state == TaskState.TASK_STATE_COMPLETED
        quote = MessageToDict(quoted.task.artifacts[0].parts[0].data)
        assert quote["seller"] == forecaster.address
        assert 0 < int(quote["price_micro"]) <= 15_000_000 and quote["price"]  # 1.5 x budget
        assert isinstance(forecaster, Seller)
        # A quote only: nothing of it stays open, or is kept, on the seller.
        assert not [d for d in forecaster.dialogues.values() if d.id == quote["dialogue"]]
        assert len(forecaster.open) == 0
        # Terms it cannot meet: a rejected task with the decline reason.
        refused = await send(seller, Part(data=_value({**cfp, "max_latency_ms": 1})))
        assert refused.task.status.state == TaskState.TASK_STATE_REJECTED
        assert MessageToDict(refused.task.artifacts[0].parts[0].data)["reason"] == \
            "cannot_meet_terms"
    metrics = node.metrics_text()
    assert 'aaex_interop_received_total{protocol="a2a"} 4' in metrics


def _value(document: dict[str, Any]) -> Value:
    value = Value()
    value.struct_value.update(document)
    return value


async def rpc(url: str, body: Any, headers: dict[str, str] | None = None) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http, http.post(
            url, data=body if isinstance(body, bytes) else json.dumps(body),
            headers=headers or {}) as response:
        assert response.status == 200
        result: dict[str, Any] = await response.json()
        return result


async def test_other_methods_and_bad_requests_get_a2a_errors(node: Node) -> None:
    assert node.interop is not None
    url = f"{node.interop.url}/a2a/{agent_named(node, 'forecaster').address}"

    def call(method: str, params: Any = None) -> dict[str, Any]:
        return {"jsonrpc": "2.0", "id": "1", "method": method, "params": params or {}}

    text = {"message": {"messageId": "m", "role": "ROLE_USER", "parts": [{"text": "hi"}]}}
    cases = [
        (call("message/send", text), None, -32601),  # an A2A 0.3 name
        (call("GetTask", {"id": "t"}), None, -32001),
        (call("SendStreamingMessage", text), None, -32004),
        (call("SendMessage", {"message": {"parts": [{"raw": "AAAA"}]}}), None, -32005),
        (call("SendMessage", {"message": {"parts": []}}), None, -32602),
        (call("SendMessage", {"message": {"parts": [{"data": {"capability": 1}}]}}), None,
         -32602),
        (call("SendMessage", text), {"A2A-Version": "0.3"}, -32009),
        (b"{not json", None, -32700),
        ({"id": 1, "method": "SendMessage"}, None, -32600),
    ]
    for body, headers, code in cases:
        answer = await rpc(url, body, headers)
        assert answer["error"]["code"] == code, (body, answer)
    rejected = {r: n for (p, r), n in node.interop.metrics.rejected.items() if p == "a2a"}
    assert rejected == {"method_not_found": 1, "task_not_found": 1, "unsupported_operation": 1,
                        "content_type_not_supported": 1, "invalid_params": 2,
                        "version_not_supported": 1, "parse_error": 1, "invalid_request": 1}
    assert 'aaex_interop_rejected_total{protocol="a2a",reason="invalid_params"} 2' in \
        node.metrics_text()


async def test_an_a2a_call_cannot_end_a_signed_buyers_negotiation(node: Node) -> None:
    """A rival without a key names a live dialogue id it saw in the buyer's call: the
    buyer's negotiation goes on, and the buyer's accept is countersigned."""
    assert node.interop is not None
    forecaster = agent_named(node, "forecaster")
    assert isinstance(forecaster, Seller)
    buyer = Agent()
    directory = StaticDirectory({forecaster.address: list(node.runtime.endpoints)})
    async with open_runtime(buyer, transports=[HttpTransport()], directory=directory) as rt:
        ctx = rt.context(buyer)
        cfp = CallForProposals(dialogue=new_dialogue_id(), capability="forecast.demand",
                               task={"history": [1, 2]}, max_price=cr(10), max_latency_ms=1000,
                               max_deadline_s=60, respond_by=time.time() + 60)
        offer = await ctx.ask(forecaster.address, cfp, timeout=10)
        assert isinstance(offer, Propose)
        data = {"dialogue": cfp.dialogue, "capability": "forecast.demand",
                "task": {"history": [1, 2]}, "max_price": "10", "max_latency_ms": 1000,
                "max_deadline_s": 60}
        a2a = await rpc(f"{node.interop.url}/a2a/{forecaster.address}", {
            "jsonrpc": "2.0", "id": "r", "method": "SendMessage",
            "params": {"message": {"messageId": "m", "role": "ROLE_USER",
                                   "parts": [{"data": data}]}}})
        agreement = buyer_signer(buyer.identity)(cfp.dialogue, forecaster.address, cfp, Offer(
            offer.price, offer.latency_ms, offer.deadline_s, offer.penalty))
        agreed = await ctx.ask(forecaster.address, Accept(dialogue=cfp.dialogue, round=0,
                                                          agreement=agreement), timeout=10)
        assert isinstance(agreed, Agreed), agreed
    # An A2A quote opens a dialogue of its own; naming one is refused, naming the field.
    assert a2a["error"]["code"] == -32602 and "dialogue" in a2a["error"]["message"]


class Visitor(Agent):
    """A uAgents-speaking client: another AAEX runtime behind its own gateway."""

    def __init__(self) -> None:
        super().__init__(name="visitor")
        self.chats: list[str] = []

    @handler
    async def on_chat(self, ctx: Context, msg: ChatMessage) -> None:
        self.chats.append(msg.text())


async def test_node_answers_uagents_envelopes_and_counts_refusals(tmp_path: Path) -> None:
    visitor = Visitor()
    gateway = UAgentsGateway(UAgentsConfig())
    async with open_runtime(visitor, gateways=[gateway]) as runtime, \
            serve_uagents(gateway) as visitor_url:
        me = gateway.address_of(visitor)
        config = node_config(tmp_path, {"listen": "127.0.0.1:0",
                                        "uagents": {"peers": {me: visitor_url}}})
        async with open_node(config) as running:
            assert running.interop is not None
            forecaster = agent_named(running, "forecaster")
            target = running.interop.gateway.address_of(forecaster)
            gateway.add_peer(target, running.interop.url + "/submit")
            ack = await runtime.context(visitor).ask(target, ChatMessage.of_text("prices?"))
            assert isinstance(ack, ChatAcknowledgement)
            async with aiohttp.ClientSession() as http, http.post(
                    running.interop.url + "/submit", data=b'{"version": 1}',
                    headers={"Content-Type": "application/json"}) as response:
                assert response.status == 400
                assert (await response.json())["reason"] == "malformed"
            # The node's answer (what the forecaster sells) is POSTed to us after the ack;
            # our gateway then acknowledges it back to the node.
            await running.interop.gateway.wait_idle()
            await gateway.wait_idle()
            assert len(visitor.chats) == 1 and "forecast.demand" in visitor.chats[0]
            metrics = running.metrics_text()
            assert 'aaex_interop_received_total{protocol="uagents"} 2' in metrics  # chat, ack
            assert 'aaex_interop_rejected_total{protocol="uagents",reason="malformed"} 1' in \
                metrics


async def test_an_a2a_quote_states_the_sellers_price_not_the_callers_ceiling(
        node: Node) -> None:
    """The quote is the seller's offer: the price it offers a signed buyer for the same
    terms, which is not the `max_price` the caller sent."""
    assert node.interop is not None
    forecaster = agent_named(node, "forecaster")
    terms = {"capability": "forecast.demand", "task": {"history": [1, 2]},
             "max_latency_ms": 1000, "max_deadline_s": 60}
    a2a = await rpc(f"{node.interop.url}/a2a/{forecaster.address}", {
        "jsonrpc": "2.0", "id": "q", "method": "SendMessage",
        "params": {"message": {"messageId": "m", "role": "ROLE_USER",
                               "parts": [{"data": {**terms, "max_price": "7"}}]}}})
    buyer = Agent()
    directory = StaticDirectory({forecaster.address: list(node.runtime.endpoints)})
    async with open_runtime(buyer, transports=[HttpTransport()], directory=directory) as rt:
        offer = await rt.context(buyer).ask(forecaster.address, CallForProposals(
            dialogue=new_dialogue_id(), max_price=cr(7), respond_by=time.time() + 60,
            **terms), timeout=10)
    assert isinstance(offer, Propose) and offer.price != cr(7)
    [artifact] = a2a["result"]["task"]["artifacts"]
    quote = artifact["parts"][0]["data"]
    assert (quote["price_micro"], quote["price"]) == (offer.price.micro, str(offer.price))
