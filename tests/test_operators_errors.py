"""An operator's ordinary mistakes and mishaps end in one line naming the cause, exit 2.

The traceback behind the line is there with `aaex -v`. The purchase cut off by its dying node
runs two real `aaex node run` processes and the `aaex market buy` process between them.
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.node_kit import ROOT, aaex, running_node

SELLER_TOML = """
[node]
http = "127.0.0.1:0"
admin = "127.0.0.1:0"
p2p = ["/ip4/127.0.0.1/tcp/0"]
drain_timeout = 1

[[agents]]
name = "forecaster"
class = "tests.peers.market_agents:SlowForecaster"
[agents.settings]
cost = 1.0
exponent = 1.0
latency_ms = 5000
deadline_s = 12
work_seconds = 30
"""

BUYER_TOML = """
[node]
http = "127.0.0.1:0"
admin = "127.0.0.1:0"
p2p = ["/ip4/127.0.0.1/tcp/0"]
seeds = ["{seed}"]

[market]
negotiation_window = 2

[[agents]]
name = "shopper"
class = "marketplace:Buyer"
"""


async def test_a_purchase_cut_off_by_its_dying_node_ends_in_one_line(
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
            code, _, err = await aaex(capsys, "account", "deposit", "--config", str(buyer_toml),
                                      "shopper", "10")
            assert code == 0, err
            buy = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "marketplace.cli", "market", "buy", "forecast.demand",
                "--config", str(buyer_toml), "--agent", "shopper", "--task", str(task),
                "--budget", "5", "--deadline", "15", cwd=ROOT,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            assert buy.stdout is not None and buy.stderr is not None
            shown: list[bytes] = []
            try:
                async with asyncio.timeout(90):  # the seller works 30 s: the kill lands first
                    while not (line := await buy.stdout.readline()).startswith(b"agreement "):
                        shown.append(line)
                        assert line, (shown, await buy.stderr.read())
                assert await buyer.stop(signal.SIGKILL) == -signal.SIGKILL
                _, err_bytes = await asyncio.wait_for(buy.communicate(), 60)
            finally:
                if buy.returncode is None:
                    buy.kill()
                    await buy.wait()
    stderr = err_bytes.decode()
    assert buy.returncode == 2, stderr
    assert stderr.splitlines() == [stderr.strip()], stderr  # one line, no traceback
    assert stderr.startswith(f"aaex: the node at {buyer.ready['admin']} stopped answering "
                             "mid-request (did it stop?): "), stderr


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _aaex(tmp_path: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "marketplace.cli", *argv], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.parametrize("admin", ["closed", "nonsense"])
def test_an_admin_url_that_does_not_answer_is_one_line_and_v_shows_the_traceback(
        tmp_path: Path, admin: str) -> None:
    url = f"http://127.0.0.1:{_closed_port()}" if admin == "closed" else "nonsense"
    (tmp_path / "task.json").write_text("{}")
    (tmp_path / "admin.token").write_text("token\n")
    buy = ["market", "buy", "forecast.demand", "--admin", url, "--token-file",
           str(tmp_path / "admin.token"), "--agent", "shopper", "--task",
           str(tmp_path / "task.json"), "--budget", "1", "--deadline", "5"]
    quiet, verbose = _aaex(tmp_path, *buy), _aaex(tmp_path, "-v", *buy)
    expected = (f"aaex: cannot reach the node at {url} (" if admin == "closed"
                else "aaex: nonsense is not a URL; write one like http://127.0.0.1:8701")
    assert quiet.returncode == verbose.returncode == 2
    assert quiet.stderr.splitlines() == [quiet.stderr.strip()], quiet.stderr
    assert quiet.stderr.startswith(expected), quiet.stderr
    assert "Traceback (most recent call last)" in verbose.stderr
    assert verbose.stderr.splitlines()[-1] == quiet.stderr.strip()


def test_a_data_dir_that_cannot_be_made_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("not a folder\n")
    (tmp_path / "node.toml").write_text(f'[node]\np2p = []\ndata_dir = "{tmp_path}/a-file/data"\n')
    result = _aaex(tmp_path, "node", "run", "--config", str(tmp_path / "node.toml"))
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines()[-1] == (
        f"aaex: node.data_dir = {tmp_path}/a-file/data: cannot create it (Not a directory); "
        "choose a folder this user may write")
    assert "Traceback" not in result.stderr
