"""What the runtime needs from a foreign network, and the counters every bridge keeps.

A `Gateway` claims the addresses of one foreign network (``agent1...`` for uAgents); the
runtime hands it every `send` and `ask` to such an address, so an agent talks to a foreign
agent exactly as it talks to an AAEX one.
"""

from __future__ import annotations

import abc
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..agent import Agent
    from ..model import Message

Sample = tuple[str, str, dict[str, str], float]
"""(name, help, labels, value): one Prometheus sample."""


class Gateway(abc.ABC):
    """Carries AAEX messages to the agents of another network."""

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

    def samples(self) -> list[Sample]:
        """Prometheus samples: ``aaex_interop_{received,sent,rejected}_total``."""
        out: list[Sample] = []
        out += [("aaex_interop_received_total", "Interop messages accepted, by protocol",
                 {"protocol": p}, n) for p, n in sorted(self.received.items())]
        out += [("aaex_interop_sent_total", "Interop messages sent, by protocol",
                 {"protocol": p}, n) for p, n in sorted(self.sent.items())]
        out += [("aaex_interop_rejected_total", "Interop messages refused, by protocol and reason",
                 {"protocol": p, "reason": r}, n) for (p, r), n in sorted(self.rejected.items())]
        return out
