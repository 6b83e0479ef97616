"""The user's own dependencies: `Agent[Deps]` handlers reach them, typed, as `ctx.deps`.

And the terms of a delegation are declared once (`DelegateTerms`), not per signature.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from aaex_agents import (
    Agent,
    Context,
    DelegateTerms,
    MemoryNetwork,
    Message,
    UsageError,
    handler,
    open_runtime,
)
from aaex_agents.money import Credits
from marketplace.node.config import parse_config
from marketplace.node.node import open_node

ROOT = Path(__file__).resolve().parent.parent


class Quote(Message, type="test.deps.quote/1"):
    item: str


class Priced(Message, type="test.deps.priced/1"):
    item: str
    price: Credits


class PriceFeed:
    """A dependency of the user's own: a small price feed."""

    def __init__(self, prices: dict[str, str]) -> None:
        self.prices = {item: Credits.parse(p) for item, p in prices.items()}
        self.asked: list[str] = []

    async def price(self, item: str) -> Credits:
        self.asked.append(item)
        return self.prices[item]


class Quoter(Agent[PriceFeed]):
    @handler
    async def on_quote(self, ctx: Context[PriceFeed], msg: Quote) -> Priced:
        return Priced(item=msg.item, price=await ctx.deps.price(msg.item))


class Shopper(Agent[PriceFeed]):
    """Checks a quote against the feed it shares with the quoter."""

    async def fair(self, ctx: Context[PriceFeed], quoter: str, item: str) -> bool:
        quoted = await ctx.ask(quoter, Quote(item=item), reply_type=Priced)
        return quoted.price == await ctx.deps.price(item)


class Plain(Agent):
    """An agent as written before dependencies existed: a bare `Agent` and `Context`."""

    @handler
    async def on_quote(self, ctx: Context, msg: Quote) -> Priced:
        return Priced(item=msg.item, price=Credits.parse("1"))


async def test_two_agents_reach_their_typed_deps() -> None:
    feed = PriceFeed({"tea": "2.5"})
    quoter, shopper = Quoter(), Shopper()
    async with open_runtime([quoter, shopper], transports=[MemoryNetwork().transport()],
                            deps=feed) as runtime:
        ctx = runtime.context(shopper)
        assert ctx.deps is feed
        assert await shopper.fair(ctx, quoter.address, "tea")
        assert feed.asked == ["tea", "tea"]  # once by each agent


async def test_ctx_deps_without_deps_is_a_one_line_usage_error() -> None:
    quoter = Quoter()
    async with open_runtime(quoter) as runtime:
        with pytest.raises(UsageError) as raised:
            _ = runtime.context(quoter).deps
    message = str(raised.value)
    assert "\n" not in message and "open_runtime(..., deps=...)" in message


async def test_agents_without_deps_are_unaffected() -> None:
    plain, shopper = Plain(), Shopper()
    network = MemoryNetwork()
    async with open_runtime([plain, shopper], transports=[network.transport()]) as runtime:
        reply = await runtime.context(shopper).ask(plain.address, Quote(item="x"),
                                                   reply_type=Priced)
        assert reply.price == Credits.parse("1")
        assert runtime.deps is None


async def test_a_node_gives_its_agents_the_deps_it_was_opened_with(tmp_path: Path) -> None:
    feed = PriceFeed({})
    node_settings = {"http": "127.0.0.1:0", "admin": "127.0.0.1:0", "p2p": []}
    async with open_node(parse_config({"node": node_settings}, base=tmp_path),
                         deps=feed) as node:
        assert node.runtime.deps is feed


def _signature_definitions(name: str) -> list[tuple[str, ast.AsyncFunctionDef]]:
    found = []
    for path in [*(ROOT / "aaex_agents").rglob("*.py"), *(ROOT / "marketplace").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.AsyncFunctionDef) and node.name == name:
                found.append((str(path.relative_to(ROOT)), node))
    return found


def test_the_delegate_terms_are_declared_once() -> None:
    delegates = _signature_definitions("delegate")
    assert {path for path, _ in delegates} == {
        "aaex_agents/services.py", "aaex_agents/context.py", "marketplace/trade/delegation.py"}
    for path, function in delegates:
        names = [a.arg for a in [*function.args.args, *function.args.kwonlyargs]]
        assert "budget" not in names and "deadline" not in names, path
        assert function.args.kwarg is not None, path
        assert ast.unparse(function.args.kwarg.annotation or ast.Name("")) \
            == "Unpack[DelegateTerms]", path
    assert set(DelegateTerms.__required_keys__) == {"budget", "deadline"}
    assert set(DelegateTerms.__optional_keys__) == {"where", "max_latency_ms", "penalty",
                                                    "top_k", "use"}


async def test_a_term_that_is_not_one_is_a_usage_error() -> None:
    from aaex_agents import Identity
    from marketplace.trade.delegation import Delegator
    from marketplace.trade.policy import Wallet

    async def find(capability: str, where: str | None) -> list[str]:
        return []

    plain = Plain()
    delegator = Delegator(Identity.generate(), find=find,
                          wallet=Wallet(budget=Credits.parse("10"), per_seller=Credits.parse("10"),
                                        per_task=Credits.parse("10")))
    async with open_runtime(plain) as runtime:
        with pytest.raises(UsageError, match="budgett"):
            await delegator.delegate(runtime.context(plain), "x", {},  # type: ignore[call-arg]
                                     budgett=Credits.parse("1"), deadline=1)
