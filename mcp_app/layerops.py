"""Channel-layer operations that hold up under bursts.

channels_redis takes one connection from redis-py's pool (100 connections by default) for each command in
flight, and redis-py refuses the 101st at once (``MaxConnectionsError``). Thousands of clients leaving at the
same moment each cause layer operations (their sessions end on every worker), so every operation of
mcp_app's goes through :func:`layer_op`: at most :data:`MAX_CONCURRENT` of them run at once per event loop
(well below the pool), and one refused for want of a connection, or by a full channel, is tried again with
backoff for up to :data:`RETRY_SECONDS` before its error is raised.

Synchronous code (signal receivers, ``on_commit`` callbacks in a WSGI worker or a management command) sends
through :func:`call_from_sync`, on one event loop per process, so that its sends reuse one connection pool.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import threading
import weakref
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from asgiref.sync import async_to_sync
from channels.exceptions import ChannelFull
from channels.layers import InMemoryChannelLayer, get_channel_layer

# The logger it had as part of the transports (log configurations name it).
logger = logging.getLogger("mcp_app.transports")

T = TypeVar("T")

#: Layer operations in flight at once per event loop: a quarter of redis-py's default pool (100), leaving
#: room for the blocking receive and the other users of the pool.
MAX_CONCURRENT = 24
#: How long an operation is retried (pool exhausted, channel full) before it fails.
RETRY_SECONDS = 3.0
_FIRST_BACKOFF = 0.02

_limits: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = weakref.WeakKeyDictionary()


def _semaphore() -> asyncio.Semaphore:
    loop = asyncio.get_running_loop()
    semaphore = _limits.get(loop)
    if semaphore is None:
        semaphore = _limits[loop] = asyncio.Semaphore(MAX_CONCURRENT)
    return semaphore


def retryable(exc: BaseException) -> bool:
    """Worth another try shortly: a full channel (its reader is draining it into the stream's own buffer), or
    redis-py's pool momentarily exhausted (``MaxConnectionsError``, a burst). A layer that is down (connection
    refused) is not retried: its callers answer 503 at once."""
    return isinstance(exc, ChannelFull) or any(cls.__name__ == "MaxConnectionsError" for cls in type(exc).__mro__)


async def layer_op(operation: Callable[..., Awaitable[T]], *args: Any, retry_for: float = RETRY_SECONDS) -> T:
    """``await operation(*args)`` within the per-loop bound, retried with exponential backoff for up to
    ``retry_for`` seconds while it fails with a :func:`retryable` error; the last error is raised."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + retry_for
    backoff = _FIRST_BACKOFF
    while True:
        async with _semaphore():
            try:
                return await operation(*args)
            except Exception as exc:
                if not retryable(exc) or loop.time() + backoff > deadline:
                    raise
                logger.debug(
                    "channel layer %s failed (%s: %s); retrying in %.2fs",
                    getattr(operation, "__name__", "op"),
                    type(exc).__name__,
                    exc,
                    backoff,
                )
        await asyncio.sleep(backoff)
        backoff = min(backoff * 2, 0.5)


# -- sends from synchronous code ----------------------------------------------------------------------------------
#: The longest a synchronous caller waits for its send (``layer_op`` retries for :data:`RETRY_SECONDS`).
SYNC_SEND_TIMEOUT = 10.0


class _SenderLoop:
    """One event loop on a daemon thread of its own, for the channel-layer sends of code that runs outside any
    event loop: a WSGI worker's admin save, a management command, a shell.

    ``async_to_sync`` would start a new event loop for each call there, and channels_redis keeps a connection
    pool per event loop: every notification would open (and close) a connection to Redis first, tens of
    milliseconds added to each save's notifications. This loop lives as long as the process (started on first
    use, and again in a forked child), so its pool stays warm."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._pid = 0

    def loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or self._pid != os.getpid() or self._thread is None or not self._thread.is_alive():
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name="mcp_app-layer-sends", daemon=True)
                thread.start()
                self._loop, self._thread, self._pid = loop, thread, os.getpid()
            return self._loop

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float) -> T:
        future = asyncio.run_coroutine_threadsafe(coroutine, self.loop())
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise


_sender = _SenderLoop()


def call_from_sync(function: Callable[..., Coroutine[Any, Any, T]], *args: Any, **kwargs: Any) -> T:
    """``async_to_sync(function)(*args, **kwargs)`` for channel-layer sends from synchronous code, without a new
    event loop (and a new Redis connection) per call: on a cross-process layer (channels_redis) the coroutine
    runs on this process's one sender loop (:class:`_SenderLoop`). Without a layer, or with the in-memory one,
    whose queues belong to the server's own loop and whose receivers are this process's streams,
    ``async_to_sync`` runs it where it always has."""
    layer = get_channel_layer()
    if layer is None or isinstance(layer, InMemoryChannelLayer):
        return async_to_sync(function)(*args, **kwargs)
    return _sender.run(function(*args, **kwargs), SYNC_SEND_TIMEOUT)
