"""The Streamable HTTP transport at one endpoint, ``/mcp`` by default, serving both eras of MCP.

Each request's era is decided from its headers (and, without any, the body's ``_meta``) by
:func:`~mcp_app.protocol.envelope.era_of`. The modern era (2026-07-28 on) is one POST per request or
notification, self-contained: no session is read or written, the body passes the envelope ladder
(:mod:`mcp_app.protocol.envelope`), the answer is JSON or, when the handler emits first, an SSE stream
without event ids; closing it cancels the request; GET and DELETE are 405. The handshake era
(2024-11-05 .. 2025-11-25) works as follows:

- POST carries one JSON-RPC message (or, in 2025-03-26 only, a batch). Requests are answered with
  ``application/json``, or with ``text/event-stream`` as soon as a handler emits a notification or a
  request to the client before its result; notifications and responses get 202.
- GET opens the session's stream for server-initiated messages (one per session: a second gets 409).
- DELETE ends the session.

This module only turns HTTP into messages and messages into HTTP; :mod:`mcp_app.protocol.dispatcher`
does the MCP work, ``initialize`` included (a POST that opens a session is recognised by
:func:`~mcp_app.protocol.messages.opens_session`; the session's row is written when the dispatcher records
what it negotiated, through :class:`_NewSession`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from ..auth import Principal
from ..conf import mcp_settings
from ..headers import header
from ..limits import session_owner_filter
from ..models import Session
from ..protocol import envelope, jsonrpc, versions
from ..protocol.context import SessionState
from ..protocol.errors import INTERNAL_ERROR, McpError
from ..protocol.messages import opening_request, opens_session
from ..protocol.versions import Era
from ..runtime import Server, get_server, run_each
from ..sessions import SessionRecord
from . import resume
from .consumer import HTTPError
from .events import close_session_streams
from .negotiation import accepts
from .streams import SSE_HEADERS, TRANSPORT_HIGH_WATER, StreamConsumer, abort_connection, sse_event, transport_buffered

logger = logging.getLogger("mcp_app.transports")

SESSION_HEADER = b"mcp-session-id"
VERSION_HEADER = b"mcp-protocol-version"
SESSION_NOT_FOUND = -32001  # the code the official SDKs use for an unknown or ended session

# Sessions whose GET stream is open in this process (a second GET gets 409).
_open_streams: set[str] = set()
# A resumed POST stream waiting for events written by another worker polls the store, backing off from
# POLL_MIN to POLL_MAX seconds while nothing comes (this worker's own writes wake it at once).
POLL_MIN = 0.05
POLL_MAX = 1.0
# Seconds between checks that a resumed stream's session still exists.
SESSION_CHECK_INTERVAL = 5.0


class StreamableHTTPConsumer(StreamConsumer):
    """The ``/mcp`` endpoint."""

    via = "streamable_http"
    serves_modern = True
    server: Server
    #: Numbers and keeps the GET stream's events (resumable sessions only).
    event_writer: resume.EventWriter | None = None

    async def handle(self, body: bytes) -> None:
        self.server = get_server()
        method = self.scope.get("method", "GET")
        if self.modern and method in ("GET", "DELETE"):
            # The revision has no GET stream and no session to delete (use subscriptions/listen).
            raise HTTPError(
                405,
                f"Method {method} is not allowed for protocol 2026-07-28: send each request as a POST "
                "(subscriptions/listen replaces the GET stream; there is no session to delete).",
                headers=[(b"allow", b"POST")],
            )
        if method == "POST":
            await self.post(body)
        elif method == "GET":
            await self.get()
        elif method == "DELETE":
            await self.delete()
        else:
            raise HTTPError(
                405, f"Method {method} is not allowed here; use POST, GET or DELETE.", headers=[(b"allow", b"GET, POST, DELETE")]
            )

    # -- common checks ------------------------------------------------------------------------------
    def _header(self, name: bytes) -> str | None:
        return header(self.scope, name)

    def _check_version(self) -> None:
        """Raise 400 when the MCP-Protocol-Version header names a version this server does not speak."""
        version = self._header(VERSION_HEADER)
        if version is not None and not versions.is_supported(version):
            raise HTTPError(
                400,
                f"Bad Request: unsupported MCP-Protocol-Version '{version[:40]}'; "
                f"this server supports {', '.join(versions.SUPPORTED_VERSIONS)}.",
            )

    async def _session(self) -> SessionRecord:
        """The request's session; raise 400 (no header) or 404 (unknown, ended, or another caller's)."""
        session_id = self._header(SESSION_HEADER)
        if not session_id:
            raise HTTPError(
                400,
                "Bad Request: Mcp-Session-Id header is required; send the id from the "
                "initialize response, or send initialize to start a session.",
            )
        session = await self.server.sessions.get(session_id)
        if session is None or session.principal != self.principal.key:  # another caller's: as if it did not exist
            raise HTTPError(
                404, "Session not found: it is unknown or has ended; send initialize to start a new one.", code=SESSION_NOT_FOUND
            )
        return session

    # -- POST -------------------------------------------------------------------------------------
    async def post(self, body: bytes) -> None:
        self.require_json_body()
        accept = self._header(b"accept")
        if not (accepts(accept, "application/json") and accepts(accept, "text/event-stream")):
            raise HTTPError(406, "Not Acceptable: the Accept header must include both application/json and text/event-stream.")
        if self.modern:
            await self.post_modern(body)
            return
        parsed = None
        if self._header(VERSION_HEADER) is None and self._header(SESSION_HEADER) is None:
            # No header says the era: a body carrying the modern _meta is a modern request that forgot the
            # MCP-Protocol-Version header (the ladder says so), anything else is the handshake era.
            parsed = self.parse_messages(body)
            if not parsed[1] and envelope.era_of(self.request_headers, parsed[0][0]) is Era.MODERN:
                self.modern = True
                await self.post_modern(body)
                return
        self._check_version()
        items, is_batch = parsed if parsed is not None else self.parse_messages(body)
        if any(opens_session(item) for item in items):
            if is_batch:
                raise HTTPError(400, "Invalid Request: initialize must be sent alone, not in a batch.")
            await self.open_session(items[0])
            return
        session = await self._session()
        if is_batch and not versions.allows_batches(session.protocol_version):
            raise HTTPError(
                400,
                f"Invalid Request: JSON-RPC batches are not allowed in protocol version "
                f"{session.protocol_version}; send one message per POST.",
            )
        await self.process(session, items, is_batch)

    async def post_modern(self, body: bytes) -> None:
        """A modern POST: one request or notification, no session. A notification gets 202; a request passes
        the envelope ladder (its refusals answered with their own status), is charged against the caller's
        budgets, and runs tied to this connection (the client closing it cancels the request)."""
        try:
            payload = jsonrpc.loads(body)
        except McpError as exc:
            raise HTTPError.from_mcp(400, exc) from None
        dispatcher = self.server.dispatcher
        try:
            message = envelope.read_message(payload)
            if isinstance(message, jsonrpc.Notification):
                await self.empty(202)  # no client notification means anything over HTTP in this era
                return
            request_envelope = envelope.read_envelope(message, self.request_headers, dispatcher.methods_for(Era.MODERN))
        except envelope.EnvelopeError as exc:
            await self.json(exc.status, exc.to_response())
            return
        await self.charge_requests([message])
        response = _PostResponse(self, request_envelope, False, [], json_status=envelope.answer_status)
        ctx = self.context(request_envelope, message, response.send)
        try:
            answer = await dispatcher.handle_request(message, ctx)
            if answer is not None:
                await response.answer(answer)
            await response.finish()
        finally:
            response.stop_keepalive()

    async def open_session(self, item: Any) -> None:
        """A POST that opens a session: the dispatcher answers it (validating, negotiating the version, and
        recording what it negotiated, which writes the session's row); 200 with ``Mcp-Session-Id``, or 400
        with the error. A session that cannot be written fails the request as it failed (503 during a
        database outage, with no id: nothing was started)."""
        try:
            request = opening_request(item)
        except jsonrpc.InvalidMessage as exc:
            raise HTTPError.from_mcp(400, exc, exc.request_id) from None
        new = _NewSession(self.server, self.scope.get("user"), self.principal)
        answer = await self.server.dispatcher.handle_request(request, self.context(new, request, _nothing_to_send))
        if new.failure is not None:
            raise new.failure
        if answer is None:  # cancelled: nothing can cancel a request of a session that does not exist yet
            await self.empty(202)
        elif new.record is None:
            await self.json(400, answer)
        else:
            await self.json(200, answer, headers=[(SESSION_HEADER, new.record.id.encode())])

    async def process(self, session: SessionRecord, items: list[Any], is_batch: bool) -> None:
        """Handle the messages of one POST; answer JSON, SSE, or 202 when nothing needs an answer."""
        requests, answers = await self.server.dispatcher.take(session, items)
        if not requests:
            if answers:
                await self.json(400, answers if is_batch else answers[0])
            else:
                await self.empty(202)
            return
        await self.charge_requests(requests)
        await self.run_requests(session, requests, answers, is_batch)

    async def run_requests(
        self, session: SessionRecord, requests: list[jsonrpc.Request], answers: list[dict[str, Any]], is_batch: bool
    ) -> None:
        """Run the requests; answer JSON unless a handler emits first, which upgrades the answer to SSE.

        Sessions whose streams are resumable (:func:`~mcp_app.transports.resume.resumable`) run the
        requests in a task of their own, tied to the session rather than to the connection: a client
        whose connection drops has not cancelled anything (only ``notifications/cancelled`` does, and
        ending the session), so the requests go on, and what they send afterwards is kept for the client
        to resume with ``Last-Event-ID``. A plain JSON answer that finds its client gone is logged and
        dropped: it has no event id to resume from. Older sessions run a single request in this task (a
        batch's a few at a time, :func:`~mcp_app.runtime.run_each`), and a client leaving cancels them.
        """
        response = _PostResponse(self, session, is_batch, answers)
        work = run_each(requests, lambda request: self._run_one(session, request, response))
        if not response.resumable:
            await work
            await response.finish()
            return
        task = self.server.spawn(session.id, response.run(work))
        # One future for "the requests are done or a handler closed the connection": cheaper than a task
        # waiting on an event and asyncio.wait over both, on every POST.
        ended = response.ended
        task.add_done_callback(lambda _: ended.done() or ended.set_result(None))
        try:
            await ended
        except asyncio.CancelledError:
            # The client left (the watcher cancels this task): the requests go on, detached from it.
            response.connected = False
            raise
        if task.done() and task.cancelled() and response.connected:
            # The session ended (DELETE, the admin, its credential) while the requests ran.
            if self.started:
                await self.body(b"")
            else:
                raise HTTPError(
                    404,
                    "Session not found: it ended while the request ran; send initialize to start a new one.",
                    code=SESSION_NOT_FOUND,
                )

    async def _run_one(self, session: SessionRecord, request: jsonrpc.Request, response: _PostResponse) -> None:
        ctx = self.context(session, request, response.send, close_stream=response.close if response.primes else None)
        answer = await self.server.dispatcher.handle_request(request, ctx)
        if answer is not None:
            await response.answer(answer)

    # -- GET --------------------------------------------------------------------------------------
    async def get(self) -> None:
        if not accepts(self._header(b"accept"), "text/event-stream"):
            raise HTTPError(406, "Not Acceptable: a GET opens an event stream; send Accept: text/event-stream.")
        self._check_version()
        session = await self._session()
        last_event_id = self._header(b"last-event-id")
        if last_event_id is not None and resume.resumable(session.protocol_version):
            await self.resume(session, last_event_id)
            return
        await self._open_get_stream(session)
        if resume.resumable(session.protocol_version):
            self.event_writer = resume.EventWriter(session.id, resume.new_stream_id(resume.GET_STREAM))
            if resume.primes(session.protocol_version):
                primed = await self.event_writer.append(None)
                if primed is not None:
                    await self.body(f"id: {primed}\ndata:\n\n".encode(), more=True)
        await self.pump_stream()

    async def _open_get_stream(self, session: SessionRecord) -> None:
        """Start the session's GET stream (one per session per worker): count it, join the channel layer,
        send the headers and the ``retry`` field; raise 409, 429 or 503."""
        if session.id in _open_streams:
            raise HTTPError(409, "Conflict: this session already has an open GET stream; only one is allowed.")
        self.hold_stream()
        try:
            await self.join_stream_channel(session.id)
        except Exception as exc:  # the layer's backend (Redis) is unreachable
            logger.warning("cannot open a GET stream: channel layer unavailable (%s: %s)", type(exc).__name__, exc)
            raise HTTPError(
                503,
                "Service Unavailable: the channel layer that feeds the stream is not reachable; retry shortly.",
                code=INTERNAL_ERROR,
                headers=[(b"retry-after", b"1")],
            ) from None
        _open_streams.add(session.id)
        self.holds_stream = True
        await self.start(200, SSE_HEADERS + [(SESSION_HEADER, session.id.encode())])
        await self.body(f"retry: {int(mcp_settings.SSE_RETRY_MS)}\n\n".encode(), more=True)

    async def write_event(self, message: dict[str, Any], encoded: bytes | None = None) -> None:
        """Write one message on the GET stream; on resumable sessions numbered and kept first."""
        writer = self.event_writer
        event_id = await writer.append(message) if writer is not None else None
        await self.body(sse_event(message, event_id=event_id, encoded=encoded), more=True)

    async def resume(self, session: SessionRecord, last_event_id: str) -> None:
        """``GET`` with ``Last-Event-ID``: replay the events of that id's stream after it, then go on.

        A POST's stream goes on with its later events as they are kept (written by whichever worker runs
        the request: woken at once on this worker, polled from the others) and closes after the
        request's answer. A GET stream goes on as the session's GET stream, numbering from where it was.
        An id this server did not issue is 400; a stream this session does not have, or whose events
        after the id are no longer kept, is 404: both say what to do instead.
        """
        parsed = resume.parse_event_id(last_event_id)
        if parsed is None:
            raise HTTPError(
                400,
                f"Bad Request: Last-Event-ID '{last_event_id[:60]}' is not an event id of this "
                "server (they look like 'p…:3'); open a new stream with GET without Last-Event-ID.",
            )
        stream, seq = parsed
        try:
            replay = await resume.replay_after(session.id, stream, seq)
        except resume.ResumeRefused as exc:
            retention = mcp_settings.STREAM_EVENT_RETENTION_SECONDS
            if exc.status == 400:
                message = (
                    f"Bad Request: Last-Event-ID '{last_event_id}' is ahead of its stream: this server never "
                    "sent it. Resume from the last event id you received."
                )
            else:
                message = (
                    f"Not Found: this session has no stream with the events after '{last_event_id}' (unknown, "
                    f"or no longer kept: events are kept {retention:g} s, at most "
                    f"{mcp_settings.STREAM_EVENT_MAX_PER_STREAM} per stream). Open a new stream with GET "
                    "without Last-Event-ID, and send the request again if you still need its answer."
                )
            raise HTTPError(exc.status, message) from None
        if stream.startswith(resume.GET_STREAM):
            await self._open_get_stream(session)
            while replay.events:
                for event_seq, message, _final in replay.events:
                    seq = event_seq
                    if message is not None:
                        await self.body(sse_event(message, event_id=resume.event_id(stream, event_seq)), more=True)
                replay = await resume.events_after(session.id, stream, seq)
            self.event_writer = resume.EventWriter(session.id, stream, await resume.last_seq(session.id, stream) + 1)
            await self.pump_stream()
            return
        self.hold_stream()
        await self.start(200, SSE_HEADERS + [(SESSION_HEADER, session.id.encode())])
        await self.body(f"retry: {int(mcp_settings.SSE_RETRY_MS)}\n\n".encode(), more=True)
        await self._follow_post_stream(session.id, stream, seq, replay)

    async def _follow_post_stream(self, session_id: str, stream: str, seq: int, replay: resume.Replay) -> None:
        """Write a resumed POST stream's events from ``replay`` on, until its end (the request's answer),
        the session's end, or no event for ``STREAM_EVENT_RETENTION_SECONDS`` (its worker is gone: the
        client's next resume is then told the events are no longer kept)."""
        keepalive = mcp_settings.SSE_KEEPALIVE_INTERVAL
        idle_limit = mcp_settings.STREAM_EVENT_RETENTION_SECONDS
        loop = asyncio.get_running_loop()
        last_event = last_write = last_check = loop.time()
        poll = POLL_MIN
        while True:
            for event_seq, message, final in replay.events:
                seq = event_seq
                if message is not None:
                    await self.body(sse_event(message, event_id=resume.event_id(stream, event_seq)), more=True)
                    last_write = loop.time()
                if final:
                    await self.body(b"")
                    return
            now = loop.time()
            if replay.events:
                last_event, poll = now, POLL_MIN
            elif now - last_event >= idle_limit:
                await self.body(b"")
                return
            if now - last_write >= keepalive:
                await self.body(b": keepalive\n\n", more=True)
                last_write = now
            if now - last_check >= SESSION_CHECK_INTERVAL:
                last_check = now
                if await self.server.sessions.get(session_id) is None:
                    await self.body(b"")  # the session ended: so did its requests
                    return
            if not replay.events:
                await resume.wait_for_events(session_id, stream, min(poll, keepalive))
                poll = min(poll * 2, POLL_MAX)
            replay = await resume.events_after(session_id, stream, seq)

    # -- DELETE -----------------------------------------------------------------------------------
    async def delete(self) -> None:
        self._check_version()
        session = await self._session()
        await self.server.sessions.end(session.id)
        await close_session_streams(session.id)
        await self.empty(204)

    def release(self) -> None:
        if getattr(self, "holds_stream", False) and self.stream_session is not None:
            _open_streams.discard(self.stream_session)
        super().release()


