"""`python -m bench.consensus` prints its table and then one JSON object with every mode."""

from __future__ import annotations

import json

import pytest

from bench.consensus import main


def test_the_benchmark_reports_each_mode_as_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--validators", "8", "--sellers", "30", "--repeat", "1"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("one yuma_epoch, 8 validators x 30 sellers")
    figures = json.loads(lines[-1])
    assert [m["mode"] for m in figures["modes"]] == ["classic", "yuma3", "yuma3+liquid_alpha"]
    assert all(m["wall_best_s"] >= 0 and m["cpu_within_goal"] for m in figures["modes"])
