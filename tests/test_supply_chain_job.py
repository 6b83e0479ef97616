"""The planner's reading of a request, and how it splits a job into subtasks."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from aaex_agents.errors import LLMOutputInvalid
from aaex_agents.llm import LLM, Completion, ModelInfo, Request, Usage, user

pytest.importorskip("pyvrp", reason="pyvrp comes with the demo extra: pip install '.[demo]'")

from aaex_examples.supply_chain import agents, routing
from aaex_examples.supply_chain.job import (
    JobError,
    ReplenishmentJob,
    interpret,
    parse_request,
)

REQUEST = ("Plan next week's replenishment for 20 stores from one depot with 3 trucks of "
           "4,500 units each, keeping 10% safety stock.")


class CannedAnswerLLM(LLM):
    """Test double: answers every request with fixed texts in turn (to inject bad answers)."""

    def __init__(self, answers: Sequence[str]) -> None:
        self.answers = list(answers)

    @property
    def info(self) -> ModelInfo:
        return ModelInfo(name="canned", quantization="none", backend="test-double")

    async def generate(self, request: Request) -> Completion:
        return Completion(text=self.answers.pop(0), finish_reason="stop",
                          usage=Usage(prompt_tokens=1, completion_tokens=1))

    def open_stream(self, request: Request):  # type: ignore[no-untyped-def]
        raise NotImplementedError


def test_the_deterministic_reader_finds_every_field() -> None:
    assert parse_request(REQUEST) == ReplenishmentJob(
        horizon_days=7, stores=20, trucks=3, truck_capacity=4500, safety_stock_pct=10)
    assert parse_request("next 14 days: 8 stores, 2 vans carrying 900 units").horizon_days == 14


def test_a_request_without_the_fleet_is_refused_naming_what_is_missing() -> None:
    with pytest.raises(JobError, match="trucks, truck_capacity"):
        parse_request("Plan next week for 20 stores.")


async def test_a_grounded_model_answer_is_taken_field_by_field() -> None:
    llm = CannedAnswerLLM(['{"horizon_days": 7, "stores": 20, "trucks": 3, '
                           '"truck_capacity": 4500, "safety_stock_pct": 10}'])
    got = await interpret(llm, REQUEST)
    assert got.source == "llm" and set(got.from_llm) == set(ReplenishmentJob.model_fields)
    assert got.job == parse_request(REQUEST)


async def test_invented_or_contradicting_numbers_fall_back_to_the_request() -> None:
    # 8 stores and 900 units appear nowhere; trucks=20 appears but contradicts "3 trucks".
    llm = CannedAnswerLLM(['{"horizon_days": 7, "stores": 8, "trucks": 20, '
                           '"truck_capacity": 900, "safety_stock_pct": 10}'])
    got = await interpret(llm, REQUEST)
    assert got.job == parse_request(REQUEST)
    assert got.source == "mixed" and set(got.from_llm) == {"horizon_days", "safety_stock_pct"}
    assert any("stores=8 does not appear" in n for n in got.notes)
    assert any("trucks=20 disagrees" in n for n in got.notes)


async def test_an_answer_that_is_not_a_job_falls_back_and_keeps_the_raw_text() -> None:
    llm = CannedAnswerLLM(['{"stores": "twenty"}'])
    got = await interpret(llm, REQUEST)
    assert got.source == "fallback" and got.raw == '{"stores": "twenty"}'
    assert got.job == parse_request(REQUEST)
    with pytest.raises(LLMOutputInvalid):
        await CannedAnswerLLM(["not json"]).complete_json([user("x")], schema=ReplenishmentJob)


def test_groups_cover_every_store_once() -> None:
    stores = [f"S{i:02d}" for i in range(1, 21)]
    for n in (1, 3, 4, 7, 25):
        groups = agents.groups_of(stores, n)
        assert [s for g in groups for s in g] == stores
        assert all(groups) and len(groups) <= min(n, len(stores))


def _problem(trucks: int, capacity: int) -> routing.RoutingProblem:
    import math
    stores = {f"S{i:02d}": (10 * math.cos(i), 10 * math.sin(i)) for i in range(1, 13)}
    return routing.RoutingProblem(depot=(0.0, 0.0), stores=stores,
                                  demand={s: 100 for s in stores}, trucks=trucks,
                                  capacity=capacity)


def test_zones_share_trucks_and_fit_their_capacity() -> None:
    problem = _problem(trucks=3, capacity=500)
    zones = agents.zones_of(problem, 2)
    assert len(zones) == 2
    assert sorted(s for members, _ in zones for s in members) == sorted(problem.stores)
    assert sum(trucks for _, trucks in zones) == 3
    for members, trucks in zones:
        assert 100 * len(members) <= trucks * 500


def test_zones_fall_back_to_one_when_no_split_fits() -> None:
    problem = _problem(trucks=2, capacity=600)  # 1200 units on 2 trucks: only whole loads
    zones = agents.zones_of(problem, 2)
    assert sum(len(m) for m, _ in zones) == 12
    for members, trucks in zones:
        assert 100 * len(members) <= trucks * 600


def test_quantities_add_safety_stock_over_the_horizon() -> None:
    job = ReplenishmentJob(horizon_days=2, stores=1, trucks=1, truck_capacity=10,
                           safety_stock_pct=10)
    assert agents.quantities({"S01": [10.0, 10.0, 99.0]}, job) == {"S01": 22}


async def test_a_job_for_more_stores_than_the_warehouse_supplies_is_refused() -> None:
    from aaex_agents import open_runtime
    from aaex_agents.testing import MemoryNetwork

    planner, warehouse = agents.Planner(name="planner"), agents.Warehouse(stores=8)
    async with open_runtime([planner, warehouse],
                            transports=[MemoryNetwork().transport()]) as runtime:
        with pytest.raises(JobError, match="supplies 8 stores, not 20"):
            await planner.plan(runtime.context(planner), REQUEST, warehouse=warehouse.address)


def test_the_demo_writes_node_configs_that_the_node_reads(tmp_path: Path) -> None:
    import tomllib

    from aaex_examples.supply_chain.demo import _toml, node_document
    from marketplace.node.config import parse_config

    document = node_document("planner", [
        {"name": "warehouse", "class": "aaex_examples.supply_chain.agents:Warehouse",
         "settings": {"stores": 8, "seed": 7}}], seeds=["/ip4/127.0.0.1/tcp/1/p2p/x"],
        llm="llamacpp", market={"budget": 100.0, "ban_seconds": 600.0})
    text = _toml(document)
    assert tomllib.loads(text) == document
    config = parse_config(tomllib.loads(text), base=tmp_path)
    assert config.agents[0].settings == {"stores": 8, "seed": 7}
    assert config.llm.backend == "llamacpp" and config.market.ban_seconds == 600.0
    assert config.node.seeds == ("/ip4/127.0.0.1/tcp/1/p2p/x",)


def test_the_rules_read_a_single_truck_or_van() -> None:
    from aaex_examples.supply_chain.job import parse_request

    job = parse_request("Replenish 8 stores tomorrow with 1 truck of 2,000 units.")
    assert (job.horizon_days, job.stores, job.trucks, job.truck_capacity) == (1, 8, 1, 2000)
    assert parse_request("Tomorrow: 6 stores, 1 van of 1500 units.").trucks == 1
