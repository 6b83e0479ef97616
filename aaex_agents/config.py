"""The settings of one runtime, in one frozen object checked when it is made."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .envelope import EnvelopePolicy
from .errors import UsageError
from .keyring import SealingPolicy


@dataclass(frozen=True, kw_only=True)
class RuntimeConfig:
    """Settings of one runtime.

    Attributes:
        envelope_ttl: lifetime given to envelopes we send (default 60 s).
        request_timeout: default timeout of `send` and `ask` (default 30 s).
        stop_timeout: how long each agent's `on_stop` may take (default 5 s).
        data_dir: where agents keep their SQLite stores; None keeps them in memory.
        policy: what inbound envelopes must satisfy.
        sealing: how envelopes are encrypted to their recipients (see `aaex_agents.keyring`).
    """

    envelope_ttl: float = 60.0
    request_timeout: float = 30.0
    stop_timeout: float = 5.0
    data_dir: Path | None = None
    policy: EnvelopePolicy = field(default_factory=EnvelopePolicy)
    sealing: SealingPolicy = field(default_factory=SealingPolicy)

    def __post_init__(self) -> None:
        for name in ("envelope_ttl", "request_timeout", "stop_timeout"):
            if getattr(self, name) <= 0:
                raise UsageError(
                    f"RuntimeConfig.{name} must be positive, got {getattr(self, name)!r}")
        if self.envelope_ttl > self.policy.max_lifetime:
            raise UsageError(
                f"RuntimeConfig.envelope_ttl ({self.envelope_ttl} s) exceeds what receivers "
                f"accept (policy.max_lifetime = {self.policy.max_lifetime} s)")
