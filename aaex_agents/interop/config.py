"""How AAEX agents reach uAgents agents, and what their gateway grants inbound traffic.

`UAgentsConfig` is the gateway's configuration (`marketplace.node.interop` builds one from
the node's ``[interop]`` table); `check_peers` and `check_ask_mode` are its checks, shared
with that table so both word an error the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from ..envelope import EnvelopePolicy
from ..errors import UsageError
from .uagents import SchemaTable, public_key_of

AskMode = Literal["sync", "async"]


@dataclass(frozen=True, kw_only=True)
class UAgentsConfig:
    """How AAEX agents reach uAgents agents.

    Attributes:
        peers: ``agent1...`` address -> its ``http://host:port/submit``; where replies and
            messages to that agent go (no Almanac lookup).
        schemas: AAEX message types <-> uAgents schema digests, beyond the chat protocol's
            (which are always included).
        policy: limits for inbound envelopes (frame size, clock skew, longest lifetime,
            replay memory); the runtime's defaults.
        ask_mode: "sync" (default): `ask` holds the HTTP request open for the reply, one
            round trip; "async": the reply is POSTed back to our ``/submit``.
        envelope_ttl: seconds our envelopes stay valid (default 30, as uAgents' `ctx.send`).
        request_timeout: default timeout of `send` and `ask` (default 30 s).
        sign_sync_replies: sign the reply returned to a sync request (default True). uAgents
            leaves those unsigned, and its sender verifies one only when it is signed, in
            pure-Python ECDSA: measured here, that verification cuts a uAgents sender's
            sync round trips to us about threefold (bench/interop.py). False answers as
            uAgents does; the sender then trusts the reply as the answer on its own
            connection only.
        sync_timeout: seconds a sync request is held for the agent's answer at most
            (default 30, what uAgents' own sync senders wait); then it is answered with an
            ErrorMessage that says so, and what the agent answers later is POSTed.
        sync_holds: sync requests held open at once (default 256); beyond, one is refused
            at once with HTTP 503, reason ``busy``.
        sync_holds_per_ip: sync requests held open at once from one client address
            (default 16); beyond, 503 ``busy``, while other addresses are still served.
    """

    peers: Mapping[str, str] = field(default_factory=dict)
    schemas: SchemaTable = field(default_factory=SchemaTable)
    policy: EnvelopePolicy = field(default_factory=EnvelopePolicy)
    ask_mode: AskMode = "sync"
    envelope_ttl: int = 30
    request_timeout: float = 30.0
    sign_sync_replies: bool = True
    sync_timeout: float = 30.0
    sync_holds: int = 256
    sync_holds_per_ip: int = 16

    def __post_init__(self) -> None:
        check_peers(self.peers, "UAgentsConfig.peers")
        check_ask_mode(self.ask_mode, "UAgentsConfig.ask_mode")
        if not 0 < self.envelope_ttl <= self.policy.max_lifetime:
            raise UsageError(f"UAgentsConfig.envelope_ttl = {self.envelope_ttl}: must be positive "
                             f"and at most policy.max_lifetime ({self.policy.max_lifetime})")
        if self.request_timeout <= 0:
            raise UsageError("UAgentsConfig.request_timeout must be positive seconds")
        if not 0 < self.sync_timeout <= self.policy.max_lifetime:
            raise UsageError(f"UAgentsConfig.sync_timeout = {self.sync_timeout}: must be positive "
                             f"seconds, at most policy.max_lifetime ({self.policy.max_lifetime})")
        if not 0 < self.sync_holds_per_ip <= self.sync_holds:
            raise UsageError(f"UAgentsConfig: need 0 < sync_holds_per_ip <= sync_holds, got "
                             f"{self.sync_holds_per_ip} and {self.sync_holds}")


def check_peers(peers: Mapping[str, object], setting: str) -> None:
    """Each key a uAgents address, each value a submit URL; `setting` names them in errors.

    Raises:
        UsageError: the first bad entry, named.
    """
    for address, endpoint in peers.items():
        try:
            public_key_of(address)
        except UsageError as exc:
            raise UsageError(f"{setting}: {exc}") from None
        if not isinstance(endpoint, str) or not endpoint.startswith(("http://", "https://")):
            raise UsageError(f"{setting}.{address[:16]}... = {endpoint!r}: write the peer's "
                             "submit URL, e.g. \"http://127.0.0.1:8000/submit\"")


def check_ask_mode(value: object, setting: str) -> None:
    """Raise UsageError naming `setting` unless `value` is an `AskMode`."""
    if value not in ("sync", "async"):
        raise UsageError(f"{setting} = {value!r}: write \"sync\" or \"async\"")
