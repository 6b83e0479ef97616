"""Handler declarations checked at class creation, and the Message base class."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from aaex_agents import (
    Agent,
    Context,
    HandlerDefinitionError,
    Message,
    Protocol,
    UsageError,
    handler,
    on_interval,
)
from aaex_agents.model import message_class, require_type_name


class Ping(Message, type="test_handler_definitions.ping/1"):
    text: str = ""


class Pong(Message, type="test_handler_definitions.pong/1"):
    text: str = ""


class Query(Message, type="test_handler_definitions.query/1"):
    question: str = ""


class ReqA(Message, type="test_handler_definitions.req_a/1"):
    pass


class ReplyB(Message, type="test_handler_definitions.reply_b/1"):
    pass


class ReplyC(Message, type="test_handler_definitions.reply_c/1"):
    pass


class M1(Message, type="test_handler_definitions.m1/1"):
    pass


class M2(Message, type="test_handler_definitions.m2/1"):
    pass


class M3(Message, type="test_handler_definitions.m3/1"):
    pass


class M4(Message, type="test_handler_definitions.m4/1"):
    pass


class M5(Message, type="test_handler_definitions.m5/1"):
    pass


class M6(Message, type="test_handler_definitions.m6/1"):
    pass


PROTOCOL = Protocol("test_handlers.p/1", {ReqA: ReplyB})


def head(problem: str) -> str:
    """The `Class.method` part before the first ': ' of a problem line."""
    return problem.split(": ", 1)[0]


# --- every problem at once ------------------------------------------------------------------


def test_every_problem_is_reported_in_one_error() -> None:
    class NoTypeName(Message):
        pass

    with pytest.raises(HandlerDefinitionError) as excinfo:
        class Bad(Agent):
            protocols = (PROTOCOL,)

            @handler  # type: ignore[type-var]
            def on_sync(self, ctx: Context, msg: M1) -> None:
                return None

            @handler
            async def on_unannotated(self, ctx: Context, msg) -> None:  # type: ignore[no-untyped-def]
                return None

            @handler
            async def on_int(self, ctx: Context, msg: int) -> None:
                return None

            @handler
            async def on_no_return(self, ctx: Context, msg: M2):  # type: ignore[no-untyped-def]
                return None

            @handler
            async def on_str_return(self, ctx: Context, msg: M3) -> str:
                return ""

            @handler
            async def on_two_params(self, msg: M4) -> None:
                return None

            @handler
            async def on_dup_first(self, ctx: Context, msg: M5) -> None:
                return None

            @handler
            async def on_dup_second(self, ctx: Context, msg: M5) -> None:
                return None

            @handler
            async def on_start(self, ctx: Context, msg: M6) -> None:  # type: ignore[override]
                return None

            @on_interval(0)
            async def on_tick(self, ctx: Context) -> None:
                return None

            @handler
            async def on_untyped(self, ctx: Context, msg: NoTypeName) -> None:
                return None

            @handler
            async def on_req(self, ctx: Context, msg: ReqA) -> ReplyC:
                return ReplyC()

            @handler
            async def on_ping(self, ctx: Context, msg: Ping) -> Pong:  # correct: not reported
                return Pong()

    error = excinfo.value
    assert isinstance(error, UsageError)
    expected = {
        "on_sync": "async def",
        "on_unannotated": "has no annotation",
        "on_int": "must be a Message subclass",
        "on_no_return": "return is not annotated",
        "on_str_return": "a handler returns Message subclasses or None",
        "on_two_params": "exactly (self, ctx, msg)",
        "on_dup_second": "already handled by",
        "on_start": "lifecycle hook",
        "on_tick": "interval must be positive",
        "on_untyped": "NoTypeName has no type name",
        "on_req": "protocol test_handlers.p/1",
    }
    assert len(error.problems) == len(expected)
    for name, words in expected.items():
        matching = [p for p in error.problems if head(p).endswith(f"Bad.{name}")]
        assert len(matching) == 1, (name, error.problems)
        assert words in matching[0], (name, matching[0])
    assert "Bad.on_dup_first" in next(p for p in error.problems if "already handled" in p)
    assert "ReplyC" in next(p for p in error.problems if head(p).endswith("Bad.on_req"))
    assert str(error).startswith(f"{len(expected)} handler problem(s):")
    for problem in error.problems:
        assert problem in str(error)


@pytest.mark.parametrize("period", [0, -1, -0.001])
def test_non_positive_interval_is_refused(period: float) -> None:
    with pytest.raises(HandlerDefinitionError) as excinfo:
        class Ticker(Agent):
            @on_interval(period)
            async def tick(self, ctx: Context) -> None:
                return None

    assert len(excinfo.value.problems) == 1
    assert head(excinfo.value.problems[0]).endswith("Ticker.tick")


def test_nan_interval_is_refused() -> None:
    # NaN passes `period <= 0`; the loop then sleeps forever and the method never runs.
    with pytest.raises(HandlerDefinitionError):
        class Ticker(Agent):
            @on_interval(float("nan"))
            async def tick(self, ctx: Context) -> None:
                return None


def test_interval_with_wrong_parameters_is_refused() -> None:
    with pytest.raises(HandlerDefinitionError) as excinfo:
        class Ticker(Agent):
            @on_interval(5)
            async def tick(self) -> None:
                return None

    assert ["(self, ctx)" in p for p in excinfo.value.problems] == [True]


def test_handler_marked_as_interval_too_is_refused() -> None:
    with pytest.raises(HandlerDefinitionError, match="both @handler and @on_interval"):
        class Both(Agent):
            @on_interval(5)
            @handler
            async def on_ping(self, ctx: Context, msg: Ping) -> None:
                return None


def test_handler_with_keyword_only_message_is_refused() -> None:
    with pytest.raises(HandlerDefinitionError, match=r"exactly \(self, ctx, msg\)"):
        class KwOnly(Agent):
            @handler
            async def on_ping(self, ctx: Context, *, msg: Ping) -> None:
                return None


def test_unresolvable_annotation_is_reported() -> None:
    with pytest.raises(HandlerDefinitionError, match="cannot resolve an annotation"):
        class Unknown(Agent):
            @handler
            async def on_ghost(self, ctx: Context, msg: Ghost) -> None:  # noqa: F821
                return None


def test_duplicate_across_inheritance_is_refused() -> None:
    with pytest.raises(HandlerDefinitionError) as excinfo:
        class Child(EchoBase):
            @handler
            async def on_another_ping(self, ctx: Context, msg: Ping) -> None:
                return None

    assert len(excinfo.value.problems) == 1
    assert "test_handler_definitions.ping/1" in excinfo.value.problems[0]


def test_protocol_refuses_optional_reply() -> None:
    with pytest.raises(HandlerDefinitionError, match="None"):
        class MaybeReplies(Agent):
            protocols = (PROTOCOL,)

            @handler
            async def on_req(self, ctx: Context, msg: ReqA) -> ReplyB | None:
                return None


# --- accepted definitions -------------------------------------------------------------------


class EchoBase(Agent):
    @handler
    async def on_ping(self, ctx: Context, msg: Ping) -> Pong:
        return Pong(text=msg.text)


def spec_for(agent: type[Agent], message: type[Message]) -> Any:
    message_type, spec = agent.handler_table.by_type[require_type_name(message)]
    assert message_type is message
    return spec


def test_union_parameter_registers_one_handler_for_two_types() -> None:
    class Either(Agent):
        @handler
        async def on_either(self, ctx: Context, msg: Ping | Query) -> Pong:
            return Pong()

    assert set(Either.handler_table.by_type) == {"test_handler_definitions.ping/1",
                                                 "test_handler_definitions.query/1"}
    ping_spec, query_spec = spec_for(Either, Ping), spec_for(Either, Query)
    assert ping_spec is query_spec
    assert ping_spec.accepts == (Ping, Query)
    assert ping_spec.function is Either.on_either


def test_optional_reply() -> None:
    class Maybe(Agent):
        @handler
        async def on_ping(self, ctx: Context, msg: Ping) -> Pong | None:
            return None

        @handler
        async def on_query(self, ctx: Context, msg: Query) -> None:
            return None

    ping = spec_for(Maybe, Ping)
    assert ping.replies == (Pong,) and ping.reply_optional is True
    query = spec_for(Maybe, Query)
    assert query.replies == () and query.reply_optional is True
    assert spec_for(EchoBase, Ping).reply_optional is False


def test_protocol_reply_in_the_allowed_set_is_accepted() -> None:
    class Speaks(Agent):
        protocols = (Protocol("test_handlers.two/1", {ReqA: (ReplyB, ReplyC)}),)

        @handler
        async def on_req(self, ctx: Context, msg: ReqA) -> ReplyB | ReplyC:
            return ReplyB()

    assert spec_for(Speaks, ReqA).replies == (ReplyB, ReplyC)


def test_handlers_are_inherited() -> None:
    class Child(EchoBase):
        @handler
        async def on_query(self, ctx: Context, msg: Query) -> None:
            return None

    assert set(Child.handler_table.by_type) == {"test_handler_definitions.ping/1",
                                                "test_handler_definitions.query/1"}
    assert spec_for(Child, Ping).function is EchoBase.on_ping
    assert set(EchoBase.handler_table.by_type) == {"test_handler_definitions.ping/1"}


def test_overridden_handler_replaces_the_inherited_one() -> None:
    class Loud(EchoBase):
        @handler
        async def on_ping(self, ctx: Context, msg: Ping) -> Pong:
            return Pong(text=msg.text.upper())

    assert spec_for(Loud, Ping).function is Loud.on_ping
    assert len(Loud.handler_table.by_type) == 1


def test_inherited_handler_keeps_its_own_message_class_when_a_name_is_shadowed() -> None:
    # The subclass is defined where the name `Ping` means another class. The inherited
    # handler was written against the module's Ping and must still be routed by it.
    class Ping(Message, type="test_handler_definitions.shadow_ping/1"):
        pass

    class Child(EchoBase):
        pass

    assert Ping.message_type == "test_handler_definitions.shadow_ping/1"
    assert set(Child.handler_table.by_type) == {"test_handler_definitions.ping/1"}


def make_local_base() -> type[Agent]:
    class LocalRequest(Message, type="test_handler_definitions.local_request/1"):
        pass

    class LocalBase(Agent):
        @handler
        async def on_local(self, ctx: Context, msg: LocalRequest) -> None:
            return None

    return LocalBase


def test_subclass_of_an_agent_with_local_message_classes() -> None:
    base = make_local_base()
    assert set(base.handler_table.by_type) == {"test_handler_definitions.local_request/1"}

    class Child(base):  # type: ignore[valid-type,misc]
        pass

    assert set(Child.handler_table.by_type) == {"test_handler_definitions.local_request/1"}


def test_local_message_classes_resolve() -> None:
    class LocalAsk(Message, type="test_handler_definitions.local_ask/1"):
        question: str

    class LocalAnswer(Message, type="test_handler_definitions.local_answer/1"):
        answer: str

    class Local(Agent):
        @handler
        async def on_ask(self, ctx: Context, msg: LocalAsk) -> LocalAnswer | None:
            return LocalAnswer(answer=msg.question)

    message_type, spec = Local.handler_table.by_type["test_handler_definitions.local_ask/1"]
    assert message_type is LocalAsk
    assert spec.replies == (LocalAnswer,)


def test_interval_is_collected() -> None:
    class Ticker(Agent):
        @on_interval(2.5)
        async def tick(self, ctx: Context) -> None:
            return None

    (interval,) = Ticker.handler_table.intervals
    assert interval.name == "tick" and interval.seconds == 2.5
    assert Ticker.handler_table.by_type == {}


def test_agent_without_handlers_is_fine() -> None:
    class Quiet(Agent):
        async def on_start(self, ctx: Context) -> None:
            return None

        async def helper(self, ctx: Context, msg: Ping) -> Pong:  # not marked: not a handler
            return Pong()

    assert Quiet.handler_table.by_type == {}
    assert Quiet.handler_table.intervals == ()


# --- the Message base -----------------------------------------------------------------------


@pytest.mark.parametrize("name", [
    "",
    "nodot/1",
    "no.version",
    "no.version/",
    "Upper.case/1",
    "upper.Case/1",
    "a.b/0",
    "a.b/01",
    "a.b/1234567",
    "a..b/1",
    ".a.b/1",
    "a.b./1",
    "1a.b/1",
    "a.1b/1",
    "a-b.c/1",
    "a.b/v1",
    " a.b/1",
    "a.b/1 ",
    "a.b/1/2",
])
def test_type_name_must_match_the_pattern(name: str) -> None:
    with pytest.raises(UsageError, match=r"area\.name/VERSION"):
        class Bad(Message, type=name):
            pass


def test_type_name_with_a_trailing_newline_is_refused() -> None:
    # `$` in the pattern also matches just before a final newline.
    with pytest.raises(UsageError):
        class Bad(Message, type="test_handler_definitions.newline/1\n"):
            pass


def test_type_name_must_be_a_string() -> None:
    with pytest.raises(UsageError):
        class Bad(Message, type=1):  # type: ignore[arg-type]
            pass


@pytest.mark.parametrize("name", ["test_handler_definitions.ok/1",
                                  "test_handler_definitions.a_b.c9/999999"])
def test_valid_type_names_are_accepted(name: str) -> None:
    class Good(Message, type=name):
        pass

    assert Good.message_type == name
    assert message_class(name) is Good


def test_two_classes_cannot_claim_one_type_name() -> None:
    with pytest.raises(UsageError, match="already used by"):
        class Impostor(Message, type="test_handler_definitions.ping/1"):
            pass

    assert message_class("test_handler_definitions.ping/1") is Ping


def define_local_twice() -> type[Message]:
    class Redefined(Message, type="test_handler_definitions.redefined/1"):
        pass

    return Redefined


def test_the_same_class_defined_again_may_keep_its_name() -> None:
    first, second = define_local_twice(), define_local_twice()
    assert first is not second
    assert message_class("test_handler_definitions.redefined/1") is second


def test_subclasses_without_a_type_name_cannot_be_sent() -> None:
    class Abstract(Message):
        pass

    class Derived(Ping):
        pass

    assert Abstract.message_type is None
    assert Derived.message_type is None  # a type name is not inherited
    with pytest.raises(UsageError, match="no type name"):
        require_type_name(Derived)
    assert require_type_name(Ping) == "test_handler_definitions.ping/1"


def test_messages_are_frozen() -> None:
    ping = Ping(text="hi")
    with pytest.raises(ValidationError):
        ping.text = "changed"  # type: ignore[misc]
    assert ping.text == "hi"


def test_messages_refuse_extra_and_missing_fields() -> None:
    with pytest.raises(ValidationError):
        Ping(text="hi", extra=1)  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        Ping.model_validate({"text": "hi", "extra": 1})

    class Needs(Message, type="test_handler_definitions.needs/1"):
        value: int

    with pytest.raises(ValidationError):
        Needs()  # type: ignore[call-arg]
    assert Needs(value=3).value == 3
