"""Event streams: SSE framing, a stream's membership of the process's fan-out (and, for legacy streams, its
address: the worker's bus channel and its session id), the pump that writes its events within bounds, and
list_changed coalescing.

:class:`StreamConsumer` is the consumer of an endpoint that holds an event stream open (``GET /mcp``,
``GET /sse``, a resumed stream); it counts the stream against the caller's cap, registers it with
:mod:`~mcp_app.transports.fanout` so that broadcasts and the session's messages reach it, and writes what
arrives until its session's streams close or its client stops reading.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from typing import Any

from channels.layers import get_channel_layer

from ..bus import RESYNC
from ..conf import mcp_settings
from ..layerops import layer_op
from ..limits import Limited, close_stream, limit_key, open_stream
from ..notifications import StreamAudience
from ..protocol import jsonrpc
from ..protocol.messages import is_list_changed
from ..runtime import get_server
from . import fanout
from .consumer import MCPConsumer, too_many
from .events import STREAM_KIND, acknowledge

logger = logging.getLogger("mcp_app.transports")

SSE_HEADERS = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache, no-transform"),
    # nginx and some proxies buffer responses unless told not to, which would stall every stream.
    (b"x-accel-buffering", b"no"),
]


def sse_event(
    message: dict[str, Any], *, event: str = "message", event_id: str | None = None, encoded: bytes | None = None
) -> bytes:
    """One SSE event carrying a JSON-RPC message (compact JSON never holds a raw newline); ``encoded``: the
    message's ``jsonrpc.encode`` where the caller has it already."""
    head = f"id: {event_id}\n" if event_id else ""
    data = encoded if encoded is not None else jsonrpc.encode(message)
    return b"".join((f"{head}event: {event}\ndata: ".encode(), data, b"\n\n"))


#: Bytes a connection's write buffer may hold before a stream's writer waits for the client to read (as
#: asyncio's default high-water mark): only used where the ASGI server's ``send`` never waits (daphne).
TRANSPORT_HIGH_WATER = 64 * 1024


def _twisted_transport(send: Any) -> Any:
    """The Twisted transport behind daphne's ASGI ``send`` (``functools.partial(server.handle_reply,
    protocol)``, the protocol being the request), or None for other servers or when daphne changes."""
    request = getattr(send, "args", (None,))[0] if getattr(send, "func", None) is not None else None
    channel = getattr(request, "channel", None)
    return getattr(channel, "transport", None)


def transport_buffered(send: Any) -> int | None:
    """Bytes waiting in the connection's write buffer, as Twisted's FileDescriptor keeps them (``dataBuffer``
    from ``offset`` on, plus ``_tempDataLen``), behind daphne's ``send``; None when they cannot be read (other
    servers, TLS wrappers, another Twisted): the bound then rests on the server's own flow control."""
    transport = _twisted_transport(send)
    for _ in range(3):  # wrappers (TLS, policies) keep the real transport in .transport
        if transport is None:
            return None
        data = getattr(transport, "dataBuffer", None)
        if isinstance(data, (bytes, bytearray, memoryview)):
            try:
                return len(data) - int(getattr(transport, "offset", 0)) + int(getattr(transport, "_tempDataLen", 0))
            except (TypeError, ValueError):
                return None
        transport = getattr(transport, "transport", None)
    return None


def abort_connection(send: Any) -> bool:
    """Drop the connection behind daphne's ``send`` at once, discarding its write buffer (a client that does
    not read would otherwise keep it in memory); False when that is not possible (other servers)."""
    transport = _twisted_transport(send)
    abort = getattr(transport, "abortConnection", None)
    if abort is None:
        return False
    try:
        abort()  # daphne runs Twisted's reactor on this very event loop: a direct call is safe
    except Exception as exc:  # noqa: BLE001 - already closing: leave it to the server
        logger.debug("could not abort the connection (%s: %s)", type(exc).__name__, exc)
        return False
    return True


#: A group nobody joins: removing the bus channel from it is the layer operation that checks the layer is
#: reachable as a stream opens (a round trip to its backend that queues nothing anywhere).
PROBE_GROUP = "mcp_app.probe"
# The check in flight on each event loop: streams opening at the same moment share it.
_checks: dict[int, asyncio.Future[None]] = {}


