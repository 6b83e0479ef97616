"""What the runtime needs from a foreign network, and the counters every bridge keeps.

A `Gateway` claims the addresses of one foreign network (``agent1...`` for uAgents); the
runtime hands it every `send` and `ask` to such an address, so an agent talks to a foreign
agent exactly as it talks to an AAEX one.
"""

from __future__ import annotations

import abc
from collections import Counter
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..agent import Agent
    from ..handlers import HandlerSpec
    from ..model import Message
    from ..runtime import Runtime

"""(name, help, labels, value): one Prometheus sample."""


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


@dataclass
class InteropMetrics:
    """Interop traffic by protocol (``uagents``, ``a2a``); rejections also by reason.

    Plain counters, so a node can publish them however it exports metrics (`samples`).
    """

    received: Counter[str] = field(default_factory=Counter)
    sent: Counter[str] = field(default_factory=Counter)
    rejected: Counter[tuple[str, str]] = field(default_factory=Counter)

    def reject(self, protocol: str, reason: str) -> None:
        """Count one refused message."""
        self.rejected[(protocol, reason)] += 1


def handler_for(agent: Agent, cls: type[Message]) -> HandlerSpec | None:
    """The agent's handler for messages of type `cls`, if it has one."""
    entry = agent.handler_table.by_type.get(str(cls.message_type))
    return entry[1] if entry is not None else None
