"""What a handler, hook or interval receives.

Who it is, what it is answering, how to talk to others, and the services and dependencies
its runtime was opened with. `Context[Deps]` is generic over the type of the user's own
dependencies (``open_runtime(..., deps=...)``), reached typed as ``ctx.deps``; a bare
`Context` is ``Context``.
"""

from __future__ import annotations

import logging
import typing
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Generic, Unpack, cast, overload

from typing_extensions import TypeVar

from .errors import UsageError
from .identity import Identity
from .model import Message
from .services import DelegateTerms, DelegationProgress
from .storage import AgentStorage

if TYPE_CHECKING:
    from .clock import Clock
    from .envelope import Envelope
    from .llm.base import LLM
    from .services import Delegated, Services


class Hosted(typing.Protocol):
    """What a context reads of its agent (an `Agent`).

    Declared here so that the context does not import the agent module, which imports it.
    """

    name: str
    identity: Identity

    @property
    def address(self) -> str:
        """The agent's address."""


class Host(typing.Protocol):
    """What a context uses of the runtime that hosts its agent (a `Runtime`)."""

    services: Services
    deps: object

    @property
    def clock(self) -> Clock:
        """Where the runtime reads time and sleeps."""

    async def ask(self, agent: Any, to: str, message: Message, *,
                  reply_type: type[Message] | None = None, session: bytes | None = None,
                  timeout: float | None = None) -> Message:
        """Deliver `message` from `agent` to `to` and return the reply."""

    async def send(self, agent: Any, to: str, message: Message, *,
                   session: bytes | None = None, in_reply_to: bytes | None = None,
                   timeout: float | None = None) -> None:
        """Deliver `message` from `agent` to `to`."""

R = TypeVar("R", bound=Message)
Deps = TypeVar("Deps", default=Any)
"""The type of the user's own dependencies: ``Agent[Deps]`` handlers get ``Context[Deps]``.
A bare ``Agent`` or ``Context`` means ``[Any]`` (PEP 696 default), so agents written before
dependencies existed type-check unchanged."""


class Context(Generic[Deps]):
    """The agent's view of the runtime for one message (or one hook / interval run).

    Attributes:
        identity: the agent's signing identity.
        storage: the agent's persistent key-value store.
        logger: a logger named after the agent.
        sender: the address that sent the message being handled (None outside a handler).
        session: the conversation id; asks and sends from a handler stay in it.
    """

    __slots__ = (
        "_agent",
        "_envelope",
        "_runtime",
        "identity",
        "logger",
        "sender",
        "session",
        "storage",
    )

    def __init__(self, runtime: Host, agent: Hosted, storage: AgentStorage,
                 envelope: Envelope | None = None) -> None:
        self._runtime = runtime
        self._agent = agent
        self._envelope = envelope
        self.identity: Identity = agent.identity
        self.storage = storage
        self.logger = logging.getLogger(f"aaex_agents.agent.{agent.name}")
        self.sender: str | None = envelope.sender if envelope else None
        self.session: bytes | None = envelope.session if envelope else None

    @property
    def address(self) -> str:
        """The agent's own address."""
        return self._agent.address

    @property
    def clock(self) -> Clock:
        """The runtime's clock: read time and sleep through it, so tests can drive both."""
        return self._runtime.clock

    @property
    def deps(self) -> Deps:
        """The dependencies the runtime was opened with: ``open_runtime(..., deps=...)``.

        What the agent's own handlers need (a database, a price feed, a client), typed as
        the agent's ``Agent[Deps]`` says; every agent of the runtime shares them.

        Raises:
            UsageError: the runtime was opened without dependencies.
        """
        deps = self._runtime.deps
        if deps is None:
            raise UsageError(f"ctx.deps: {self._agent.name} runs without dependencies; "
                             "pass them as open_runtime(..., deps=...) or open_node(..., deps=...)")
        return cast(Deps, deps)

    @property
    def llm(self) -> LLM:
        """The node's shared language model, as this agent's handle (fair queueing).

        Raises:
            UsageError: the runtime was opened without an LLM service.
        """
        service = self._runtime.services.llm
        if service is None:
            raise UsageError("ctx.llm: this runtime has no language model; open one with "
                             "`async with open_llm_service(await LlamaCppLLM.load()) as llm:` "
                             "and pass it as open_runtime(..., services=Services(llm=llm))")
        return service.for_agent(self._agent.address)

    async def delegate(self, capability: str, task: Mapping[str, Any], *,
                       progress: DelegationProgress | None = None,
                       **terms: Unpack[DelegateTerms]) -> Delegated:
        """Have the market do `task`: discover, negotiate, award, verify, settle, reroute.

        The terms (``budget=``, ``deadline=`` and the rest) are `DelegateTerms`; the node's
        market buys as this agent, from this agent's wallet. `progress`, when given, hears
        the sellers found, their bids, the award and its settlement (`DelegationProgress`).

        Raises:
            UsageError: the runtime was opened without a market, or a bad budget or deadline.
            DelegationFailed: every attempt failed or the deadline passed.
        """
        market = self._runtime.services.market
        if market is None:
            raise UsageError("ctx.delegate: this runtime has no market; run the agent on a "
                             "node (`aaex node run`) or pass open_runtime(..., "
                             "services=Services(market=...))")
        return await market.for_agent(self._agent.address).delegate(self, capability, task,
                                                                    progress=progress, **terms)

    async def send(self, to: str, message: Message, *, timeout: float | None = None) -> None:
        """Deliver `message` to `to` and return once the peer has handled it.

        A reply, if the peer sends one, goes to this agent's handler for its type.

        Raises:
            PeerUnreachable, RequestTimeout, PeerRejected: the message was not delivered.
            UsageError: `to` is not an address or `message` has no type name.
        """
        await self._runtime.send(self._agent, to, message, session=self.session, timeout=timeout)

    @overload
    async def ask(self, to: str, message: Message, *, reply_type: type[R],
                  timeout: float | None = None) -> R: ...

    @overload
    async def ask(self, to: str, message: Message, *, reply_type: None = None,
                  timeout: float | None = None) -> Message: ...

    async def ask(self, to: str, message: Message, *, reply_type: type[Message] | None = None,
                  timeout: float | None = None) -> Message:
        """Send `message` to `to` and return its verified reply.

        The reply must be signed by `to`, answer this very message, and be of `reply_type`
        (or, without it, of a type the agent's protocols allow, or any known type).

        Raises:
            RequestTimeout: no reply within `timeout` (default: the runtime's).
            RemoteHandlerError: the peer's handler failed.
            UnexpectedReply: no reply, or one of the wrong type or origin.
            PeerUnreachable, PeerRejected: the message was not delivered.
        """
        return await self._runtime.ask(self._agent, to, message, reply_type=reply_type,
                                       session=self.session, timeout=timeout)

    async def reply(self, message: Message, *, timeout: float | None = None) -> None:
        """Send `message` to the sender of the message being handled, as a reply to it.

        Use it for answers that come later than the handler's return value.

        Raises:
            UsageError: called outside a message handler.
        """
        if self._envelope is None:
            raise UsageError("ctx.reply() works only inside a message handler; use ctx.send()")
        await self._runtime.send(self._agent, self._envelope.sender, message,
                                 session=self._envelope.session,
                                 in_reply_to=self._envelope.message_id, timeout=timeout)

    def __repr__(self) -> str:
        about = f" from {self.sender}" if self.sender else ""
        return f"<Context {self._agent.name}{about}>"