async def _check_layer(layer: Any, channel: str) -> None:
    """Raise the layer's error when its backend is unreachable. Streams opening together share one check in
    flight (a burst of thousands costs a few round trips), and nothing is queued: a probe message per stream
    into the worker's one bus channel would fill it (channel capacity) under such a burst."""
    loop = asyncio.get_running_loop()
    check = _checks.get(id(loop))
    if check is None or check.done():
        check = _checks[id(loop)] = asyncio.ensure_future(layer_op(layer.group_discard, PROBE_GROUP, channel))
        # Retrieved here, so that asyncio does not report it as never retrieved when every waiter left.
        check.add_done_callback(lambda f: f.cancelled() or f.exception())
    await asyncio.shield(check)


# The open streams of this process (their buffers), and those addressable by session (legacy streams). They
# live on the server's event loop, as the bus listener that hands them messages does: no lock needed.
_joined: set[fanout.LocalStream] = set()
_addressable: dict[str, fanout.LocalStream] = {}
_attached: weakref.WeakSet[Any] = weakref.WeakSet()


def _on_stream_message(message: dict[str, Any]) -> None:
    """A message for one addressable stream of this process (:data:`~mcp_app.transports.events.STREAM_KIND`):
    into its buffer at once, whether or not its client reads (the layer never backs up behind a slow client:
    the buffer's bound deals with it); then, when the sender asks, confirm whether a stream that will write it
    took it (a legacy POST answers 202 only after that, so that nothing is accepted for a stream that is gone
    or closing). A session whose stream is not here (any more) refuses it at once."""
    event, session = message.get("event"), message.get("session")
    if not isinstance(event, dict) or not isinstance(session, str):
        return
    local = _addressable.get(session)
    if local is not None:
        local.put(event)
    if "ack_to" in event:
        acknowledge(event, taken=local is not None and local.overflowed is None and not local.closed)


def addressable_stream(session_id: str) -> fanout.LocalStream | None:
    """The buffer of the legacy stream of ``session_id`` open in this process, if there is one."""
    return _addressable.get(session_id)


def put_here(session_id: str, message: dict[str, Any]) -> bool:
    """Hand ``message`` to the legacy stream of ``session_id`` open in this process (a POST on the worker that
    holds it: no channel-layer round trip); whether a stream that will write it took it."""
    local = _addressable.get(session_id)
    if local is None:
        return False
    local.put({"type": "mcp.message", "message": message})
    return local.overflowed is None and not local.closed


def _on_resync(message: dict[str, Any]) -> None:
    # This process was out of the channel layer (its backend failed): what was sent to its streams meanwhile
    # may be lost. End them, so that their clients reconnect rather than wait on a silent stream.
    for local in list(_joined):
        local.fail("the channel layer failed: messages for this stream may have been lost")


def _attach(bus: Any) -> None:
    """Hand the bus's messages for single streams to this process's streams (idempotent, per bus)."""
    if bus in _attached:
        return
    _attached.add(bus)
    bus.on(STREAM_KIND, _on_stream_message)
    bus.on(RESYNC, _on_resync)


class Coalescer:
    """At most one message per method per ``window`` seconds on one stream: the first goes out at once,
    later ones in the window collapse into one sent when it ends (so the last change is never lost)."""

    def __init__(self, window: float) -> None:
        self.window = window
        self._sent: dict[str, float] = {}
        self._held: dict[str, tuple[float, dict[str, Any]]] = {}

    def offer(self, message: dict[str, Any], now: float) -> dict[str, Any] | None:
        """The message to send now, or None when it is held for the end of the window."""
        key = str(message.get("method"))
        last = self._sent.get(key)
        if last is None or now - last >= self.window:
            self._sent[key] = now
            return message
        if key not in self._held:
            self._held[key] = (last + self.window, message)
        return None

    def next_due(self) -> float | None:
        return min((due for due, _ in self._held.values()), default=None)

    def take_due(self, now: float) -> list[dict[str, Any]]:
        ready = [key for key, (due, _) in self._held.items() if due <= now]
        out = []
        for key in ready:
            out.append(self._held.pop(key)[1])
            self._sent[key] = now
        return out


