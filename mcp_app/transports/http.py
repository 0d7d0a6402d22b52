"""Pieces every HTTP transport shares: the consumer base that reads bodies within limits while
watching for the client leaving, HTTP error answers with JSON-RPC bodies, SSE framing, and media-type
checks.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from channels.consumer import AsyncConsumer
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.db import close_old_connections

from ..availability import RETRY_AFTER, UNAVAILABLE, Unavailable, database_unavailable, is_outage
from ..conf import mcp_settings
from ..headers import header
from ..notifications import StreamAudience
from ..protocol import jsonrpc
from ..protocol.errors import INVALID_REQUEST, ParseError
from ..runtime import get_server
from ..workers import maintenance
from . import fanout, security
from .events import acknowledge
from .layerops import layer_op

logger = logging.getLogger("mcp_app.transports")

JSON_HEADERS = [(b"content-type", b"application/json")]
# JSON-RPC error code of a 429 answer (implementation-defined range: JSON-RPC has no code for it).
RATE_LIMITED = -32029
SSE_HEADERS = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache, no-transform"),
    # nginx and some proxies buffer responses unless told not to, which would stall every stream.
    (b"x-accel-buffering", b"no"),
]


class Disconnected(Exception):
    """The client went away before the request body arrived."""


def sse_event(message: dict[str, Any], *, event: str = "message", event_id: str | None = None) -> bytes:
    """One SSE event carrying a JSON-RPC message (compact JSON never holds a raw newline)."""
    head = f"id: {event_id}\n" if event_id else ""
    return f"{head}event: {event}\ndata: ".encode() + jsonrpc.encode(message) + b"\n\n"


def is_transient(exc: BaseException) -> bool:
    """A layer error worth retrying: a read timeout (redis-py's socket timeout, 5 s by default since
    redis-py 8, can fire while channels_redis blocks for 5 s waiting for messages)."""
    return isinstance(exc, TimeoutError) or type(exc).__name__ == "TimeoutError"


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


def media_types(value: str | None, *, drop_refused: bool = False) -> list[str]:
    """The media types of an Accept or Content-Type header, lower case, without parameters.

    With ``drop_refused``, ranges weighted ``q=0`` ("not acceptable", RFC 9110 12.4.2) are left out.
    """
    if not value:
        return []
    types = []
    for part in value.split(","):
        media, *params = (p.strip() for p in part.split(";"))
        if not media:
            continue
        if drop_refused and any(_is_zero_weight(p) for p in params):
            continue
        types.append(media.lower())
    return types


def _is_zero_weight(param: str) -> bool:
    name, _, value = param.partition("=")
    if name.strip().lower() != "q":
        return False
    try:
        return float(value) == 0
    except ValueError:
        return False


def accepts(accept: str | None, wanted: str) -> bool:
    """Whether an Accept header admits ``wanted``; no Accept header admits anything (RFC 9110)."""
    if accept is None:
        return True
    main = wanted.split("/", 1)[0]
    return any(t in (wanted, "*/*", f"{main}/*") for t in media_types(accept, drop_refused=True))


def _unavailable_retry_after(payload: Any) -> int | None:
    """``Retry-After`` for a JSON answer made only of :data:`~mcp_app.availability.UNAVAILABLE` errors (one,
    or a whole batch of them); None for any other answer (a batch with one success stays 200)."""
    answers = payload if isinstance(payload, list) else [payload]
    delays = []
    for answer in answers:
        error = answer.get("error") if isinstance(answer, dict) else None
        if not isinstance(error, dict) or error.get("code") != UNAVAILABLE:
            return None
        data = error.get("data")
        delays.append(data.get("retryAfter", RETRY_AFTER) if isinstance(data, dict) else RETRY_AFTER)
    return max(delays) if delays else None


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


class MCPConsumer(AsyncConsumer):
    """Base for the HTTP endpoints: a Channels consumer that reads the body, then runs :meth:`handle`.

    Channels' AsyncHttpConsumer handles one event at a time, so a long ``handle`` (a tool waiting for
    the client, an open SSE stream) could not notice the client leaving. Here the body is read with
    size limits, then ``handle`` runs in the request's own task while a small watcher waits for
    ``http.disconnect`` and cancels it. Only streams that need one join the channel layer.
    """

    #: Response started? Error answers are only possible before.
    started = False
    #: The session whose event stream this consumer serves, if it serves one.
    stream_session: str | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:  # type: ignore[override]
        self.scope = scope
        self.base_send = send
        self.channel_layer = None
        self.channel_name = None
        # Host and Origin first: a rebinding or cross-site request learns nothing, not even about sessions.
        if not await self.check_origin_and_host():
            return
        if scope.get("method") == "OPTIONS" and header(scope, b"origin") is not None:
            await self.empty(204, security.preflight_headers(scope))  # CORS preflight: carries no credentials
            return
        # Then who is calling, before a byte of the body is read or a session looked up.
        try:
            if not await self.authenticate():
                return
        except Exception as exc:  # an uncached token while the database is down, or a failing class
            await self.fail(exc)
            return
        maintenance.ensure_running()  # this worker's lease and reaper (mcp_app.workers); cheap once running
        try:
            body = await self.read_body(receive)
        except Disconnected:
            return
        if body is None:
            return
        self._client_gone = False
        self._handling = True
        watcher = asyncio.ensure_future(self._watch_disconnect(receive, asyncio.current_task()))
        try:
            await self.handle(body)
        except asyncio.CancelledError:
            if not self._client_gone:
                raise
        except Exception as exc:
            await self.fail(exc)
        finally:
            self._handling = False
            watcher.cancel()
            try:
                # Shielded: a disconnect noticed at the last moment must not cut the clean-up short.
                await asyncio.shield(self.cleanup())
            except asyncio.CancelledError:
                if not self._client_gone:
                    raise

    async def fail(self, exc: Exception) -> None:
        """Answer a request that raised ``exc``: the one place where exceptions become HTTP errors.

        A database outage (:func:`~mcp_app.availability.is_outage`: :class:`~mcp_app.availability.Unavailable`,
        or Django's OperationalError / InterfaceError from authentication, a session lookup, initialize...)
        answers 503 with ``Retry-After`` and a JSON-RPC error, and is logged as a warning without a traceback
        (an outage is not a bug, and it would flood the log). Anything else is logged with its traceback and
        answers 500. Neither body discloses the exception's text. Once the response has started, only the
        log is left.
        """
        if not is_outage(exc):
            logger.error("MCP transport failed", exc_info=exc)
            if not self.started:
                await self.error(500, "Internal error; the server logged the details.", code=-32603)
            return
        unavailable = exc if isinstance(exc, Unavailable) else database_unavailable()
        logger.warning(
            "MCP %s %s refused: the database is unavailable (%s: %s)",
            self.scope.get("method"),
            self.scope.get("path"),
            type(exc).__name__,
            str(exc).strip()[:300],
        )
        # Close this thread's broken connection now (Django reconnects on next use): the async ORM reuses it
        # without the clean-up database_sync_to_async does, and would fail on after the database is back.
        try:
            await database_sync_to_async(close_old_connections)()
        except Exception as cleanup_error:  # closing a dead connection may itself fail: the next use retries
            logger.debug("closing broken database connections failed: %s", cleanup_error)
        if not self.started:
            await self.json(503, jsonrpc.error_response(None, unavailable.to_error()))

    async def _watch_disconnect(self, receive: Any, handler: asyncio.Task[Any] | None) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        self._client_gone = True
        if self._handling and handler is not None:
            handler.cancel()

    async def read_body(self, receive: Any) -> bytes | None:
        """Read the whole body; answer and return None when it is refused:

        - 413 when ``Content-Length`` declares more than ``MAX_BODY_SIZE`` (before reading a byte of it), or
          when a body without one (chunked) passes the limit (reading stops there);
        - 408 when the whole body has not arrived ``BODY_TIMEOUT`` seconds after the request started
          being read (a client trickling its body would otherwise hold the request open for ever).

        Either answer asks the server to close the connection, since the rest of the body is never read.
        Servers that buffer the whole body before calling the application (daphne) make these checks
        late or never: see the README's note on bodies.
        """
        limit = mcp_settings.MAX_BODY_SIZE
        close = [(b"connection", b"close")]
        declared = header(self.scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await self.error(
                413,
                f"Request body too large: {declared} bytes; the limit is {limit} bytes (MCP_APP['MAX_BODY_SIZE']).",
                headers=close,
            )
            return None
        timeout = mcp_settings.BODY_TIMEOUT
        deadline = asyncio.get_running_loop().time() + timeout if timeout else None
        chunks, size = [], 0
        while True:
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                await self.error(
                    408,
                    f"Request Timeout: the request body did not arrive within {timeout:g} s "
                    "(MCP_APP['BODY_TIMEOUT']); send the whole body at once.",
                    headers=close,
                )
                return None
            if message["type"] == "http.disconnect":
                raise Disconnected()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await self.error(413, f"Request body too large: over {limit} bytes (MCP_APP['MAX_BODY_SIZE']).", headers=close)
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def handle(self, body: bytes) -> None:
        raise NotImplementedError

    async def cleanup(self) -> None:
        """Release what the request held (stream count, registration); runs however the request ended.

        A stream's channel and registration are process-local (:mod:`~mcp_app.transports.fanout`): closing a
        stream costs no channel-layer operation, so thousands of clients leaving at once cannot fail here."""
        key = getattr(self, "stream_limit_key", None)
        if key is not None:
            from ..limits import close_stream

            close_stream(key)
            self.stream_limit_key = None
        local: fanout.LocalStream | None = getattr(self, "local_stream", None)
        if local is not None:
            fanout.unregister(local)
            self.local_stream = None

    # -- event streams ------------------------------------------------------------------------------
    async def join_stream_channel(self, session_id: str) -> str | None:
        """Register this consumer as an open stream of the session in this process (broadcasts and the
        session's notifications reach it through the worker's bus listener), and give it a channel of its own
        for messages addressed to it alone (a legacy stream's answers); return the channel's name (None
        without a layer). No group is joined: nothing to leave, nothing to go stale."""
        self.stream_session = session_id
        server = get_server()
        fanout.attach(server.bus)
        await server.bus.ensure_listening()  # this process's one member of the workers' group
        self.local_stream = fanout.LocalStream(session_id, mcp_settings.STREAM_BUFFER_BYTES)
        fanout.register(self.local_stream)
        self.channel_layer = get_channel_layer()
        if self.channel_layer is not None:
            # The default prefix on purpose: channels_redis multiplexes a process's channels through one key
            # per prefix, and its receive loop reads only the key of whoever holds its lock.
            self.channel_name = await self.channel_layer.new_channel()
            # One message through the stream's own channel before the stream is announced: a layer that is
            # down refuses the stream now (the caller answers 503), not its first answer later.
            await layer_op(self.channel_layer.send, self.channel_name, {"type": "mcp.opened"})
        # The stream ends with its session when the credential that opened it expires (a timer, here too:
        # the worker that created the session may not be this one).
        server.sessions.watch_expiry(session_id, self.principal)
        return self.channel_name

    async def _read_channel(self, local: fanout.LocalStream) -> None:
        """Move what arrives on this stream's own channel into its buffer, at once, whether or not the client
        reads: the layer's queues never back up behind a slow client (its buffer's bound deals with it)."""
        layer, channel = self.channel_layer, self.channel_name
        while True:
            try:
                event = await layer.receive(channel)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if is_transient(exc):
                    continue
                # The layer's backend is gone, and with it whatever was queued for this stream: end the stream
                # so that the client reconnects, rather than leave it open and silent.
                local.fail(f"channel layer receive failed ({type(exc).__name__}: {exc})")
                return
            local.put(event)
            if "ack_to" in event:
                # Confirm to the sender whether a stream that will write it took it (a legacy POST answers 202
                # only after that, so that nothing is accepted for a stream that is gone or closing).
                acknowledge(event, taken=local.overflowed is None and not local.closed)

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
        reader = (
            asyncio.ensure_future(self._read_channel(local))
            if self.channel_layer is not None and self.channel_name is not None
            else None
        )
        writer = asyncio.ensure_future(self._write_stream(local, keepalive))
        # A writer stuck in send() behind a client that does not read (uvicorn) is woken by cancelling it.
        local.on_overflow = writer.cancel
        try:
            await asyncio.wait({writer})  # raises only when this request itself is cancelled (client gone)
            if local.overflowed is None:
                writer.result()  # ended by its session (or failed: the consumer's fail() logs it)
                return
            await self._abandon_stream(local, writer)
        finally:
            local.on_overflow = None
            for task in (reader, writer):
                if task is not None and not task.done():
                    task.cancel()
                if task is not None:
                    # Retrieve its outcome later, so that asyncio does not report it as never retrieved.
                    task.add_done_callback(lambda f: f.cancelled() or f.exception())

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
            event = local.pop()
            if event is None:
                if local.closed:
                    await self.body(b"")
                    return
                if time.monotonic() - last_write >= keepalive:
                    await self.body(b": keepalive\n\n", more=True)
                    last_write = time.monotonic()
                continue
            message = event.get("message")
            if event.get("type") == "mcp.coalesced" and isinstance(message, dict):
                # Only for callers who may read the exposure whose rows changed (never a hint about others').
                admitted = await audience.admits(event)
                message = coalescer.offer(message, time.monotonic()) if admitted else None
            elif fanout.is_list_changed(message):
                message = coalescer.offer(message, time.monotonic())
            if message is not None:
                await self._drained(local)
                if local.overflowed is not None:
                    return
                await self.write_event(message)
                last_write = time.monotonic()

    async def _drained(self, local: fanout.LocalStream) -> None:
        """Wait while the connection's write buffer is over :data:`TRANSPORT_HIGH_WATER` (servers whose
        ``send`` never waits: daphne), so that pending events stay in the bounded buffer instead."""
        while local.overflowed is None:
            buffered = transport_buffered(self.base_send)
            if buffered is None or buffered <= TRANSPORT_HIGH_WATER:
                return
            await asyncio.sleep(0.02)

    async def _abandon_stream(self, local: fanout.LocalStream, writer: asyncio.Future[None]) -> None:
        """Close a stream whose buffer overflowed (or whose channel failed): log what was waiting (the session
        and the ids of the answers that will not be delivered), then end the response; where the connection
        can be aborted (daphne), abort it, so that what its write buffer holds is freed at once."""
        logger.warning(
            "closing the stream of session %s: %s; undelivered answers/requests (ids): %s",
            self.stream_session,
            local.overflowed,
            local.waiting_ids()[:50] or "none",
        )
        writer.cancel()
        try:
            await asyncio.wait({writer}, timeout=1)
        except Exception:  # noqa: BLE001 - its outcome is retrieved by pump_stream's done callback
            pass
        # A broken channel is not the client's doing: end its response cleanly, so that it reconnects.
        aborted = not local.broken and abort_connection(self.base_send)
        if not aborted:
            try:
                # Under a server whose send waits for the client (uvicorn), a client that does not read
                # never lets this finish: returning with the response incomplete makes the server close it.
                await asyncio.wait_for(self.body(b""), 1)
            except (TimeoutError, Exception) as exc:  # noqa: BLE001 - the connection is being dropped anyway
                logger.debug("could not end the response of session %s cleanly (%s)", self.stream_session, exc)

    # -- responses ----------------------------------------------------------------------------------
    async def write_event(self, message: dict[str, Any]) -> None:
        """Write one JSON-RPC message as an SSE ``message`` event on this response.

        The one place an event stream writes a message: transports that number their events and keep
        them for resumption (Last-Event-ID) override it.
        """
        await self.body(sse_event(message), more=True)

    async def start(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        self.started = True
        if header(self.scope, b"origin") is not None and security.origin_allowed(self.scope):
            headers = headers + security.cors_headers(self.scope)  # an allowed browser origin may read the answer
        await self.base_send({"type": "http.response.start", "status": status, "headers": headers})

    async def body(self, data: bytes, *, more: bool = False) -> None:
        await self.base_send({"type": "http.response.body", "body": data, "more_body": more})

    async def json(self, status: int, payload: Any, headers: list[tuple[bytes, bytes]] | None = None) -> None:
        """Send ``payload`` as the whole JSON answer. An answer that is nothing but
        :class:`~mcp_app.availability.Unavailable` errors (a tools/call refused while the database is down)
        goes out as 503 with ``Retry-After``, whatever ``status`` the transport chose."""
        data = jsonrpc.encode(payload)  # before the headers: a failure here can still become a 500
        retry_after = _unavailable_retry_after(payload)
        if retry_after is not None:
            status, headers = 503, (headers or []) + [(b"retry-after", str(retry_after).encode())]
        await self.start(status, JSON_HEADERS + (headers or []))
        await self.body(data)

    async def empty(self, status: int, headers: list[tuple[bytes, bytes]] | None = None) -> None:
        await self.start(status, headers or [])
        await self.body(b"")

    async def error(
        self,
        status: int,
        message: str,
        *,
        code: int = INVALID_REQUEST,
        request_id: str | int | None = None,
        headers: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        """An HTTP error whose body is a JSON-RPC error a client library can show."""
        await self.json(status, jsonrpc.error_response(request_id, {"code": code, "message": message}), headers)

    async def too_many(self, exc: Any, request_id: str | int | None = None) -> None:
        """429 for a :class:`mcp_app.limits.Limited`: with ``Retry-After`` (and ``data.retryAfter``) only when
        the limit says how long waiting takes, so that every Retry-After sent is true."""
        if exc.retry_after is None:
            await self.error(429, exc.message, code=RATE_LIMITED, request_id=request_id)
            return
        await self.json(
            429,
            jsonrpc.error_response(
                request_id, {"code": RATE_LIMITED, "message": exc.message, "data": {"retryAfter": exc.retry_after}}
            ),
            [(b"retry-after", str(exc.retry_after).encode())],
        )

    async def charge_requests(self, requests: list[jsonrpc.Request]) -> bool:
        """Charge the caller's request and tools/call budgets for one POST's requests (every entry of a
        batch); answer 429 and return False when one is spent, before any of them runs."""
        from ..limits import Limited, count_requests

        try:
            await count_requests(self.principal, self.scope, (r.method for r in requests))
        except Limited as exc:
            await self.too_many(exc, requests[0].id if len(requests) == 1 else None)
            return False
        return True

    async def hold_stream(self) -> bool:
        """Count this GET stream against the principal's cap; answer 429 and return False when full."""
        from ..limits import Limited, limit_key, open_stream

        if self.principal.user is None:
            return True  # anonymous streams are bounded by their sessions' idle timeout, not a shared count
        key = limit_key(self.principal, self.scope)
        try:
            open_stream(key)
        except Limited as exc:
            await self.too_many(exc)
            return False
        self.stream_limit_key = key
        return True

    async def content_type_is_json(self) -> bool:
        """Answer 415 and return False unless the body is declared ``application/json``."""
        if media_types(header(self.scope, b"content-type"))[:1] == ["application/json"]:
            return True
        await self.error(415, "Unsupported Media Type: send the JSON-RPC message with Content-Type: application/json.")
        return False

    async def parse_messages(self, body: bytes) -> tuple[list[Any], bool] | None:
        """The body's JSON values and whether they came as a batch; None after answering 400 (-32700 for
        unparseable JSON, -32600 for an empty batch or one over ``MAX_BATCH_SIZE``: refused whole, before
        any of its messages is looked at)."""
        try:
            payload = jsonrpc.loads(body)
        except ParseError as exc:
            await self.json(400, jsonrpc.error_response(None, exc.to_error()))
            return None
        if payload == []:
            await self.error(400, "Invalid Request: an empty batch; send at least one message.")
            return None
        cap = mcp_settings.MAX_BATCH_SIZE
        if isinstance(payload, list) and len(payload) > cap:
            await self.error(
                400,
                f"Invalid Request: a batch of {len(payload)} messages is over this server's limit "
                f"of {cap} (MCP_APP['MAX_BATCH_SIZE']); send at most {cap} messages per POST.",
            )
            return None
        return (payload, True) if isinstance(payload, list) else ([payload], False)

    async def authenticate(self) -> bool:
        """Set ``self.principal`` and ``scope["user"]``; answer 401/403 and return False when refused."""
        from ..auth import AuthenticationFailed, authenticate, www_authenticate

        try:
            self.principal = await authenticate(self.scope)
        except AuthenticationFailed as exc:
            await self.error(exc.status, exc.message, headers=[(b"www-authenticate", www_authenticate(self.scope, exc).encode())])
            return False
        self.scope["user"] = self.principal.user
        return True

    async def check_origin_and_host(self) -> bool:
        """Answer 421/403 and return False when Host or Origin is not allowed."""
        if not security.host_allowed(self.scope):
            await self.error(421, "Misdirected request: this Host is not in the server's ALLOWED_HOSTS.")
            return False
        if not security.origin_allowed(self.scope):
            await self.error(403, "Forbidden: this Origin is not allowed; add it to MCP_APP['ALLOWED_ORIGINS'].")
            return False
        return True
