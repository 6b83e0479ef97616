"""The node: configuration errors, and a real node process from TOML to SIGTERM."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from aaex_agents import Agent, HttpTransport, StaticDirectory, open_runtime
from aaex_agents.clock import SystemClock
from aaex_agents.money import Credits
from marketplace.node.config import ConfigError, load_config, parse_config
from marketplace.trade.negotiation import CallForProposals, Propose, new_dialogue_id
from tests.market_kit import cr

ROOT = Path(__file__).resolve().parent.parent

NODE_TOML = """
[node]
identity = "node.key"
data_dir = "data"
http = "127.0.0.1:0"
admin = "127.0.0.1:0"
p2p = ["/ip4/127.0.0.1/tcp/0"]
refresh_period = 60

[[agents]]
name = "forecaster"
class = "tests.peers.seller_peer:ForecastSeller"
settings = { cost = 2.0, exponent = 4.0 }
"""


@pytest.mark.parametrize(("document", "message"), [
    ({"node": {"htp": "x"}}, "node.htp: unknown key; did you mean 'http'?"),
    ({"node": {"http": "localhost"}}, "node.http = 'localhost': write host:port"),
    ({"agents": [{"name": "a"}]}, "agents[0].class is required"),
    ({"agents": [{"name": "a", "class": "no_colon"}]}, "write 'package.module:ClassName'"),
    ({"agents": [{"name": "a", "class": "x:Y", "colour": 1}]}, "agents[0].colour: unknown key"),
    ({"whitelists": {"forecast.demand": ["aaex1bad"]}}, "whitelists.forecast.demand"),
    ({"node": {"seeds": "one"}}, "node.seeds = 'one': write a list"),
    ({"node": {"p2p": ["/ip4/127.0.0.1/tcp/0", 7]}}, "node.p2p[1] = 7: write a string"),
    ({"node": {"drain_timeout": -1}}, "node.drain_timeout = -1: must be zero or more"),
    ({"node": "x"}, "node = 'x': write a table"),
    ({"nodes": {}}, "nodes: unknown key; did you mean 'node'?"),
    ({"http": "127.0.0.1:0"}, "http: unknown key"),  # a [node] key above the [node] header
    ({"dialogues": {"max_open": 2.5}}, "dialogues.max_open = 2.5: write an integer"),
    ({"dialogues": {"max_windw": 9}}, "dialogues.max_windw: unknown key; did you mean "
                                      "'max_window'?"),
    ({"dialogues": {"max_per_buyer": 0}}, "dialogues.max_per_buyer must be a positive integer"),
])
def test_bad_config_names_the_field(document: dict, message: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(ConfigError) as caught:
        parse_config(document, base=Path("."))
    assert message in str(caught.value)


@pytest.mark.parametrize(("settings", "message"), [
    ({"costt": 2.0}, "agents.forecaster.settings.costt: unknown key; did you mean 'cost'?"),
    ({"cost": "cheap"}, "agents.forecaster.settings.cost = 'cheap': write a number"),
    ({"exponent": 4.0}, "agents.forecaster.settings.cost is required"),
    ({"cost": 2.0, "margin": "wide"}, "settings.margin = 'wide': write a number"),
    ({"cost": 2.0, "limits": {}}, "settings.limits: unknown key"),  # [dialogues] sets them
])
def test_agent_settings_are_checked_against_the_class(tmp_path: Path, settings: dict[str, Any],
                                                      message: str) -> None:
    from marketplace.node.node import build_agent

    config = parse_config({"agents": [{"name": "forecaster", "settings": settings,
                                       "class": "tests.peers.seller_peer:ForecastSeller"}]},
                          base=tmp_path)
    with pytest.raises(ConfigError) as caught:
        build_agent(config.agents[0], config, SystemClock())
    assert message in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize(("toml", "message"), [
    (NODE_TOML.replace("cost = 2.0", 'cost = "cheap"'),
     "aaex: agents.forecaster.settings.cost = 'cheap': write a number"),
    (NODE_TOML.replace("refresh_period", "refresh_perod"),
     "aaex: node.refresh_perod: unknown key; did you mean 'refresh_period'?"),
    (NODE_TOML.replace("tests.peers.seller_peer:ForecastSeller", "marketplace:ServiceSeller"),
     "aaex: agents.forecaster.class: marketplace:ServiceSeller sets no capability"),
    (NODE_TOML.replace("tests.peers.seller_peer:ForecastSeller",
                       "tests.peers.market_agents:UntypedForecaster"),
     "aaex: agents.forecaster.class: tests.peers.market_agents:UntypedForecaster sets no "
     "task_model"),
])
def test_node_run_with_a_bad_config_prints_one_line_and_fails(tmp_path: Path, toml: str,
                                                              message: str) -> None:
    import subprocess

    from aaex_agents import Identity

    Identity.generate().save(tmp_path / "node.key")  # no "created key" log line before the error
    (tmp_path / "bad.toml").write_text(toml)
    result = subprocess.run([sys.executable, "-m", "marketplace.cli", "node", "run", "--config",
                             str(tmp_path / "bad.toml")], capture_output=True, text=True,
                            timeout=60, check=False, cwd=ROOT)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [result.stderr.strip()]  # one line, no traceback
    assert result.stderr.startswith(message)


def test_config_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("[node\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(broken)
    good = tmp_path / "node.toml"
    good.write_text(NODE_TOML)
    config = load_config(good)
    assert config.node.identity == tmp_path / "node.key" and config.agents[0].name == "forecaster"
    assert config.ledger_path == config.node.data_dir / "ledger.sqlite"
    placed = parse_config({"node": {"ledger": "books/main.sqlite"}}, base=tmp_path)
    assert placed.ledger_path == tmp_path / "books" / "main.sqlite"
    unknown = tmp_path / "unknown.toml"
    unknown.write_text(NODE_TOML.replace("tests.peers.seller_peer:ForecastSeller",
                                         "tests.peers.nothing_here:Nope"))
    from marketplace.node.node import build_agent
    with pytest.raises(ConfigError, match=r"agents\.forecaster\.class: cannot import"):
        build_agent(load_config(unknown).agents[0], load_config(unknown), SystemClock())


class Buyer(Agent):
    pass


async def test_node_runs_from_config_serves_admin_and_metrics_and_stops_on_sigterm(
        tmp_path: Path) -> None:
    config = tmp_path / "node.toml"
    config.write_text(NODE_TOML)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "marketplace.cli", "node", "run", "--config", str(config),
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    assert process.stdout is not None
    try:
        ready = json.loads(await asyncio.wait_for(process.stdout.readline(), 90))
        assert ready["ready"] and ready["agents"] == 1 and ready["state"] == "running"
        admin = ready["admin"]
        async with aiohttp.ClientSession() as http:
            async def get(path: str) -> object:
                async with http.get(admin + path) as response:
                    assert response.status == 200, path
                    if path == "/metrics":
                        return await response.text()
                    return await response.json()

            agents = await get("/agents")
            assert isinstance(agents, list) and agents[0]["name"] == "forecaster"
            seller = agents[0]["address"]
            ads = await get("/ads")
            assert isinstance(ads, dict)
            assert ads["published"] == [{"capability": "forecast.demand", "acknowledged_by": 1}]

            endpoint = next(e for e in ready["endpoints"] if e.startswith("http"))
            buyer = Buyer()
            async with open_runtime(buyer, transports=[HttpTransport()], directory=StaticDirectory(
                    {seller: [endpoint]})) as runtime:
                reply = await runtime.context(buyer).ask(seller, CallForProposals(
                    dialogue=new_dialogue_id(), capability="forecast.demand", task={"history": [1]},
                    max_price=cr(10),
                    max_latency_ms=1000, max_deadline_s=60, respond_by=time.time() + 3))
            assert isinstance(reply, Propose)
            dialogues = await get("/dialogues")
            assert isinstance(dialogues, list) and dialogues[0]["state"] == "proposed"
            # the one JSON form of an amount: decimal credits and the micro-credit twin
            assert Credits.parse(dialogues[0]["price"]) == Credits(dialogues[0]["price_micro"])
            assert dialogues[0]["price"] == str(reply.price)
            metrics = await get("/metrics")
            assert isinstance(metrics, str)
            assert "aaex_messages_in_total 1" in metrics
            assert "aaex_agreements_total 0" in metrics and "aaex_settlements_total 0" in metrics
            assert 'aaex_negotiations_total{state="proposed"} 1' in metrics
            for path in ("/status", "/agreements", "/ledger", "/balances"):
                await get(path)
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 30) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert (tmp_path / "node.key").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "data" / "ledger.sqlite").exists()


async def test_the_example_node_configuration_runs(tmp_path: Path) -> None:
    import shutil

    for name in ("node.toml", "forecast_agents.py"):
        shutil.copy(ROOT / "examples" / name, tmp_path / name)
    toml = (tmp_path / "node.toml").read_text()
    for fixed in ("127.0.0.1:8700", "127.0.0.1:8701", "/tcp/4701"):  # free ports for the test
        toml = toml.replace(fixed, fixed.rsplit(":", 1)[0] + ":0" if ":" in fixed else "/tcp/0")
    (tmp_path / "node.toml").write_text(toml)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "marketplace.cli", "node", "run", "--config",
        str(tmp_path / "node.toml"), cwd=ROOT, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL)
    assert process.stdout is not None
    try:
        ready = json.loads(await asyncio.wait_for(process.stdout.readline(), 90))
        status = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "marketplace.cli", "node", "status", "--admin", ready["admin"],
            "--json", cwd=ROOT, stdout=asyncio.subprocess.PIPE)
        out, _ = await asyncio.wait_for(status.communicate(), 60)
        assert json.loads(out)["agents"] == 1
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 30) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_shutdown_declines_new_calls_but_lets_open_negotiations_finish(
        tmp_path: Path) -> None:
    from aaex_agents import Identity
    from marketplace.node.node import open_node
    from marketplace.trade.contracting import buyer_signer
    from marketplace.trade.negotiation import Accept, Agreed, Decline
    from marketplace.trade.selling import Deliver, Task
    from marketplace.trade.strategies import Offer

    config = parse_config({
        "node": {"http": "127.0.0.1:0", "admin": "127.0.0.1:0", "p2p": [],
                 "drain_timeout": 20},
        "agents": [{"name": "forecaster", "class": "tests.peers.seller_peer:ForecastSeller",
                    "settings": {"cost": 2.0, "exponent": 4.0}}]}, base=tmp_path)
    buyer = Buyer(Identity.generate())
    node_cm = open_node(config)
    node = await node_cm.__aenter__()
    seller = next(iter(node.runtime.agents.values()))
    directory = StaticDirectory({seller.address: list(node.runtime.endpoints)})
    async with open_runtime(buyer, transports=[HttpTransport()], directory=directory) as rt:
        ctx = rt.context(buyer)
        call = CallForProposals(dialogue=new_dialogue_id(), capability="forecast.demand",
                                task={"history": [1]},
                                max_price=cr(10), max_latency_ms=1000, max_deadline_s=60,
                                respond_by=time.time() + 60)
        offer = await ctx.ask(seller.address, call)
        assert isinstance(offer, Propose)
        stopping = asyncio.ensure_future(node_cm.__aexit__(None, None, None))
        await asyncio.wait_for(node.draining.wait(), 10)  # the node has begun to drain
        late = await ctx.ask(seller.address, CallForProposals(
            dialogue=new_dialogue_id(), capability="forecast.demand", task={"history": [1]},
                    max_price=cr(10),
            max_latency_ms=1000, max_deadline_s=60, respond_by=time.time() + 60))
        assert isinstance(late, Decline) and late.reason == "shutting_down"
        signed = buyer_signer(buyer.identity)(call.dialogue, seller.address, call, Offer(
            offer.price, offer.latency_ms, offer.deadline_s, offer.penalty))
        agreed = await ctx.ask(seller.address, Accept(dialogue=call.dialogue, round=0,
                                                      agreement=signed))
        assert isinstance(agreed, Agreed)  # the open negotiation finished during the drain
        assert seller.owed_work(int(time.time() * 1000)) == 1  # the drain waits for its task
        assert not stopping.done()
        delivered = await ctx.ask(seller.address, Task(agreement=agreed.agreement,
                                                       task=call.task))
        assert isinstance(delivered, Deliver)  # served during the drain
        await asyncio.wait_for(stopping, 30)  # and then the node stopped, well before 20 s


async def test_the_drain_waits_for_agreed_work_whose_task_has_not_arrived(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Agreed before the stop, task not yet sent: the drain must not end, though no
    negotiation is open, until the task is delivered (or its deadline passes). The node and
    the buyer share a manual clock, so the drain polls only when the test moves it."""
    from aaex_agents import Identity
    from aaex_agents.testing import ManualClock
    from marketplace.node.node import open_node
    from marketplace.trade.contracting import buyer_signer
    from marketplace.trade.negotiation import Accept, Agreed
    from marketplace.trade.selling import Deliver, Task
    from marketplace.trade.strategies import Offer

    config = parse_config({
        "node": {"http": "127.0.0.1:0", "admin": "127.0.0.1:0", "p2p": [],
                 "drain_timeout": 60},
        "agents": [{"name": "forecaster", "class": "tests.peers.seller_peer:ForecastSeller",
                    "settings": {"cost": 2.0, "exponent": 4.0}}]}, base=tmp_path)
    caplog.set_level(logging.INFO, logger="marketplace.node.node")
    clock, buyer = ManualClock(time.time()), Buyer(Identity.generate())
    node_cm = open_node(config, clock=clock)
    node = await node_cm.__aenter__()
    seller = next(iter(node.runtime.agents.values()))
    directory = StaticDirectory({seller.address: list(node.runtime.endpoints)})
    async with open_runtime(buyer, transports=[HttpTransport()], directory=directory,
                            clock=clock) as rt:
        ctx = rt.context(buyer)
        call = CallForProposals(dialogue=new_dialogue_id(), capability="forecast.demand",
                                task={"history": [1]},
                                max_price=cr(10), max_latency_ms=1000, max_deadline_s=60,
                                respond_by=clock.now() + 60)
        offer = await ctx.ask(seller.address, call)
        assert isinstance(offer, Propose)
        signed = buyer_signer(buyer.identity)(call.dialogue, seller.address, call, Offer(
            offer.price, offer.latency_ms, offer.deadline_s, offer.penalty))
        agreed = await ctx.ask(seller.address, Accept(dialogue=call.dialogue, round=0,
                                                      agreement=signed))
        assert isinstance(agreed, Agreed)
        stopping = asyncio.ensure_future(node_cm.__aexit__(None, None, None))
        await asyncio.wait_for(node.draining.wait(), 10)

        async def drain_polls() -> None:
            """Until the drain sleeps between polls (the node's other timers are gone)."""
            await asyncio.wait_for(clock.sleeping(1), 10)
            assert clock.next_deadline == pytest.approx(clock.now() + 0.05)

        for _ in range(3):  # no negotiation is open: the drain polls for the task alone
            await drain_polls()
            assert not stopping.done()
            clock.advance(0.05)
        delivered = await ctx.ask(seller.address, Task(agreement=agreed.agreement,
                                                       task=call.task))
        assert isinstance(delivered, Deliver)
        await drain_polls()
        clock.advance(0.05)
        await asyncio.wait_for(stopping, 30)
    assert any(r.getMessage().startswith("drain: every negotiation ended and every agreed "
                                         "task was delivered") for r in caplog.records)
