"""The audit trail between two operators: a rewritten log is caught by the data owner.

Two `aaex node run` processes. The user's node (agent ``forecaster``) records uses of the
data owner's data (agent ``shopper`` on the other node) through its admin API; its node
sends the owner's node each new entry under a fresh signed head, and the owner's node checks
the inclusion and consistency proofs and keeps the head (`aaex audit verify`: ok). The
user's node is then stopped, its audit log rewritten in the SQLite file (the hash-chained
ledger left alone, so the node starts), and restarted; its next head cannot be proven
consistent with the one the owner holds: the owner's node catches it, and `aaex audit
verify` there names the user's node, with the two signed heads as evidence.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from marketplace.contracts.audit_log import AuditEntry
from tests.node_kit import NodeProcess, aaex, running_node
from tests.test_operators_expiry import BUYER_TOML

USER_TOML = """
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
class = "tests.peers.market_agents:SlowForecaster"
settings = {{ cost = 1.0 }}
"""


async def record(node: NodeProcess, data: Path, body: dict[str, Any]) -> dict[str, Any]:
    token = (data / "admin.token").read_text().strip()
    async with aiohttp.ClientSession() as http, http.post(
            node.ready["admin"] + "/audit", json=body,
            headers={"Authorization": f"Bearer {token}"}) as response:
        answer: dict[str, Any] = await response.json()
        assert response.status == 200, answer
        return answer


async def test_a_log_rewritten_while_its_node_was_stopped_is_caught_by_the_data_owner(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for side in ("owner", "user"):
        (tmp_path / side).mkdir()
    owner_toml, user_toml = tmp_path / "owner" / "node.toml", tmp_path / "user" / "node.toml"
    owner_toml.write_text(BUYER_TOML)
    user_data = tmp_path / "user" / "data"
    async with running_node(owner_toml) as owner:
        user_toml.write_text(USER_TOML.format(seed=owner.ready["p2p"][0]))
        async with aiohttp.ClientSession() as http, \
                http.get(owner.ready["admin"] + "/agents") as response:
            [shopper] = await response.json()
        use = {"agent": "forecaster", "owner": shopper["address"],
               "dataset": "sales/2026-q3.parquet", "content_hash": "ab" * 32,
               "purpose": "demand forecast"}
        async with running_node(user_toml) as user:
            await record(user, user_data, {**use, "event": "received"})
            await record(user, user_data, {**use, "event": "used"})
            taken = await owner.event("audit_head_taken", timeout=60)
            assert taken["log"] == user.ready["node"]
            while taken["size"] < 2:  # the two may arrive under one head or two
                taken = await owner.event("audit_head_taken", timeout=60,
                                          since=owner.events.index(taken) + 1)
            code, out, err = await aaex(capsys, "audit", "verify", "--config", str(owner_toml),
                                        "--json")
            assert code == 0, out + err
            [partner] = json.loads(out)["partners"]
            assert (partner["log"], partner["status"], partner["size"]) == (
                user.ready["node"], "ok", 2)
            code, out, err = await aaex(capsys, "audit", "log", "--config", str(owner_toml),
                                        "--json")
            assert [(r["event"], r["dataset"]) for r in json.loads(out)["received"]] == [
                ("used", "sales/2026-q3.parquet"), ("received", "sales/2026-q3.parquet")]
            code, out, err = await aaex(capsys, "audit", "prove", "--config", str(user_toml),
                                        "0")
            assert code == 0 and "entry 0 is in the log of 2: verified here" in out, out + err
            code, out, err = await aaex(capsys, "audit", "prove", "--config", str(user_toml),
                                        "--first", "1")
            assert code == 0 and "verified here" in out, out + err

        # The user's operator rewrites what the first use was, while its node is stopped.
        forged = AuditEntry(at_ms=1, agent="forecaster", owner=shopper["address"],
                            dataset="sales/2026-q3.parquet", purpose="nothing to see").leaf()
        with sqlite3.connect(user_data / "ledger.sqlite") as db:
            db.execute("DROP TRIGGER audit_leaves_no_update")
            db.execute("UPDATE audit_leaves SET leaf = ? WHERE idx = 0", (forged,))

        async with running_node(user_toml) as user:
            await record(user, user_data, {**use, "event": "deleted"})
            caught = await owner.event("audit_caught", timeout=60)
            assert (caught["log"], caught["outcome"]) == (user.ready["node"], "inconsistent")
            await user.event("audit_head_refused", timeout=30)
            code, out, err = await aaex(capsys, "audit", "verify", "--config",
                                        str(user_toml))
            assert code == 1 and "PROBLEM" in out, out + err  # its own last head disagrees
        code, out, err = await aaex(capsys, "audit", "verify", "--config", str(owner_toml))
        assert code == 1, out + err
        assert f"partner log {user.ready['node']}: CAUGHT (inconsistent)" in out, out
        assert "re-checked here: inconsistent" in out, out
        code, out, err = await aaex(capsys, "audit", "verify", "--config", str(owner_toml),
                                    "--json")
        [partner] = json.loads(out)["partners"]
        assert (partner["status"], partner["size"], partner["rechecked"]) == (
            "inconsistent", 2, ["inconsistent"])
