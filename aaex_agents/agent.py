"""The Agent base class: subclass it, declare handlers, run it with `open_runtime`."""

from __future__ import annotations

import sys
from typing import Any, ClassVar, Generic

from .context import Context, Deps
from .errors import HandlerDefinitionError
from .handlers import HandlerTable, collect_handlers
from .identity import Identity
from .protocol import Protocol


class Agent(Generic[Deps]):
    """An autonomous agent: an identity plus typed handlers.

    Subclass it and mark `async def` methods with `@handler`; the parameter annotation
    selects the message type, the return annotation the reply::

        class Echo(Agent):
            @handler
            async def on_ping(self, ctx: Context, msg: Ping) -> Pong:
                return Pong(text=msg.text)

    Every handler is checked when the subclass is created; all problems are reported in one
    `HandlerDefinitionError`. List the `protocols` the agent speaks to have its replies
    checked against them too.

    ``Agent[Deps]`` types the dependencies its handlers reach as ``ctx.deps`` (given to
    ``open_runtime(..., deps=...)``); a bare `Agent` is ``Agent``::

        class Quoter(Agent[PriceFeed]):
            @handler
            async def on_ask(self, ctx: Context[PriceFeed], msg: Ask) -> Quote:
                return Quote(price=await ctx.deps.price(msg.item))
    """

    protocols: ClassVar[tuple[Protocol, ...]] = ()
    handler_table: ClassVar[HandlerTable] = HandlerTable({}, ())
    _annotation_namespace: ClassVar[dict[str, Any]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # The frame that executes the class statement: its locals resolve annotations of
        # message classes defined next to the agent inside a function (tests do this).
        caller = sys._getframe(1)
        localns = {**caller.f_globals, **caller.f_locals}
        cls._annotation_namespace = localns
        table, problems = collect_handlers(cls, tuple(cls.protocols))
        if problems:
            raise HandlerDefinitionError(problems)
        cls.handler_table = table

    def __init__(self, identity: Identity | None = None, *, name: str | None = None) -> None:
        self.identity = identity if identity is not None else Identity.generate()
        self.name = name or type(self).__name__

    @property
    def address(self) -> str:
        """The agent's self-certifying address."""
        return self.identity.address

    async def on_start(self, ctx: Context[Deps]) -> None:
        """Called once the runtime listens, before any interval runs. Override freely."""

    async def on_stop(self, ctx: Context[Deps]) -> None:
        """Called when the runtime stops, before storage closes. Override freely."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} {self.address}>"
