"""`aaex demo supply-chain` end to end: five nodes, a provider killed mid-task, a checked report.

The demo runs as a user runs it (the console script in a child process, which starts four
provider nodes of its own, each with the CPU model); the test then checks the report against
the ledger file and an independent plan checker instead of trusting the report's own words.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

for _module in ("numpy", "statsmodels", "pyvrp", "matplotlib", "llama_cpp"):
    pytest.importorskip(_module, reason=f"{_module} comes with the cpu and demo extras")

from aaex_examples.supply_chain import routing  # noqa: E402
from marketplace.contracts.agreement import MINOR_UNITS  # noqa: E402
from marketplace.contracts.ledger import open_ledger  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
STORES = 8


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path, int]:
    out = tmp_path_factory.mktemp("demo")

    async def run() -> tuple[bytes, int]:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "marketplace.cli", "demo", "supply-chain", "--stores",
            str(STORES), "--groups", "2", "--zones", "2", "--out", str(out), "--json",
            cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "PYTHONUNBUFFERED": "1"})
        stdout, stderr = await asyncio.wait_for(process.communicate(), 500)
        assert process.returncode is not None
        if process.returncode != 0:
            print(stderr.decode(errors="replace")[-4000:])
        return stdout, process.returncode

    stdout, code = asyncio.run(run())
    return json.loads(stdout), out, code


@pytest.mark.timeout(600)
def test_the_demo_succeeds_and_writes_its_files(demo: tuple[dict[str, Any], Path, int]) -> None:
    report, out, code = demo
    assert code == 0
    assert json.loads((out / "report.json").read_text())["ledger"] == report["ledger"]
    # The in-process planner node logs to a file (the terminal shows progress), the
    # providers' logs are copied next to it.
    assert '"node ' in (out / "planner.log").read_text()
    assert (out / "forecast-express.log").stat().st_size > 0
    for picture in ("forecast.png", "routes.png"):
        assert (out / picture).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert report["job"]["stores"] == STORES
    assert {n["name"] for n in report["nodes"]} == {
        "planner", "forecast-thrifty", "forecast-express", "route-thrifty", "route-express"}


@pytest.mark.timeout(600)
def test_every_store_is_planned_on_feasible_routes_within_capacity(
        demo: tuple[dict[str, Any], Path, int]) -> None:
    report = demo[0]
    plan = report["routing"]
    forecast = report["forecast"]["stores"]
    assert len(forecast) == STORES
    assert all(len(v["forecast"]) == report["job"]["horizon_days"] for v in forecast.values())
    demand = {s: v["units"] for s, v in forecast.items()}
    assert plan["demand"] == demand
    problem = routing.RoutingProblem(
        depot=tuple(plan["depot"]), stores={s: tuple(xy) for s, xy in plan["stores"].items()},
        demand=demand, trucks=report["job"]["trucks"], capacity=report["job"]["truck_capacity"])
    routes = tuple(routing.make_route(problem, r["path"][1:-1]) for r in plan["routes"])
    routing.check_plan(problem, routing.Plan(routes=routes))  # every store once, capacity
    assert [r.load for r in routes] == [r["load"] for r in plan["routes"]]
    assert plan["cost_km"] == pytest.approx(sum(r.distance for r in routes), abs=0.01)
    assert report["dispatch"]["reserved"] == sum(demand.values())


@pytest.mark.timeout(600)
def test_the_killed_providers_work_is_rerouted_and_paid_once(
        demo: tuple[dict[str, Any], Path, int]) -> None:
    report = demo[0]
    killed = report["killed"]
    assert killed is not None and killed["subtasks"]
    rerouted = [t for t in report["subtasks"] if t["label"] in killed["subtasks"]]
    for task in rerouted:
        assert task["capability"] == "forecast.demand" and task["status"] == "done"
        assert task["attempts"][0] == {**task["attempts"][0], "provider": killed["provider"],
                                       "verdict": "not_delivered"}
        assert task["attempts"][-1]["verdict"] == "met"
        assert task["provider"] != killed["provider"]

    async def read() -> tuple[Any, list[Any], dict[str, Any]]:
        async with open_ledger(Path(report["ledger"]["path"])) as ledger:
            return await ledger.verify(), await ledger.settled_receipts(), \
                await ledger.balances()

    verification, settled, balances = asyncio.run(read())
    assert verification.agreements == verification.settled == len(settled)
    by_agreement = {signed.id: receipt.receipt for signed, receipt in settled}
    assert len(by_agreement) == len(settled)  # each agreement settled once
    for task in report["subtasks"]:
        met = [a for a in task["attempts"] if a["verdict"] == "met"]
        assert len(met) == 1  # paid once per subtask
        assert by_agreement[met[0]["agreement_id"]].release > 0
    paid_to_killed = [r for r in by_agreement.values()
                      if r.seller == killed["address"] and r.release > 0]
    assert paid_to_killed == []
    penalties = sum(r.penalty for r in by_agreement.values() if r.seller == killed["address"])
    assert balances[killed["address"]].available == 20 * MINOR_UNITS - penalties


@pytest.mark.timeout(600)
def test_providers_explain_their_results_with_their_llm(
        demo: tuple[dict[str, Any], Path, int]) -> None:
    report = demo[0]
    for task in report["subtasks"]:
        text = task["explanation"]
        assert text and not text.startswith("("), text  # "(no explanation: ...)" on failure
        assert "SmolLM2" in task["explained_by"]["model"]
        assert 0 < task["explained_by"]["tokens"] <= 48
    assert report["job_source"] in {"llm", "mixed", "fallback"}
    assert report["llm_answer"]  # the planner's model answered (checked field by field)
