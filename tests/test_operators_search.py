"""`aaex market search --config` searches through the running node and shows whom it trusts.

Two `aaex node run` processes. The buyer's operator buys once from the terminal, then
searches through the buyer's node: the seller comes with the reputation that purchase gave
it, and the search starts no libp2p host of its own (the CLI process never loads libp2p).
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest

from tests.node_kit import ROOT, running_node
from tests.test_operators import BUYER_TOML, SELLER_TOML, aaex

CLI_TELLING_IF_LIBP2P_LOADED = (
    "import sys; from marketplace.cli.main import main; code = main(sys.argv[1:]); "
    "print('libp2p loaded:', 'libp2p' in sys.modules); sys.exit(code)")


async def _search(*argv: str) -> tuple[int, str, str]:
    """`aaex market search ARGV` in a process of its own, which says if it loaded libp2p."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CLI_TELLING_IF_LIBP2P_LOADED, "market", "search", *argv,
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_search_through_the_node_shows_each_sellers_reputation_and_leaves_no_host(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "seller").mkdir()
    (tmp_path / "buyer").mkdir()
    seller_toml, buyer_toml = tmp_path / "seller" / "node.toml", tmp_path / "buyer" / "node.toml"
    seller_toml.write_text(SELLER_TOML)
    task = tmp_path / "task.json"
    task.write_text(json.dumps({"history": [10, 20, 30]}))
    async with running_node(seller_toml) as seller:
        buyer_toml.write_text(BUYER_TOML.format(seed=seller.ready["p2p"][0]))
        async with running_node(buyer_toml) as buyer:
            code, out, err = await _search("forecast.demand", "--config", str(buyer_toml),
                                           "--json")
            assert (code, out.splitlines()[-1]) == (0, "libp2p loaded: False"), err
            [unrated] = json.loads(out.splitlines()[0])
            assert unrated["reputation"] == {"score": 0.5, "raters": 0, "receipts": 0}

            code, _, err = await aaex(capsys, "account", "deposit", "--config",
                                      str(buyer_toml), "shopper", "25")
            assert code == 0, err
            code, out, err = await aaex(capsys, "market", "buy", "forecast.demand", "--config",
                                        str(buyer_toml), "--agent", "shopper", "--task",
                                        str(task), "--budget", "10", "--deadline", "30",
                                        "--json")
            assert code == 0 and json.loads(out)["verdict"] == "met", err

            code, out, err = await _search("forecast.demand", "--config", str(buyer_toml),
                                           "--json", "--where", "strategy_exponent == 4.0",
                                           "--max-price", "9")
            assert (code, out.splitlines()[-1]) == (0, "libp2p loaded: False"), err
            [rated] = json.loads(out.splitlines()[0])
            assert rated["address"] == unrated["address"]
            assert rated["reputation"] == {"score": 1.0, "raters": 1, "receipts": 1}
            assert (rated["price"], rated["price_currency"]) == (unrated["price"], "credit")

            code, out, err = await _search("forecast.demand", "--admin", buyer.ready["admin"])
            assert code == 0, err
            assert "reputation" in out and "1.00 (1 rater(s), 1 receipt(s))" in out

            code, out, err = await _search("forecast.demand", "--config", str(buyer_toml),
                                           "--max-price", "0.01")
            assert (code, out.splitlines()[0]) == (0, "no seller of forecast.demand matches")

            code, out, err = await _search("forecast.demand", "--config", str(buyer_toml),
                                           "--where", "((")
            assert code == 2 and err.splitlines() == [err.strip()], err
            assert err.startswith("aaex: the node refused (400): --where '((': "), err
