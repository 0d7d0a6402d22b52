"""The legacy HTTP+SSE transport (MCP 2024-11-05), the tutorial's transport.

- ``GET /sse`` opens a session's event stream. Its first event, ``endpoint``, names the URL for the
  client's messages: ``/sse/messages?session_id=<id>``. Answers, notifications and requests to the
  client follow as ``message`` events; a comment line every ``SSE_KEEPALIVE_INTERVAL`` keeps it alive.
- ``POST /sse/messages?session_id=<id>`` takes one JSON-RPC message and answers 202 Accepted; the answer
  travels on the stream, through the channel layer, so the POST may reach any worker or host.

Clients send their messages one POST at a time, so a POST cannot wait for a slow handler (a tool that
asks the client for sampling would wait for an answer the client cannot send yet). It waits at most
:data:`ANSWER_WAIT` seconds, or until the handler asks the client something: a quick answer is thus
delivered before the 202 (order kept, and a full or unreachable channel layer answers 503), and a slow
one follows on the stream when it is ready.

A POST answers 202 only once the stream's worker has confirmed it is reading: the quick answer carries an ack
request (or, for a request still running, a probe follows it), and the stream's reader confirms to this
process's bus channel (:mod:`mcp_app.transports.events`). No confirmation within ``STREAM_ACK_TIMEOUT``: the
stream worker's lease is read afresh; lapsed -> the session ends and the POST gets 404 (reconnect); alive ->
503 with Retry-After (the stream did not confirm). A worker killed with ``kill -9`` therefore never has a POST
accepted for its streams, even before its lease lapses. A POST that reaches the worker holding the stream puts
the answer into the stream's buffer itself, confirmed at once, without a channel-layer round trip.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any
from urllib.parse import parse_qs

from ..availability import UNAVAILABLE
from ..conf import mcp_settings
from ..headers import header
from ..limits import session_owner_filter
from ..models import Session
from ..protocol import jsonrpc, versions
from ..protocol.errors import INTERNAL_ERROR
from ..protocol.messages import is_answer, is_server_request
from ..runtime import Server, get_server, run_each
from ..sessions import SessionRecord, new_session_id
from ..workers import maintenance, worker_id
from .consumer import HTTPError, MCPConsumer
from .events import DeliveryError, acks, probe_stream, send_to_stream
from .negotiation import accepts
from .streams import SSE_HEADERS, StreamConsumer, addressable_stream, put_here

logger = logging.getLogger("mcp_app.transports")

#: Seconds a POST waits for its answer before answering 202 and letting the answer follow. Long enough
#: for ordinary requests to be answered (and so delivered in order) first; short enough that a client
#: whose POSTs queue behind a slow tool can soon send the next message, a cancellation for instance.
ANSWER_WAIT = 1.0
SESSION_NOT_FOUND = -32001
STREAM_GONE = "Session not found: the server process that held its event stream is gone; open GET /sse again for a new session."

STREAM_CLOSED = (
    "Session not found: its event stream closed before it could take the answer (the session ended, "
    "or the client stopped reading the stream); open GET /sse again for a new session."
)


class StreamGone(Exception):
    """The worker holding a session's stream is dead (its lease lapsed): nothing sent there is read."""


class StreamClosed(Exception):
    """The session's stream refused a message: it is closing (its session ended, or its client stopped reading)."""


class Unconfirmed(Exception):
    """The stream's worker holds a live lease but did not confirm a delivery in time (stalled, or dying)."""


