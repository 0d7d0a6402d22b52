"""A per-process listener on the channel layer, so that workers can tell each other things.

Used for what one worker does and every other must know at once: a session ended or changed (drop
the cached copy), a client's answer or cancellation that reached a worker other than the one
running the request. With the in-memory layer all of this stays inside the process.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from channels.layers import get_channel_layer

logger = logging.getLogger("mcp_app.bus")

GROUP = "mcp_app.bus"
# Channel layers expire group membership (channels_redis: after a day); re-join well before that.
_REJOIN_SECONDS = 3600

Handler = Callable[[dict[str, Any]], Awaitable[None] | None]


class Bus:
    """Broadcast events to every process; each process runs the handlers registered for an event kind."""

    def __init__(self) -> None:
        self._handlers: dict[str, list[Handler]] = {}
        self._listeners: dict[int, asyncio.Task[None]] = {}

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
        self._listeners[id(loop)] = loop.create_task(self._listen(layer), name="mcp_app-bus")

    async def _join(self, layer: Any) -> str:
        # The default prefix on purpose: channels_redis multiplexes a process's channels through one key
        # per prefix, and its receive loop reads only the key of whoever holds its lock.
        channel = await layer.new_channel()
        while True:
            try:
                await layer.group_add(GROUP, channel)
                return channel
            except Exception as exc:  # unreachable now: try again shortly
                logger.warning("mcp_app bus: cannot join the channel layer (%s: %s)", type(exc).__name__, exc)
                await asyncio.sleep(1)

    async def _listen(self, layer: Any) -> None:
        channel = await self._join(layer)
        joined = time.monotonic()
        while True:
            try:
                if time.monotonic() - joined > _REJOIN_SECONDS:
                    await layer.group_add(GROUP, channel)
                    joined = time.monotonic()
                message = await layer.receive(channel)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the layer went away for a moment: keep listening
                if type(exc).__name__ == "TimeoutError":  # an idle read timed out (redis-py 8): not an outage
                    continue
                logger.warning("mcp_app bus: channel layer receive failed (%s: %s); retrying in 1s", type(exc).__name__, exc)
                await asyncio.sleep(1)
                continue
            await self.dispatch(message)

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
            await layer.group_send(GROUP, {"type": "mcp.bus", "kind": kind, **data})
        except Exception as exc:
            logger.error("mcp_app bus: could not publish %s (%s: %s)", kind, type(exc).__name__, exc)
            return False
        return True
