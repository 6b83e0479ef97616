"""A validator named in a node's TOML probes a seller through the node's market and ledger,
and `aaex validator status`, ``GET /validators`` and ``aaex consensus show`` report it."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from aaex_agents import Credits
from marketplace.node.accounts import agent_key_path, load_or_create_identity
from marketplace.node.config import parse_config
from marketplace.node.node import open_node
from marketplace.trade.validator import Validator
from tests.node_kit import aaex

NODE = {"http": "127.0.0.1:0", "admin": "127.0.0.1:0", "p2p": [], "drain_timeout": 0}


async def poll(url: str, done: Any, timeout: float = 60) -> Any:
    """GET `url` until `done(document)` holds (every 0.2 s, `timeout` at most)."""
    async with asyncio.timeout(timeout), aiohttp.ClientSession() as http:
        while True:
            async with http.get(url) as response:
                document = await response.json()
            if done(document):
                return document
            await asyncio.sleep(0.2)


async def test_a_validator_from_the_node_toml_probes_and_votes(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bare = parse_config({"node": NODE}, base=tmp_path)
    seller = load_or_create_identity(agent_key_path(bare, "forecaster"))
    config = parse_config({"node": NODE, "agents": [
        {"name": "forecaster", "class": "tests.test_validators:SeasonalForecaster",
         "settings": {"cost": 0.1}},
        {"name": "validator", "class": "marketplace:Validator",
         "settings": {"capabilities": ["forecast.demand"], "sellers": [seller.address],
                      "stake": 5, "probes_per_epoch": 1, "budget": "0.5",
                      "epoch_seconds": 4, "commit_seconds": 2, "reveal_seconds": 1}}]},
        base=tmp_path)
    async with open_node(config) as node:
        validator = next(a for a in node.runtime.agents.values() if isinstance(a, Validator))
        assert validator.board is not None and validator.book is node.market.consensus
        await node.ledger.deposit(validator.address, Credits.parse("20"))
        url = node.admin_url
        # an epoch whose probe was bought and settled on the node's books, then computed
        validators = await poll(url + "/validators", lambda d: any(
            s["score"] == 1.0 for c in d[0]["scored"].values() for s in c["sellers"])
            and d[0]["last_epoch"] is not None)
        await poll(url + "/consensus", lambda d: "forecast.demand" in d
                   and d["forecast.demand"]["sellers"][0]["incentive"] == 1.0)
        code, out, _ = await aaex(capsys, "validator", "status", "--admin", url, "--json")
        assert code == 0 and json.loads(out)[0]["name"] == "validator"
        status = json.loads(out)[0]
        code, out, _ = await aaex(capsys, "validator", "status", "--admin", url)
        assert code == 0 and "stake 5 credits" in out
        code, out, _ = await aaex(capsys, "consensus", "show", "--admin", url, "--json")
        assert code == 0
        [only] = json.loads(out)["forecast.demand"]["sellers"]
        lines = await node.ledger.lines()
    assert validators[0]["stake"] == "5" and validators[0]["capabilities"] == ["forecast.demand"]
    # what it computed, epoch by epoch: the weights revealed, consensus, incentive, dividends
    [*_, last] = status["epochs"]
    assert last["sellers"] == [seller.address]
    assert (last["incentive"], last["dividends"]) == ([1.0], [1.0])
    assert last["validators"] == [status["account"]] and last["weights"][0][0] > 0
    assert only["seller"] == seller.address and only["incentive"] == 1.0
    # the probes are purchases on the node's books like any other
    assert any(line.buyer == validator.address and line.seller == seller.address
               for line in lines)
