"""What an HTTP peer sends, read within limits: whole bodies, and JSON of bounded nesting.

Every HTTP surface of a node (envelopes, ``/submit``, A2A, the OpenAI-compatible gateway,
the admin API) reads what a stranger sent through these, so one rule holds everywhere:

- **Whole bodies, never past the limit.** `read_body` reads to the end, however the
  network split the body, and stops one byte past the limit, so an oversize body is never
  held in full. (`StreamReader.read(n)` returns what is buffered, not n bytes: one call
  cuts a large body wherever the network split it.)
- **JSON at C speed, nesting bounded.** `parse_json` is pydantic-core's parser. The standard
  `json` module recurses on nesting: ``[[[[...`` a few thousand levels deep raises
  `RecursionError`, which no ``except ValueError`` catches, and a server answers 500 with a
  traceback. pydantic-core refuses nesting beyond `MAX_JSON_DEPTH` levels with a
  `ValueError`, so every failure is one exception with a one-line message.
- **One answer for a bad body.** `read_json` raises `BadRequestBody` with the HTTP status
  to answer (413 over the limit, else 400) and a one-line reason; each surface words it in
  its own protocol (a JSON-RPC error, OpenAI's error object, the admin API's ``error``).
"""

from __future__ import annotations

from typing import Any

import aiohttp
import pydantic_core
from aiohttp import web

from ..errors import BadRequestBody, clip

MAX_JSON_DEPTH = 201
"""Arrays and objects nested deeper than this are refused: pydantic-core's fixed recursion
limit of 200 below the top level (`tests/test_http_json.py` pins it). Python code that
walks a parsed document recursively stays well inside the interpreter's limit of 1,000."""


async def read_body(content: aiohttp.StreamReader, limit: int) -> bytes | None:
    """The whole body of a request or response, or None once it passes `limit` bytes."""
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await content.read(limit + 1 - size)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)


def parse_json(data: bytes | str) -> Any:
    """The document in `data`, JSON from outside: no NaN or Infinity, nesting bounded.

    Raises:
        ValueError: not JSON, or nested deeper than `MAX_JSON_DEPTH`; one line, saying where.
    """
    try:
        return pydantic_core.from_json(data, allow_inf_nan=False)
    except ValueError as exc:
        message = str(exc)
        if "recursion limit" in message:
            message = f"nested deeper than {MAX_JSON_DEPTH} levels ({message})"
        raise ValueError(clip(message, 200)) from None


async def read_json(request: web.BaseRequest, *, limit: int) -> Any:
    """The JSON document a request carries, read whole (at most `limit` bytes) and parsed.

    Raises:
        BadRequestBody: over `limit` (status 413), or not JSON, or nested too deep (400).
    """
    length = request.content_length
    if length is not None and length > limit:
        raise BadRequestBody(f"body of {length} bytes exceeds the limit of {limit}", status=413)
    body = await read_body(request.content, limit)
    if body is None:
        raise BadRequestBody(f"body exceeds the limit of {limit} bytes", status=413)
    try:
        return parse_json(body)
    except ValueError as exc:
        raise BadRequestBody(f"body is not JSON: {exc}") from None