async def _nothing_to_send(message: dict[str, Any]) -> None:
    """``initialize`` sends nothing before its answer (the session does not exist until it is answered)."""


class _NotOpened(McpError):
    """The session could not be written: the dispatcher's answer is discarded, and the POST fails with
    :attr:`_NewSession.failure` instead (an McpError, so that the dispatcher does not log it a second time)."""


class _NewSession:
    """The :class:`~mcp_app.protocol.context.SessionState` of a POST that opens a session, before it exists.

    When the dispatcher records what ``initialize`` negotiated, the session's row is written (at
    ``MAX_SESSIONS_PER_PRINCIPAL`` the credential's least recently used session ends: never a lock-out) and
    an expiry timer set for the credential; :attr:`record` is then the new session. An exception from
    writing it is kept in :attr:`failure` for the transport to fail the POST with.
    """

    log_level: str | None = None

    def __init__(self, server: Server, user: Any, principal: Principal) -> None:
        self._server = server
        self._user = user
        self._principal = principal
        self.id = ""
        self.protocol_version = versions.LATEST_VERSION
        self.client_info: dict[str, Any] = {}
        self.client_capabilities: dict[str, Any] = {}
        self.record: SessionRecord | None = None
        self.failure: Exception | None = None

    async def record_initialize(
        self, protocol_version: str, client_info: dict[str, Any], client_capabilities: dict[str, Any]
    ) -> None:
        self.protocol_version = protocol_version
        self.client_info = client_info
        self.client_capabilities = client_capabilities
        sessions = self._server.sessions
        try:
            self.record = await sessions.create(
                transport=Session.Transport.STREAMABLE_HTTP,
                protocol_version=protocol_version,
                client_info=client_info,
                client_capabilities=client_capabilities,
                user=self._user,
                principal=self._principal.key,
                cap_sharers=session_owner_filter(self._principal),
            )
        except Exception as exc:
            self.failure = exc
            raise _NotOpened("The session could not be created.") from exc
        self.id = self.record.id
        sessions.watch_expiry(self.record.id, self._principal)  # ends with its credential

    async def set_log_level(self, level: str) -> None:
        raise _NotOpened("No session yet.")

    async def subscribe(self, uri: str) -> None:
        raise _NotOpened("No session yet.")

    async def unsubscribe(self, uri: str) -> None:
        raise _NotOpened("No session yet.")


