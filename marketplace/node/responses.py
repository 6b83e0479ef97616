"""The admin API's JSON answers: one shape for every route (indented, decimals as text)."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web


def json_response(document: Any, status: int = 200) -> web.Response:
    """`document` as an ``application/json`` answer; what JSON cannot hold is written as text."""
    return web.Response(text=json.dumps(document, default=str, indent=1), status=status,
                        content_type="application/json")
