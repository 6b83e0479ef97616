"""`yuma_epoch` against subtensor's own scenarios, every epoch (tests/data/README.md).

Yuma 3: the dividends upstream asserts, and the bond tables it writes down but never checks
(its bond loop compares nothing: each expected row is skipped past its end), both within
1e-3. Classic Yuma: the u16 bonds upstream asserts with `assert_eq!`, exactly, and the dividends
its trace comments log, within 1e-8.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from marketplace.consensus import ONE, YumaParams, reset_bonds, yuma_epoch
from marketplace.consensus.fixed import from_u16, to_u16

DATA = Path(__file__).parent / "data"
YUMA3 = json.loads((DATA / "yuma3_scenarios.json").read_text())
CLASSIC = json.loads((DATA / "yuma_classic_bonds.json").read_text())


def _stored(bonds: tuple[tuple[int, ...], ...]) -> list[list[int]]:
    """Bonds as subtensor keeps them between epochs: u16, read back as proportions."""
    return [[from_u16(to_u16(b)) for b in row] for row in bonds]


def _close(actual: list[int] | tuple[int, ...], expected: list[float], tol: float) -> bool:
    return all(abs(a / ONE - e) <= tol for a, e in zip(actual, expected, strict=True))


@pytest.mark.parametrize("scenario", YUMA3["scenarios"], ids=lambda s: s["name"])
def test_yuma3_scenario_matches_upstream_every_epoch(scenario: dict[str, Any]) -> None:
    params = YumaParams(**YUMA3["params"], liquid_alpha_enabled=scenario["liquid_alpha_enabled"])
    tol = YUMA3["tolerance"]
    stake = scenario["stake"]
    sellers = len(scenario["weights"][0][0])
    bonds: list[list[int]] = [[0] * sellers for _ in stake]
    checked = 0
    for epoch, weights in enumerate(scenario["weights"]):
        if str(epoch) in scenario.get("reset_bonds", {}):
            bonds = [list(row) for row in reset_bonds(bonds, scenario["reset_bonds"][str(epoch)])]
        result = yuma_epoch(stake, weights, bonds, params)
        bonds = _stored(result.bonds)
        dividends, table = scenario["expected_dividends"][epoch], scenario["expected_bonds"][epoch]
        if dividends is None:
            continue
        assert _close(result.dividends, dividends, tol), (epoch, result.dividends, dividends)
        for row, expected in zip(bonds, table, strict=True):
            assert _close(row, expected, tol), (epoch, bonds, table)
        checked += 1
    assert checked == len(scenario.get("checked_epochs", scenario["weights"]))


def test_classic_yuma_matches_upstream_bonds_and_trace() -> None:
    params = YumaParams(**CLASSIC["params"])
    stake = CLASSIC["stake"]
    bonds = [[0] * 4 for _ in stake]
    for number, epoch in enumerate(CLASSIC["epochs"]):
        result = yuma_epoch(stake, epoch["weights"], bonds, params)
        stored = [[to_u16(b) for b in row] for row in result.bonds]
        bonds = [[from_u16(b) for b in row] for row in stored]
        if epoch["asserted_bonds_u16"] is not None:
            column = [row[epoch["column"]] for row in stored]
            assert column == epoch["asserted_bonds_u16"], number  # upstream's assert_eq!
        assert _close(result.dividends, epoch["trace_dividends"], 1e-8), (number,
                                                                           result.dividends)


def test_the_scenarios_are_what_upstream_wrote() -> None:
    """The vendored file names its source, commit and license, and holds every epoch."""
    assert YUMA3["commit"] == CLASSIC["commit"] == "14bc6f9f964b9cc362e9635dd110a487fa5d15a0"
    names = [s["name"] for s in YUMA3["scenarios"]]
    assert names == ["test_yuma_3_kappa_moves_first", "test_yuma_3_kappa_moves_second",
                     "test_yuma_3_kappa_moves_last", "test_yuma_3_one_epoch_switch",
                     "test_yuma_3_liquid_alpha_disabled", "test_yuma_3_stable_miner",
                     "test_yuma_3_bonds_reset"]
    assert "Unlicense" in YUMA3["license"]