class _PostResponse:
    """The answer to one POST: JSON, or an SSE stream as soon as a handler emits before its result.

    On resumable sessions each event of the stream is numbered and kept (:class:`resume.EventWriter`)
    before it is written, and writing stops, without anything else stopping, when the client leaves
    (``connected`` turns False) or a handler closes the connection (:meth:`close`). Writes are
    serialised by one lock (a batch's requests run concurrently).
    """

    def __init__(
        self,
        consumer: StreamableHTTPConsumer,
        session: SessionState,
        is_batch: bool,
        answers: list[dict[str, Any]],
        *,
        json_status: Callable[[dict[str, Any]], int] | None = None,
    ) -> None:
        self.consumer = consumer
        self.session_id = session.id
        self.is_batch = is_batch
        #: Answers ready while the response is still JSON (a batch's; upgrading writes them as events).
        self.answers = answers
        # Modern requests (no session) are neither resumable nor primed: their streams carry no event ids.
        handshake = getattr(session, "era", Era.HANDSHAKE) is Era.HANDSHAKE
        self.resumable = handshake and resume.resumable(session.protocol_version)
        self.primes = handshake and resume.primes(session.protocol_version)
        #: The HTTP status of a single JSON answer (None: 200); the modern era sends some errors with 400/404.
        self.json_status = json_status
        self.lock = asyncio.Lock()
        self.streaming = False
        #: Whether the client still reads this response (False once it left or the stream was closed).
        self.connected = True
        #: Resolved when a handler closed the connection (:meth:`close`) or the requests ended
        #: (:meth:`StreamableHTTPConsumer.run_requests`): the consumer stops waiting.
        self.ended: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.writer: resume.EventWriter | None = None
        # Modern SSE answers may stay open long (subscriptions/listen): a comment line after
        # SSE_KEEPALIVE_INTERVAL seconds of silence keeps proxies and clients from timing them out.
        self.keeps_alive = not handshake
        self._keepalive: asyncio.Task[None] | None = None
        self._last_write = 0.0

    async def run(self, work: Any) -> None:
        """Await the requests (detached from the connection), then end the response."""
        await work
        await self.finish()

    async def _write(self, data: bytes) -> None:
        if not self.connected:
            return
        if self.keeps_alive and not await self._drained():
            # Modern answers are not resumable: a client that stopped reading loses nothing it could get back,
            # and a listen stream would otherwise grow daphne's write buffer without bound.
            self.connected = False
            logger.warning(
                "dropping the connection of a 2026-07-28 event stream: its client took nothing for %gs",
                2 * mcp_settings.SSE_KEEPALIVE_INTERVAL,
            )
            abort_connection(self.consumer.base_send)  # the client's leaving then cancels the request
            return
        self._last_write = asyncio.get_running_loop().time()
        try:
            await self.consumer.body(data, more=True)
        except Exception as exc:  # the connection broke under us: the events are kept all the same
            self.connected = False
            logger.info("stream of session %s lost its connection (%s: %s)", self.session_id, type(exc).__name__, exc)

    async def _upgrade(self) -> None:
        if self.streaming:
            return
        self.streaming = True
        if not self.connected:
            return  # the client left before the stream began: it has no event id to resume from
        if self.resumable:
            self.writer = resume.EventWriter(self.session_id, resume.new_stream_id(resume.POST_STREAM))
        await self.consumer.start(200, SSE_HEADERS)
        self._last_write = asyncio.get_running_loop().time()
        if self.keeps_alive:
            self._keepalive = asyncio.ensure_future(self._keep_alive())
        if self.primes and self.writer is not None:
            # The priming event: an id the client can resume from before any message, and how long to
            # wait before reconnecting (SEP-1699).
            primed = await self.writer.append(None)
            head = f"id: {primed}\n" if primed else ""
            await self._write(f"{head}retry: {int(mcp_settings.SSE_RETRY_MS)}\ndata:\n\n".encode())
        ready = list(self.answers)
        self.answers.clear()
        for answer in ready:
            await self._emit(answer)

    async def _keep_alive(self) -> None:
        """Write an SSE comment whenever the stream was silent for ``SSE_KEEPALIVE_INTERVAL`` seconds, until
        it ends (:meth:`stop_keepalive`) or its client leaves."""
        interval = mcp_settings.SSE_KEEPALIVE_INTERVAL
        loop = asyncio.get_running_loop()
        while self.connected:
            await asyncio.sleep(max(0.0, self._last_write + interval - loop.time()))
            async with self.lock:
                if self.connected and loop.time() - self._last_write >= interval:
                    await self._write(b": keepalive\n\n")

    async def _drained(self) -> bool:
        """Wait while the connection's write buffer holds over :data:`TRANSPORT_HIGH_WATER` bytes (servers whose
        ``send`` never waits: daphne; elsewhere ``send`` itself waits); False when the client took nothing for
        two keep-alive intervals (it is gone, or does not read: its connection is dropped)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 2 * mcp_settings.SSE_KEEPALIVE_INTERVAL
        while True:
            buffered = transport_buffered(self.consumer.base_send)
            if buffered is None or buffered <= TRANSPORT_HIGH_WATER:
                return True
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(0.02)

    def stop_keepalive(self) -> None:
        """Stop the keep-alive comments (the request ended, or was cancelled with its connection)."""
        if self._keepalive is not None:
            self._keepalive.cancel()
            self._keepalive = None

    async def _emit(self, message: dict[str, Any], *, final: bool = False) -> None:
        if self.writer is None and not self.connected:
            logger.info(
                "message %s for session %s not delivered: its client left before the stream began, so it "
                "has no event id to resume from",
                message.get("method") or f"answer to {message.get('id')!r}",
                self.session_id,
            )
            return
        kept = await self.writer.append(message, final=final) if self.writer is not None else None
        await self._write(sse_event(message, event_id=kept))

    async def send(self, message: dict[str, Any]) -> None:
        """A handler's notification or request to the client: upgrades the answer to SSE."""
        async with self.lock:
            await self._upgrade()
            await self._emit(message)

    async def answer(self, answer: dict[str, Any]) -> None:
        """A request's answer: an event when streaming (the stream's last, for a single request), else kept
        for the JSON answer."""
        async with self.lock:
            if self.streaming:
                await self._emit(answer, final=not self.is_batch)
            elif self.connected:
                self.answers.append(answer)
            else:
                logger.info(
                    "answer to request %r of session %s not delivered: its client left before it, and a "
                    "plain JSON answer cannot be resumed",
                    answer.get("id"),
                    self.session_id,
                )

    async def close(self) -> None:
        """``ctx.close_stream()``: end the HTTP response, not the stream (its events go on being kept)."""
        async with self.lock:
            if not self.connected:
                return
            await self._upgrade()
            self.connected = False
            await self.consumer.body(b"")
            if not self.ended.done():
                self.ended.set_result(None)

    async def finish(self) -> None:
        """After every request ran: end the stream (marked ended in the store), or answer JSON or 202."""
        async with self.lock:
            if self.streaming:
                if self.writer is not None and not self.writer.ended:
                    await self.writer.append(None, final=True)  # a batch's end, or a cancelled request's
                if self.connected:
                    self.connected = False
                    await self.consumer.body(b"")
                return
            if not self.connected:
                return
            if not self.answers:
                await self.consumer.empty(202)  # every request was cancelled by the client
            elif self.is_batch:
                await self.consumer.json(200, self.answers)
            else:
                status = self.json_status(self.answers[0]) if self.json_status is not None else 200
                await self.consumer.json(status, self.answers[0])
