"""The consumer every MCP HTTP endpoint is: the ASGI request's lifecycle, from the first header to the
last byte of the answer.

In order: Host and Origin (421/403) and the CORS preflight, authentication (401/403), the body read within
``MAX_BODY_SIZE`` and ``BODY_TIMEOUT`` (413/408), then :meth:`MCPConsumer.handle` in the request's own task
while a watcher waits for the client to leave. A refusal anywhere is one typed exception,
:class:`HTTPError`, turned into an answer (an HTTP status with a JSON-RPC error body) in one place,
:meth:`MCPConsumer.fail`, which also answers database outages (503) and bugs (500).

Event streams (SSE framing, the stream pump, channel-layer membership) are :mod:`.streams`; media types
:mod:`.negotiation`; the endpoints themselves :mod:`.streamable_http`, :mod:`.sse` and :mod:`.metadata`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Iterable
from typing import Any

from channels.consumer import AsyncConsumer
from channels.db import database_sync_to_async
from django.db import close_old_connections

from .. import auth
from ..availability import RETRY_AFTER, UNAVAILABLE, Unavailable, database_unavailable, is_outage
from ..conf import mcp_settings
from ..headers import header
from ..limits import Limited, count_requests
from ..protocol import jsonrpc
from ..protocol.context import CloseStream, RequestContext, Send, SessionState
from ..protocol.envelope import Headers, era_of
from ..protocol.envelope import error_response as modern_error_response
from ..protocol.errors import INTERNAL_ERROR, INVALID_REQUEST, McpError, ParseError
from ..protocol.versions import Era
from ..runtime import get_server
from ..workers import maintenance
from . import security
from .negotiation import declares_json

logger = logging.getLogger("mcp_app.transports")

JSON_HEADERS = [(b"content-type", b"application/json")]
# JSON-RPC error code of a 429 answer (implementation-defined range: JSON-RPC has no code for it).
RATE_LIMITED = -32029
# Asks the server to close the connection: the rest of a refused body is never read.
CLOSE = [(b"connection", b"close")]


#: Seconds a request runs before a task starts watching for its client leaving: most requests end sooner and
#: never pay for that task; a client that leaves is noticed at most this much later.
WATCH_DISCONNECT_AFTER = 0.05


class Disconnected(Exception):
    """The client went away before the request body arrived."""


class HTTPError(Exception):
    """A request refused with an HTTP status; its body is a JSON-RPC error a client library can show.

    Raised anywhere on a request's path (checks, the endpoints' handlers) and answered by
    :meth:`MCPConsumer.fail` when no response has started yet (afterwards there is nothing to answer).
    ``code`` is the JSON-RPC error code, ``request_id`` the id echoed (None when none applies), ``data``
    the error's optional data, ``headers`` extra response headers.
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: int = INVALID_REQUEST,
        request_id: str | int | None = None,
        data: Any = None,
        headers: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.request_id = request_id
        self.data = data
        self.headers = headers

    @classmethod
    def from_mcp(cls, status: int, exc: McpError, request_id: str | int | None = None) -> HTTPError:
        """``exc`` (its code, message and data) as the body of an HTTP error answer."""
        return cls(status, exc.message, code=exc.code, request_id=request_id, data=exc.data)

    def to_response(self, *, modern: bool = False) -> dict[str, Any]:
        """The JSON-RPC error response sent as the body; for a ``modern`` request (2026-07-28 on) an
        unknown id is omitted rather than sent as null (the revision's schema does not allow null)."""
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        if modern:
            return modern_error_response(self.request_id, error)
        return jsonrpc.error_response(self.request_id, error)


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


def too_many(exc: Limited, request_id: str | int | None = None) -> HTTPError:
    """429 for a :class:`mcp_app.limits.Limited`: with ``Retry-After`` (and ``data.retryAfter``) only when
    the limit says how long waiting takes, so that every Retry-After sent is true."""
    if exc.retry_after is None:
        return HTTPError(429, exc.message, code=RATE_LIMITED, request_id=request_id)
    return HTTPError(
        429,
        exc.message,
        code=RATE_LIMITED,
        request_id=request_id,
        data={"retryAfter": exc.retry_after},
        headers=[(b"retry-after", str(exc.retry_after).encode())],
    )


