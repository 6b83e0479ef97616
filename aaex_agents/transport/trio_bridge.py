"""The one bridge between asyncio (the application) and trio (py-libp2p).

py-libp2p runs only on trio. It gets a dedicated thread running `trio.run`; asyncio code
calls into it with `await bridge.call(fn, ...)`, and trio code calls back into asyncio with
`await bridge.call_asyncio(fn, ...)`. Both directions hop through the event loops' own
thread-safe schedulers (`TrioToken.run_sync_soon`, `loop.call_soon_threadsafe`), never
through a worker thread per call: one hop costs ~0.1 ms. This is the only module of the code
base that imports trio.

Ownership: whoever calls `start()` calls `aclose()`; `aclose` cancels everything still
running in the trio thread and joins it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, TypeVar

import trio

from ..errors import TransportClosed, UsageError

logger = logging.getLogger(__name__)

T = TypeVar("T")

RESOURCE_ERRORS: tuple[type[Exception], ...] = (trio.BrokenResourceError,
                                                trio.ClosedResourceError)
"""What trio raises on a stream the other side broke or we closed (for `except` clauses
outside this module, which is the only one that imports trio)."""


class TrioBridge:
    """A trio event loop in its own thread, driven from asyncio."""

    def __init__(self, name: str = "aaex-trio") -> None:
        self._name = name
        self._thread: threading.Thread | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._nursery: trio.Nursery | None = None
        self._stop: trio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

    async def start(self) -> None:
        """Start the trio thread; returns once it accepts calls."""
        if self._thread is not None or self._closed:
            raise UsageError("a TrioBridge is started once; create a new one")
        self._loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = self._loop.create_future()
        self._finished: asyncio.Future[None] = self._loop.create_future()
        self._thread = threading.Thread(target=self._thread_main, args=(ready,), name=self._name,
                                        daemon=True)
        self._thread.start()
        await ready

    def _thread_main(self, ready: asyncio.Future[None]) -> None:
        loop = self._loop
        if loop is None:
            return
        try:
            trio.run(self._trio_main, ready)
        except BaseException as exc:  # report a crash of the loop itself to the starter
            loop.call_soon_threadsafe(_settle, ready, None, exc)
            logger.error("trio thread %s crashed", self._name, exc_info=True)
        finally:
            try:
                loop.call_soon_threadsafe(_settle, self._finished, None, None)
            except RuntimeError:  # the asyncio loop is already closed: nobody waits
                pass

    async def _trio_main(self, ready: asyncio.Future[None]) -> None:
        self._token = trio.lowlevel.current_trio_token()
        self._stop = trio.Event()
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            assert self._loop is not None  # noqa: S101 - set by start() before the thread
            self._loop.call_soon_threadsafe(_settle, ready, None, None)
            await self._stop.wait()
            nursery.cancel_scope.cancel()

    async def call(self, fn: Callable[..., Awaitable[T]], *args: Any,
                   timeout: float | None = None) -> T:
        """Run `await fn(*args)` in the trio thread and return its result here.

        Raises:
            TimeoutError: `timeout` seconds passed (the trio side is cancelled).
            TransportClosed: the bridge is closed or closing.
            Whatever `fn` raises.
        Cancelling the caller cancels the trio side.
        """
        token, nursery, loop = self._token, self._nursery, asyncio.get_running_loop()
        if token is None or nursery is None or self._closed:
            raise TransportClosed("the libp2p thread is not running")
        future: asyncio.Future[T] = loop.create_future()
        scope = trio.CancelScope()

        async def run_in_trio() -> None:
            with scope:
                try:
                    if timeout is None:
                        result = await fn(*args)
                    else:
                        with trio.fail_after(timeout):
                            result = await fn(*args)
                except trio.TooSlowError:
                    loop.call_soon_threadsafe(_settle, future, None, TimeoutError(
                        f"{getattr(fn, '__name__', fn)} took longer than {timeout} s"))
                    return
                except Exception as exc:  # noqa: BLE001 - handed to the asyncio caller as is
                    loop.call_soon_threadsafe(_settle, future, None, exc)
                    return
                loop.call_soon_threadsafe(_settle, future, result, None)
            if scope.cancelled_caught:
                loop.call_soon_threadsafe(_settle, future, None,
                                          TransportClosed("the libp2p thread stopped"))

        def schedule() -> None:
            try:
                nursery.start_soon(run_in_trio)
            except RuntimeError:  # the nursery is closing
                loop.call_soon_threadsafe(_settle, future, None,
                                          TransportClosed("the libp2p thread is stopping"))

        try:
            token.run_sync_soon(schedule)
        except trio.RunFinishedError:
            raise TransportClosed("the libp2p thread has stopped") from None
        try:
            return await future
        except asyncio.CancelledError:
            try:
                token.run_sync_soon(scope.cancel)
            except trio.RunFinishedError:
                pass
            raise

    async def call_asyncio(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """From trio: run `await fn(*args)` on the asyncio loop and return its result.

        Cancelling the trio caller cancels the asyncio side.
        """
        loop, token = self._loop, self._token
        if loop is None or token is None:
            raise TransportClosed("the bridge is not running")
        done = trio.Event()
        concurrent = asyncio.run_coroutine_threadsafe(_as_coroutine(fn, *args), loop)
        concurrent.add_done_callback(lambda _: _wake(token, done))
        try:
            await done.wait()
        except trio.Cancelled:
            concurrent.cancel()
            raise
        return concurrent.result()

    @asynccontextmanager
    async def open_in_trio(self, factory: Callable[[], AbstractAsyncContextManager[T]],
                           *, timeout: float = 30.0) -> AsyncIterator[T]:
        """Hold the trio async context manager `factory()` open while this block runs.

        Yields its value. Entering it must take at most `timeout` seconds.

        Raises:
            TimeoutError: entering took too long.
            Whatever entering or exiting `factory()` raises.
        """
        loop = asyncio.get_running_loop()
        entered: asyncio.Future[T] = loop.create_future()
        exited: asyncio.Future[None] = loop.create_future()
        scope = trio.CancelScope()
        release = trio.Event()

        async def hold() -> None:
            error: BaseException | None = None
            with scope:
                try:
                    async with factory() as value:
                        loop.call_soon_threadsafe(_settle, entered, value, None)
                        await release.wait()
                except Exception as exc:  # noqa: BLE001 - reported to the asyncio side
                    error = exc
            if scope.cancelled_caught and error is None:
                error = TransportClosed("the libp2p thread stopped")
            loop.call_soon_threadsafe(_settle, entered, None, error)
            loop.call_soon_threadsafe(_settle, exited, None, None if entered.done() else error)

        await self.call(_start_soon, self, hold)
        try:
            value = await asyncio.wait_for(asyncio.shield(entered), timeout)
        except TimeoutError:
            self._run_soon(scope.cancel)
            await exited
            raise TimeoutError(f"entering took longer than {timeout} s") from None
        try:
            yield value
        finally:
            self._run_soon(release.set)
            await exited

    def _run_soon(self, callback: Callable[[], object]) -> None:
        token = self._token
        if token is None:
            return
        try:
            token.run_sync_soon(callback)
        except trio.RunFinishedError:
            pass

    async def aclose(self) -> None:
        """Cancel everything in the trio thread and join it. Idempotent."""
        if self._closed:
            return
        self._closed = True
        token, stop, thread = self._token, self._stop, self._thread
        if token is not None and stop is not None:
            try:
                token.run_sync_soon(stop.set)
            except trio.RunFinishedError:
                pass
        if thread is not None:
            # Wait for the thread's own "finished" signal rather than a blocking join in an
            # executor thread (which would itself outlive the bridge).
            try:
                await asyncio.wait_for(asyncio.shield(self._finished), 10.0)
            except TimeoutError:
                logger.warning("trio thread %s did not stop within 10 s", self._name)
                return
            thread.join(1.0)

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("running" if self._token else "new")
        return f"<TrioBridge {self._name} {state}>"


async def _start_soon(bridge: TrioBridge, fn: Callable[[], Awaitable[None]]) -> None:
    if bridge._nursery is None:
        raise TransportClosed("the libp2p thread is not running")
    bridge._nursery.start_soon(fn)


def _wake(token: trio.lowlevel.TrioToken, event: trio.Event) -> None:
    try:
        token.run_sync_soon(event.set)
    except trio.RunFinishedError:
        pass


async def _as_coroutine(fn: Callable[..., Awaitable[T]], *args: Any) -> T:
    return await fn(*args)


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


sleep_forever = trio.sleep_forever
"""Re-exported so trio-side code elsewhere never imports trio itself."""


def shielded() -> trio.CancelScope:
    """A shielded cancel scope, for trio-side clean-up that must finish when cancelled."""
    return trio.CancelScope(shield=True)
