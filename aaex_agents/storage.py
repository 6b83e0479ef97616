"""Per-agent persistent key-value storage in SQLite.

SQLite calls block, so each store runs them on its own single worker thread: the event loop
never waits on disk, and the connection is only ever touched by one thread.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import msgpack

from .errors import StorageError, UsageError

T = TypeVar("T")


_SCHEMA = "CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value BLOB NOT NULL)"


class AgentStorage:
    """A small async key-value store; values are anything msgpack can carry.

    Open with `await AgentStorage.open(path)`; `path=None` keeps the data in memory only.
    The opener closes it with `aclose()`.
    """

    def __init__(self, connection: sqlite3.Connection, executor: ThreadPoolExecutor,
                 path: Path | None) -> None:
        self._connection = connection
        self._executor = executor
        self._closed = False
        self.path = path

    @classmethod
    async def open(cls, path: Path | None) -> AgentStorage:
        """Open (creating if needed) the store at `path`.

        Raises:
            StorageError: the file cannot be opened or is not an SQLite database.
        """
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="aaex-storage")

        def connect() -> sqlite3.Connection:
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
            connection = sqlite3.connect(str(path) if path else ":memory:", check_same_thread=False)
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute(_SCHEMA)
            connection.commit()
            return connection

        try:
            connection = await asyncio.get_running_loop().run_in_executor(executor, connect)
        except (sqlite3.Error, OSError) as exc:
            executor.shutdown(wait=False)
            raise StorageError(f"cannot open agent storage at {path}: {exc}") from exc
        return cls(connection, executor, path)

    async def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        if self._closed:
            raise UsageError("agent storage is closed; use it only while its runtime runs")
        try:
            return await asyncio.get_running_loop().run_in_executor(
                self._executor, work, self._connection)
        except sqlite3.Error as exc:
            raise StorageError(f"agent storage at {self.path or ':memory:'} failed: {exc}") from exc

    async def get(self, key: str, default: Any = None) -> Any:
        """Return the value stored under `key`, or `default`."""
        row = await self._run(
            lambda c: c.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone())
        return default if row is None else msgpack.unpackb(row[0], raw=False)

    async def set(self, key: str, value: Any) -> None:
        """Store `value` under `key`, durably, replacing any previous value.

        Raises:
            UsageError: `value` cannot be serialised.
            StorageError: the write failed (nothing is changed).
        """
        try:
            blob = msgpack.packb(value, use_bin_type=True)
        except (TypeError, ValueError) as exc:
            raise UsageError(f"cannot store {type(value).__name__} under {key!r}: {exc}") from exc

        def write(c: sqlite3.Connection) -> None:
            with c:
                c.execute("INSERT OR REPLACE INTO kv (key, value) VALUES (?, ?)", (key, blob))

        await self._run(write)

    async def delete(self, key: str) -> bool:
        """Remove `key`; return whether it existed."""
        def remove(c: sqlite3.Connection) -> bool:
            with c:
                return c.execute("DELETE FROM kv WHERE key = ?", (key,)).rowcount > 0
        return await self._run(remove)

    async def keys(self, prefix: str = "") -> list[str]:
        """Return the stored keys that start with `prefix`, sorted."""
        rows = await self._run(lambda c: c.execute(
            "SELECT key FROM kv WHERE substr(key, 1, ?) = ? ORDER BY key",
            (len(prefix), prefix)).fetchall())
        return [row[0] for row in rows]

    async def aclose(self) -> None:
        """Close the database; further use raises. Idempotent."""
        if self._closed:
            return
        self._closed = True
        await asyncio.get_running_loop().run_in_executor(self._executor, self._connection.close)
        self._executor.shutdown(wait=True)

    def __repr__(self) -> str:
        return f"<AgentStorage {self.path or ':memory:'} {'closed' if self._closed else 'open'}>"
