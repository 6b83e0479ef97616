"""The counters every bridge to a foreign network keeps, and the `Gateway` it implements.

A `Gateway` (declared by the runtime, which uses it, and re-exported here) claims the
addresses of one foreign network (``agent1...`` for uAgents); the runtime hands it every
`send` and `ask` to such an address, so an agent talks to a foreign agent exactly as it
talks to an AAEX one.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..runtime import Gateway as Gateway

if TYPE_CHECKING:
    from ..agent import Agent
    from ..handlers import HandlerSpec
    from ..model import Message

"""(name, help, labels, value): one Prometheus sample."""


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
