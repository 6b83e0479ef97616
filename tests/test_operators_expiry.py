"""A seller killed right after it countersigned, before its answer left: two `aaex node run`
processes, each with its own key, config and ledger.

The seller books the sale and dies in the same instant (`DiesAfterCountersigning` SIGKILLs
its node inside `agreed`), so the buyer never sees the countersignature, escrows nothing and
buys elsewhere or gives up. Restarted, the seller asks the buyer whether it escrowed; the
buyer's books never held the agreement, so the buyer signs its expiry, and both books close
it as ``expired``, nothing owed: the statements agree line for line.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from aaex_agents.money import ZERO
from marketplace.contracts.ledger import open_ledger
from tests.node_kit import NodeProcess, aaex, running_node

BUYER_TOML = """
[node]
http = "127.0.0.1:0"
admin = "127.0.0.1:0"
p2p = ["/ip4/127.0.0.1/tcp/0"]
drain_timeout = 2

[market]
negotiation_window = 0.5

[[agents]]
name = "shopper"
class = "marketplace:Buyer"
"""

SELLER_TOML = """
[node]
http = "127.0.0.1:0"
admin = "127.0.0.1:0"
p2p = ["/ip4/127.0.0.1/tcp/0"]
seeds = ["{seed}"]
drain_timeout = 2

[market]
resolve_period = 0.5

[[agents]]
name = "forecaster"
class = "tests.peers.market_agents:DiesAfterCountersigning"
settings = {{ cost = 1.0, marker = "{marker}" }}
"""


async def test_a_seller_killed_after_countersigning_closes_the_sale_as_expired_on_both_books(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    seller_dir, buyer_dir = tmp_path / "seller", tmp_path / "buyer"
    seller_dir.mkdir()
    buyer_dir.mkdir()
    seller_toml, buyer_toml = seller_dir / "node.toml", buyer_dir / "node.toml"
    buyer_toml.write_text(BUYER_TOML)
    task = tmp_path / "task.json"
    task.write_text(json.dumps({"history": [1, 2, 3]}))
    marker = tmp_path / "died-once"

    async with running_node(buyer_toml) as buyer:
        seller_toml.write_text(SELLER_TOML.format(seed=buyer.ready["p2p"][0], marker=marker))
        code, _, err = await aaex(capsys, "account", "deposit", "--config", str(buyer_toml),
                                  "shopper", "10")
        assert code == 0, err
        seller = await NodeProcess.start(seller_toml)
        for _ in range(20):  # until the seller's ad reached the buyer's DHT
            code, _, err = await aaex(capsys, "market", "buy", "forecast.demand", "--config",
                                      str(buyer_toml), "--agent", "shopper", "--task",
                                      str(task), "--budget", "5", "--deadline", "10")
            if marker.exists():
                break
        assert marker.exists(), err
        assert code == 1  # the only seller died before its countersignature left
        assert await seller.stop() == -signal.SIGKILL

        async with open_ledger(seller_dir / "data" / "ledger.sqlite") as books:
            [sale] = await books.lines()
        assert sale.verdict == "open"  # booked by the seller, unknown to the buyer
        code, out, _ = await aaex(capsys, "account", "statement", "--config", str(buyer_toml),
                                  "--with", sale.seller, "--json")
        assert json.loads(out)["lines"] == []

        async with running_node(seller_toml) as restarted:
            closed = await restarted.event("sale_expired")
            assert closed["agreement_id"] == sale.agreement_id
            code, out, _ = await aaex(capsys, "account", "reconcile", "--config",
                                      str(seller_toml), "--with", sale.buyer)
            assert code == 0 and ": agree" in out, out
        expired = [e for e in buyer.events if e.get("event") == "expired"]
        assert [e["agreement_id"] for e in expired] == [sale.agreement_id]
        code, out, _ = await aaex(capsys, "account", "statement", "--config", str(buyer_toml),
                                  "--with", sale.seller, "--json")
        [line] = json.loads(out)["lines"]
        assert (line["agreement_id"], line["verdict"]) == (sale.agreement_id, "expired")
        code, out, _ = await aaex(capsys, "account", "show", "--config", str(buyer_toml),
                                  "--json")
        [shopper] = json.loads(out)
        assert (shopper["available"], shopper["held"]) == ("10", "0")

    for books_path in (buyer_dir / "data" / "ledger.sqlite",
                       seller_dir / "data" / "ledger.sqlite"):
        async with open_ledger(books_path) as books:
            await books.verify()
            [line] = await books.lines()
            assert (line.verdict, line.amount) == ("expired", ZERO)
