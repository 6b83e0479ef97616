"""A node shows its validators' consensus: ``GET /consensus``, ``aaex consensus show`` and the
``aaex_consensus_*`` metrics, from a real node's admin API."""

from __future__ import annotations

import json
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from marketplace.consensus import yuma_epoch
from marketplace.consensus.board import KEPT_EPOCHS, ConsensusBook
from marketplace.node.config import parse_config
from marketplace.node.node import open_node
from tests.node_kit import aaex

NODE = {"http": "127.0.0.1:0", "admin": "127.0.0.1:0", "p2p": []}
CAPABILITY = "forecast.demand"


def record(book: ConsensusBook, epoch: int, good_weight: int) -> None:
    """Three validators weigh seller "good" `good_weight` and "bad" 1/4 of the most."""
    result = yuma_epoch([1, 1, 1], [[16_383, good_weight]] * 3, [[0, 0]] * 3)
    book.record(CAPABILITY, epoch, ["bad", "good"], result)


async def test_the_node_shows_its_consensus_by_route_cli_and_metrics(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    async with open_node(parse_config({"node": NODE}, base=tmp_path)) as node:
        url = node.admin_url
        code, out, _ = await aaex(capsys, "consensus", "show", "--admin", url)
        assert code == 0 and "no consensus computed" in out
        record(node.market.consensus, 0, 65_535)
        record(node.market.consensus, 1, 49_149)
        async with aiohttp.ClientSession() as http:
            async with http.get(url + "/consensus") as response:
                latest = await response.json()
            async with http.get(url + "/consensus?epoch=0") as response:
                first = await response.json()
            async with http.get(url + "/consensus?epoch=-1") as response:
                assert response.status == 400
                assert "epoch" in (await response.json())["error"]
            async with http.get(url + "/metrics") as response:
                exposition = await response.text()
        code, out, _ = await aaex(capsys, "consensus", "show", "--admin", url, "--epoch", "0",
                                  "--json")
        assert code == 0 and json.loads(out) == first
        code, out, _ = await aaex(capsys, "consensus", "show", "--admin", url)
        assert code == 0 and "forecast.demand, epoch 1" in out and "good" in out
    assert latest[CAPABILITY]["epoch"] == 1 and first[CAPABILITY]["epoch"] == 0
    sellers = latest[CAPABILITY]["sellers"]
    assert [s["seller"] for s in sellers] == ["good", "bad"]  # best first
    assert sellers[0]["quality"] == 1.0 and sellers[1]["quality"] == pytest.approx(1 / 3, abs=1e-3)
    assert sum(s["incentive"] for s in sellers) == pytest.approx(1.0, abs=1e-5)
    families = {f.name: f for f in text_string_to_metric_families(exposition)}
    assert families["aaex_consensus_epoch"].samples[0].value == 1
    incentive = {s.labels["seller"]: s.value for s in families["aaex_consensus_incentive"].samples}
    assert incentive["good"] == pytest.approx(0.75, abs=1e-5)


def test_a_consensus_book_keeps_a_bounded_number_of_epochs() -> None:
    book = ConsensusBook()
    for epoch in range(KEPT_EPOCHS + 10):
        record(book, epoch, 65_535)
    assert book.standing(CAPABILITY, 0) is None and book.standing(CAPABILITY, 10) is not None
    latest = book.standing(CAPABILITY)
    assert latest is not None and latest.epoch == KEPT_EPOCHS + 9
    assert book.document(epoch=3) == {}
