"""Handler declarations, checked when the Agent class is created.

The message type comes from the parameter annotation and the reply type from the return
annotation.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from .model import Message
from .protocol import Protocol

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])

_HANDLER_MARK = "__aaex_handler__"
_INTERVAL_MARK = "__aaex_interval__"
RESERVED_NAMES = frozenset({"on_start", "on_stop"})


def handler(function: F) -> F:
    """Mark an `async def on_x(self, ctx, msg: SomeMessage) -> Reply | None` as a handler.

    The function is returned unchanged, so its type is kept for the type checker.
    """
    setattr(function, _HANDLER_MARK, True)
    return function


def on_interval(seconds: float) -> Callable[[F], F]:
    """Run `async def tick(self, ctx) -> None` every `seconds` while the agent runs.

    The first run is one period after start; a run that raises is logged and the schedule
    goes on.
    """
    def mark(function: F) -> F:
        setattr(function, _INTERVAL_MARK, float(seconds))
        return function
    return mark


@dataclass(frozen=True)
class HandlerSpec:
    """One checked handler: the method and the message types it takes and may return."""

    name: str
    function: Callable[..., Awaitable[Any]]
    accepts: tuple[type[Message], ...]
    replies: tuple[type[Message], ...]
    reply_optional: bool


@dataclass(frozen=True)
class IntervalSpec:
    """One periodic method and its period in seconds."""

    name: str
    function: Callable[..., Awaitable[None]]
    seconds: float


@dataclass(frozen=True)
class HandlerTable:
    """All the handlers of one Agent class, indexed by the wire type name they accept."""

    by_type: Mapping[str, tuple[type[Message], HandlerSpec]]
    intervals: tuple[IntervalSpec, ...]


def _message_types(annotation: object) -> tuple[list[type[Message]], bool, list[object]]:
    """Split an annotation into Message classes, whether None is allowed, and the rest."""
    is_union = typing.get_origin(annotation) in (typing.Union, types.UnionType)
    members = typing.get_args(annotation) if is_union else (annotation,)
    classes: list[type[Message]] = []
    allows_none = False
    other: list[object] = []
    for member in members:
        if member is None or member is type(None):
            allows_none = True
        elif isinstance(member, type) and issubclass(member, Message):
            classes.append(member)
        else:
            other.append(member)
    return classes, allows_none, other


def collect_handlers(cls: type, protocols: tuple[Protocol, ...]) -> tuple[HandlerTable, list[str]]:
    """Read and check every handler of `cls`; return the table and a list of problems.

    Each handler's annotations resolve in the namespace of the class that defines it (its
    `_annotation_namespace`), so an inherited handler keeps meaning what it meant.
    """
    problems: list[str] = []
    by_type: dict[str, tuple[type[Message], HandlerSpec]] = {}
    intervals: list[IntervalSpec] = []
    for name in sorted(dir(cls)):
        function = getattr(cls, name, None)
        is_handler = getattr(function, _HANDLER_MARK, False) is True
        period = getattr(function, _INTERVAL_MARK, None)
        if function is None or (not is_handler and period is None):
            continue
        where = f"{cls.__qualname__}.{name}"
        if not inspect.iscoroutinefunction(function):
            problems.append(f"{where}: must be `async def`")
            continue
        if name in RESERVED_NAMES:
            problems.append(f"{where}: {name} is a lifecycle hook; give the handler another name")
            continue
        if period is not None:
            if is_handler:
                problems.append(f"{where}: is marked both @handler and @on_interval; pick one")
            elif not 0 < period < float("inf"):
                problems.append(f"{where}: interval must be positive (and finite) seconds, "
                                f"got {period}")
            elif len(inspect.signature(function).parameters) != 2:
                problems.append(f"{where}: an interval method takes (self, ctx)")
            else:
                intervals.append(IntervalSpec(name, function, period))
            continue
        owner = next((k for k in cls.__mro__ if name in vars(k)), cls)
        localns = getattr(owner, "_annotation_namespace", None)
        spec = _check_handler(where, name, function, localns, protocols, problems)
        if spec is None:
            continue
        for accepted in spec.accepts:
            type_name = str(accepted.message_type)  # _check_handler refused untyped classes
            if type_name in by_type:
                problems.append(f"{where}: {accepted.__name__} ({type_name}) is already handled by "
                                f"{cls.__qualname__}.{by_type[type_name][1].name}; one handler per "
                                "message type")
            else:
                by_type[type_name] = (accepted, spec)
    return HandlerTable(by_type, tuple(intervals)), problems


def _check_handler(where: str, name: str, function: Callable[..., Any],
                   localns: Mapping[str, Any] | None, protocols: tuple[Protocol, ...],
                   problems: list[str]) -> HandlerSpec | None:
    parameters = list(inspect.signature(function).parameters.values())
    if len(parameters) != 3 or any(p.kind not in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
                                   for p in parameters):
        problems.append(f"{where}: a handler takes exactly (self, ctx, msg), e.g. "
                        "`async def on_ping(self, ctx, msg: Ping) -> Pong`")
        return None
    try:
        hints = typing.get_type_hints(function, localns=dict(localns or {}))
    except NameError as exc:
        problems.append(f"{where}: cannot resolve an annotation ({exc}); import the message "
                        "class where the agent is defined")
        return None
    msg_param = parameters[2].name
    if msg_param not in hints:
        problems.append(f"{where}: parameter '{msg_param}' has no annotation; annotate it with a "
                        f"Message subclass, e.g. `{msg_param}: Ping`")
        return None
    accepts, _, other = _message_types(hints[msg_param])
    if other or not accepts:
        problems.append(f"{where}: parameter '{msg_param}' is annotated {hints[msg_param]!r}; "
                        "it must be a Message subclass or a union of them")
        return None
    untyped = [c.__name__ for c in accepts if c.message_type is None]
    if untyped:
        problems.append(f"{where}: {', '.join(untyped)} has no type name; declare it with "
                        "`class X(Message, type=\"area.name/1\")`")
        return None
    if "return" not in hints:
        problems.append(f"{where}: the return is not annotated; write `-> Pong` for a reply or "
                        "`-> None` for none")
        return None
    replies, optional, other = _message_types(hints["return"])
    if other:
        problems.append(f"{where}: returns {hints['return']!r}; a handler returns Message "
                        "subclasses or None")
        return None
    for reply in replies:
        if reply.message_type is None:
            problems.append(f"{where}: reply {reply.__name__} has no type name")
    for protocol in protocols:
        for accepted in accepts:
            allowed = protocol.valid_replies(accepted)
            if allowed is None:
                continue
            wrong = [r.__name__ for r in replies if r not in allowed]
            if wrong or optional:
                shown = ", ".join(sorted(c.__name__ for c in allowed))
                problems.append(f"{where}: protocol {protocol.name} allows only {shown} in reply "
                                f"to {accepted.__name__}, but the handler may return "
                                f"{', '.join(wrong + (['None'] if optional else []))}")
    return HandlerSpec(name, function, tuple(accepts), tuple(replies), optional)
