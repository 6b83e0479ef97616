"""The admin API's JSON answers, and how its routes read an integer query parameter.

One shape for every answer: indented, decimals as text.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from aaex_agents.errors import UsageError, quote


def json_response(document: Any, status: int = 200) -> web.Response:
    """`document` as an ``application/json`` answer; what JSON cannot hold is written as text."""
    return web.Response(text=json.dumps(document, default=str, indent=1), status=status,
                        content_type="application/json")


def query_int(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    """The integer query parameter `name`, `default` when absent.

    Raises:
        UsageError: it is not an integer from `low` to `high`; the message names it.
    """
    text = request.query.get(name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise UsageError(f"{name}: {quote(text)} is not an integer") from None
    if not low <= value <= high:
        raise UsageError(f"{name}: must be from {low} to {high}, got {value}")
    return value
