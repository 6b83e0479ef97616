"""The runtime on the in-memory network: dispatch, replies, failures and lifecycle."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from aaex_agents import (
    Agent,
    Context,
    MemoryNetwork,
    Message,
    PeerRejected,
    PeerUnreachable,
    Protocol,
    RemoteHandlerError,
    RequestTimeout,
    RuntimeConfig,
    StaticDirectory,
    UnexpectedReply,
    UnknownMessageType,
    UsageError,
    handler,
    on_interval,
    open_runtime,
)
from aaex_agents.envelope import Envelope
from aaex_agents.identity import Identity
from aaex_agents.interop import Gateway
from aaex_agents.model import ErrorReply
from aaex_agents.runtime import Runtime, RuntimeState
from aaex_agents.testing import Faults, ManualClock, ScriptedPeer


class Ask(Message, type="test_runtime.ask/1"):
    n: int


class Answer(Message, type="test_runtime.answer/1"):
    n: int


class Other(Message, type="test_runtime.other/1"):
    pass


class Fail(Message, type="test_runtime.fail/1"):
    pass


class Lie(Message, type="test_runtime.lie/1"):
    pass


class Later(Message, type="test_runtime.later/1"):
    pass


class Doubler(Agent):
    def __init__(self) -> None:
        super().__init__(name="doubler")
        self.seen: list[int] = []

    @handler
    async def on_ask(self, ctx: Context, msg: Ask) -> Answer:
        self.seen.append(msg.n)
        return Answer(n=msg.n * 2)

    @handler
    async def on_fail(self, ctx: Context, msg: Fail) -> Answer:
        raise ValueError("secret internal detail")

    @handler
    async def on_lie(self, ctx: Context, msg: Lie) -> Answer:
        return Other()  # type: ignore[return-value]  # the runtime must catch this

    @handler
    async def on_later(self, ctx: Context, msg: Later) -> None:
        await ctx.reply(Answer(n=-1))


class Collector(Agent):
    def __init__(self) -> None:
        super().__init__(name="collector")
        self.answers: asyncio.Queue[int] = asyncio.Queue()

    @handler
    async def on_answer(self, ctx: Context, msg: Answer) -> None:
        await self.answers.put(msg.n)


@pytest.fixture
def network() -> MemoryNetwork:
    return MemoryNetwork()


async def test_ask_returns_the_typed_reply(network: MemoryNetwork) -> None:
    doubler, collector = Doubler(), Collector()
    async with open_runtime([doubler, collector], transports=[network.transport()]) as runtime:
        reply = await runtime.context(collector).ask(doubler.address, Ask(n=21), reply_type=Answer)
        assert reply == Answer(n=42)
        assert doubler.seen == [21]


class Desk(Agent):
    """Shared handlers: answers `Ask` for any hosted agent whose class does not, as that agent."""

    def __init__(self) -> None:
        super().__init__(name="desk")
        self.answered_for: list[str] = []

    @handler
    async def on_ask(self, ctx: Context, msg: Ask) -> Answer:
        self.answered_for.append(ctx.address)
        return Answer(n=-msg.n)


async def test_shared_handlers_answer_for_agents_whose_class_does_not(
        network: MemoryNetwork) -> None:
    doubler, collector, desk = Doubler(), Collector(), Desk()
    async with open_runtime([doubler, collector], transports=[network.transport()],
                            shared=desk) as runtime:
        ctx = runtime.context(doubler)
        # The collector has no handler for Ask: the desk answers, sealed as the collector
        # (the runtime checks that the reply comes from the agent that was asked).
        assert await ctx.ask(collector.address, Ask(n=3)) == Answer(n=-3)
        # The doubler's own handler comes first.
        assert await runtime.context(collector).ask(doubler.address, Ask(n=3)) == Answer(n=6)
        assert desk.answered_for == [collector.address]
        with pytest.raises(PeerRejected):  # still no handler for Other anywhere
            await ctx.ask(collector.address, Other())


class Witness(Agent):
    """Records what its context says about the message being handled."""

    def __init__(self) -> None:
        super().__init__(name="witness")
        self.seen: list[tuple[str | None, bytes | None]] = []

    @handler
    async def on_later(self, ctx: Context, msg: Later) -> Answer:
        self.seen.append((ctx.sender, ctx.session))
        return Answer(n=7)


async def test_deliver_local_runs_a_handler_for_a_message_from_another_protocol() -> None:
    doubler, collector, witness, desk = Doubler(), Collector(), Witness(), Desk()
    async with open_runtime([doubler, collector, witness], shared=desk) as runtime:
        answer = await runtime.deliver_local(witness, Later(), sender="a2a:10.0.0.1",
                                             session=b"s" * 16)
        assert answer == Answer(n=7)
        assert witness.seen == [("a2a:10.0.0.1", b"s" * 16)]
        # The shared handlers answer too, as for AAEX traffic.
        assert await runtime.deliver_local(collector, Ask(n=2), sender="x") == Answer(n=-2)
        assert desk.answered_for == [collector.address]
        # A failing handler is answered and counted, not raised.
        failed = await runtime.deliver_local(doubler, Fail(), sender="x")
        assert isinstance(failed, ErrorReply) and failed.code == "handler_failed"
        assert runtime.metrics.handler_errors == 1
        assert runtime.metrics.received == 0  # the bridge counts what it received
        with pytest.raises(UnknownMessageType):
            await runtime.deliver_local(collector, Other(), sender="x")
        with pytest.raises(UsageError, match="not hosted"):
            await runtime.deliver_local(Doubler(), Ask(n=1), sender="x")


async def test_agents_on_two_runtimes_reach_each_other_through_the_directory(
        network: MemoryNetwork) -> None:
    doubler, collector = Doubler(), Collector()
    directory = StaticDirectory()
    async with open_runtime(doubler, transports=[network.transport("a")]) as first:
        directory.add(doubler.address, *first.endpoints)
        async with open_runtime(collector, transports=[network.transport("b")],
                                directory=directory) as second:
            assert await second.context(collector).ask(doubler.address, Ask(n=2)) == Answer(n=4)
            assert first.metrics.received == 1
            # The directory knows no key: the asker asked the doubler for it, signed.
            assert (second.keyring.known_key(doubler.address)
                    == doubler.identity.encryption_public_key)


async def test_send_gives_the_reply_to_the_senders_handler(network: MemoryNetwork) -> None:
    doubler, collector = Doubler(), Collector()
    async with open_runtime([doubler, collector], transports=[network.transport()]) as runtime:
        await runtime.context(collector).send(doubler.address, Ask(n=5))
        assert await asyncio.wait_for(collector.answers.get(), timeout=5) == 10


async def test_ctx_reply_answers_later_in_the_same_session(network: MemoryNetwork) -> None:
    doubler, collector = Doubler(), Collector()
    async with open_runtime([doubler, collector], transports=[network.transport()]) as runtime:
        await runtime.context(collector).send(doubler.address, Later())
        assert await asyncio.wait_for(collector.answers.get(), timeout=5) == -1


async def test_failing_handler_is_logged_answered_and_survived(
        network: MemoryNetwork, caplog: pytest.LogCaptureFixture) -> None:
    doubler, collector = Doubler(), Collector()
    async with open_runtime([doubler, collector], transports=[network.transport()]) as runtime:
        ctx = runtime.context(collector)
        with caplog.at_level(logging.ERROR, logger="aaex_agents.runtime"):
            with pytest.raises(RemoteHandlerError) as caught:
                await ctx.ask(doubler.address, Fail())
        assert caught.value.code == "handler_failed"
        assert "ValueError" in caught.value.detail
        assert "secret" not in caught.value.detail
        failures = [r for r in caplog.records if "on_fail" in r.getMessage()]
        assert failures and failures[0].exc_info is not None
        assert await ctx.ask(doubler.address, Ask(n=1)) == Answer(n=2)
        assert runtime.metrics.handler_errors == 1


async def test_a_reply_of_an_undeclared_type_is_refused(network: MemoryNetwork) -> None:
    doubler, collector = Doubler(), Collector()
    async with open_runtime([doubler, collector], transports=[network.transport()]) as runtime:
        with pytest.raises(RemoteHandlerError) as caught:
            await runtime.context(collector).ask(doubler.address, Lie())
        assert caught.value.code == "bad_reply"


async def test_unknown_type_never_reaches_a_handler(network: MemoryNetwork) -> None:
    doubler, collector = Doubler(), Collector()
    async with open_runtime([doubler, collector], transports=[network.transport()]) as runtime:
        with pytest.raises(PeerRejected) as caught:
            await runtime.context(doubler).ask(collector.address, Ask(n=1))
        assert caught.value.reason == "unknown_type"
        assert runtime.metrics.rejected["unknown_type"] == 1
        assert collector.answers.empty()


async def test_reply_types_come_from_the_agents_protocol(network: MemoryNetwork) -> None:
    class Strict(Agent):
        protocols = (Protocol("test_runtime.strict/1", {Ask: Other}),)

    peer = ScriptedPeer(network, _answer_with(Answer(n=1)))
    strict = Strict()
    directory = StaticDirectory()
    async with peer.serving(directory), open_runtime(
            strict, transports=[network.transport()], directory=directory) as runtime:
        with pytest.raises(UnexpectedReply, match=r"expected test_runtime\.other/1"):
            await runtime.context(strict).ask(peer.address, Ask(n=1))


def _answer_with(reply: Message | bytes | None, *, delay: float = 0.0):  # type: ignore[no-untyped-def]
    async def script(envelope: Envelope) -> Message | bytes | None:
        if delay:
            await asyncio.sleep(delay)
        return reply
    return script


async def test_unreachable_and_silent_and_slow_peers(network: MemoryNetwork) -> None:
    collector = Collector()
    directory = StaticDirectory()
    silent = ScriptedPeer(network, _answer_with(None), name="silent")
    slow = ScriptedPeer(network, _answer_with(Answer(n=1), delay=30), name="slow")
    garbage = ScriptedPeer(network, _answer_with(b"\x93not an envelope"), name="garbage")
    async with silent.serving(directory), slow.serving(directory), garbage.serving(directory), \
            open_runtime(collector, transports=[network.transport()],
                         directory=directory) as runtime:
        ctx = runtime.context(collector)
        with pytest.raises(PeerUnreachable, match="no endpoint"):
            await ctx.ask(Identity.generate().address, Ask(n=1))
        directory.add(gone := Identity.generate().address, "memory://nobody")
        with pytest.raises(PeerUnreachable):
            await ctx.ask(gone, Ask(n=1))
        with pytest.raises(UnexpectedReply, match="no reply"):
            await ctx.ask(silent.address, Ask(n=1))
        with pytest.raises(RequestTimeout):
            await ctx.ask(slow.address, Ask(n=1), timeout=0.05)
        with pytest.raises(UnexpectedReply, match="rejected"):
            await ctx.ask(garbage.address, Ask(n=1))
        assert runtime.metrics.rejected["malformed"] == 1


async def test_a_reply_signed_by_someone_else_is_refused(network: MemoryNetwork) -> None:
    impostor = Identity.generate()
    directory = StaticDirectory()

    async def forge(envelope: Envelope) -> bytes:
        from aaex_agents.envelope import seal
        return seal(impostor, target=envelope.sender, message=Answer(n=666), now=_now(),
                    ttl=30, in_reply_to=envelope.message_id)[1]

    peer = ScriptedPeer(network, forge)
    collector = Collector()
    async with peer.serving(directory), open_runtime(
            collector, transports=[network.transport()], directory=directory) as runtime:
        with pytest.raises(UnexpectedReply, match="did not come from"):
            await runtime.context(collector).ask(peer.address, Ask(n=1))


def _now() -> float:
    import time
    return time.time()


async def test_fault_routes_drop_and_duplicate() -> None:
    doubler, collector = Doubler(), Collector()
    faults = Faults(seed=3, duplicate=1.0)
    network = MemoryNetwork(route=faults)
    directory = StaticDirectory()
    async with open_runtime(doubler, transports=[network.transport("d")]) as first:
        directory.add(doubler.address, *first.endpoints,
                      encryption_key=doubler.identity.encryption_public_key)
        async with open_runtime(collector, directory=directory,
                                transports=[network.transport("c")]) as second:
            assert await second.context(collector).ask(doubler.address, Ask(n=3)) == Answer(n=6)
            assert doubler.seen == [3]  # the duplicate was refused as a replay
            assert ("duplicate-rejected", "PeerRejected") in faults.log
            assert first.metrics.rejected["replayed"] == 1
            faults.duplicate, faults.drop = 0.0, 1.0
            with pytest.raises(PeerUnreachable, match="fault injected"):
                await second.context(collector).ask(doubler.address, Ask(n=4))


async def test_corrupted_frames_are_rejected_never_handled() -> None:
    doubler, collector = Doubler(), Collector()
    network = MemoryNetwork(route=Faults(seed=11, corrupt=1.0))
    directory = StaticDirectory()
    async with open_runtime(doubler, transports=[network.transport("d")]) as first:
        directory.add(doubler.address, *first.endpoints)
        async with open_runtime(collector, directory=directory,
                                transports=[network.transport("c")]) as second:
            for n in range(20):
                with pytest.raises((PeerRejected, UnexpectedReply)):
                    await second.context(collector).ask(doubler.address, Ask(n=n))
            assert doubler.seen == []
            assert sum(first.metrics.rejected.values()) == 20


async def test_lifecycle_hooks_intervals_and_state(network: MemoryNetwork) -> None:
    events: list[str] = []
    ticked = asyncio.Event()

    class Lively(Agent):
        ticks = 0

        async def on_start(self, ctx: Context) -> None:
            events.append("start")

        async def on_stop(self, ctx: Context) -> None:
            events.append("stop")

        @on_interval(0.01)
        async def tick(self, ctx: Context) -> None:
            self.ticks += 1
            if self.ticks == 2:
                raise RuntimeError("one bad tick must not stop the schedule")
            if self.ticks >= 4:
                ticked.set()

    lively = Lively()
    async with open_runtime(lively, transports=[network.transport()]) as runtime:
        assert events == ["start"]
        assert runtime.state is RuntimeState.RUNNING
        await asyncio.wait_for(ticked.wait(), timeout=10)
    assert events == ["start", "stop"]
    assert runtime.state is RuntimeState.STOPPED
    assert repr(network) == "<MemoryNetwork endpoints=0>"
    with pytest.raises(UsageError, match="stopped"):
        await runtime.context(lively).ask(lively.address, Ask(n=1))


async def test_storage_persists_across_restarts(tmp_path: Path) -> None:
    identity = Identity.generate()
    config = RuntimeConfig(data_dir=tmp_path)
    async with open_runtime(Collector(), config=config) as runtime:
        pass
    first = Doubler()
    first.identity = identity
    async with open_runtime(first, config=config) as runtime:
        storage = runtime.context(first).storage
        await storage.set("orders", {"open": [1, 2, 3], "blob": b"\x00\x01"})
        await storage.set("gone", 1)
        assert await storage.delete("gone") is True
    second = Doubler()
    second.identity = identity
    async with open_runtime(second, config=config) as runtime:
        storage = runtime.context(second).storage
        assert await storage.get("orders") == {"open": [1, 2, 3], "blob": b"\x00\x01"}
        assert await storage.get("gone", "missing") == "missing"
        assert await storage.keys("or") == ["orders"]
        with pytest.raises(UsageError, match="cannot store"):
            await storage.set("bad", object())
    with pytest.raises(UsageError, match="closed"):
        await storage.get("orders")


async def test_the_same_agent_twice_is_refused() -> None:
    doubler = Doubler()
    with pytest.raises(UsageError, match="listed twice"):
        async with open_runtime([doubler, doubler]):
            pass


async def test_reply_outside_a_handler_is_a_usage_error(network: MemoryNetwork) -> None:
    collector = Collector()
    async with open_runtime(collector) as runtime:
        with pytest.raises(UsageError, match="only inside a message handler"):
            await runtime.context(collector).reply(Answer(n=1))


async def test_expired_envelopes_are_refused_with_an_injected_clock(
        network: MemoryNetwork) -> None:
    clock = ManualClock()
    doubler = Doubler()
    peer = ScriptedPeer(network, _answer_with(None), clock=clock)
    async with open_runtime(doubler, transports=[network.transport("d")], clock=clock) as runtime:
        frame = peer.seal(doubler.address, Ask(n=1), ttl=5)
        clock.advance(5 + runtime.config.policy.clock_skew + 1)
        with pytest.raises(PeerRejected) as caught:
            await peer.transport.request(runtime.endpoints[0], frame, timeout=5)
        assert caught.value.reason == "expired"
        assert doubler.seen == []


class AskV1(Message, type="test_runtime.versioned/1"):
    n: float


class AskV2(Message, type="test_runtime.versioned/2", supersedes="test_runtime.versioned/1"):
    n: int


class Versioned(Agent):
    @handler
    async def on_ask(self, ctx: Context, msg: AskV2) -> Answer:
        return Answer(n=msg.n)


async def test_a_retired_message_version_is_refused_with_the_version_to_speak(
        network: MemoryNetwork) -> None:
    new, old = Versioned(), Collector()
    async with open_runtime([new, old], transports=[network.transport()]) as runtime:
        ctx = runtime.context(old)
        assert await ctx.ask(new.address, AskV2(n=2)) == Answer(n=2)
        with pytest.raises(PeerRejected, match=r"retired, this side speaks "
                                               r"test_runtime\.versioned/2"):
            await ctx.ask(new.address, AskV1(n=2.5))


class Elsewhere(Gateway):
    """A gateway to a network whose addresses start with ``else:``; it answers every ask."""

    def __init__(self, events: list[str]) -> None:
        self.events = events

    @asynccontextmanager
    async def attach(self, runtime: Runtime) -> AsyncIterator[None]:
        self.events.append(f"attach {sorted(a.name for a in runtime.agents.values())}")
        yield
        self.events.append("detach")

    def handles(self, address: str) -> bool:
        return address.startswith("else:")

    async def ask(self, agent: Agent, to: str, message: Message, *,
                  reply_type: type[Message] | None, session: bytes | None,
                  timeout: float | None) -> Message:
        self.events.append(f"ask {to}")
        return Answer(n=0)

    async def send(self, agent: Agent, to: str, message: Message, *, session: bytes | None,
                   in_reply_to: bytes | None, timeout: float | None) -> None:
        self.events.append(f"send {to}")


async def test_gateways_given_to_open_runtime_are_attached_while_it_runs() -> None:
    events: list[str] = []

    class Hooked(Agent):
        async def on_start(self, ctx: Context) -> None:
            events.append("start")

        async def on_stop(self, ctx: Context) -> None:
            await ctx.send("else:bye", Later())  # a gateway still works in on_stop
            events.append("stop")

    gateway = Elsewhere(events)
    async with open_runtime(Hooked(), gateways=[gateway]) as runtime:
        assert runtime.gateways == (gateway,)
        ctx = runtime.context(next(iter(runtime.agents.values())))
        assert await ctx.ask("else:someone", Ask(n=1)) == Answer(n=0)
    assert events == ["attach ['Hooked']", "start", "ask else:someone", "send else:bye",
                      "stop", "detach"]
