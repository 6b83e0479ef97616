"""The runtime hosts agents.

It listens on transports, verifies every inbound envelope, dispatches it to the right
handler, and seals everything the agents send.

    async with open_runtime([Echo()], transports=[HttpTransport()]) as runtime:
        print(runtime.endpoints)

Ownership: `open_runtime` owns the runtime's task group (interval loops, dispatch of replies
to `send`), the agents' storage, the transports it was given (it closes them on exit) and
the interop gateways it was given (it attaches them while it runs).
"""

from __future__ import annotations

import abc
import asyncio
import enum
import logging
from collections import Counter
from collections.abc import AsyncIterator, Coroutine, Iterable, Mapping
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from .agent import Agent
from .clock import Clock, SystemClock
from .config import RuntimeConfig as RuntimeConfig
from .context import Context
from .directory import Directory, StaticDirectory
from .envelope import (
    Envelope,
    check_times,
    decode_frame,
    new_id,
    remember,
    seal,
)
from .errors import (
    EnvelopeRejected,
    InvalidPayload,
    PeerRejected,
    PeerUnreachable,
    ReceiverStopping,
    RemoteHandlerError,
    RequestTimeout,
    TransportError,
    UnexpectedReply,
    UnknownChannel,
    UnknownMessageType,
    UsageError,
    WrongTarget,
)
from .handlers import HandlerSpec, IntervalSpec
from .identity import Identity
from .keyring import KeyAnswer, KeyRequest, Keyring, Sealed
from .model import ErrorReply, Message, decode_payload, successor
from .replay import ReplayGuard
from .replies import decode_reply, error_text
from .sealing import SEAL_OVERHEAD_BYTES, open_reply
from .services import NO_SERVICES, Services
from .storage import AgentStorage
from .transport.base import Transport


class Gateway(abc.ABC):
    """Carries AAEX messages to the agents of another network.

    Give it to ``open_runtime(..., gateways=[...])``, as the node's services are given: the
    runtime enters `attach` once its agents' storage and transports are open, before any
    `on_start`, and leaves it after every `on_stop`, before their storage closes.
    """

    @abc.abstractmethod
    def attach(self, runtime: Runtime) -> AbstractAsyncContextManager[None]:
        """Serve `runtime`'s agents until the context exits (closing what the gateway owns)."""

    @abc.abstractmethod
    def handles(self, address: str) -> bool:
        """True when `address` belongs to this gateway's network."""

    @abc.abstractmethod
    async def ask(self, agent: Agent, to: str, message: Message, *,
                  reply_type: type[Message] | None, session: bytes | None,
                  timeout: float | None) -> Message:
        """Deliver `message` from `agent` to `to` and return the reply (see `Context.ask`)."""

    @abc.abstractmethod
    async def send(self, agent: Agent, to: str, message: Message, *, session: bytes | None,
                   in_reply_to: bytes | None, timeout: float | None) -> None:
        """Deliver `message` from `agent` to `to`; a reply goes to the agent's handlers."""


logger = logging.getLogger(__name__)

D = TypeVar("D")

@dataclass
class RuntimeMetrics:
    """Counters a node exports; rejections are keyed by their `reason`."""

    received: int = 0
    sent: int = 0
    handler_errors: int = 0
    rejected: Counter[str] = field(default_factory=Counter)


class RuntimeState(enum.Enum):
    """Lifecycle of a runtime; it moves forward only."""

    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"


