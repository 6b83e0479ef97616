"""Typed tasks: the schema check, the schemas in the ad, and who refuses a task that does not fit.

A seller states its task model; the buyer checks a task against the schema in the ad before
it calls for proposals, the seller again at the call and again when the task arrives.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, ClassVar, Literal

import pytest
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from aaex_agents import Agent, Context, Identity, MemoryNetwork, open_runtime
from aaex_agents.errors import UsageError
from discovery.errors import MalformedRecord
from discovery.records import PriceModel, ServiceAd, SlaOffer
from discovery.schema import MAX_SCHEMA_BYTES, compact_schema, schema_fault
from marketplace.contracts.ledger import LedgerConfig, open_ledger
from marketplace.trade.contracting import seller_countersigner
from marketplace.trade.delegation import Delegator, Found
from marketplace.trade.errors import BadTask, DelegationFailed
from marketplace.trade.llm_seller import ChatTask
from marketplace.trade.negotiation import CallForProposals, Decline, Propose, new_dialogue_id
from marketplace.trade.policy import Wallet
from marketplace.trade.selling import ServiceSeller
from marketplace.trade.strategies import LINEAR, SellerStrategy
from marketplace.trade.task_models import task_fault
from tests.market_kit import OWNER, cr


class Item(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sku: str = Field(min_length=1)
    units: int = Field(ge=0, le=1000)


class Order(BaseModel):
    items: list[Item] = Field(min_length=1)
    priority: Literal["low", "high"] = "low"
    note: str | None = None
    discount: float = Field(default=0.0, ge=0, lt=1)


@pytest.mark.parametrize(("task", "field"), [
    ({"items": [{"sku": "a", "units": 3}]}, None),
    ({"items": [{"sku": "a", "units": 3}], "priority": "high", "note": None}, None),
    ({"items": [{"sku": "a", "units": 3}], "note": "by noon", "discount": 0.5}, None),
    ({"foo": "bar"}, "items"),
    ({"items": []}, "items"),
    ({"items": "a"}, "items"),
    ({"items": [{"sku": "a"}]}, "items.0.units"),
    ({"items": [{"sku": "a", "units": 3}, {"sku": "", "units": 3}]}, "items.1.sku"),
    ({"items": [{"sku": "a", "units": 1001}]}, "items.0.units"),
    ({"items": [{"sku": "a", "units": -1}]}, "items.0.units"),
    ({"items": [{"sku": "a", "units": True}]}, "items.0.units"),
    ({"items": [{"sku": "a", "units": 3, "colour": "red"}]}, "items.0.colour"),
    ({"items": [{"sku": "a", "units": 3}], "priority": "urgent"}, "priority"),
    ({"items": [{"sku": "a", "units": 3}], "note": 7}, "note"),
    ({"items": [{"sku": "a", "units": 3}], "discount": 1}, "discount"),
])
def test_the_schema_check_agrees_with_the_model_and_names_the_field(
        task: dict[str, Any], field: str | None) -> None:
    schema = json.loads(json.dumps(compact_schema(Order)))  # as it arrives in an ad
    fault = schema_fault(schema, task)
    own = task_fault(Order, task)  # the seller's check with its model
    if field is None:
        assert fault is None and own is None
    else:
        assert fault is not None and fault.startswith(f"{field}:"), fault
        assert own is not None and own.startswith(f"{field}:"), own


def test_the_chat_request_schema_refuses_what_the_llm_seller_refuses() -> None:
    schema = compact_schema(ChatTask)
    assert schema_fault(schema, {"messages": [{"role": "user", "content": "Hi"}],
                                 "max_tokens": 16, "stop": "END"}) is None
    assert schema_fault(schema, {"prompt": "Hi"}) == "messages: required"
    assert str(schema_fault(schema, {"messages": [{"role": "robot", "content": "Hi"}]})
               ).startswith("messages.0.role:")
    assert str(schema_fault(schema, {"messages": [{"role": "user", "content": "Hi"}],
                                     "max_tokens": 0})).startswith("max_tokens:")


def test_an_ad_signs_its_schemas_and_refuses_one_too_big() -> None:
    identity = Identity.generate()
    fields: dict[str, Any] = dict(address=identity.address, seq=1, expires_at=time.time() + 60,
                                  capability="shop.order", price=PriceModel(amount=cr(1)),
                                  sla=SlaOffer(p50_ms=1, p95_ms=2, deadline_s=3,
                                               availability=1))
    typed = ServiceAd(**fields, task_schema=compact_schema(Order),
                      result_schema=compact_schema(Item))
    read = ServiceAd.verify(typed.sign(identity), now=time.time())
    assert read.task_schema == compact_schema(Order) and read.result_schema is not None
    # An ad with no schemas signs the body it signed before schemas existed.
    assert b"schema" not in ServiceAd(**fields).signing_bytes()
    huge = {"type": "object", "properties": {f"f{i}": {"type": "string"} for i in range(80)}}
    with pytest.raises(ValidationError, match="over the 1536 an ad may carry"):
        ServiceAd(**fields, task_schema=huge)
    forged = json.dumps({**json.loads(ServiceAd(**fields).model_dump_json()),
                         "task_schema": huge}, sort_keys=True, separators=(",", ":"))
    import msgpack
    wire = msgpack.packb(["aaex/service-ad/2", forged.encode(), b"x" * 64])
    with pytest.raises(MalformedRecord, match="an ad may carry"):
        ServiceAd.verify(wire, now=time.time())
    big = type("Big", (BaseModel,), {"__annotations__": {f"f{i}": str for i in range(80)}})
    with pytest.raises(UsageError, match=f"over the {MAX_SCHEMA_BYTES} an ad may carry"):
        compact_schema(big)


class History(BaseModel):
    history: list[float] = Field(min_length=1)


class TypedAverager(ServiceSeller):
    capability = "forecast.demand"
    task_model: ClassVar[type[BaseModel] | None] = History

    async def perform(self, ctx: Context, task: dict[str, Any]) -> dict[str, Any]:
        history = task["history"]
        return {"forecast": sum(history) / len(history)}


def make_seller() -> TypedAverager:
    identity = Identity.generate()
    return TypedAverager(identity, strategy=SellerStrategy(cost=cr(0.5), exponent=LINEAR,
                                                           latency_ms=300),
                         countersign=seller_countersigner(identity))


def call(task: dict[str, Any]) -> CallForProposals:
    return CallForProposals(dialogue=new_dialogue_id(), capability="forecast.demand", task=task,
                            max_price=cr(10), max_latency_ms=1000, max_deadline_s=60,
                            respond_by=time.time() + 60)


async def test_a_seller_declines_a_call_whose_task_does_not_fit_and_holds_nothing() -> None:
    seller, buyer = make_seller(), Agent()
    async with open_runtime([seller, buyer], transports=[MemoryNetwork().transport()]) as rt:
        ctx = rt.context(buyer)
        refused = await ctx.ask(seller.address, call({"foo": "bar"}))
        assert isinstance(refused, Decline)
        assert (refused.reason, refused.detail) == ("bad_task", "history: Field required")
        assert seller.dialogues == {}
        assert isinstance(await ctx.ask(seller.address, call({"history": [1, 2]})), Propose)


def wallet() -> Wallet:
    return Wallet(budget=cr(20), per_seller=cr(20), per_task=cr(10))


async def test_the_buyer_refuses_a_task_that_fits_no_advertised_schema_before_any_call(
        tmp_path: Path) -> None:
    seller, planner = make_seller(), Agent()
    schema = compact_schema(History)

    async def find(capability: str, where: str | None) -> list[str | Found]:
        return [Found(seller.address, schema)]

    async with open_ledger(tmp_path / "l.sqlite", config=LedgerConfig(owner=OWNER)) as books, \
            open_runtime([planner, seller], transports=[MemoryNetwork().transport()]) as rt:
        await books.deposit(planner.address, cr(10))
        delegator = Delegator(planner.identity, find=find, books=books, wallet=wallet(),
                              negotiation_window=0.5)
        ctx = rt.context(planner)
        with pytest.raises(BadTask) as refused:
            await delegator.delegate(ctx, "forecast.demand", {"history": ["ten"]},
                                     budget=cr(5), deadline=10)
        assert refused.value.fault.startswith("history.0: must be number")
        assert "history.0" in str(refused.value)
        assert seller.dialogues == {}  # no call reached the seller
        assert await books.counts() == (0, 0) and await books.agreements() == []
        done = await delegator.delegate(ctx, "forecast.demand", {"history": [1, 3]},
                                        budget=cr(5), deadline=10)
    assert done.result == {"forecast": 2.0}


async def test_a_seller_with_no_schema_in_its_ad_is_still_asked() -> None:
    seller, planner = make_seller(), Agent()

    async def find(capability: str, where: str | None) -> list[str | Found]:
        return [Found(Identity.generate().address, compact_schema(ChatTask)), seller.address]

    delegator = Delegator(planner.identity, find=find, wallet=wallet(), negotiation_window=0.5)
    async with open_runtime([planner, seller], transports=[MemoryNetwork().transport()]) as rt:
        done = await delegator.delegate(rt.context(planner), "forecast.demand",
                                        {"history": [4]}, budget=cr(5), deadline=10)
    assert done.seller == seller.address  # the chat seller that cannot take it was not asked


async def test_a_seller_declines_on_receipt_a_task_its_model_refuses() -> None:
    """The seller's model refuses the task it priced (it was upgraded in between): it says
    which field, and the buyer settles it as not delivered."""
    seller, planner = make_seller(), Agent()
    seller.task_model = None  # type: ignore[misc]  # the old seller priced any task

    async def find(capability: str, where: str | None) -> list[str]:
        return [seller.address]

    def upgrade(event: str, details: dict[str, Any]) -> None:
        if event == "agreement":
            del seller.task_model  # the class's model from now on

    delegator = Delegator(planner.identity, find=find, wallet=wallet(), negotiation_window=0.5)
    async with open_runtime([planner, seller], transports=[MemoryNetwork().transport()]) as rt:
        with pytest.raises(DelegationFailed) as failed:
            await delegator.delegate(rt.context(planner), "forecast.demand", {"histry": [1]},
                                     budget=cr(5), deadline=1.5, progress=upgrade)
    first = failed.value.attempts[0]
    assert (first.verdict, first.detail) == ("not_delivered", "bad_task: history: Field required")


def test_the_readme_seller_is_whole_and_typed(tmp_path: Path) -> None:
    import importlib.util
    import re

    from marketplace.node.config import check_seller_class
    from marketplace.node.node import offers_of

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    [source] = [b for b in re.findall(r"```python\n(.*?)```", readme, flags=re.S)
                if "class Forecaster(ServiceSeller)" in b]
    assert len(source.strip().splitlines()) <= 20
    (tmp_path / "my_agents.py").write_text(source)  # as the README says to save it
    spec = importlib.util.spec_from_file_location("my_agents", tmp_path / "my_agents.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    seller_class = module.Forecaster
    check_seller_class(seller_class, "README")  # a node starts it
    identity = Identity.generate()
    seller = seller_class(identity, strategy=SellerStrategy(cost=cr(2)),
                          countersign=seller_countersigner(identity))
    [listing] = offers_of(seller)
    assert listing.task_schema is not None and listing.task_schema["required"] == ["history"]
    assert task_fault(seller_class.task_model, {"foo": "bar"}) == "history: Field required"