class SSEStreamConsumer(StreamConsumer):
    """``GET /sse``: a new session and its event stream, for as long as the client stays."""

    async def handle(self, body: bytes) -> None:
        method = self.scope.get("method")
        if method != "GET":
            raise HTTPError(
                405, f"Method {method} is not allowed here; GET opens the event stream.", headers=[(b"allow", b"GET")]
            )
        if not accepts(header(self.scope, b"accept"), "text/event-stream"):
            raise HTTPError(406, "Not Acceptable: this endpoint is an event stream; send Accept: text/event-stream.")
        server = get_server()
        self.hold_stream()
        # The stream's channel first, then its session's row with everything a POST on any worker needs to
        # reach it (channel, worker): one write, committed before the endpoint event names the session.
        session_id = new_session_id()
        try:
            channel = await self.join_stream_channel(session_id, addressable=True)
        except Exception as exc:  # the layer's backend (Redis) is unreachable
            logger.warning("cannot open an SSE stream: channel layer unavailable (%s: %s)", type(exc).__name__, exc)
            channel = None
        if channel is None:
            server.sessions.unwatch_expiry(session_id)  # no session was stored: nothing to end
            raise HTTPError(
                503,
                "Service Unavailable: the channel layer that carries answers to the stream is not "
                "configured or not reachable; retry shortly.",
                code=INTERNAL_ERROR,
                headers=[(b"retry-after", b"1")],
            )
        # This worker's lease first: a POST on another worker must never find the stream's worker unknown.
        await maintenance.ensure_registered()
        # The transport's own version until initialize negotiates one (clients may send ping first).
        # Shielded, and kept for cleanup(): a client that leaves while the row is being written still
        # gets its session ended.
        self.creating = asyncio.ensure_future(
            server.sessions.create(
                session_id=session_id,
                transport=Session.Transport.SSE,
                protocol_version=versions.V2024_11_05,
                stream_channel=channel,
                worker=worker_id(),
                user=self.scope.get("user"),
                principal=self.principal.key,
                # At MAX_SESSIONS_PER_PRINCIPAL the least recently used session ends.
                cap_sharers=session_owner_filter(self.principal),
            )
        )
        try:
            session = await asyncio.shield(self.creating)
        except Exception:
            # Not stored (the database is down: fail() answers 503): no session to end, and no timer for it.
            server.sessions.unwatch_expiry(session_id)
            self.creating = None
            raise
        # Stored: cleanup() ends it by its id (the finished task is not kept for the stream's lifetime).
        self.creating, self.created = None, session.id
        endpoint = f"{self.scope.get('root_path', '')}{mcp_settings.SSE_PATH.rstrip('/')}/messages?session_id={session.id}"
        await self.start(200, SSE_HEADERS)
        await self.body(f"event: endpoint\ndata: {endpoint}\n\n".encode(), more=True)
        await self.pump_stream()

    async def cleanup(self) -> None:
        await super().cleanup()
        session_id: str | None = getattr(self, "created", None)
        creating: asyncio.Future[SessionRecord] | None = getattr(self, "creating", None)
        if creating is not None:  # the client left while its row was being written
            try:
                session_id = (await creating).id
            except Exception:  # never stored (its failure was answered): nothing to end
                return
            self.creating = None
        if session_id is None:
            return
        self.created = None
        try:
            # The stream was the session: without it no answer can reach the client.
            await get_server().sessions.end(session_id)
        except Exception as exc:
            logger.warning("could not end the session of a closed stream (%s: %s)", type(exc).__name__, exc)