class StreamConsumer(MCPConsumer):
    """An endpoint that holds an event stream open: its cap, its fan-out membership and its pump.

    Only streams join: a request answered at once costs no registration and no channel.
    """

    #: The session whose event stream this consumer serves, if it serves one.
    stream_session: str | None = None

    def hold_stream(self) -> None:
        """Count this stream against the principal's cap (released by :meth:`release`); raise 429 when full."""
        if self.principal.user is None:
            return  # anonymous streams are bounded by their sessions' idle timeout, not a shared count
        key = limit_key(self.principal, self.scope)
        try:
            open_stream(key)
        except Limited as exc:
            raise too_many(exc) from None
        self.stream_limit_key = key

    def release(self) -> None:
        """Release what the request held (stream count, registration); runs however the request ended.

        A stream's channel and registration are process-local (:mod:`~mcp_app.transports.fanout`): closing a
        stream costs no channel-layer operation, so thousands of clients leaving at once cannot fail here."""
        super().release()
        key = getattr(self, "stream_limit_key", None)
        if key is not None:
            close_stream(key)
            self.stream_limit_key = None
        local: fanout.LocalStream | None = getattr(self, "local_stream", None)
        if local is not None:
            fanout.unregister(local)
            _joined.discard(local)
            if _addressable.get(local.session_id) is local:
                del _addressable[local.session_id]
            self.local_stream = None

    # -- the stream ---------------------------------------------------------------------------------
    async def join_stream_channel(self, session_id: str, *, addressable: bool = False) -> str | None:
        """Register this consumer as an open stream of the session in this process: broadcasts and the
        session's notifications reach it through the worker's bus listener. With ``addressable`` (a legacy
        stream, the one stream of its session), messages for it alone (its answers) reach it too, sent to this
        worker's bus channel with the session id (:func:`~mcp_app.transports.events.send_to_stream`).

        Returns that channel, this process's bus channel (None without a layer): the address a legacy session
        stores. No channel of the stream's own, no reader task, no group joined: an idle stream costs only its
        buffer and its writer, and nothing can go stale. The layer is checked before the stream is announced
        (:func:`_check_layer`): a layer that is down refuses the stream now (the caller answers 503), not its
        first answer later."""
        self.stream_session = session_id
        server = get_server()
        fanout.attach(server.bus)
        _attach(server.bus)
        await server.bus.ensure_listening()  # this process's one member of the workers' group
        self.local_stream = local = fanout.LocalStream(session_id, mcp_settings.STREAM_BUFFER_BYTES)
        fanout.register(local)
        _joined.add(local)
        if addressable:
            _addressable[session_id] = local
        self.channel_layer = get_channel_layer()
        if self.channel_layer is not None:
            self.channel_name = await server.bus.reply_channel()
            await _check_layer(self.channel_layer, self.channel_name)
        # The stream ends with its session when the credential that opened it expires (a timer, here too:
        # the worker that created the session may not be this one).
        server.sessions.watch_expiry(session_id, self.principal)
        return self.channel_name

    async def pump_stream(self) -> None:
        """Write this stream's events as SSE events until its session's streams close, or its client stops
        reading.

        Idle, it holds no thread and no database connection; a comment line every ``SSE_KEEPALIVE_INTERVAL``
        seconds keeps proxies from timing the stream out. Events wait in the stream's bounded buffer
        (:class:`~mcp_app.transports.fanout.LocalStream`, ``STREAM_BUFFER_BYTES``) while the client is slow:
        when it overflows, the stream is closed (the legacy session ends with it) and what was waiting is
        logged, never dropped silently. The bound holds under any ASGI server: where ``send`` waits for the
        client (uvicorn) the writer waits; where it never does (daphne buffers in Twisted), the writer waits
        while the connection's write buffer holds over :data:`TRANSPORT_HIGH_WATER` bytes.
        """
        keepalive = mcp_settings.SSE_KEEPALIVE_INTERVAL
        local: fanout.LocalStream | None = getattr(self, "local_stream", None)
        if local is None:  # not joined (a subclass that streams without a session)
            while True:
                await asyncio.sleep(keepalive)
                await self.body(b": keepalive\n\n", more=True)
        # The writer runs in this request's task (no task of its own per idle stream). Stuck in send() behind a
        # client that does not read (uvicorn), it is woken by cancelling this task, told apart from the
        # client leaving by the buffer's overflow.
        task = asyncio.current_task()
        assert task is not None
        local.on_overflow = task.cancel
        try:
            await self._write_stream(local, keepalive)  # ended by its session, or it overflowed
        except asyncio.CancelledError:
            if local.overflowed is None or getattr(self, "_client_gone", False) or task.cancelling() > 1:
                raise  # the client left, or the server is stopping (a cancellation besides the overflow's)
            task.uncancel()  # this stream's own overflow: handled below
        finally:
            local.on_overflow = None
        if local.overflowed is not None:
            await self._abandon_stream(local)

    async def _write_stream(self, local: fanout.LocalStream, keepalive: float) -> None:
        coalescer = Coalescer(mcp_settings.LIST_CHANGED_COALESCE_SECONDS)
        audience = StreamAudience(self.principal.user)
        last_write = time.monotonic()
        while True:
            now = time.monotonic()
            wait = max(0.0, last_write + keepalive - now)
            due = coalescer.next_due()
            if due is not None:
                wait = min(wait, max(0.0, due - now))
            await local.wait(wait)
            if local.overflowed is not None:
                return  # pump_stream closes the stream
            for message in coalescer.take_due(time.monotonic()):
                await self._drained(local)
                await self.write_event(message)
                last_write = time.monotonic()
            event, encoded = local.pop_encoded()
            if event is None:
                if local.closed:
                    await self.body(b"")
                    return
                if time.monotonic() - last_write >= keepalive:
                    await self.body(b": keepalive\n\n", more=True)
                    last_write = time.monotonic()
                continue
            message = original = event.get("message")
            if event.get("type") == "mcp.coalesced" and isinstance(message, dict):
                # Only for callers who may read the exposure whose rows changed (never a hint about others').
                admitted = await audience.admits(event)
                message = coalescer.offer(message, time.monotonic()) if admitted else None
            elif is_list_changed(message):
                message = coalescer.offer(message, time.monotonic())
            if message is not None:
                await self._drained(local)
                if local.overflowed is not None:
                    return
                await self.write_event(message, encoded if message is original else None)
                last_write = time.monotonic()

    async def _drained(self, local: fanout.LocalStream) -> None:
        """Wait while the connection's write buffer is over :data:`TRANSPORT_HIGH_WATER` (servers whose
        ``send`` never waits: daphne), so that pending events stay in the bounded buffer instead."""
        while local.overflowed is None:
            buffered = transport_buffered(self.base_send)
            if buffered is None or buffered <= TRANSPORT_HIGH_WATER:
                return
            await asyncio.sleep(0.02)

    async def _abandon_stream(self, local: fanout.LocalStream) -> None:
        """Close a stream whose buffer overflowed (or whose channel failed): log what was waiting (the session
        and the ids of the answers that will not be delivered), then end the response; where the connection
        can be aborted (daphne), abort it, so that what its write buffer holds is freed at once."""
        logger.warning(
            "closing the stream of session %s: %s; undelivered answers/requests (ids): %s",
            self.stream_session,
            local.overflowed,
            local.waiting_ids()[:50] or "none",
        )
        # A broken channel is not the client's doing: end its response cleanly, so that it reconnects.
        aborted = not local.broken and abort_connection(self.base_send)
        if not aborted:
            try:
                # Under a server whose send waits for the client (uvicorn), a client that does not read
                # never lets this finish: returning with the response incomplete makes the server close it.
                await asyncio.wait_for(self.body(b""), 1)
            except (TimeoutError, Exception) as exc:  # noqa: BLE001 - the connection is being dropped anyway
                logger.debug("could not end the response of session %s cleanly (%s)", self.stream_session, exc)

    async def write_event(self, message: dict[str, Any], encoded: bytes | None = None) -> None:
        """Write one JSON-RPC message as an SSE ``message`` event on this response (``encoded``: its
        ``jsonrpc.encode``, where known).

        The one place an event stream writes a message: transports that number their events and keep
        them for resumption (Last-Event-ID) override it.
        """
        await self.body(sse_event(message, encoded=encoded), more=True)
