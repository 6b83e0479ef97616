"""The shape of a seller's task, as its ad states it, and the check a buyer runs against it.

A seller declares its task and result as pydantic models; their JSON Schemas travel in its
signed ad (`ServiceAd.task_schema`, `ServiceAd.result_schema`), so a buyer learns what to send
before it asks anyone for a price, and refuses a task that does not fit before anything is
negotiated or paid.

A buyer holds only the schema, not the seller's model, so `schema_fault` checks the subset of
JSON Schema that pydantic emits for plain models: ``type``, ``required``, ``properties``,
``additionalProperties``, ``items``, ``enum``, ``const``, ``anyOf``, ``$ref`` into ``$defs``,
``minimum``/``maximum`` (and their exclusive forms), ``minLength``/``maxLength`` and
``minItems``/``maxItems``. A keyword outside it is not checked (the seller checks again on
receipt with its own model, in pydantic's strict JSON mode, which reads types as JSON Schema
does: ``"3"`` and ``true`` are not integers), so the check refuses no task the seller
would take. The `jsonschema` package would check more, but it is not a
dependency and the seller's own check is the authority anyway.

`compact_schema` drops titles and descriptions so a schema costs the ad only its structure;
`MAX_SCHEMA_BYTES` bounds what one schema may add to an ad, which keeps an index answer of
1,000 ads under its 4 MiB.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

from aaex_agents.errors import UsageError

MAX_SCHEMA_BYTES = 1536
"""The most one advertised schema (task or result) may take, as compact JSON."""

MAX_DEPTH = 32
"""Nesting a check follows, `$ref`s included, before it stops (a recursive schema)."""

_DROPPED = frozenset({"title", "description", "examples"})

_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,), "array": (list,), "string": (str,), "boolean": (bool,),
    "integer": (int,), "number": (int, float), "null": (type(None),)}


def compact_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The JSON Schema of `model` without titles and descriptions, as an ad carries it.

    Raises:
        UsageError: the schema takes more than `MAX_SCHEMA_BYTES`.
    """
    schema = _strip(model.model_json_schema())
    size = schema_bytes(schema)
    if size > MAX_SCHEMA_BYTES:
        raise UsageError(f"the schema of {model.__name__} takes {size} bytes, over the "
                         f"{MAX_SCHEMA_BYTES} an ad may carry; simplify the model")
    return dict(schema)


def schema_bytes(schema: Mapping[str, Any]) -> int:
    """The size of `schema` as compact JSON, the form the ad signs."""
    return len(json.dumps(schema, sort_keys=True, separators=(",", ":"),
                          ensure_ascii=False).encode())


def _strip(node: Any, *, under_properties: bool = False) -> Any:
    if isinstance(node, dict):  # property names are data, never dropped
        return {k: _strip(v, under_properties=not under_properties
                          and k in ("properties", "$defs"))
                for k, v in node.items() if under_properties or k not in _DROPPED}
    if isinstance(node, list):
        return [_strip(v) for v in node]
    return node


def schema_fault(schema: Mapping[str, Any], document: Any) -> str | None:
    """Why `document` does not fit `schema`, naming the field (``history.2: ...``); None if it fits.

    Only the subset described in the module docstring is checked.
    """
    return _fault(schema, document, "", schema.get("$defs", {}), 0)


def _where(path: str) -> str:
    return path or "the task"


def _fault(schema: Any, value: Any, path: str, defs: Any, depth: int) -> str | None:
    if not isinstance(schema, Mapping) or depth > MAX_DEPTH:
        return None
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/") and isinstance(defs, Mapping):
        return _fault(defs.get(ref.removeprefix("#/$defs/")), value, path, defs, depth + 1)
    if isinstance(schema.get("anyOf"), list):
        faults = [_fault(s, value, path, defs, depth + 1) for s in schema["anyOf"]]
        if all(f is not None for f in faults):
            return faults[0] if len(faults) == 1 else \
                f"{_where(path)}: fits none of the {len(faults)} allowed shapes ({faults[0]})"
    if "const" in schema and value != schema["const"]:
        return f"{_where(path)}: must be {schema['const']!r}"
    if isinstance(schema.get("enum"), list) and value not in schema["enum"]:
        return f"{_where(path)}: must be one of {schema['enum']!r}, got {value!r}"
    return _type_fault(schema, value, path) or _bounds_fault(schema, value, path) \
        or _members_fault(schema, value, path, defs, depth)


def _type_fault(schema: Mapping[str, Any], value: Any, path: str) -> str | None:
    wanted = schema.get("type")
    names = [wanted] if isinstance(wanted, str) else wanted if isinstance(wanted, list) else []
    if not names:
        return None
    for name in names:
        kinds = _TYPES.get(name)
        if kinds is None:
            return None  # a type outside the subset: not checked
        if isinstance(value, kinds) and not (isinstance(value, bool) and name in
                                             ("integer", "number")):
            return None
        if name == "integer" and isinstance(value, float) and value.is_integer():
            return None
    return f"{_where(path)}: must be {' or '.join(names)}, got {type(value).__name__}"


def _bounds_fault(schema: Mapping[str, Any], value: Any, path: str) -> str | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if isinstance(value, float) and not math.isfinite(value):
            return f"{_where(path)}: must be a finite number"
        number: Any = value  # an int beyond float range still compares exactly
        for key, words in (("minimum", "at least"), ("maximum", "at most"),
                           ("exclusiveMinimum", "more than"), ("exclusiveMaximum", "less than")):
            bound = schema.get(key)
            if not isinstance(bound, (int, float)) or isinstance(bound, bool):
                continue
            ok = {"minimum": number >= bound, "maximum": number <= bound,
                  "exclusiveMinimum": number > bound, "exclusiveMaximum": number < bound}[key]
            if not ok:
                return f"{_where(path)}: must be {words} {bound}, got {value}"
    for key, minimum in (("minLength", True), ("maxLength", False),
                         ("minItems", True), ("maxItems", False)):
        bound = schema.get(key)
        if not isinstance(bound, int) or not isinstance(value, (str, list)):
            continue
        if (key.endswith("Length")) != isinstance(value, str):
            continue
        if (len(value) < bound) if minimum else (len(value) > bound):
            what = "characters" if isinstance(value, str) else "items"
            return (f"{_where(path)}: must have {'at least' if minimum else 'at most'} "
                    f"{bound} {what}, got {len(value)}")
    return None


def _members_fault(schema: Mapping[str, Any], value: Any, path: str, defs: Any,
                   depth: int) -> str | None:
    prefix = f"{path}." if path else ""
    if isinstance(value, dict):
        properties = schema.get("properties")
        properties = properties if isinstance(properties, Mapping) else {}
        required = schema.get("required")
        for name in required if isinstance(required, list) else []:
            if name not in value:
                return f"{prefix}{name}: required"
        extra = schema.get("additionalProperties")
        for name, member in value.items():
            if name in properties:
                fault = _fault(properties[name], member, f"{prefix}{name}", defs, depth + 1)
            elif extra is False:
                fault = f"{prefix}{name}: not a field of this task"
            else:
                fault = _fault(extra, member, f"{prefix}{name}", defs, depth + 1)
            if fault is not None:
                return fault
    if isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        for index, item in enumerate(value):
            fault = _fault(schema["items"], item, f"{prefix}{index}", defs, depth + 1)
            if fault is not None:
                return fault
    return None