class Runtime:
    """Hosts agents. Create it with `open_runtime`, never directly."""

    def __init__(self, agents: Iterable[Agent], transports: Iterable[Transport],
                 directory: Directory, config: RuntimeConfig, clock: Clock,
                 services: Services = NO_SERVICES, shared: Agent | None = None,
                 gateways: Iterable[Gateway] = (), deps: object = None) -> None:
        self._agents: dict[str, Agent] = {}
        for agent in agents:
            if not isinstance(agent, Agent):
                raise UsageError(f"open_runtime takes Agent instances, got {agent!r}")
            if agent.address in self._agents:
                raise UsageError(f"{agent!r} is listed twice; each agent is hosted once")
            self._agents[agent.address] = agent
        self._transports = tuple(transports)
        self.directory = directory
        self.config = config
        self._clock = clock
        self._replay = config.policy.new_replay_guard()
        self.keyring = Keyring(config.sealing)
        """Peers' encryption keys and the channel keys of this runtime's sealed traffic."""
        self._storages: dict[str, AgentStorage] = {}
        self._task_group: asyncio.TaskGroup | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.endpoints: tuple[str, ...] = ()
        self.metrics = RuntimeMetrics()
        self.state = RuntimeState.STARTING
        self.services = services
        self.deps = deps
        """The user's own dependencies, given to `open_runtime`; None when none were."""
        self._shared = shared
        self._gateways = tuple(gateways)

    @property
    def clock(self) -> Clock:
        """Where the runtime, its agents and the node's services read time and sleep."""
        return self._clock

    @property
    def gateways(self) -> tuple[Gateway, ...]:
        """Other networks' agents, reached by address: the gateways given to `open_runtime`."""
        return self._gateways

    @property
    def replay_guard(self) -> ReplayGuard:
        """The message ids accepted so far, per sender (read its sizes; do not admit)."""
        return self._replay

    @property
    def agents(self) -> Mapping[str, Agent]:
        """The hosted agents by address."""
        return dict(self._agents)

    def context(self, agent: Agent[D]) -> Context[D]:
        """A context for `agent` outside any message (for scripts and drivers)."""
        return Context(self, agent, self._storages[agent.address])

    # -- inbound ------------------------------------------------------------------------
    async def _on_frame(self, frame: bytes) -> bytes | None:
        """Transport entry point: verify, dispatch, seal the reply. Rejections raise.

        The message id is recorded last, once the envelope passed every other check: an
        envelope refused for any reason takes no room in the replay guard.
        """
        try:
            if self.state is not RuntimeState.RUNNING:
                raise ReceiverStopping("this runtime is stopping")
            opened = self.keyring.open(frame, self._identity_of,
                                       max_bytes=self.config.policy.max_frame_bytes)
            envelope = self._check(opened.frame)
            self.keyring.admit(opened, envelope)
            agent = self._agents[envelope.target]
            if envelope.message_type == KeyRequest.message_type:  # answered by the runtime
                reply: Message | None = KeyAnswer(key=agent.identity.encryption_public_key)
                remember(envelope, now=self._clock.now(), replay=self._replay)
            else:
                cls, spec, owner = self._handler(agent, envelope.message_type)
                message = decode_payload(cls, envelope.payload)
                remember(envelope, now=self._clock.now(), replay=self._replay)
            self.keyring.keep(opened)
        except EnvelopeRejected as exc:
            self.metrics.rejected[exc.reason] += 1
            logger.debug("rejected envelope: %s", exc)
            raise
        if envelope.message_type != KeyRequest.message_type:  # not a message of the agent's
            self.metrics.received += 1
            reply = await self._dispatch(agent, spec, envelope, message, owner=owner)
        if reply is None:
            return None
        _, reply_frame = seal(agent.identity, target=envelope.sender, message=reply,
                              now=self._clock.now(), ttl=self.config.envelope_ttl,
                              session=envelope.session, in_reply_to=envelope.message_id)
        return opened.seal_reply(reply_frame)

    def _identity_of(self, address: str) -> Identity | None:
        agent = self._agents.get(address)
        return None if agent is None else agent.identity

    def _handler(self, agent: Agent, message_type: str
                 ) -> tuple[type[Message], HandlerSpec, Agent]:
        """The class, handler and owner for `message_type` at `agent`: its own, else shared.

        Raises:
            UnknownMessageType: neither the agent nor the shared handlers take it.
        """
        owner = agent
        entry = agent.handler_table.by_type.get(message_type)
        if entry is None and self._shared is not None:
            owner = self._shared
            entry = owner.handler_table.by_type.get(message_type)
        if entry is None:
            newer = successor(message_type)
            raise UnknownMessageType(
                f"{agent.name} has no handler for {message_type}" + (
                    f": it is retired, this side speaks {newer} (upgrade the sender)"
                    if newer is not None else ""))
        return entry[0], entry[1], owner

    async def deliver_local(self, agent: Agent, message: Message, *, sender: str,
                            session: bytes | None = None, message_id: bytes | None = None,
                            expires_at: float | None = None) -> Message | None:
        """Run hosted `agent`'s handler for a `message` that arrived by another protocol.

        For bridges (uAgents, A2A) that have already applied their own network's checks:
        nothing is verified here, and the reply is returned, not sealed. The handler is the
        agent's own for the message's type, else the runtime's shared one. Its failure is
        handled as for AAEX traffic: logged, counted in ``metrics.handler_errors`` and
        answered with an `ErrorReply`. The bridge counts what it received in its own metrics.

        Args:
            agent: the hosted agent the message is for.
            message: the message, already decoded and validated.
            sender: who sent it, in the bridge's terms (``ctx.sender``).
            session: the conversation (``ctx.session``; default: a new one).
            message_id: the id the handler's context answers to (default: a new one).
            expires_at: when the message expires, epoch seconds (default: now + envelope_ttl).

        Raises:
            UsageError: `agent` is not hosted by this runtime.
            UnknownMessageType: no handler takes the message's type.
        """
        if self._agents.get(agent.address) is not agent:
            raise UsageError(f"{agent!r} is not hosted by this runtime")
        message_type = str(type(message).message_type)
        _, spec, owner = self._handler(agent, message_type)
        now = self._clock.now()
        expiry = now + self.config.envelope_ttl if expires_at is None else expires_at
        # Only `ctx` reads this envelope (sender, session, id): nothing is signed or verified.
        envelope = Envelope(message_id=message_id or new_id(), sender=sender,
                            target=agent.address, session=session or new_id(), in_reply_to=None,
                            message_type=message_type, sent_at_ms=int(now * 1000),
                            expires_at_ms=int(expiry * 1000), payload=b"", body=b"",
                            signature=b"")
        return await self._dispatch(agent, spec, envelope, message, owner=owner)

    def _check(self, frame: bytes, *, target: str | None = None) -> Envelope:
        """Every check an inbound frame passes, requests and replies alike, but replay.

        `target` is the agent a reply must be addressed to; without it, any hosted agent.
        The caller records the id with `remember` once its own checks passed too.
        """
        envelope = decode_frame(frame, max_bytes=self.config.policy.max_frame_bytes)
        if target is not None and envelope.target != target:
            raise WrongTarget(f"reply is addressed to {envelope.target}, not to {target}")
        if envelope.target not in self._agents:
            raise WrongTarget(f"{envelope.target} is not hosted here")
        envelope.verify()
        check_times(envelope, now=self._clock.now(), policy=self.config.policy)
        return envelope

    async def _dispatch(self, agent: Agent, spec: HandlerSpec, envelope: Envelope,
                        message: Message, *, owner: Agent | None = None) -> Message | None:
        """Run a user handler. Its failures are the user's: logged, answered, survived.

        `owner` is whose handler it is when not `agent`'s own (the runtime's shared
        handlers); the context is always `agent`'s, the message's target.
        """
        owner = owner or agent
        ctx = Context(self, agent, self._storages[agent.address], envelope)
        try:
            result = await spec.function(owner, ctx, message)
        except Exception as exc:
            self.metrics.handler_errors += 1
            logger.error("%s.%s failed on %s from %s", type(owner).__name__, spec.name,
                         envelope.message_type, envelope.sender, exc_info=True)
            # The detail names the exception type only: its text may carry private data.
            return ErrorReply(code="handler_failed", detail=f"{type(exc).__name__} in {spec.name}")
        if (result is None and spec.reply_optional) or isinstance(result, spec.replies):
            return result
        self.metrics.handler_errors += 1
        expected = " | ".join([c.__name__ for c in spec.replies] + (["None"] * spec.reply_optional))
        logger.error("%s.%s returned %s, but it is declared to return %s",
                     type(owner).__name__, spec.name, type(result).__name__, expected)
        return ErrorReply(code="bad_reply", detail=f"{spec.name} returned an undeclared type")

    # -- outbound -----------------------------------------------------------------------
    async def _exchange(self, agent: Agent, to: str, message: Message, *,
                        session: bytes | None, in_reply_to: bytes | None,
                        timeout: float | None) -> tuple[Envelope, Envelope | None]:
        if self.state is RuntimeState.STOPPED:
            raise UsageError("this runtime has stopped; open a new one")
        limit = self.config.request_timeout if timeout is None else timeout
        request, frame = seal(agent.identity, target=to, message=message, now=self._clock.now(),
                              ttl=self.config.envelope_ttl, session=session,
                              in_reply_to=in_reply_to)
        sealed: Sealed | None = None
        taken = False
        try:
            async with asyncio.timeout(limit):
                if not isinstance(message, KeyRequest):  # the one plaintext message: no secret
                    key = await self._recipient_key(agent, to, limit)
                    sealed = self._seal(frame, agent, to, key)
                try:
                    reply_frame = await self._deliver(to, frame if sealed is None
                                                      else sealed.frame, limit)
                except PeerRejected as exc:
                    if sealed is None or not sealed.on_channel or exc.reason != \
                            UnknownChannel.reason:
                        raise
                    self.keyring.forget_channel(agent.address, to)  # the peer restarted...
                    sealed = self._seal(frame, agent, to, key, fresh=True)
                    reply_frame = await self._deliver(to, sealed.frame, limit)
                taken = True
        except TimeoutError:
            raise RequestTimeout(f"{to} did not answer {message.message_type} within "
                                 f"{limit} s") from None
        finally:
            if sealed is not None:
                self.keyring.settle(sealed, sender=agent.address, target=to,
                                    now=self._clock.now(), taken=taken)
        if sealed is not None:
            self.metrics.sent += 1  # a key request is the seal's, not the agent's, message
        if reply_frame is None:
            return request, None
        try:
            if sealed is not None:
                reply_frame = open_reply(reply_frame, sealed.keys, replier=to, asker=agent.address)
            reply = self._check(reply_frame, target=agent.address)
            if reply.sender != to or reply.in_reply_to != request.message_id:
                raise UnexpectedReply(f"the reply to {message.message_type} did not come from "
                                      f"{to} in answer to it")
            remember(reply, now=self._clock.now(), replay=self._replay)
        except EnvelopeRejected as exc:
            self.metrics.rejected[exc.reason] += 1
            raise UnexpectedReply(f"reply from {to} was rejected: {exc}") from exc
        return request, reply

    def _seal(self, frame: bytes, agent: Agent, to: str, key: bytes, *,
              fresh: bool = False) -> Sealed:
        if len(frame) + SEAL_OVERHEAD_BYTES > self.config.policy.max_frame_bytes:
            raise UsageError(f"a message of {len(frame)} bytes does not fit a sealed frame "
                             f"under {self.config.policy.max_frame_bytes} bytes")
        return self.keyring.seal(frame, sender=agent.address, target=to, key=key,
                                 now=self._clock.now(), fresh=fresh)

    async def _recipient_key(self, agent: Agent, to: str, timeout: float) -> bytes:
        """`to`'s encryption key: hosted, known, from its signed record, else asked of it."""
        hosted = self._agents.get(to)
        if hosted is not None:
            return hosted.identity.encryption_public_key
        key = self.keyring.known_key(to) or await self.directory.encryption_key(to)
        if key is None:  # the answer is checked as every reply: signed by `to` itself
            try:
                answer = await self.ask(agent, to, KeyRequest(), reply_type=KeyAnswer,
                                        timeout=timeout)
            except PeerRejected as exc:  # never a plaintext fallback: refusals are unsigned
                if exc.reason != UnknownMessageType.reason:
                    raise
                raise PeerRejected(exc.reason, f"{to} has no encryption key to seal to (an "
                                   "AAEX agent from before sealing?)") from None
            key = answer.key if isinstance(answer, KeyAnswer) else b""  # reply_type checks it
        self.keyring.learn_key(to, key)
        return key

    async def _deliver(self, to: str, frame: bytes, timeout: float) -> bytes | None:
        if to in self._agents:  # hosted here: skip the network, keep every check
            try:
                return await self._on_frame(frame)
            except EnvelopeRejected as exc:
                raise PeerRejected(exc.reason, str(exc)) from None
        endpoints = list(await self.directory.resolve(to))
        tried: list[str] = []
        failures: list[str] = []
        # If no endpoint is known, or every one fails, the peer may have restarted elsewhere
        # since the directory learned of it (or we lost touch with the network): look it up
        # anew, once, and try the endpoints that are new.
        for again in (False, True):
            if again:
                endpoints = [e for e in await self.directory.resolve_again(to)
                             if e not in tried]
            for endpoint in endpoints:
                tried.append(endpoint)
                transport = next((t for t in self._transports if t.handles(endpoint)), None)
                if transport is None:
                    failures.append(f"{endpoint}: no transport for it")
                    continue
                try:
                    return await transport.request(endpoint, frame, timeout=timeout)
                except PeerUnreachable as exc:
                    failures.append(str(exc))
        if not tried:
            raise PeerUnreachable(f"no endpoint is known for {to}; add one to the directory")
        raise PeerUnreachable(f"{to} is unreachable: " + "; ".join(failures))

    async def ask(self, agent: Agent, to: str, message: Message, *,
                  reply_type: type[Message] | None = None, session: bytes | None = None,
                  timeout: float | None = None) -> Message:
        """See `Context.ask`."""
        gateway = self._gateway_for(to)
        if gateway is not None:  # interop: a foreign address (agent1...) goes to its network
            return await gateway.ask(agent, to, message, reply_type=reply_type, session=session,
                                     timeout=timeout)
        _, reply = await self._exchange(agent, to, message, session=session, in_reply_to=None,
                                        timeout=timeout)
        if reply is None:
            raise UnexpectedReply(f"{to} handled {message.message_type} but sent no reply")
        return decode_reply(agent, message, reply, reply_type)

    async def send(self, agent: Agent, to: str, message: Message, *,
                   session: bytes | None = None,
                   in_reply_to: bytes | None = None, timeout: float | None = None) -> None:
        """See `Context.send`."""
        gateway = self._gateway_for(to)
        if gateway is not None:  # interop: a foreign address (agent1...) goes to its network
            await gateway.send(agent, to, message, session=session, in_reply_to=in_reply_to,
                               timeout=timeout)
            return
        _, reply = await self._exchange(agent, to, message, session=session,
                                        in_reply_to=in_reply_to, timeout=timeout)
        if reply is not None:
            self._spawn(self._handle_reply(agent, reply), f"reply:{reply.message_type}")

    def _gateway_for(self, to: str) -> Gateway | None:
        return next((g for g in self._gateways if g.handles(to)), None)

    async def _handle_reply(self, agent: Agent, reply: Envelope) -> None:
        """Give a reply that came back to `send` to the agent's handler for its type."""
        if reply.message_type == ErrorReply.message_type:
            logger.warning("%s: %s answered with an error: %r", agent.name, reply.sender,
                           error_text(reply))
            return
        entry = agent.handler_table.by_type.get(reply.message_type)
        if entry is None:
            logger.debug("%s: no handler for reply %s; dropped", agent.name, reply.message_type)
            return
        try:
            message = decode_payload(entry[0], reply.payload)
        except InvalidPayload as exc:
            logger.warning("%s: reply from %s dropped: %s", agent.name, reply.sender, exc)
            return
        answer = await self._dispatch(agent, entry[1], reply, message)
        if answer is None:
            return
        try:
            await self.send(agent, reply.sender, answer, session=reply.session,
                            in_reply_to=reply.message_id)
        except (TransportError, UnexpectedReply, RemoteHandlerError) as exc:
            logger.warning("%s: answer to %s not delivered: %s", agent.name, reply.sender, exc)

    # -- tasks --------------------------------------------------------------------------
    def _spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        if self._task_group is None or self.state is not RuntimeState.RUNNING:
            work.close()
            logger.debug("runtime is %s; %s not started", self.state.value, name)
            return
        task = self._task_group.create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run_interval(self, agent: Agent, spec: IntervalSpec) -> None:
        ctx = self.context(agent)
        while True:
            await self._clock.sleep(spec.seconds)
            try:
                await spec.function(agent, ctx)
            except Exception:
                logger.error("%s.%s failed; it runs again in %s s", type(agent).__name__,
                             spec.name, spec.seconds, exc_info=True)

    def __repr__(self) -> str:
        return (f"<Runtime {self.state.value} agents={len(self._agents)} "
                f"endpoints={list(self.endpoints)} tasks={len(self._tasks)}>")


