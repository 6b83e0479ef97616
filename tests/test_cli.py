from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from aaex_agents import Identity
from marketplace.cli import main


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
