"""The Streamable HTTP transport (MCP 2025-03-26 .. 2025-11-25) at one endpoint, ``/mcp`` by default.

- POST carries one JSON-RPC message (or, in 2025-03-26 only, a batch). Requests are answered with
  ``application/json``, or with ``text/event-stream`` as soon as a handler emits a notification or a
  request to the client before its result; notifications and responses get 202.
- GET opens the session's stream for server-initiated messages (one per session: a second gets 409).
- DELETE ends the session.

This module only turns HTTP into messages; :mod:`mcp_app.protocol.dispatcher` does the MCP work.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from ..conf import mcp_settings
from ..models import Session
from ..protocol import jsonrpc, versions
from ..protocol.context import RequestContext
from ..protocol.errors import McpError
from ..server import Server, get_server, run_each
from ..sessions import SessionRecord
from . import security
from .events import close_session_streams
from .http import SSE_HEADERS, MCPConsumer, accepts, sse_event

logger = logging.getLogger("mcp_app.transports")

SESSION_HEADER = b"mcp-session-id"
VERSION_HEADER = b"mcp-protocol-version"
SESSION_NOT_FOUND = -32001  # the code the official SDKs use for an unknown or ended session

# Sessions whose GET stream is open in this process (a second GET gets 409).
_open_streams: set[str] = set()


class StreamableHTTPConsumer(MCPConsumer):
    """The ``/mcp`` endpoint."""

    server: Server

    async def handle(self, body: bytes) -> None:
        self.server = get_server()
        method = self.scope.get("method", "GET")
        if method == "POST":
            await self.post(body)
        elif method == "GET":
            await self.get()
        elif method == "DELETE":
            await self.delete()
        else:
            await self.error(405, f"Method {method} is not allowed here; use POST, GET or DELETE.",
                             headers=[(b"allow", b"GET, POST, DELETE")])

    # -- common checks ------------------------------------------------------------------------------
    def _header(self, name: bytes) -> str | None:
        return security.header(self.scope, name)

    async def _version_ok(self) -> bool:
        version = self._header(VERSION_HEADER)
        if version is not None and not versions.is_supported(version):
            await self.error(400, f"Bad Request: unsupported MCP-Protocol-Version '{version[:40]}'; "
                                  f"this server supports {', '.join(versions.SUPPORTED_VERSIONS)}.")
            return False
        return True

    async def _session(self) -> SessionRecord | None:
        """The request's session, or None after answering 400 (no header) or 404 (unknown/ended)."""
        session_id = self._header(SESSION_HEADER)
        if not session_id:
            await self.error(400, "Bad Request: Mcp-Session-Id header is required; send the id from the "
                                  "initialize response, or send initialize to start a session.")
            return None
        session = await self.server.sessions.get(session_id)
        if session is not None and session.principal != self.principal.key:
            session = None  # another caller's session: as if it did not exist
        if session is None:
            await self.error(404, "Session not found: it is unknown or has ended; send initialize to start a new one.",
                             code=SESSION_NOT_FOUND)
        return session

    # -- POST -------------------------------------------------------------------------------------
    async def post(self, body: bytes) -> None:
        if not await self.content_type_is_json():
            return
        accept = self._header(b"accept")
        if not (accepts(accept, "application/json") and accepts(accept, "text/event-stream")):
            await self.error(406, "Not Acceptable: the Accept header must include both application/json and text/event-stream.")
            return
        if not await self._version_ok():
            return
        parsed = await self.parse_messages(body)
        if parsed is None:
            return
        items, is_batch = parsed
        if any(isinstance(i, dict) and i.get("method") == "initialize" for i in items):
            if is_batch:
                await self.error(400, "Invalid Request: initialize must be sent alone, not in a batch.")
                return
            await self.initialize(items[0])
            return
        session = await self._session()
        if session is None:
            return
        if is_batch and not versions.allows_batches(session.protocol_version):
            await self.error(400, f"Invalid Request: JSON-RPC batches are not allowed in protocol version "
                                  f"{session.protocol_version}; send one message per POST.")
            return
        await self.process(session, items, is_batch)

    async def initialize(self, item: Any) -> None:
        try:
            message = jsonrpc.parse_message(item)
            if not isinstance(message, jsonrpc.Request):
                raise jsonrpc.InvalidMessage("Invalid Request: initialize is a request and needs an id.")
            version, client_info, capabilities = self.server.dispatcher.validate_initialize(message.params)
        except jsonrpc.InvalidMessage as exc:
            await self.json(400, jsonrpc.error_response(exc.request_id, exc.to_error()))
            return
        except McpError as exc:
            await self.json(400, jsonrpc.error_response(message.id, exc.to_error()))
            return
        from ..limits import Limited, check_sessions

        try:
            await check_sessions(self.principal)
        except Limited as exc:
            await self.too_many(exc, message.id)
            return
        session = await self.server.sessions.create(
            transport=Session.Transport.STREAMABLE_HTTP, protocol_version=version,
            client_info=client_info, client_capabilities=capabilities, user=self.scope.get("user"),
            principal=self.principal.key,
        )
        self.server.sessions.watch_expiry(session.id, self.principal)  # ends with its credential
        await self.json(200, jsonrpc.response(message.id, self.server.dispatcher.initialize_result(version)),
                        headers=[(SESSION_HEADER, session.id.encode())])

    async def process(self, session: SessionRecord, items: list[Any], is_batch: bool) -> None:
        """Handle the messages of one POST; answer JSON, SSE, or 202 when nothing needs an answer."""
        requests, answers = await self.server.take(session, items)
        if not requests:
            if answers:
                await self.json(400, answers if is_batch else answers[0])
            else:
                await self.empty(202)
            return
        if not await self.charge_requests(requests):
            return
        await self.run_requests(session, requests, answers, is_batch)

    async def run_requests(self, session: SessionRecord, requests: list[jsonrpc.Request],
                           answers: list[dict[str, Any]], is_batch: bool) -> None:
        """Run the requests; answer JSON unless a handler emits first, which upgrades the answer to SSE.

        A single request runs in this task (no queue, no extra task: the common case stays cheap);
        a batch's requests run a few at a time (:func:`~mcp_app.server.run_each`) and their writes are
        serialised by a lock.
        """
        server = self.server
        lock = asyncio.Lock()
        streaming = False

        async def upgrade() -> None:
            nonlocal streaming
            if not streaming:
                streaming = True
                await self.start(200, SSE_HEADERS)
                for answer in answers:  # a batch's answers that were ready before the upgrade
                    await self.body(sse_event(answer), more=True)
                answers.clear()

        async def send(message: dict[str, Any]) -> None:
            async with lock:
                await upgrade()
                await self.body(sse_event(message), more=True)

        async def run(request: jsonrpc.Request) -> None:
            ctx = RequestContext(session=session, request_id=request.id, meta=request.meta, send=send,
                                 pending=server.pending, client_request_timeout=mcp_settings.CLIENT_REQUEST_TIMEOUT,
                                 extra={"scope": self.scope, "user": self.scope.get("user"), "via": "streamable_http"})
            answer = await server.dispatcher.handle_request(request, ctx)
            if answer is None:
                return
            async with lock:
                if streaming:
                    await self.body(sse_event(answer), more=True)
                else:
                    answers.append(answer)

        await run_each(requests, run)
        if streaming:
            await self.body(b"")
        elif not answers:
            await self.empty(202)  # every request was cancelled by the client
        else:
            await self.json(200, answers if is_batch else answers[0])

    # -- GET --------------------------------------------------------------------------------------
    async def get(self) -> None:
        if not accepts(self._header(b"accept"), "text/event-stream"):
            await self.error(406, "Not Acceptable: a GET opens an event stream; send Accept: text/event-stream.")
            return
        if not await self._version_ok():
            return
        session = await self._session()
        if session is None:
            return
        if session.id in _open_streams:
            await self.error(409, "Conflict: this session already has an open GET stream; only one is allowed.")
            return
        if not await self.hold_stream():
            return
        try:
            await self.join_stream_channel(session.id)
        except Exception as exc:  # the layer's backend (Redis) is unreachable
            logger.warning("cannot open a GET stream: channel layer unavailable (%s: %s)", type(exc).__name__, exc)
            await self.error(503, "Service Unavailable: the channel layer that feeds the stream is not reachable; "
                                  "retry shortly.", code=-32603, headers=[(b"retry-after", b"1")])
            return
        _open_streams.add(session.id)
        self.holds_stream = True
        await self.start(200, SSE_HEADERS + [(SESSION_HEADER, session.id.encode())])
        await self.body(f"retry: {int(mcp_settings.SSE_RETRY_MS)}\n\n".encode(), more=True)
        await self.pump_stream()

    # -- DELETE -----------------------------------------------------------------------------------
    async def delete(self) -> None:
        if not await self._version_ok():
            return
        session = await self._session()
        if session is None:
            return
        await self.server.sessions.end(session.id)
        await close_session_streams(session.id)
        await self.empty(204)

    async def cleanup(self) -> None:
        if getattr(self, "holds_stream", False) and self.stream_session is not None:
            _open_streams.discard(self.stream_session)
        await super().cleanup()