@asynccontextmanager
async def open_runtime(agents: Agent[D] | Iterable[Agent[D]], *,
                       transports: Iterable[Transport] = (), directory: Directory | None = None,
                       config: RuntimeConfig | None = None, clock: Clock | None = None,
                       services: Services = NO_SERVICES, shared: Agent | None = None,
                       gateways: Iterable[Gateway] = (),
                       deps: D | None = None) -> AsyncIterator[Runtime]:
    """Host `agents` on `transports` until the block exits.

    `services` is what the node shares with its agents: the language model they reach as
    `ctx.llm` (its opener, `open_llm_service`, closes it, so runtimes may share it) and the
    market behind `ctx.delegate(...)`. The SDK never imports the market; the node passes it.

    `deps` are the user's own dependencies (a database, a price feed, a client), shared by
    every hosted agent and reached in handlers as ``ctx.deps``, typed by the agents'
    ``Agent[Deps]``. The caller opens and closes them; without them ``ctx.deps`` raises
    `UsageError`. They are given per runtime, as the services are, because that is where a
    host (a node) holds what lives as long as its agents.

    `shared` is an agent that is not hosted itself but whose handlers answer, for every
    hosted agent, the message types that agent's own class has no handler for: what a node
    answers on behalf of all its agents, whatever their class (the market's statements and
    escrow queries). Its handlers get the target agent's context.

    `gateways` reach other networks' agents by their addresses (interop, e.g. a
    `UAgentsGateway`): each is attached once storage and transports are open, before any
    `on_start`, and detached after every `on_stop`.

    Entering returns once every transport listens and every `on_start` hook has run.
    Leaving stops taking envelopes, runs each `on_stop` (bounded by `stop_timeout`),
    cancels the runtime's tasks, closes storage and closes the given transports.

    Raises:
        UsageError: an agent is listed twice, or a setting is invalid.
        StorageError: an agent's store cannot be opened.
    An exception raised in the block, or by the runtime's own tasks, leaves as an
    ExceptionGroup (catch it with ``except*``).
    """
    hosted = [agents] if isinstance(agents, Agent) else list(agents)
    settings = config or RuntimeConfig()
    runtime = Runtime(hosted, transports, directory or StaticDirectory(), settings,
                      clock or SystemClock(), services, shared, gateways, deps)
    try:
        async with asyncio.TaskGroup() as task_group, AsyncExitStack() as stack:
            runtime._task_group = task_group
            for transport in runtime._transports:
                stack.push_async_callback(transport.aclose)
            for agent in hosted:
                path = (settings.data_dir / f"{agent.address}.sqlite"
                        if settings.data_dir is not None else None)
                storage = await AgentStorage.open(path)
                stack.push_async_callback(storage.aclose)
                runtime._storages[agent.address] = storage
            endpoints = []
            for transport in runtime._transports:
                endpoint = await stack.enter_async_context(transport.serve(runtime._on_frame))
                if endpoint is not None:
                    endpoints.append(endpoint)
            runtime.endpoints = tuple(endpoints)
            for gateway in runtime.gateways:
                await stack.enter_async_context(gateway.attach(runtime))
            runtime.state = RuntimeState.RUNNING
            for agent in hosted:
                await agent.on_start(runtime.context(agent))
            for agent in hosted:
                for spec in agent.handler_table.intervals:
                    runtime._spawn(runtime._run_interval(agent, spec), f"{agent.name}.{spec.name}")
            logger.info("runtime up: %d agent(s) at %s", len(hosted), ", ".join(endpoints) or "-")
            try:
                yield runtime
            finally:
                runtime.state = RuntimeState.STOPPING
                for agent in hosted:
                    await _stop_agent(runtime, agent)
                for task in list(runtime._tasks):
                    task.cancel()
    finally:
        runtime.state = RuntimeState.STOPPED
        logger.info("runtime stopped")


async def _stop_agent(runtime: Runtime, agent: Agent) -> None:
    try:
        async with asyncio.timeout(runtime.config.stop_timeout):
            await agent.on_stop(runtime.context(agent))
    except TimeoutError:
        logger.warning("%s.on_stop took longer than %s s; abandoned", agent.name,
                       runtime.config.stop_timeout)
    except Exception:
        logger.error("%s.on_stop failed", agent.name, exc_info=True)