class MCPConsumer(AsyncConsumer):
    """Base for the HTTP endpoints: a Channels consumer that reads the body, then runs :meth:`handle`.

    Channels' AsyncHttpConsumer handles one event at a time, so a long ``handle`` (a tool waiting for
    the client, an open SSE stream) could not notice the client leaving. Here the body is read with
    size limits, then ``handle`` runs in the request's own task while a small watcher waits for
    ``http.disconnect`` and cancels it.
    """

    #: Response started? Error answers are only possible before.
    started = False
    #: What the request contexts of this endpoint say they came through (``ctx.extra["via"]``, audited).
    via = ""
    #: Whether a task watches for the client leaving, to cancel :meth:`handle` (endpoints whose handling is
    #: short and whose work outlives the request anyway, such as a legacy POST, skip that task). It starts
    #: :data:`WATCH_DISCONNECT_AFTER` seconds into the request.
    watches_disconnect = True
    #: Whether this endpoint serves the modern era (2026-07-28 on) beside the handshake era.
    serves_modern = False
    #: Whether this request is of the modern era (decided from its headers; endpoints may decide later
    #: from the body too). Its error bodies then omit an unknown id instead of sending null.
    modern = False

    @functools.cached_property
    def request_headers(self) -> Headers:
        """The request's headers, read on first use (an event stream of the legacy transport never needs them,
        and keeps no copy for its lifetime)."""
        return Headers.from_pairs(self.scope.get("headers", []))

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:  # type: ignore[override]
        self.scope = scope
        self.base_send = send
        self.channel_layer = None
        self.channel_name = None
        self.modern = self.serves_modern and era_of(self.request_headers) is Era.MODERN
        try:
            # Host and Origin first: a rebinding or cross-site request learns nothing, not even about sessions.
            self.check_origin_and_host()
            if scope.get("method") == "OPTIONS" and header(scope, b"origin") is not None:
                await self.empty(204, security.preflight_headers(scope))  # CORS preflight: carries no credentials
                return
            # Then who is calling, before a byte of the body is read or a session looked up.
            try:
                await self.authenticate()
            except HTTPError:
                raise
            except Exception as exc:  # an uncached token while the database is down, or a failing class
                await self.fail(exc)
                return
            maintenance.ensure_running()  # this worker's lease and reaper (mcp_app.workers); cheap once running
            body = await self.read_body(receive)
        except HTTPError as exc:
            await self.fail(exc)
            return
        except Disconnected:
            return
        self._client_gone = False
        self._handling = True
        watcher: list[asyncio.Task[None]] = []
        start_watching = (
            asyncio.get_running_loop().call_later(
                WATCH_DISCONNECT_AFTER, self._start_watching, receive, asyncio.current_task(), watcher
            )
            if self.watches_disconnect
            else None
        )
        try:
            await self.handle(body)
        except asyncio.CancelledError:
            if not self._client_gone:
                raise
        except Exception as exc:
            await self.fail(exc)
        finally:
            self._handling = False
            if start_watching is not None:
                start_watching.cancel()
            for task in watcher:
                task.cancel()
            self.release()
            if type(self).cleanup is not MCPConsumer.cleanup:  # a task for the shield only when there is work
                try:
                    # Shielded: a disconnect noticed at the last moment must not cut the clean-up short.
                    await asyncio.shield(self.cleanup())
                except asyncio.CancelledError:
                    if not self._client_gone:
                        raise

    async def fail(self, exc: Exception) -> None:
        """Answer a request that raised ``exc``: the one place where exceptions become HTTP errors.

        An :class:`HTTPError` is answered as it says. A database outage (:func:`~mcp_app.availability.is_outage`:
        :class:`~mcp_app.availability.Unavailable`, or Django's OperationalError / InterfaceError from
        authentication, a session lookup, initialize...) answers 503 with ``Retry-After`` and a JSON-RPC error,
        and is logged as a warning without a traceback (an outage is not a bug, and it would flood the log).
        Anything else is logged with its traceback and answers 500. Neither body discloses the exception's
        text. Once the response has started, only the log is left.
        """
        if not isinstance(exc, HTTPError) and not is_outage(exc):
            logger.error("MCP transport failed", exc_info=exc)
            exc = HTTPError(500, "Internal error; the server logged the details.", code=INTERNAL_ERROR)
        if isinstance(exc, HTTPError):
            if not self.started:
                await self.json(exc.status, exc.to_response(modern=self.modern), exc.headers)
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
            error = unavailable.to_error()
            await self.json(503, modern_error_response(None, error) if self.modern else jsonrpc.error_response(None, error))

    def _start_watching(self, receive: Any, handler: asyncio.Task[Any] | None, watcher: list[asyncio.Task[None]]) -> None:
        if self._handling:
            watcher.append(asyncio.ensure_future(self._watch_disconnect(receive, handler)))

    async def _watch_disconnect(self, receive: Any, handler: asyncio.Task[Any] | None) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        self._client_gone = True
        if self._handling and handler is not None:
            handler.cancel()

    async def read_body(self, receive: Any) -> bytes:
        """Read the whole body; raise :class:`HTTPError` when it is refused:

        - 413 when ``Content-Length`` declares more than ``MAX_BODY_SIZE`` (before reading a byte of it), or
          when a body without one (chunked) passes the limit (reading stops there);
        - 408 when the whole body has not arrived ``BODY_TIMEOUT`` seconds after the request started
          being read (a client trickling its body would otherwise hold the request open for ever).

        Either answer asks the server to close the connection, since the rest of the body is never read.
        Servers that buffer the whole body before calling the application (daphne) make these checks
        late or never: see the README's note on bodies. Raises :class:`Disconnected` when the client leaves.
        """
        limit = mcp_settings.MAX_BODY_SIZE
        declared = header(self.scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise HTTPError(
                413,
                f"Request body too large: {declared} bytes; the limit is {limit} bytes (MCP_APP['MAX_BODY_SIZE']).",
                headers=CLOSE,
            )
        timeout = mcp_settings.BODY_TIMEOUT
        if not timeout:
            return await self._read_chunks(receive, limit)
        # One timer for the whole body, which cancels this task when it fires, rather than asyncio.timeout_at
        # around each receive(): the same deadline at about half the cost, on every request (most bodies
        # arrive with their headers, and no receive() waits at all).
        task = asyncio.current_task()
        assert task is not None  # an ASGI application runs in a task
        expired = False

        def expire() -> None:
            nonlocal expired
            expired = True
            task.cancel()

        timer = asyncio.get_running_loop().call_later(timeout, expire)
        try:
            return await self._read_chunks(receive, limit)
        except asyncio.CancelledError:
            # Ours only when the timer fired and nobody else cancelled the task meanwhile (as asyncio.timeout).
            if expired and task.uncancel() == 0:
                raise HTTPError(
                    408,
                    f"Request Timeout: the request body did not arrive within {timeout:g} s "
                    "(MCP_APP['BODY_TIMEOUT']); send the whole body at once.",
                    headers=CLOSE,
                ) from None
            raise
        finally:
            timer.cancel()

    @staticmethod
    async def _read_chunks(receive: Any, limit: int) -> bytes:
        """The body's chunks, joined; 413 past ``limit`` bytes, :class:`Disconnected` when the client leaves."""
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise Disconnected()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise HTTPError(413, f"Request body too large: over {limit} bytes (MCP_APP['MAX_BODY_SIZE']).", headers=CLOSE)
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def handle(self, body: bytes) -> None:
        raise NotImplementedError

    def release(self) -> None:
        """Release what the request held that needs no waiting (counts, registrations); runs however the
        request ended, before :meth:`cleanup` (nothing here: see subclasses)."""

    async def cleanup(self) -> None:
        """Release what the request held that must be awaited (a session to end); runs however the request
        ended, shielded from cancellation. Overridden only where there is such work: each request that runs
        it pays for a task of its own (nothing here: see subclasses)."""

    # -- the request's messages -----------------------------------------------------------------------
    def context(
        self, session: SessionState, request: jsonrpc.Request, send: Send, *, close_stream: CloseStream | None = None
    ) -> RequestContext:
        """The context of one of this request's MCP requests, built by the dispatcher; ``extra`` carries the
        ASGI scope, the Django user, the principal's key and :attr:`via`."""
        return get_server().dispatcher.context(
            session,
            request.id,
            meta=request.meta,
            send=send,
            # principal: the credential's key, which binds what outlives the request (MRTR requestState);
            # credential: the auth.Principal (a listen stream counts against its cap and ends at its expiry).
            extra={
                "scope": self.scope,
                "user": self.scope.get("user"),
                "via": self.via,
                "principal": self.principal.key,
                "credential": self.principal,
            },
            close_stream=close_stream,
        )

    def require_json_body(self) -> None:
        """Raise 415 unless the body is declared ``application/json``."""
        if not declares_json(header(self.scope, b"content-type")):
            raise HTTPError(415, "Unsupported Media Type: send the JSON-RPC message with Content-Type: application/json.")

    def parse_messages(self, body: bytes) -> tuple[list[Any], bool]:
        """The body's JSON values and whether they came as a batch; raise 400 (-32700 for unparseable JSON,
        -32600 for an empty batch or one over ``MAX_BATCH_SIZE``: refused whole, before any of its messages
        is looked at)."""
        try:
            payload = jsonrpc.loads(body)
        except ParseError as exc:
            raise HTTPError.from_mcp(400, exc) from None
        if payload == []:
            raise HTTPError(400, "Invalid Request: an empty batch; send at least one message.")
        cap = mcp_settings.MAX_BATCH_SIZE
        if isinstance(payload, list) and len(payload) > cap:
            raise HTTPError(
                400,
                f"Invalid Request: a batch of {len(payload)} messages is over this server's limit "
                f"of {cap} (MCP_APP['MAX_BATCH_SIZE']); send at most {cap} messages per POST.",
            )
        return (payload, True) if isinstance(payload, list) else ([payload], False)

    async def charge_requests(self, requests: Iterable[jsonrpc.Request]) -> None:
        """Charge the caller's request and tools/call budgets for one POST's requests (every entry of a
        batch); raise 429 when one is spent, before any of them runs."""
        requests = list(requests)
        try:
            await count_requests(self.principal, self.scope, (r.method for r in requests))
        except Limited as exc:
            raise too_many(exc, requests[0].id if len(requests) == 1 else None) from None

    # -- who is calling, and from where ---------------------------------------------------------------
    async def authenticate(self) -> None:
        """Set ``self.principal`` and ``scope["user"]``; raise 401/403 when refused.

        Looked up on :mod:`mcp_app.auth` at each call (not bound at import), so that tests can replace it.
        """
        try:
            self.principal = await auth.authenticate(self.scope)
        except auth.AuthenticationFailed as exc:
            raise HTTPError(
                exc.status, exc.message, headers=[(b"www-authenticate", auth.www_authenticate(self.scope, exc).encode())]
            ) from None
        self.scope["user"] = self.principal.user

    def check_origin_and_host(self) -> None:
        """Raise 421/403 when Host or Origin is not allowed."""
        if not security.host_allowed(self.scope):
            raise HTTPError(421, "Misdirected request: this Host is not in the server's ALLOWED_HOSTS.")
        if not security.origin_allowed(self.scope):
            raise HTTPError(403, "Forbidden: this Origin is not allowed; add it to MCP_APP['ALLOWED_ORIGINS'].")

    # -- responses ------------------------------------------------------------------------------------
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
        # The length up front: without it an HTTP/1.1 server sends the answer chunked, and ends it with one
        # more write of its own (daphne and uvicorn both), for a body that is whole here already.
        await self.start(status, [*JSON_HEADERS, (b"content-length", str(len(data)).encode()), *(headers or [])])
        await self.body(data)

    async def empty(self, status: int, headers: list[tuple[bytes, bytes]] | None = None) -> None:
        """An answer without a body (202 to a notification or a legacy POST, 204): ``Content-Length: 0``
        where the status may carry one (RFC 9110 8.6: never on 204 or 304), so it is not sent chunked."""
        if status not in (204, 304):
            headers = [(b"content-length", b"0"), *(headers or [])]
        await self.start(status, headers or [])
        await self.body(b"")