class SSEMessagesConsumer(MCPConsumer):
    """``POST /sse/messages?session_id=<id>``: one client message; 202, the answer on the stream."""

    via = "sse"
    # A POST is held at most ANSWER_WAIT (plus a confirmation's wait), and its requests run beyond it
    # (Server.spawn): a client leaving early changes nothing, so no task per POST watches for it.
    watches_disconnect = False

    async def handle(self, body: bytes) -> None:
        method = self.scope.get("method")
        if method != "POST":
            raise HTTPError(
                405, f"Method {method} is not allowed here; POST one JSON-RPC message.", headers=[(b"allow", b"POST")]
            )
        query = parse_qs(self.scope.get("query_string", b"").decode("latin-1"))
        session_id = (query.get("session_id") or query.get("sessionId") or [""])[0]
        if not session_id:
            raise HTTPError(400, "Bad Request: session_id is required; POST to the URL of the stream's endpoint event.")
        self.require_json_body()
        server = get_server()
        session = await server.sessions.get(session_id)
        if (
            session is None
            or session.transport != Session.Transport.SSE
            or not session.stream_channel
            or session.principal != self.principal.key
        ):  # another caller's session: as if it did not exist
            raise HTTPError(
                404, "Session not found: it is unknown or its stream has closed; open GET /sse again.", code=SESSION_NOT_FOUND
            )
        if session.worker and session.worker != worker_id() and not await maintenance.is_alive(session.worker):
            # The worker holding the stream died without cleaning up (kill -9, a crash): no answer could reach
            # the client, so the POST is refused rather than accepted into the void, and the session ends.
            await maintenance.end_lost_session(session.id, session.worker)
            raise HTTPError(404, STREAM_GONE, code=SESSION_NOT_FOUND)
        items, is_batch = self.parse_messages(body)
        if is_batch and not versions.allows_batches(session.protocol_version):
            raise HTTPError(
                400, f"Invalid Request: send one JSON-RPC message per POST (no batches in {session.protocol_version})."
            )
        await self.process(server, session, items)

    async def process(self, server: Server, session: SessionRecord, items: list[Any]) -> None:
        requests, errors = await server.dispatcher.take(session, items)
        if errors and not requests:
            await self.json(400, errors if len(items) > 1 else errors[0])
            return
        if not requests:
            await self.empty(202)
            return
        await self.charge_requests(requests)
        # Resolved when this POST stops being held: the handler asks the client something, the requests end, or
        # ANSWER_WAIT passes (a bare future: cheaper than asyncio.wait over a task and a timeout, per POST).
        asked_client: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        # Set when this POST answers 202: from then on a failed delivery can only be reported in the log.
        accepted = False
        # The stream is held by this process: its messages go straight into its buffer, confirmed at once (no
        # channel-layer round trip). Otherwise, while the POST is held, its answers ask the stream's worker for a
        # confirmation through this process's bus channel (ids kept to forget them).
        here = session.worker == worker_id()
        reply = None if here else await self._reply_channel(server)
        holding = True
        ack_ids: list[str] = []
        answer_acks: list[asyncio.Future[bool]] = []

        async def deliver(message: dict[str, Any]) -> None:
            if here:
                taken = put_here(session.id, message)
                if holding and is_answer(message):
                    confirmed = asyncio.get_running_loop().create_future()
                    confirmed.set_result(taken)
                    answer_acks.append(confirmed)
                elif not taken and accepted and "id" in message:
                    logger.warning(
                        "MCP message (id %r) for session %s not delivered: its stream closed", message["id"], session.id
                    )
                return
            worker = session.worker
            ack = None
            if holding and reply is not None and is_answer(message):
                ack_id, future = acks.expect()
                ack_ids.append(ack_id)
                answer_acks.append(future)
                ack = (reply, ack_id)
            try:
                if worker and not await self._stream_worker_alive(worker):
                    raise StreamGone(f"the worker {worker} that held the session's stream is gone")
                await send_to_stream(session.stream_channel, message, ack=ack, session=session.id)
            except (DeliveryError, StreamGone) as exc:
                if accepted:
                    logger.error(
                        "MCP %s for session %s (request id %r) could not be delivered: %s",
                        "answer" if is_answer(message) else "message",
                        session.id,
                        message.get("id"),
                        exc,
                    )
                    exc.logged = True  # type: ignore[attr-defined]
                raise
            if worker and is_answer(message):
                maintenance.record_handoff(session.id, worker, message["id"])  # logged if that worker then dies

        async def send(message: dict[str, Any]) -> None:
            await deliver(message)
            if is_server_request(message):
                if not asked_client.done():
                    asked_client.set_result(None)  # the client must be free to POST its answer: stop holding this POST

        async def run(request: jsonrpc.Request) -> None:
            answer = await server.dispatcher.handle_request(request, self.context(session, request, send))
            if answer is not None:
                await deliver(answer)

        async def run_all() -> None:
            for error in errors:
                await deliver(error)
            await run_each(requests, run)  # a batch (2025-03-26 sessions) a few entries at a time

        request_ids = [request.id for request in requests]
        task = server.spawn(session.id, run_all(), lambda t: self._finished(session.id, request_ids, t, accepted))

        def stop_holding(*_: Any) -> None:
            if not asked_client.done():
                asked_client.set_result(None)

        task.add_done_callback(stop_holding)
        timer = asyncio.get_running_loop().call_later(ANSWER_WAIT, stop_holding)
        try:
            await asked_client
        finally:
            timer.cancel()
            asked_client.cancel()  # nobody waits for it any more
            holding = False  # answers from here on are not awaited: a probe covers the stream instead
        try:
            failure = task.exception() if task.done() and not task.cancelled() else None
            if not isinstance(failure, (StreamGone, DeliveryError)):
                failure = await self._confirm(session, reply, answer_acks if task.done() else [])
        finally:
            for ack_id in ack_ids:
                acks.forget(ack_id)
        if isinstance(failure, StreamGone):
            await maintenance.end_lost_session(session.id, session.worker)
            raise HTTPError(404, STREAM_GONE, code=SESSION_NOT_FOUND)
        if isinstance(failure, StreamClosed):  # its worker ends the session as the stream closes
            raise HTTPError(404, STREAM_CLOSED, code=SESSION_NOT_FOUND)
        if isinstance(failure, DeliveryError):
            raise HTTPError(
                503,
                "Service Unavailable: the answer could not be queued for your stream (the channel "
                "layer is full or unreachable); retry shortly.",
                code=INTERNAL_ERROR,
                headers=[(b"retry-after", b"1")],
            )
        if isinstance(failure, Unconfirmed):
            # An Unavailable error: json() sends it as 503 with Retry-After from data.retryAfter.
            raise HTTPError(503, str(failure), code=UNAVAILABLE, data={"retryAfter": 1})
        if task.done() and not task.cancelled() and isinstance(task.exception(), (StreamGone, DeliveryError)):
            # It failed while the stream was being confirmed (after the probe): still before the 202.
            raise HTTPError(
                503,
                "Service Unavailable: the answer could not be queued for your stream; retry shortly.",
                code=INTERNAL_ERROR,
                headers=[(b"retry-after", b"1")],
            )
        accepted = True  # no await since the task was last looked at: it cannot have failed unseen
        await self.empty(202)

    @staticmethod
    async def _reply_channel(server: Server) -> str | None:
        """This process's channel for delivery confirmations (its bus listener's), or None if it is not there
        within ``STREAM_ACK_TIMEOUT`` (the POST then cannot be confirmed: 503)."""
        acks.attach(server.bus)  # confirmations reaching this process's bus listener resolve their futures
        try:
            return await asyncio.wait_for(server.bus.reply_channel(), mcp_settings.STREAM_ACK_TIMEOUT)
        except Exception as exc:  # noqa: BLE001 - unconfirmable: answered 503 by _confirm
            logger.warning("no reply channel for delivery confirmations (%s: %s)", type(exc).__name__, exc)
            return None

    async def _confirm(
        self, session: SessionRecord, reply: str | None, answer_acks: list[asyncio.Future[bool]]
    ) -> Exception | None:
        """None when the stream's worker confirmed, within ``STREAM_ACK_TIMEOUT``, that it took the answers
        delivered (``answer_acks``, when the requests finished) or else a probe sent now (a request still runs:
        the probe follows what was sent before it on the stream's channel). Otherwise the reason not to answer
        202: :class:`StreamGone` (the worker's lease, read afresh, lapsed), :class:`StreamClosed` (the stream
        refused it: it is closing), :class:`DeliveryError` (the probe could not be queued) or
        :class:`Unconfirmed` (alive, or its lease unreadable, but silent)."""
        if session.worker == worker_id():  # the stream is here: its buffer answers for itself
            if answer_acks:
                taken = all(future.result() for future in answer_acks)
            else:
                local = addressable_stream(session.id)
                taken = local is not None and local.overflowed is None and not local.closed
            return None if taken else StreamClosed("the stream refused the message: it is closing")
        timeout = float(mcp_settings.STREAM_ACK_TIMEOUT)
        probe_id = None
        try:
            if reply is not None:
                waiting = list(answer_acks)
                if not waiting:
                    probe_id, future = acks.expect()
                    waiting.append(future)
                    await probe_stream(session.stream_channel, (reply, probe_id), session=session.id)
                done, _ = await asyncio.wait(waiting, timeout=timeout)
                if not all(future.result() for future in done):
                    return StreamClosed("the stream refused the message: it is closing")
                if len(done) == len(waiting):
                    return None
        except DeliveryError as exc:
            return exc
        finally:
            if probe_id is not None:
                acks.forget(probe_id)
        worker = session.worker
        try:
            alive = not worker or await maintenance.is_alive(worker, fresh=True)
        except Exception as exc:  # the database is down: whether the worker lives cannot be told
            logger.warning("could not read the lease of worker %s (%s: %s)", worker, type(exc).__name__, exc)
            alive = True
        if not alive:
            return StreamGone(f"the worker {worker} that held the session's stream is gone")
        logger.warning(
            "MCP session %s: its stream (worker %s) did not confirm a delivery within %ss; POST answered 503",
            session.id,
            worker or "unknown",
            timeout,
        )
        return Unconfirmed(
            f"Service Unavailable: the session's event stream did not confirm, within {timeout:g}s, that it received "
            "your message's answer (the server process holding the stream may be stalled or gone). The request may "
            "have been processed, but its answer may not reach you; retry shortly, and open GET /sse again if this "
            "repeats."
        )

    @staticmethod
    async def _stream_worker_alive(worker: str) -> bool:
        try:
            return await maintenance.is_alive(worker)
        except Exception as exc:  # the database is down: the lease cannot be read, so try to deliver anyway
            logger.warning("could not check the lease of worker %s (%s: %s); delivering anyway", worker, type(exc).__name__, exc)
            return True

    @staticmethod
    def _finished(session_id: str, request_ids: list[Any], task: asyncio.Task[None], accepted: bool) -> None:
        if task.cancelled():
            # The session ended while its requests ran (its stream closed, or the worker holding it died).
            logger.info(
                "MCP request(s) %s of session %s cancelled: the session ended, no answer is sent", request_ids, session_id
            )
            return
        error = task.exception()
        if error is None or getattr(error, "logged", False):
            return
        if isinstance(error, (DeliveryError, StreamGone)):
            if accepted:  # too late for the POST's status (it answered 202): say so in the log
                logger.error(
                    "MCP answer(s) to request(s) %s of session %s could not be delivered: %s", request_ids, session_id, error
                )
        else:
            logger.error("MCP request(s) %s of session %s failed", request_ids, session_id, exc_info=error)
