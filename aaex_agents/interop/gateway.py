"""The uAgents gateway: AAEX agents talk to uAgents agents, both ways, with no Almanac.

    gateway = UAgentsGateway(UAgentsConfig(peers={peer: url}))
    async with open_runtime(agents, gateways=[gateway]) as runtime:
        async with serve_uagents(gateway, "127.0.0.1", 0) as submit_url:
            await runtime.context(shop).ask(peer, ChatMessage.of_text("hi"))

Each hosted agent also answers at its ``agent1...`` address (`address_of`), with a key
derived from its own seed. Outbound, `ctx.send` and `ctx.ask` to an ``agent1`` address come
here (the runtime asks every gateway whether it `handles` the address): the message is
mapped to its schema digest, signed with the agent's secp256k1 key and POSTed to the peer's
``/submit`` from `UAgentsConfig.peers`. `ask` uses uAgents' sync mode by default (the reply
comes back in the HTTP response) or async mode (the reply is POSTed to our ``/submit`` in the
same session). Inbound, `submit` applies AAEX's rules (signature, expiry, lifetime, replay;
see `uagents.admit`), then runs the agent's handler for the mapped type and sends its answer
back: in the HTTP response for a sync request, else POSTed to the peer. A sync request is
held at most `sync_timeout` seconds, and only `sync_holds` at once (`sync_holds_per_ip` from
one address; see `holds`).

Divergences from uAgents, on purpose: unsigned and expiry-less envelopes are refused
(uAgents accepts both); a sync reply is signed unless `sign_sync_replies` is off (uAgents
leaves it unsigned, and we accept an unsigned one only as the answer on the connection we
opened ourselves); a sync request is released with an ErrorMessage after `sync_timeout`,
not held until its envelope expires (up to `max_lifetime`, 10 minutes).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Collection, Coroutine
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import aiohttp
from pydantic import ValidationError
from typing_extensions import override

from ..clock import Clock, SystemClock
from ..errors import (
    EnvelopeRejected,
    InvalidPayload,
    MalformedEnvelope,
    PeerRejected,
    PeerUnreachable,
    ReceiverBusy,
    ReceiverStopping,
    RemoteHandlerError,
    RequestTimeout,
    TransportClosed,
    TransportError,
    UnexpectedReply,
    UnknownMessageType,
    UsageError,
    WrongTarget,
)
from ..handlers import HandlerSpec
from ..model import ErrorReply, Message
from ..transport.bodies import parse_json
from ..transport.http import post_bounded
from .base import Gateway, InteropMetrics, handler_for
from .chat import CHAT_SCHEMAS, ChatAcknowledgement, ChatMessage
from .config import UAgentsConfig
from .holds import SyncHolds
from .uagents import (
    ERROR_MESSAGE_DIGEST,
    UAgentsKey,
    UEnvelope,
    admit,
    error_json,
    is_uagents_address,
    parse_envelope,
    peer_reason,
    seal_envelope,
    session_uuid,
)

if TYPE_CHECKING:
    from ..agent import Agent
    from ..runtime import Runtime

logger = logging.getLogger(__name__)

PROTOCOL = "uagents"
Describe = Callable[["Agent"], str]
"""What an agent without a chat handler says to a chat message (the node: its offers)."""
_Key = tuple[str, str, uuid.UUID]  # (our agent1 address, peer, session)
_DESCRIBED_SESSIONS = 10_000  # sessions remembered as already told what an agent is


def no_chat_handler(agent: Agent) -> str:
    """The default answer of an agent that has no chat handler."""
    return (f"{agent.name} does not chat; it answers typed AAEX messages at {agent.address}.")


class UAgentsGateway(Gateway):
    """Bridges the hosted agents of one runtime to uAgents: pass it to `open_runtime`.

    ``open_runtime(agents, gateways=[gateway])`` attaches it while the runtime runs; then
    ``ctx.send``/``ctx.ask`` to ``agent1`` addresses work, and serving `submit` (e.g.
    `serve_uagents`) takes inbound traffic. A gateway serves one runtime, once. `clock`
    defaults to the runtime's; `describe` is what an agent without a chat handler says.
    """

    def __init__(self, config: UAgentsConfig | None = None, *, clock: Clock | None = None,
                 metrics: InteropMetrics | None = None, describe: Describe | None = None,
                 ) -> None:
        self.config = config or UAgentsConfig()
        self.schemas = CHAT_SCHEMAS.merged(self.config.schemas)
        self.metrics = metrics or InteropMetrics()
        self._given_clock = clock
        self._clock: Clock = clock or SystemClock()
        self._describe = describe or no_chat_handler
        self._runtime: Runtime | None = None
        self._keys: dict[str, UAgentsKey] = {}
        self._agents: dict[str, Agent] = {}
        self._peers = dict(self.config.peers)
        self._replay = self.config.policy.new_replay_guard()
        self._holds = SyncHolds(total=self.config.sync_holds,
                                per_address=self.config.sync_holds_per_ip)
        self._awaiting: dict[_Key, tuple[asyncio.Future[UEnvelope], Collection[str] | None]] = {}
        self._held: dict[_Key, asyncio.Future[UEnvelope]] = {}
        self._described: OrderedDict[_Key, None] = OrderedDict()
        self._client_session: aiohttp.ClientSession | None = None
        self._task_group: asyncio.TaskGroup | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    @override
    @asynccontextmanager
    async def attach(self, runtime: Runtime) -> AsyncIterator[None]:
        """Serve `runtime`'s agents until the block exits (`open_runtime` enters it).

        Leaving cancels the answers still being sent and closes the HTTP client.

        Raises:
            UsageError: this gateway already served a runtime.
        """
        if self._runtime is not None:
            raise UsageError("this uAgents gateway already served a runtime; make one per "
                             "runtime")
        self._runtime = runtime
        self._clock = self._given_clock or runtime.clock
        for agent in runtime.agents.values():
            key = UAgentsKey.from_identity(agent.identity)
            self._keys[agent.address] = key
            self._agents[key.address] = agent
        async with asyncio.TaskGroup() as task_group:
            self._task_group = task_group
            try:
                yield
            finally:
                self._closed = True
                for task in list(self._tasks):
                    task.cancel()
                if self._client_session is not None:
                    await self._client_session.close()

    def _running(self) -> Runtime | None:
        """The runtime, while it runs and this gateway is open; else None."""
        from ..runtime import RuntimeState

        runtime = self._runtime
        if runtime is None or runtime.state is not RuntimeState.RUNNING or self._closed:
            return None
        return runtime

    # -- addresses ------------------------------------------------------------------------
    @property
    def addresses(self) -> dict[str, str]:
        """Each hosted agent's AAEX address -> its uAgents address."""
        return {address: key.address for address, key in self._keys.items()}

    def address_of(self, agent: Agent | str) -> str:
        """The ``agent1...`` address of a hosted agent (or of its AAEX address).

        Raises:
            UsageError: the agent is not hosted by this gateway's runtime (or the gateway
                was not given to `open_runtime` yet).
        """
        address = agent if isinstance(agent, str) else agent.address
        key = self._keys.get(address)
        if key is None:
            raise UsageError(f"{address} is not hosted by this gateway's runtime")
        return key.address

    def key_of(self, agent: Agent) -> UAgentsKey:
        """The secp256k1 key of a hosted agent (for its signed address binding)."""
        self.address_of(agent)
        return self._keys[agent.address]

    def add_peer(self, address: str, endpoint: str) -> None:
        """Reach the uAgents agent `address` at `endpoint` (its ``.../submit`` URL).

        Raises:
            UsageError: not an ``agent1`` address, or not an http(s) URL.
        """
        UAgentsConfig(peers={address: endpoint})  # the same checks as the configuration
        self._peers[address] = endpoint

    @override
    def handles(self, address: str) -> bool:
        return is_uagents_address(address)

    def readiness(self, address: str | None) -> str:
        """The readiness uAgents' probe gets for `address`: ready, not-ready, indeterminate."""
        if address is None:
            return "indeterminate"
        running = self._running() is not None
        return "ready" if running and address in self._agents else "not-ready"

    # -- inbound --------------------------------------------------------------------------
    @property
    def held(self) -> int:
        """Sync requests held open now (bounded by `sync_holds`)."""
        return len(self._holds)

    async def submit(self, body: bytes, *, sync: bool, client: str = "") -> UEnvelope | None:
        """Take one envelope POSTed to ``/submit``; return the reply for a sync request.

        A sync request is first admitted as one of `client`'s held requests (its IP
        address; see `holds`). Then the checks, in order: structure, target hosted here,
        AAEX's rules (`uagents.admit`), a known schema digest and a handler for it, a
        payload that validates. An envelope that answers one of our async asks completes
        it; any other runs the agent's handler: for a sync request its first answer is
        returned (or, after `sync_timeout`, an ErrorMessage saying so), else in the
        background.

        Raises:
            EnvelopeRejected: any check failed (its `reason` is counted in `metrics`);
                `ReceiverBusy` when `client`, or every client together, holds as many sync
                requests as allowed.
        """
        if not sync:
            accepted = self._accept(body)
            if accepted is not None:
                agent, envelope, message, spec = accepted
                self._spawn(self._answer_later(agent, envelope, message, spec),
                            f"uagents.answer:{envelope.sender[:16]}")
            return None
        try:
            with self._holds.hold(client):  # first: a refusal costs no parsing
                accepted = self._accept(body)
                return None if accepted is None else await self._answer_held(*accepted)
        except ReceiverBusy as exc:  # only the hold raises it
            self.metrics.reject(PROTOCOL, exc.reason)
            logger.debug("refused uAgents sync request: %s", exc)
            raise

    def _accept(self, body: bytes) -> tuple[Agent, UEnvelope, Message | None,
                                            HandlerSpec | None] | None:
        """Every check of `submit`; None when the envelope answered one of our asks.

        Raises:
            EnvelopeRejected: a check failed (counted in `metrics`).
        """
        try:
            if self._running() is None:
                raise ReceiverStopping("this node is stopping")
            envelope = parse_envelope(body, max_bytes=self.config.policy.max_frame_bytes)
            agent = self._agents.get(envelope.target)
            if agent is None:
                raise WrongTarget(f"{envelope.target} is not hosted here")
            admit(envelope, now=self._clock.now(), policy=self.config.policy,
                  replay=self._replay)
            waiting = self._awaiting.get((envelope.target, envelope.sender, envelope.session))
            if waiting is not None and not waiting[0].done() and (
                    waiting[1] is None or envelope.schema_digest in waiting[1]):
                waiting[0].set_result(envelope)
                self.metrics.received[PROTOCOL] += 1
                return None
            message, spec = self._decode(agent, envelope)
        except EnvelopeRejected as exc:
            self.metrics.reject(PROTOCOL, exc.reason)
            logger.debug("refused uAgents envelope: %s", exc)
            raise
        self.metrics.received[PROTOCOL] += 1
        return agent, envelope, message, spec

    def _decode(self, agent: Agent, envelope: UEnvelope) -> tuple[Message | None,
                                                                   HandlerSpec | None]:
        """The message and the handler for it; (None, None) for an ErrorMessage."""
        if envelope.schema_digest == ERROR_MESSAGE_DIGEST:
            return None, None
        cls = self.schemas.class_for(envelope.schema_digest)
        if cls is None:
            raise UnknownMessageType(f"{agent.name} knows no uAgents message with schema "
                                     f"{envelope.schema_digest}; map it in the schema table")
        spec = handler_for(agent, cls)
        if spec is None and cls not in (ChatMessage, ChatAcknowledgement):
            raise UnknownMessageType(f"{agent.name} has no handler for {cls.message_type}")
        try:
            message = cls.model_validate_json(envelope.payload_json())
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "(root)"
            raise InvalidPayload(f"payload does not validate as {cls.message_type}: {where}: "
                                 f"{first['msg']}") from None
        return message, spec

    async def _answers(self, agent: Agent, envelope: UEnvelope, message: Message | None,
                       spec: HandlerSpec | None) -> list[Message]:
        """Run the handler; return what goes back, in order.

        The chat protocol asks every receiver to acknowledge a ChatMessage, so the gateway
        does, before the handler's answer. An agent without a chat handler answers with
        `describe(agent)`, once per session: a chat bot that answers everything would
        otherwise talk with it forever. An acknowledgement without a handler needs no answer.
        """
        if message is None:
            # Unsolicited (an answer to our own ask completes it in `_accept`), and anyone
            # may send any number: a line per message at WARNING would let them flood the log.
            logger.debug("%s: %s sent an ErrorMessage: %s", agent.name, envelope.sender,
                           envelope.payload_json()[:200])
            return []
        acknowledgement: list[Message] = []
        if isinstance(message, ChatMessage):
            acknowledgement = [ChatAcknowledgement(acknowledged_msg_id=message.msg_id)]
        if spec is None:
            key = (envelope.target, envelope.sender, envelope.session)
            if not isinstance(message, ChatMessage) or key in self._described:
                return acknowledgement
            self._described[key] = None
            if len(self._described) > _DESCRIBED_SESSIONS:
                self._described.popitem(last=False)
            return [*acknowledgement, ChatMessage.of_text(self._describe(agent))]
        runtime = self._runtime
        if runtime is None:  # pragma: no cover - submit refuses before attach
            raise UsageError("this uAgents gateway serves no runtime")
        answer = await runtime.deliver_local(
            agent, message, sender=envelope.sender, session=envelope.session.bytes,
            message_id=envelope.digest()[:16], expires_at=envelope.expires or 0)
        if isinstance(answer, ChatAcknowledgement):
            acknowledgement = []
        return [*acknowledgement, *([answer] if answer is not None else [])]

    async def _answer_held(self, agent: Agent, envelope: UEnvelope, message: Message | None,
                           spec: HandlerSpec | None) -> UEnvelope:
        """A sync request: the first answer goes back in the HTTP response, the rest by POST.

        As in uAgents, the request is held until the agent's first message back to the
        sender (its return value, or a `ctx.send` while it runs), but at most `sync_timeout`
        seconds and never past the envelope's expiry; then an ErrorMessage that says so
        answers. The handler runs on in the background (owned by the gateway's task group),
        and whatever it answers after the release is POSTed to the sender.
        """
        key = (envelope.target, envelope.sender, envelope.session)
        held: asyncio.Future[UEnvelope] = asyncio.get_running_loop().create_future()
        self._held[key] = held
        self._spawn(self._answer_into(held, agent, envelope, message, spec),
                    f"uagents.sync:{envelope.sender[:16]}")
        expires_in = max(0.0, (envelope.expires or 0) - self._clock.now())
        limit = min(self.config.sync_timeout, expires_in)
        try:
            async with asyncio.timeout(limit):
                return await held
        except TimeoutError:  # `held` is cancelled: what the handler answers now is POSTed
            reason = (f"no answer within the {self.config.sync_timeout:g} s this node holds a "
                      "sync request (interop sync_timeout); a later answer is sent "
                      "asynchronously" if limit < expires_in else "Query envelope expired")
            return self._seal_error(agent, envelope, reason)
        finally:
            if self._held.get(key) is held:
                del self._held[key]

    async def _answer_into(self, held: asyncio.Future[UEnvelope], agent: Agent,
                           envelope: UEnvelope, message: Message | None,
                           spec: HandlerSpec | None) -> None:
        """Run a sync request's handler and route its answers.

        The first fills `held` while the request is still held; the others, and all of them
        once it was released, are POSTed to the sender.
        """
        later: list[UEnvelope] = []
        try:
            for answer in await self._answers(agent, envelope, message, spec):
                sealed = self._seal(agent, envelope.sender, answer, envelope.session)
                if held.done():
                    later.append(sealed)
                elif self.config.sign_sync_replies:
                    held.set_result(sealed)
                else:  # as uAgents answers: the sender checks a signature only if present
                    held.set_result(sealed.model_copy(update={"signature": None}))
        except UsageError as exc:  # e.g. an answer of a type with no uAgents digest
            logger.warning("%s: answer to %s cannot be sent: %s", agent.name, envelope.sender,
                           exc)
            if not held.done():
                held.set_result(self._seal_error(agent, envelope, f"no answer: {exc}"))
        if later:
            await self._post_all(later)

    async def _answer_later(self, agent: Agent, envelope: UEnvelope, message: Message | None,
                            spec: HandlerSpec | None) -> None:
        for answer in await self._answers(agent, envelope, message, spec):
            try:
                await self.send(agent, envelope.sender, answer, session=envelope.session.bytes,
                                in_reply_to=None, timeout=None)
            except (TransportError, UsageError) as exc:
                logger.warning("%s: answer to %s not delivered: %s", agent.name,
                               envelope.sender, exc)

    async def _post_all(self, envelopes: list[UEnvelope]) -> None:
        for envelope in envelopes:
            try:
                await self._post(envelope, sync=False, timeout=self.config.request_timeout)
            except TransportError as exc:
                logger.warning("answer to %s not delivered: %s", envelope.target, exc)

    # -- outbound -------------------------------------------------------------------------
    def _seal(self, agent: Agent, to: str, message: Message, session: uuid.UUID) -> UEnvelope:
        key = self._keys[agent.address]
        expires = int(self._clock.now()) + self.config.envelope_ttl
        if isinstance(message, ErrorReply):  # a failed handler: uAgents' ErrorMessage
            return seal_envelope(key, target=to, schema_digest=ERROR_MESSAGE_DIGEST,
                                 payload_json=error_json(f"[{message.code}] {message.detail}"),
                                 session=session, expires=expires)
        cls = type(message)
        return seal_envelope(key, target=to, schema_digest=self.schemas.digest_of(cls),
                             payload_json=message.model_dump_json(), session=session,
                             expires=expires, protocol_digest=self.schemas.protocol_of(cls))

    def _seal_error(self, agent: Agent, envelope: UEnvelope, text: str) -> UEnvelope:
        return seal_envelope(self._keys[agent.address], target=envelope.sender,
                             schema_digest=ERROR_MESSAGE_DIGEST, payload_json=error_json(text),
                             session=envelope.session,
                             expires=int(self._clock.now()) + self.config.envelope_ttl)

    def _client(self) -> aiohttp.ClientSession:
        if self._closed:
            raise TransportClosed("this uAgents gateway was closed; open a new one")
        if self._client_session is None:
            # No aiohttp timeout: every exchange is bounded by its own asyncio.timeout.
            self._client_session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=None),
                skip_auto_headers=("User-Agent", "Accept-Encoding"))
        return self._client_session

    async def _post(self, envelope: UEnvelope, *, sync: bool, timeout: float) -> bytes:
        """POST `envelope` to its target's submit URL; return the 200 body.

        Raises:
            PeerUnreachable: no URL is configured for the target, or nothing answered there.
            RequestTimeout, PeerRejected (the peer's 400 and its reason), TransportError.
        """
        endpoint = self._peers.get(envelope.target)
        if endpoint is None:
            raise PeerUnreachable(f"no endpoint is known for {envelope.target}; add it under "
                                  "[interop.uagents.peers] (UAgentsConfig.peers)")
        headers = {"Content-Type": "application/json"}
        if sync:
            headers["x-uagents-connection"] = "sync"
        status, body = await post_bounded(
            self._client(), endpoint, envelope.to_json(), headers, timeout=timeout,
            limit=self.config.policy.max_frame_bytes)
        if status == 200:
            self.metrics.sent[PROTOCOL] += 1
            return body
        if status in (400, 413):
            reason, detail = peer_reason(status, body)
            raise PeerRejected(reason, detail)
        raise TransportError(f"{endpoint} answered HTTP {status}: "
                             f"{body[:200].decode(errors='replace')}")

    @override
    async def ask(self, agent: Agent, to: str, message: Message, *,
                  reply_type: type[Message] | None, session: bytes | None,
                  timeout: float | None) -> Message:
        limit = self.config.request_timeout if timeout is None else timeout
        envelope = self._seal(agent, to, message, session_uuid(session))
        if self.config.ask_mode == "sync":
            reply = self._sync_reply(envelope, await self._post(envelope, sync=True,
                                                                timeout=limit))
            return self._decode_reply(reply, reply_type)
        key = (envelope.sender, to, envelope.session)
        if key in self._awaiting:
            raise UsageError(f"{agent.name} already awaits a reply from {to} in this session; "
                             "ask one at a time per session")
        expected = None if reply_type is None else {self.schemas.digest_of(reply_type),
                                                    ERROR_MESSAGE_DIGEST}
        waiter: asyncio.Future[UEnvelope] = asyncio.get_running_loop().create_future()
        self._awaiting[key] = (waiter, expected)
        try:
            async with asyncio.timeout(limit):
                await self._post(envelope, sync=False, timeout=limit)
                reply = await waiter
        except TimeoutError:
            raise RequestTimeout(f"{to} did not answer {message.message_type} within "
                                 f"{limit} s") from None
        finally:
            self._awaiting.pop(key, None)
        return self._decode_reply(reply, reply_type)

    @override
    async def send(self, agent: Agent, to: str, message: Message, *, session: bytes | None,
                   in_reply_to: bytes | None, timeout: float | None) -> None:
        envelope = self._seal(agent, to, message, session_uuid(session))
        held = self._held.get((envelope.sender, to, envelope.session))
        if held is not None and not held.done():  # answers a sync request we hold open
            held.set_result(envelope)
            return
        await self._post(envelope, sync=False,
                         timeout=self.config.request_timeout if timeout is None else timeout)

    def _sync_reply(self, request: UEnvelope, body: bytes) -> UEnvelope:
        """Check the envelope a sync request got back in its HTTP response.

        uAgents does not sign it; an unsigned one is accepted only here, as the answer on
        the connection we opened to the configured endpoint. A signature, when present,
        must verify.
        """
        try:
            reply = parse_envelope(body, max_bytes=self.config.policy.max_frame_bytes)
        except EnvelopeRejected as exc:
            raise UnexpectedReply(f"{request.target} answered with no envelope: {exc}") from exc
        if (reply.sender, reply.target, reply.session) != (request.target, request.sender,
                                                           request.session):
            raise UnexpectedReply(f"the sync reply is not from {request.target} to "
                                  f"{request.sender} in session {request.session}")
        if reply.signature is not None and not reply.verify():
            raise UnexpectedReply(f"the sync reply from {request.target} has a bad signature")
        return reply

    def _decode_reply(self, reply: UEnvelope, reply_type: type[Message] | None) -> Message:
        try:
            text = reply.payload_json()
        except MalformedEnvelope as exc:
            raise UnexpectedReply(f"reply from {reply.sender}: {exc}") from exc
        if reply.schema_digest == ERROR_MESSAGE_DIGEST:
            try:
                error = str(parse_json(text).get("error", text))
            except (ValueError, AttributeError):
                error = text[:200]
            raise RemoteHandlerError("uagents_error", error)
        cls = self.schemas.class_for(reply.schema_digest)
        if cls is None:
            raise UnexpectedReply(f"{reply.sender} replied with schema {reply.schema_digest}, "
                                  "which is not in the schema table")
        if reply_type is not None and cls is not reply_type:
            raise UnexpectedReply(f"{reply.sender} replied {cls.message_type}; expected "
                                  f"{reply_type.message_type}")
        try:
            return cls.model_validate_json(text)
        except ValidationError as exc:
            raise UnexpectedReply(f"reply from {reply.sender} does not validate as "
                                  f"{cls.message_type}: {exc.error_count()} error(s)") from exc

    # -- tasks ------------------------------------------------------------------------------
    @property
    def idle(self) -> bool:
        """True when no answer is being worked out or sent."""
        return not self._tasks

    async def wait_idle(self) -> None:
        """Return once no answer is being worked out or sent (tests, orderly shutdown).

        An answer POSTed to another gateway is taken there (its handler task exists) before
        the POST returns, so gateways that are idle one after the other are quiescent.
        """
        while self._tasks:
            await asyncio.wait(set(self._tasks))

    def _spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        if self._task_group is None or self._closed:
            work.close()
            logger.debug("uAgents gateway is closed; %s not started", name)
            return
        task = self._task_group.create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def __repr__(self) -> str:
        return (f"<UAgentsGateway agents={len(self._agents)} peers={len(self._peers)} "
                f"ask={self.config.ask_mode} tasks={len(self._tasks)}"
                f"{' closed' if self._closed else ''}>")
