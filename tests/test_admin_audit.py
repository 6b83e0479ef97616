"""The admin API's audit routes on a real node: recording, proofs, and bad input as 400s."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest

from marketplace.contracts.merkle import verify_consistency, verify_inclusion
from marketplace.node.node import open_node
from tests.market_kit import BUYER
from tests.test_admin_writes import node_config

USE = {"agent": "forecaster", "dataset": "sales/q3.parquet", "purpose": "forecast",
       "owner": BUYER.address}


async def test_record_then_prove_inclusion_and_consistency(tmp_path: Path) -> None:
    async with open_node(node_config(tmp_path)) as node, aiohttp.ClientSession() as http:
        token = (tmp_path / "data" / "admin.token").read_text().strip()

        async def call(method: str, path: str, body: Any = None,
                       auth: bool = True) -> tuple[int, Any]:
            headers = {"Authorization": f"Bearer {token}"} if auth else {}
            async with http.request(method, node.admin_url + path, json=body,
                                    headers=headers) as response:
                return response.status, await response.json()

        assert (await call("POST", "/audit", USE, auth=False))[0] == 401
        for event in ("received", "used", "deleted"):
            status, answer = await call("POST", "/audit", {**USE, "event": event})
            assert status == 200, answer
        assert answer["size"] == 3 and answer["index"] == 2
        status, log = await call("GET", "/audit?limit=2")
        assert [(e["index"], e["event"]) for e in log["entries"]] == [(2, "deleted"),
                                                                     (1, "used")]
        assert log["problem"] is None and log["head"]["size"] == 3
        status, found = await call("GET", "/audit/prove?index=1")
        verify_inclusion(1, 3, bytes.fromhex(found["leaf_hash"]),
                         [bytes.fromhex(p) for p in found["proof"]],
                         bytes.fromhex(log["head"]["root"]))
        status, found = await call("GET", "/audit/consistency?first=1&second=3")
        verify_consistency(1, 3, bytes.fromhex(found["first_root"]),
                           bytes.fromhex(log["root"]), [bytes.fromhex(p) for p in found["proof"]])
        assert (await call("GET", "/audit/partners")) == (200, [])


@pytest.mark.parametrize(("path", "body", "field"), [
    ("/audit/prove?index=abc", None, "index"),
    ("/audit/prove?index=5", None, "index"),
    ("/audit/prove", None, "index"),
    ("/audit/consistency?first=0", None, "first"),
    ("/audit/consistency?first=1&second=9", None, "second"),
    ("/audit?limit=0", None, "limit"),
    ("/audit", {**USE, "event": "stolen"}, "event"),
    ("/audit", {**USE, "content_hash": "xyz"}, "content_hash"),
    ("/audit", {**USE, "dataset": ""}, "dataset"),
    ("/audit", {**USE, "owner": "aaex1short"}, "owner"),
    ("/audit", {**USE, "agent": "nobody"}, "agent"),
    ("/audit", {**USE, "colour": "red"}, "colour"),
    ("/audit", {**USE, "purpose": 7}, "purpose"),
])
async def test_bad_input_is_a_400_naming_it(tmp_path: Path, path: str, body: object,
                                            field: str) -> None:
    async with open_node(node_config(tmp_path)) as node, aiohttp.ClientSession() as http:
        token = (tmp_path / "data" / "admin.token").read_text().strip()
        await node.ledger.record_access(node.identity.address, "x", "y")  # a log of one
        method = "GET" if body is None else "POST"
        async with http.request(method, node.admin_url + path, json=body,
                                headers={"Authorization": f"Bearer {token}"}) as response:
            answer = await response.json()
            assert response.status == 400, answer
            assert answer["error"].startswith(f"{field}: "), answer
        assert await node.ledger.audit_size() == 1
