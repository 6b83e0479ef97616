from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from aaex_agents import Credits, Identity
from marketplace.cli.main import main

ROOT = Path(__file__).resolve().parent.parent
NODE_TOML = """
[node]
http = "127.0.0.1:0"
admin = "127.0.0.1:0"
p2p = ["/ip4/127.0.0.1/tcp/0"]

[[agents]]
name = "forecaster"
class = "tests.peers.seller_peer:ForecastSeller"
settings = { cost = 2.0, exponent = 4.0 }
"""


def test_keys_new_then_show(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "agent.key"
    assert main(["keys", "new", str(path), "--json"]) == 0
    created = json.loads(capsys.readouterr().out)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert main(["keys", "show", str(path), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["address"] == created["address"] == Identity.load(path).address


def test_sealed_key_needs_its_passphrase(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "sealed.key"
    monkeypatch.setenv("AAEX_TEST_PASS", "correct horse")
    assert main(["keys", "new", str(path), "--passphrase-env", "AAEX_TEST_PASS"]) == 0
    assert main(["keys", "show", str(path)]) == 2
    assert "sealed" in capsys.readouterr().err
    monkeypatch.setenv("AAEX_TEST_PASS", "wrong")
    assert main(["keys", "show", str(path), "--passphrase-env", "AAEX_TEST_PASS"]) == 2
    assert "wrong passphrase" in capsys.readouterr().err


def test_existing_key_is_not_overwritten(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "agent.key"
    assert main(["keys", "new", str(path)]) == 0
    before = path.read_bytes()
    assert main(["keys", "new", str(path)]) == 2
    assert "--force" in capsys.readouterr().err
    assert path.read_bytes() == before


def test_console_script_is_installed() -> None:
    result = subprocess.run([sys.executable, "-m", "marketplace.cli", "--version"],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0 and result.stdout.startswith("aaex ")


def test_ledger_show_and_verify_then_tampering_is_found(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import asyncio
    import sqlite3

    from marketplace.contracts.ledger import LedgerConfig, open_ledger
    from tests.market_kit import OWNER

    path = tmp_path / "ledger.sqlite"
    funded = Identity.generate().address

    async def fund() -> None:
        async with open_ledger(path, config=LedgerConfig(owner=OWNER)) as ledger:
            await ledger.deposit(funded, Credits(5_000_000))
            await ledger.deposit(funded, Credits(2_000_000))

    asyncio.run(fund())
    assert main(["ledger", "show", str(path), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["balances"][funded] == {"available": "7", "available_micro": 7_000_000,
                                         "held": "0", "held_micro": 0}
    assert [e["kind"] for e in shown["entries"]] == ["deposit", "deposit"]
    assert main(["ledger", "verify", str(path)]) == 0
    assert "ledger verified: 2 entries" in capsys.readouterr().out

    with sqlite3.connect(path) as db:  # an operator edits the file behind the node's back
        db.execute("DROP TRIGGER entries_no_update")
        db.execute("UPDATE entries SET body = replace(body, '2000000', '9000000') WHERE seq = 2")
    assert main(["ledger", "verify", str(path), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is False and report["seq"] == 2


def test_market_search_finds_a_running_nodes_seller(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import signal

    config = tmp_path / "node.toml"
    config.write_text(NODE_TOML)
    node = subprocess.Popen([sys.executable, "-m", "marketplace.cli", "node", "run", "--config",
                             str(config)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True, cwd=ROOT)
    try:
        assert node.stdout is not None
        ready = json.loads(node.stdout.readline())
        seed = ready["p2p"][0]
        assert main(["market", "search", "forecast.demand", "--seed", seed, "--json"]) == 0
        ads = json.loads(capsys.readouterr().out)
        assert len(ads) == 1 and ads[0]["capability"] == "forecast.demand"
        assert ads[0]["reputation"] is None  # a host of its own: no node of ours rates anyone
        assert main(["market", "search", "forecast.demand", "--seed", seed,
                     "--max-price", "0.01"]) == 0
        assert "no seller of forecast.demand matches" in capsys.readouterr().out
        assert main(["market", "search", "forecast.demand", "--seed", seed, "--where",
                     "strategy_exponent == 4.0"]) == 0
        assert "aaex1" in capsys.readouterr().out
    finally:
        node.send_signal(signal.SIGTERM)
        assert node.wait(timeout=30) == 0


def test_json_log_format_writes_one_object_per_line() -> None:
    import logging

    from marketplace.cli.logs import JsonLogFormatter

    record = logging.LogRecord("aaex.test", logging.WARNING, __file__, 1, "ad %s refused",
                               ("x",), None)
    document = json.loads(JsonLogFormatter().format(record))
    assert document["level"] == "WARNING" and document["message"] == "ad x refused"
    assert document["logger"] == "aaex.test"
    result = subprocess.run([sys.executable, "-m", "marketplace.cli", "--log-format", "json",
                             "node", "run", "--config", "/nonexistent/node.toml"],
                            capture_output=True, text=True, timeout=60, check=False, cwd=ROOT)
    assert result.returncode == 2 and "cannot read" in result.stderr
