"""Node configuration: a TOML file read into frozen dataclasses.

Errors name the field and the fix.

    [node]
    identity = "node.key"            # created on first run (mode 0600)
    data_dir = "data"
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
from typing import Any

from aaex_agents.address import public_key_from_address
from aaex_agents.errors import AaexError, UsageError


class ConfigError(AaexError):
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
        """The node's ledger file."""
        return self.data_dir / "ledger.sqlite"


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


_NODE_KEYS = {"identity", "data_dir", "http", "admin", "p2p", "seeds", "refresh_period",
              "drain_timeout"}
_AGENT_KEYS = {"name", "class", "settings"}


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
    unknown = set(document) - {"node", "agents", "whitelists"}
    if unknown:
        raise ConfigError(f"unknown section(s) {sorted(unknown)}; use [node], [[agents]], "
                          "[whitelists]")
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
    try:
        return NodeConfig(
            identity=base / str(node.get("identity", "node.key")),
            data_dir=base / str(node.get("data_dir", "data")),
            http=str(node.get("http", "127.0.0.1:0")), admin=str(node.get("admin", "127.0.0.1:0")),
            p2p=tuple(_strings(node, "p2p", ["/ip4/127.0.0.1/tcp/0"])),
            seeds=tuple(_strings(node, "seeds", [])), agents=tuple(agents),
            whitelists=whitelists, refresh_period=float(node.get("refresh_period", 300.0)),
            drain_timeout=float(node.get("drain_timeout", 10.0)))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"node: {exc}") from exc


def _table(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{where} must be a table, got {type(value).__name__}")
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
