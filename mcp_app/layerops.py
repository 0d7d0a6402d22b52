"""Channel-layer operations that hold up under bursts.

channels_redis takes one connection from redis-py's pool (100 connections by default) for each command in
flight, and redis-py refuses the 101st at once (``MaxConnectionsError``). Thousands of clients leaving at the
same moment each cause layer operations (their sessions end on every worker), so every operation of
mcp_app's goes through :func:`layer_op`: at most :data:`MAX_CONCURRENT` of them run at once per event loop
(well below the pool), and one refused for want of a connection, or by a full channel, is tried again with
backoff for up to :data:`RETRY_SECONDS` before its error is raised.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from channels.exceptions import ChannelFull

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
