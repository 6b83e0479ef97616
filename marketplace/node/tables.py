"""How the node's TOML tables are read: frozen, strict pydantic models and one error format.

Every section of a node's configuration (``[node]``, ``[[agents]]``, ``[llm]``, ``[market]``,
``[gateway]``, ``[interop]`` and its ``uagents`` tables) is a `Table`, and every error in any
of them is one line that names the dotted field and the fix:

- a value: ``node.http = 'localhost': write host:port, e.g. "127.0.0.1:8700"``;
- a key no field reads, section or field alike, with the closest known one:
  ``gatway: unknown key; did you mean 'gateway'? known: ...``;
- a check across fields: its own message, which names them.

`marketplace.node.config` assembles the sections into `NodeConfig`; the gateway and the
interop listener define theirs next to the code that uses them.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    ValidationError,
    ValidationInfo,
    model_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError, PydanticKnownError

from aaex_agents.errors import AaexError, UsageError
from aaex_agents.transport.listener import host_port


class ConfigError(AaexError):
    """The node configuration is invalid; the message names the field and the fix."""


# -- errors ------------------------------------------------------------------------------------

_FIXES = {
    "string_type": "write a string", "int_type": "write an integer",
    "float_type": "write a number", "bool_type": "write true or false",
    "tuple_type": "write a list", "list_type": "write a list",
    "frozen_set_type": "write a list", "set_type": "write a list",
    "dict_type": "write a table", "model_type": "write a table",
    "string_too_short": "must not be empty",
}
"""What to write instead, by pydantic error type; other types keep pydantic's own words."""


def where(prefix: str, loc: Iterable[int | str]) -> str:
    """``("agents", 0, "class")`` -> ``agents[0].class``, after `prefix` when given."""
    text = prefix
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else str(part)
    return text


def explain(error: ErrorDetails, prefix: str = "") -> str:
    """One pydantic error as one line that names the field and says what to write."""
    field, kind, ctx = where(prefix, error["loc"]), error["type"], error.get("ctx", {})
    if kind == "unknown_key":
        return f"{where(field, [ctx['key']])}: unknown key; {ctx['hint']}"
    if kind == "problem":  # a check across fields: its message names them itself
        return error["msg"]
    if kind == "missing":
        return f"{field} is required"
    if kind == "literal_error":
        fix = f"write one of {ctx['expected']}"
    elif kind == "greater_than":
        fix = "must be positive" if ctx["gt"] == 0 else f"must be more than {ctx['gt']}"
    elif kind == "greater_than_equal":
        fix = "must be zero or more" if ctx["ge"] == 0 else f"must be at least {ctx['ge']}"
    else:
        fix = _FIXES.get(kind, error["msg"])
    return f"{field} = {error['input']!r}: {fix}"


def config_error(exc: ValidationError, prefix: str = "") -> ConfigError:
    """Every error of `exc` in one line, each as `explain` words it."""
    return ConfigError("; ".join(explain(e, prefix) for e in exc.errors(include_url=False)))


def unknown(key: str, known: Iterable[str]) -> PydanticCustomError:
    """The error for a key no field reads, with the closest known key as the likely fix."""
    names = sorted(known)
    close = difflib.get_close_matches(key, names, n=1)
    hint = (f"did you mean {close[0]!r}? " if close else "") + (
        f"known: {', '.join(names)}" if names else "it takes none")
    return PydanticCustomError("unknown_key", "unknown key {key}", {"key": key, "hint": hint})


def problem(message: str) -> PydanticCustomError:
    """An error whose message names its fields itself (a check across fields)."""
    return PydanticCustomError("problem", message)


def fix(message: str) -> PydanticCustomError:
    """An error of one field's value; `message` says what to write instead."""
    return PydanticCustomError("fix", message)


# -- tables ------------------------------------------------------------------------------------

class Table(BaseModel):
    """A TOML table: frozen, strict, and an unknown key is named with the closest known one.

    Validated with a context (as `marketplace.node.config.parse_config` does), it reads a
    file's keys, the aliases (``class``); without one, Python's field names too.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, validate_by_name=True,
                              validate_by_alias=True)

    @classmethod
    def _keys(cls, document: bool) -> set[str]:
        """The keys a table may hold: in a file, the aliases (``class``); in Python, names too."""
        keys = set()
        for name, field in cls.model_fields.items():
            if isinstance(field.validation_alias, str):
                keys.add(field.validation_alias)
            if not document or field.validation_alias is None:
                keys.add(name)
        return keys

    @model_validator(mode="before")
    @classmethod
    def _known_keys_only(cls, data: Any, info: ValidationInfo) -> Any:
        if isinstance(data, dict):
            known = cls._keys(document=bool(info.context))  # from a file: with a context
            for key in data:
                if key not in known:
                    raise unknown(str(key), known)
        return data


def _under_base(value: Any, info: ValidationInfo) -> Any:
    """A path of the file, taken relative to the file's folder (the context's ``base``)."""
    if not isinstance(value, str | Path):
        raise PydanticKnownError("string_type")
    base = (info.context or {}).get("base")
    return base / value if base is not None else Path(value)


RelativePath = Annotated[Path, BeforeValidator(_under_base)]
"""A path in the file: a string, relative to the file's folder."""


# -- listen addresses --------------------------------------------------------------------------

def _listen_address(value: str) -> str:
    if host_port(value) is None:
        raise fix('write host:port, e.g. "127.0.0.1:8700"')
    return value


def _listen_address_or_off(value: str) -> str:
    return value and _listen_address(value)


HostPort = Annotated[str, AfterValidator(_listen_address)]
"""A listen address, ``host:port`` (port 0: any free one); the same error in every section."""
HostPortOrOff = Annotated[str, AfterValidator(_listen_address_or_off)]
"""A `HostPort`, or ``""`` for not listening at all."""


def split_host_port(value: str) -> tuple[str, int]:
    """``"127.0.0.1:8700"`` -> ``("127.0.0.1", 8700)``.

    Raises:
        UsageError: `value` is not host:port.
    """
    parsed = host_port(value)
    if parsed is None:
        raise UsageError(f"{value!r} is not host:port")
    return parsed
