"""A seller's typed task: the check of a task against the seller's own pydantic model.

A seller declares `task_model` (and `result_model`); the node puts their schemas in its ad
(`discovery.schema`) and refuses to start a seller without a task model. The seller checks
each call for proposals and each task it receives with `task_fault`, and declines a task
that does not fit (``bad_task``, naming the field) before it prices or performs anything.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ValidationError

from ..contracts.signing import sha256_hex


def task_hash(task: Mapping[str, Any]) -> str:
    """sha256 of a task's canonical JSON: what the agreement names."""
    return sha256_hex(json.dumps(task, sort_keys=True, separators=(",", ":")).encode())


def task_fault(model: type[BaseModel] | None, task: Mapping[str, Any]) -> str | None:
    """Why `task` does not fit `model`, naming the field (``history.0: ...``); None if it does.

    A seller with no model takes any task (its `perform` says no itself). The check is
    pydantic's strict JSON mode, so it agrees with the JSON Schema a buyer checks against
    (`discovery.schema`): ``"3"`` or ``true`` is not an integer, though 3 is a float.
    """
    if model is None:
        return None
    try:
        model.model_validate_json(json.dumps(dict(task)), strict=True)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(part) for part in first["loc"]) or "the task"
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        return f"{where}: {first['msg']}{more}"
    return None
