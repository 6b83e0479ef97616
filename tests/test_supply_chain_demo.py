"""`aaex demo supply-chain` end to end: five nodes, a provider killed mid-task, a checked report.

The demo runs as a user runs it (the console script in a child process, which starts four
provider nodes of its own, each with the CPU model); the test then checks the report against
the ledger files of both sides and an independent plan checker instead of trusting the
report's own words. A second, smaller run is SIGKILLed once its providers are up: none of
them may outlive it, and the previous run found in its folder must still be there.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from aaex_agents.money import ZERO, Credits
from aaex_examples.supply_chain.grounding import ground, numbers_in

for _module in ("numpy", "statsmodels", "pyvrp", "matplotlib", "llama_cpp"):
    pytest.importorskip(_module, reason=f"{_module} comes with the cpu and demo extras")

from aaex_examples.supply_chain import routing  # noqa: E402
from aaex_examples.supply_chain.summary import render_summary  # noqa: E402
from marketplace.contracts.books import Position, Statement, differences  # noqa: E402
from marketplace.contracts.ledger import Ledger, open_ledger  # noqa: E402
from marketplace.node.accounts import agent_addresses  # noqa: E402
from marketplace.node.config import load_config  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
STORES = 8
TERMINAL = "terminal.txt"


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path, int]:
    out = tmp_path_factory.mktemp("demo")

    async def run() -> tuple[bytes, int]:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "marketplace.cli", "demo", "supply-chain", "--stores",
            str(STORES), "--groups", "2", "--out", str(out), "--json",
            cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "PYTHONUNBUFFERED": "1"})
        stdout, stderr = await asyncio.wait_for(process.communicate(), 500)
        assert process.returncode is not None
        if process.returncode != 0:
            print(stderr.decode(errors="replace")[-4000:])
        (out / TERMINAL).write_bytes(stderr)  # what the operator saw: progress, market lines
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
        runner_up = task["market"][0]["award"]["runner_up"]
        if runner_up is not None:  # its bid was the fallback: asked alone, at that price
            held = task["market"][1]["fallback"]
            assert held["provider"] == runner_up and task["market"][1]["sellers"] == [runner_up]
            bid = next(b for b in task["market"][0]["bids"] if b["provider"] == runner_up)
            assert held["price_micro"] == bid["price_micro"]

    async def read() -> tuple[Any, list[Any]]:
        async with open_ledger(Path(report["ledger"]["path"])) as ledger:
            return await ledger.verify(), await ledger.settled_receipts()

    verification, settled = asyncio.run(read())
    assert verification.agreements == verification.settled == len(settled)
    by_agreement = {signed.id: receipt.receipt for signed, receipt in settled}
    assert len(by_agreement) == len(settled)  # each agreement settled once
    for task in report["subtasks"]:
        met = [a for a in task["attempts"] if a["verdict"] == "met"]
        assert len(met) == 1  # paid once per subtask
        assert by_agreement[met[0]["agreement_id"]].release > ZERO


@pytest.mark.timeout(600)
def test_the_market_is_shown_per_subtask_and_routes_are_one_solve_both_routers_bid(
        demo: tuple[dict[str, Any], Path, int]) -> None:
    report, out, _ = demo
    for task in report["subtasks"]:
        assert task["status"] == "done" and task["market"], task["label"]
        last = task["market"][-1]
        assert last["award"]["provider"] == task["provider"] and last["award"]["why"]
        for bid in (b for r in task["market"] for b in r["bids"] if b["price"] is not None):
            assert Credits.parse(bid["price"], allow_zero=True).micro == bid["price_micro"]
            assert bid["latency_ms"] > 0 and "reputation" in bid and "utility" in bid
    routed = [t for t in report["subtasks"] if t["capability"] == "route.vrp"]
    assert len(routed) == 1 and len(routed[0]["stores"]) == STORES  # one solve of all stores
    bidders = {b["provider"] for b in routed[0]["market"][0]["bids"] if b["price"] is not None}
    assert bidders == {"route-thrifty", "route-express"}
    plan = report["routing"]
    assert plan["local"]["cost_km"] is not None
    assert plan["cost_km"] <= 1.02 * plan["local"]["cost_km"]
    terminal = (out / TERMINAL).read_text(encoding="utf-8")
    routing_line = f"route.vrp {routed[0]['label']}"
    assert f"{routing_line}: bids: route-" in terminal
    assert f"{routing_line}: awarded to {routed[0]['provider']} at " in terminal
    loser = next(iter(bidders - {routed[0]['provider']}))
    assert routed[0]["market"][0]["award"]["runner_up"] == loser  # the fallback, by name
    summary = render_summary(report)  # what the terminal shows without --json
    assert "The market: every seller's bid" in summary and "awarded: highest utility" in summary
    assert "a local solve of the same instance" in summary


def _node_books(out: Path, name: str) -> Path:
    return load_config(out / f"{name}.toml").ledger_path


async def _read_books(path: Path, partner: str
                      ) -> tuple[Statement, dict[str, Position], list[Any]]:
    async with open_ledger(path) as ledger:
        await ledger.verify()
        return await ledger.statement(partner), await ledger.positions(), \
            await _all_entries(ledger)


async def _all_entries(ledger: Ledger) -> list[Any]:
    found, after = [], 0
    while batch := await ledger.entries(after=after):
        found += batch
        after = batch[-1].seq
    return found


@pytest.mark.timeout(600)
def test_both_sides_books_agree_and_the_killed_provider_owes_the_penalty(
        demo: tuple[dict[str, Any], Path, int]) -> None:
    """Read from the ledger files of both sides, not from the report."""
    report, out = demo[0], demo[1]
    killed = report["killed"]
    assert killed["restarted_at_s"] is not None
    planner = agent_addresses(load_config(out / "planner.toml"))["planner"]
    providers = {n["name"]: n["agent_address"] for n in report["nodes"] if n["name"] != "planner"}
    killed_address = providers[killed["provider"]]

    async def read() -> tuple[dict[str, Statement], dict[str, Position], list[Any],
                              dict[str, tuple[Statement, dict[str, Position], list[Any]]]]:
        async with open_ledger(_node_books(out, "planner")) as ledger:
            statements = {name: await ledger.statement(address)
                          for name, address in providers.items()}
            positions, entries = await ledger.positions(), await _all_entries(ledger)
        books = {name: await _read_books(_node_books(out, name), planner) for name in providers}
        return statements, positions, entries, books

    statements, positions, entries, books = asyncio.run(read())
    # Funded through the admin API, the planner only: no seller lodges a bond any more.
    deposits = [e.body for e in entries if e.kind == "deposit"]
    assert [d["address"] for d in deposits] == [planner]
    assert any(json.loads(line).get("logger") == "marketplace.node.admin_writes"
               and "deposit of 100 credits for planner" in json.loads(line)["message"]
               for line in (out / "planner.log").read_text().splitlines())
    # The planner never paid the killed provider; its books hold the penalty it is owed.
    assert [e for e in entries if e.kind == "release" and e.body["seller"] == killed_address
            ] == []
    penalties = Credits(sum(e.body["penalty"] for e in entries
                            if e.kind == "refund" and e.body["seller"] == killed_address))
    assert penalties > ZERO
    assert positions[killed_address] == Position(ZERO, ZERO, ZERO, penalties)
    assert statements[killed["provider"]].net == penalties  # it owes the planner
    # The killed provider's own books, written by its node after the restart, say the same.
    theirs, their_positions, _ = books[killed["provider"]]
    assert their_positions[killed_address].payable == penalties
    assert their_positions[killed_address].receivable == ZERO
    assert theirs.net == -penalties
    assert {line.verdict for line in theirs.lines} == {"not_delivered"}
    # Every provider's statement with the planner matches the planner's, line by line.
    for name in providers:
        ours, theirs = statements[name], books[name][0]
        assert differences(ours, theirs) == [], name
        assert ours.net == -theirs.net
        assert [line.verdict for line in ours.lines if line.verdict == "open"] == []
    assert report["books"]["agreed"] and report["books"]["receipts_untaken"] == []
    assert all(row["agreed"] for row in report["books"]["providers"])


@pytest.mark.timeout(600)
def test_each_forecaster_uses_the_warehouses_data_under_its_own_grant_proven_on_both_sides(
        demo: tuple[dict[str, Any], Path, int]) -> None:
    """Read from the ledger files of both sides: the grants the agreements bind, each
    forecaster's own audit log, and the entries the warehouse's node holds proven."""
    report, out = demo[0], demo[1]
    part = report["sovereignty"]
    assert part["problems"] == []
    addresses = agent_addresses(load_config(out / "planner.toml"))
    warehouse = addresses["warehouse"]
    forecasters = {n["name"]: n["agent_address"] for n in report["nodes"]
                   if n["name"].startswith("forecast-")}
    grants = {g["grant_id"]: g for g in part["grants"]}
    for grant in grants.values():  # forecast.demand only, one hour, never passed on
        assert (grant["purposes"], grant["actions"], grant["transferable"]) == \
            (["forecast.demand"], ["use"], False)
        assert grant["not_after_ms"] - grant["not_before_ms"] == 3_600_000

    async def read() -> tuple[list[Any], list[Any], dict[str, tuple[list[Any], Any]]]:
        async with open_ledger(_node_books(out, "planner")) as ledger:
            agreements, received = await ledger.agreements(), \
                await ledger.audit_received(limit=1000)
        logs = {}
        for name in forecasters:
            async with open_ledger(_node_books(out, name)) as books:
                logs[name] = (await books.audit_entries(limit=1000),
                              await books.audit_verify_own())
        return agreements, received, logs

    agreements, received, logs = asyncio.run(read())
    names = {address: name for name, address in forecasters.items()}
    bound = {}
    for signed in agreements:  # every forecast was agreed under the seller's own grant
        seller = names.get(signed.agreement.seller)
        if seller is not None:
            grant = signed.agreement.terms.grant
            assert grant is not None and grants[grant.grant_id]["grantee"] == seller
            bound[signed.id] = grant.grant_id
    held = {(index, entry) for _, index, entry, _ in received}
    refused = []
    for name, (entries, problem) in logs.items():
        assert problem is None, problem
        for index, entry in entries:
            assert entry.owner == warehouse and entry.grant in grants
            assert (index, entry) in held, f"{name}'s entry {index} is not proven to the owner"
            if entry.event == "used":
                assert bound[entry.agreement_id] == entry.grant
            else:
                refused.append((name, entry))
    # The dishonest forecaster asked to train on the data; its own node refused, and said so.
    assert refused and {name for name, _ in refused} == {"forecast-express"}
    assert all("use for training refused: outside purpose" in e.purpose for _, e in refused)
    terminal = (out / TERMINAL).read_text(encoding="utf-8")
    assert "forecast-express tried to keep the warehouse's sales history for training; its " \
        "own node refused: outside purpose" in terminal
    # Each forecast names the data it was made from, under its grant, as the owner hashed it.
    done = [t for t in report["subtasks"] if t["capability"] == "forecast.demand"]
    assert len(part["provenance"]) == len(done) and all(not p["problems"]
                                                        for p in part["provenance"])
    for record in part["provenance"]:
        [data] = [i for i in record["inputs"] if i["role"] == "data"]
        assert data["grant_id"] == bound[record["agreement_id"]]
        assert data["hash"] == grants[data["grant_id"]]["dataset_hash"]
    assert "forecasts signed with the inputs, model and code" in render_summary(report)


def _alive(pid: int, marker: str) -> bool:
    """True while `pid` runs and is the process we started (its command names `marker`)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        command = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state != "Z" and marker in command


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
@pytest.mark.timeout(300)
def test_providers_die_with_a_killed_demo_and_a_previous_run_is_kept(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    (out / "planner-data").mkdir(parents=True)
    (out / "planner-data" / "ledger.sqlite").write_bytes(b"the previous run's ledger")
    (out / "report.json").write_text('{"previous": true}')
    (out / "planner.log").write_text("the previous run's log\n")
    (out / "notes.txt").write_text("not the demo's")
    errors = (tmp_path / "stderr.txt").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "marketplace.cli", "demo", "supply-chain", "--stores", "8",
         "--llm", "none", "--no-kill", "--out", str(out)], cwd=ROOT,
        stdout=subprocess.DEVNULL, stderr=errors, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        nodes = out / "nodes.json"
        deadline = time.monotonic() + 180
        while not nodes.exists():  # written once every provider node is up
            assert process.poll() is None, (tmp_path / "stderr.txt").read_text()[-3000:]
            assert time.monotonic() < deadline, "the providers did not start"
            time.sleep(0.2)
        pids = [p["pid"] for p in json.loads(nodes.read_text())["providers"]]
        assert len(pids) == 4 and all(_alive(pid, str(out)) for pid in pids)
        process.send_signal(signal.SIGKILL)  # no cleanup of the demo's runs
        process.wait(30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(30)
        errors.close()
    deadline = time.monotonic() + 10
    while (left := [pid for pid in pids if _alive(pid, str(out))]) \
            and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in left:  # tidy up before failing
        os.kill(pid, signal.SIGKILL)
    assert left == [], "provider nodes outlived the demo"
    # The previous run was moved aside whole, nothing of it deleted or overwritten.
    [previous] = [p for p in out.iterdir() if p.name.startswith("previous-")]
    assert (previous / "planner-data" / "ledger.sqlite").read_bytes() == \
        b"the previous run's ledger"
    assert (previous / "report.json").read_text() == '{"previous": true}'
    assert (previous / "planner.log").read_text() == "the previous run's log\n"
    assert (out / "notes.txt").read_text() == "not the demo's"
    assert not (out / "report.json").exists()  # this run never got that far
    assert "the previous run's log" not in (out / "planner.log").read_text()


@pytest.mark.timeout(600)
def test_providers_explain_their_results_with_their_llm(
        demo: tuple[dict[str, Any], Path, int]) -> None:
    report = demo[0]
    for task in report["subtasks"]:
        text, by = task["explanation"], task["explained_by"]
        assert by["raw"], task  # the model answered ("(no explanation: ...)" on failure)
        assert "SmolLM2" in by["model"]
        assert 0 < by["tokens"] <= 48
        if not text.startswith("("):  # what survived names no number outside the facts
            assert ground(text, by["facts"]).dropped == (), (text, by["facts"])
        for sentence in by["dropped"]:  # each dropped sentence has an unbacked number
            assert numbers_in(sentence) and ground(sentence, by["facts"]).kept == ""
    assert report["job_source"] in {"llm", "mixed", "fallback"}
    assert report["llm_answer"]  # the planner's model answered (checked field by field)
