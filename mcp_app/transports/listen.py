"""The :class:`~mcp_app.protocol.subscriptions.NotificationSource` of ``subscriptions/listen`` streams: the
per-worker fan-out (:mod:`~mcp_app.transports.fanout`), which already reaches every worker process once per
event over the channel layer.

Each listen stream is a :class:`~mcp_app.transports.fanout.ListenStream` of the process holding its
connection: a bounded buffer that receives list_changed (sent to every stream), the ``resources/updated`` of
its own URIs, and the close of its caller's streams. Opening or closing one costs no channel-layer
operation. The protocol's :class:`~mcp_app.protocol.subscriptions.ListenHandler` filters, tags and writes
what this yields.

A stream ends gracefully (the handler answers the final result) when its caller's access is withdrawn
(:func:`~mcp_app.transports.events.close_listen_streams`), when the credential it was opened with expires,
or when its client does not read it and its buffer overflows (``STREAM_BUFFER_BYTES``); it counts against
the caller's ``MAX_STREAMS_PER_PRINCIPAL`` like a GET stream.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

from django.utils import timezone

from ..audience import StreamAudience
from ..conf import mcp_settings
from ..limits import Limited, close_stream, limit_key, open_stream
from ..protocol.context import RequestContext
from ..protocol.errors import InvalidRequest
from ..protocol.subscriptions import SubscriptionFilter
from . import fanout

logger = logging.getLogger("mcp_app.transports")


class ListenSource:
    """Listen streams fed by this process's share of the bus (``bus``: the server's
    :class:`~mcp_app.bus.Bus`, listened to from the first stream on)."""

    def __init__(self, bus: Any) -> None:
        self.bus = bus

    async def listen(self, subscription: SubscriptionFilter, ctx: RequestContext) -> Listening:
        """Start collecting for one stream (registered in this process, counted against its caller's cap);
        raise :class:`~mcp_app.protocol.errors.InvalidRequest` when the caller has its
        ``MAX_STREAMS_PER_PRINCIPAL`` open already."""
        fanout.attach(self.bus)
        await self.bus.ensure_listening()  # this process's one member of the workers' group
        return Listening(subscription, ctx)


class Listening:
    """One listen stream's notifications (an async iterator; :meth:`aclose` releases it, idempotent)."""

    def __init__(self, subscription: SubscriptionFilter, ctx: RequestContext) -> None:
        credential = ctx.extra.get("credential")  # the auth.Principal (None outside the HTTP transport)
        user = ctx.extra.get("user")
        user_id = getattr(user, "pk", None) if getattr(user, "is_authenticated", False) else None
        self._limit_key: str | None = None
        if credential is not None:
            # Anonymous callers too (by address): without a session, nothing else bounds their streams.
            key = limit_key(credential, ctx.extra.get("scope") or {})
            try:
                open_stream(key)
            except Limited as exc:
                raise InvalidRequest(exc.message) from None
            self._limit_key = key
        expires = getattr(credential, "expires", None)
        loop = asyncio.get_running_loop()
        #: Loop time at which the credential expires (None: it does not).
        self._deadline = None if expires is None else loop.time() + max(0.0, (expires - timezone.now()).total_seconds())
        self.stream = fanout.ListenStream(
            mcp_settings.STREAM_BUFFER_BYTES,
            uris=subscription.resource_uris,
            principal=ctx.extra.get("principal"),
            user_id=None if user_id is None else str(user_id),
        )
        self._audience = StreamAudience(user)
        self._closed = False
        fanout.register_listener(self.stream)

    def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        return self

    async def __anext__(self) -> dict[str, Any]:
        stream = self.stream
        loop = asyncio.get_running_loop()
        while True:
            if stream.overflowed is not None:
                logger.warning("ending a listen stream: %s", stream.overflowed)
                raise StopAsyncIteration
            event = stream.pop()
            if event is None:
                if stream.closed or self._closed:
                    raise StopAsyncIteration
                wait = None
                if self._deadline is not None:
                    wait = self._deadline - loop.time()
                    if wait <= 0:
                        raise StopAsyncIteration  # the credential expired: so does what it opened
                await stream.wait(wait)
                continue
            message = event.get("message")
            if not isinstance(message, dict):
                continue
            if event.get("type") == "mcp.coalesced" and not await self._audience.admits(event):
                continue  # rows of exposures this caller may not read: not even a hint that they changed
            return message

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        fanout.unregister_listener(self.stream)
        if self._limit_key is not None:
            close_stream(self._limit_key)
            self._limit_key = None
