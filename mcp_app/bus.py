"""A per-process listener on the channel layer, so that workers can tell each other things.

Used for what one worker does and every other must know at once: a session ended or changed (drop
the cached copy), a client's answer or cancellation that reached a worker other than the one
running the request. With the in-memory layer all of this stays inside the process.

A channel layer's group membership does not survive its backend: when Redis restarts, every worker has
left the group and would hear nothing more. So the listener re-joins as soon as the layer is back: after
any failed receive or publish it retries every second until the group takes it again, and it re-joins
every :data:`_REJOIN_SECONDS` anyway (a restart no operation of this worker happened to notice). What
was published while a worker was out is lost to it, so after such a re-join it runs the handlers of
:data:`RESYNC` in this process: caches of sessions, credentials and the catalogue are dropped and
re-read from the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from channels.layers import get_channel_layer

from .layerops import layer_op

logger = logging.getLogger("mcp_app.bus")

GROUP = "mcp_app.bus"
#: A local event (never published): this process was out of the group and may have missed events.
RESYNC = "bus.resync"
# Re-join this often even when nothing failed: the group may have been lost unnoticed (a Redis restart
# between two of this worker's operations), and channel layers expire membership (channels_redis: a day).
# One ZADD and one EXPIRE a minute per worker.
_REJOIN_SECONDS = 60
# Seconds between attempts to re-join while the layer is unreachable.
_RETRY_SECONDS = 1.0

Handler = Callable[[dict[str, Any]], Awaitable[None] | None]


class Bus:
    """Broadcast events to every process; each process runs the handlers registered for an event kind."""

    def __init__(self) -> None:
        self._handlers: dict[str, list[Handler]] = {}
        self._listeners: dict[int, asyncio.Task[None]] = {}
        #: Set when a receive or publish failed: the group membership may be gone; wakes the keeper.
        self._lost: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        #: monotonic time of the last successful join, for tests and the log.
        self.joined_at: float | None = None
        #: Each listening loop's channel (by id(loop)): also this process's reply address (delivery acks).
        self._channels: dict[int, asyncio.Future[str]] = {}

    def on(self, kind: str, handler: Handler) -> None:
        self._handlers.setdefault(kind, []).append(handler)

    async def ensure_listening(self) -> None:
        """Start this event loop's listener if it is not running (cheap when it is).

        Only long-lived loops (the server's) should listen; a sync caller's temporary loop only publishes.
        """
        loop = asyncio.get_running_loop()
        current = self._listeners.get(id(loop))
        if current is not None and not current.done():
            return
        layer = get_channel_layer()
        if layer is None:
            return
        # Registered before the first await, so that concurrent first requests start one listener, not many.
        self._channels[id(loop)] = loop.create_future()
        self._listeners[id(loop)] = loop.create_task(self._listen(layer), name="mcp_app-bus")

    async def reply_channel(self) -> str | None:
        """This process's own channel, read by its bus listener (started if need be): where other workers send
        what is for this process alone (``{"type": "mcp.bus", "kind": ...}`` messages, dispatched like bus
        events). None without a channel layer. One channel and one listener per process, however many use it."""
        await self.ensure_listening()
        loop = asyncio.get_running_loop()
        future = self._channels.get(id(loop))
        if future is None:
            return None
        return await asyncio.shield(future)

    async def _join(self, layer: Any, channel: str) -> None:
        """Add ``channel`` to the group, retrying every :data:`_RETRY_SECONDS` until the layer takes it."""
        while True:
            try:
                await layer.group_add(GROUP, channel)
                self.joined_at = time.monotonic()
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # unreachable now: try again shortly
                logger.warning(
                    "mcp_app bus: cannot join the channel layer (%s: %s); retrying in %ss",
                    type(exc).__name__,
                    exc,
                    _RETRY_SECONDS,
                )
                await asyncio.sleep(_RETRY_SECONDS)

    def _mark_lost(self) -> None:
        """Wake the keeper (safe from any thread: sync code publishes through a loop of its own)."""
        loop, lost = self._loop, self._lost
        if loop is None or lost is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            lost.set()
        else:
            loop.call_soon_threadsafe(lost.set)

    async def _keep_joined(self, layer: Any, channel: str) -> None:
        """Re-join at once after a failure was seen, and every :data:`_REJOIN_SECONDS` regardless."""
        assert self._lost is not None
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._lost.wait(), _REJOIN_SECONDS)
            failed = self._lost.is_set()
            if failed:
                await asyncio.sleep(_RETRY_SECONDS)  # the layer is likely still down: no busy retry
                self._lost.clear()  # failures from here on call for another re-join
            await self._join(layer, channel)
            if failed:
                logger.info("mcp_app bus: re-joined the channel layer after a failure; dropping cached state")
                await self.dispatch({"kind": RESYNC})

    async def _listen(self, layer: Any) -> None:
        # The default prefix on purpose: channels_redis multiplexes a process's channels through one key
        # per prefix, and its receive loop reads only the key of whoever holds its lock.
        channel = await layer.new_channel()
        self._loop, self._lost = asyncio.get_running_loop(), asyncio.Event()
        announced = self._channels.get(id(self._loop))
        if announced is not None and not announced.done():
            announced.set_result(channel)
        await self._join(layer, channel)
        keeper = asyncio.ensure_future(self._keep_joined(layer, channel))
        try:
            while True:
                try:
                    message = await layer.receive(channel)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # the layer went away for a moment: keep listening
                    if type(exc).__name__ == "TimeoutError":  # an idle read timed out (redis-py 8): not an outage
                        continue
                    logger.warning(
                        "mcp_app bus: channel layer receive failed (%s: %s); re-joining and retrying in %ss",
                        type(exc).__name__,
                        exc,
                        _RETRY_SECONDS,
                    )
                    self._mark_lost()
                    await asyncio.sleep(_RETRY_SECONDS)
                    continue
                await self.dispatch(message)
        finally:
            keeper.cancel()

    async def dispatch(self, message: dict[str, Any]) -> None:
        for handler in self._handlers.get(message.get("kind", ""), []):
            try:
                result = handler(message)
                if asyncio.iscoroutine(result):
                    await result
            except Exception:
                logger.exception("mcp_app bus handler for %s failed", message.get("kind"))

    async def publish(self, kind: str, **data: Any) -> bool:
        """Send an event to every listening process (this one included, if it listens); False when the
        layer refused it. Publishing never starts a listener, so sync code may call it."""
        layer = get_channel_layer()
        if layer is None:
            await self.dispatch({"kind": kind, **data})
            return True
        try:
            # Bounded and retried: thousands of sessions ending at once must not exhaust redis-py's pool.
            await layer_op(layer.group_send, GROUP, {"type": "mcp.bus", "kind": kind, **data})
        except Exception as exc:
            logger.error("mcp_app bus: could not publish %s (%s: %s)", kind, type(exc).__name__, exc)
            self._mark_lost()  # the layer failed: this process's membership may be gone with it
            return False
        return True
