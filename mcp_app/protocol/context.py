"""The per-request context handed to tool, resource and prompt handlers.

Through it a handler reports progress, sends log messages (honouring ``logging/setLevel``), learns that
the client cancelled, and asks the client for things (sampling, elicitation, roots). Whatever it sends
goes through ``send``, a coroutine the transport supplies: on Streamable HTTP it upgrades the POST's
answer to an SSE stream; on the legacy transport it writes to the session's stream.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from . import jsonrpc
from .errors import ClientRequestError, InputRequired, MissingRequiredClientCapability, RequestCancelled
from .pagination import CursorCodec
from .request_state import InputRound
from .versions import Era

# RFC 5424 severities as MCP names them, least to most severe.
LOG_LEVELS: tuple[str, ...] = ("debug", "info", "notice", "warning", "error", "critical", "alert", "emergency")

Send = Callable[[dict[str, Any]], Awaitable[None]]
CloseStream = Callable[[], Awaitable[None]]


class SessionState(Protocol):
    """What the protocol layer needs to know about a session; the transports provide it."""

    id: str
    protocol_version: str
    client_info: dict[str, Any]
    client_capabilities: dict[str, Any]
    log_level: str | None

    async def record_initialize(
        self, protocol_version: str, client_info: dict[str, Any], client_capabilities: dict[str, Any]
    ) -> None:
        """Keep what ``initialize`` negotiated (the dispatcher calls it before answering); set the three
        attributes of the same names. A session that cannot be recorded raises: the dispatcher then answers
        the error (an :class:`~mcp_app.protocol.errors.McpError`'s own, or an internal error)."""

    async def set_log_level(self, level: str) -> None:
        """Persist the minimum level of log messages the client wants."""

    async def subscribe(self, uri: str) -> None:
        """Record that the client wants ``notifications/resources/updated`` for ``uri``."""

    async def unsubscribe(self, uri: str) -> None:
        """Forget a subscription; unknown URIs are ignored."""


@dataclass
class MemorySession:
    """A :class:`SessionState` held in memory: for tests, stdio and stateless use."""

    id: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    protocol_version: str = "2025-11-25"
    client_info: dict[str, Any] = field(default_factory=dict)
    client_capabilities: dict[str, Any] = field(default_factory=dict)
    log_level: str | None = None
    subscriptions: set[str] = field(default_factory=set)

    async def record_initialize(
        self, protocol_version: str, client_info: dict[str, Any], client_capabilities: dict[str, Any]
    ) -> None:
        self.protocol_version = protocol_version
        self.client_info = client_info
        self.client_capabilities = client_capabilities

    async def set_log_level(self, level: str) -> None:
        self.log_level = level

    async def subscribe(self, uri: str) -> None:
        self.subscriptions.add(uri)

    async def unsubscribe(self, uri: str) -> None:
        self.subscriptions.discard(uri)


class PendingClientRequests:
    """Futures for server-to-client requests, keyed by the id we gave each request.

    Ids carry a per-process random prefix so that an answer POSTed to another worker can be told apart
    from ours, and so that two workers never issue the same id on one session.
    """

    def __init__(self) -> None:
        self._prefix = f"srv-{secrets.token_hex(4)}-"
        self._counter = itertools.count(1)
        self._futures: dict[tuple[str, str | int], asyncio.Future[dict[str, Any]]] = {}

    def create(self, session_id: str) -> tuple[str, asyncio.Future[dict[str, Any]]]:
        request_id = f"{self._prefix}{next(self._counter)}"
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._futures[(session_id, request_id)] = future
        return request_id, future

    def discard(self, session_id: str, request_id: str | int) -> None:
        self._futures.pop((session_id, request_id), None)

    def resolve(self, session_id: str, response: jsonrpc.Response) -> bool:
        """Hand a client's answer to the waiting handler; False when no handler here waits for it."""
        future = self._futures.pop((session_id, response.id), None)
        if future is None:
            return False
        if not future.done():
            if response.error is not None:
                future.set_exception(
                    ClientRequestError(
                        f"The client answered with an error: {response.error.get('message', 'no message')}",
                        error=response.error,
                    )
                )
            else:
                future.set_result(response.result or {})
        return True


class RequestContext:
    """Everything a handler may do besides returning its result."""

    def __init__(
        self,
        *,
        session: SessionState,
        request_id: str | int | None,
        meta: dict[str, Any] | None,
        send: Send,
        pending: PendingClientRequests,
        client_request_timeout: float = 300.0,
        extra: dict[str, Any] | None = None,
        close_stream: CloseStream | None = None,
        cursors: CursorCodec | None = None,
    ) -> None:
        self.session = session
        #: The dispatcher's cursor codec, for providers that page by key (set by the dispatcher when None).
        self.cursors = cursors
        self.request_id = request_id
        self.meta = meta or {}
        self._send = send
        self._pending = pending
        self._client_request_timeout = client_request_timeout
        self._cancelled = asyncio.Event()
        #: Transport- or site-specific data (the Django user, the HTTP scope, ...).
        self.extra: dict[str, Any] = extra or {}
        self._close_stream = close_stream
        #: Modern era: this run's inputs of a multi round-trip request (the answers the client gave, the
        #: questions asked); set by the dispatcher on ``tools/call``, ``prompts/get`` and ``resources/read``.
        self.input_round: InputRound | None = None

    # -- the era ---------------------------------------------------------------------------------
    @property
    def era(self) -> Era:
        """The request's era: :attr:`Era.MODERN` when it carried its own envelope (protocol 2026-07-28 on;
        ``session`` is then the :class:`~mcp_app.protocol.envelope.Envelope`, with an empty id), else
        :attr:`Era.HANDSHAKE` (``session`` is the session ``initialize`` opened)."""
        return getattr(self.session, "era", Era.HANDSHAKE)

    @property
    def client_capabilities(self) -> dict[str, Any]:
        """What the client declared: in this request's ``_meta`` (modern) or at ``initialize`` (handshake)."""
        return self.session.client_capabilities or {}

    # -- cancellation ---------------------------------------------------------------------------
    @property
    def cancelled(self) -> bool:
        """True once the client sent ``notifications/cancelled`` for this request."""
        return self._cancelled.is_set()

    def cancel(self) -> None:
        self._cancelled.set()

    def check_cancelled(self) -> None:
        """Raise :class:`RequestCancelled` if the client gave up on this request."""
        if self.cancelled:
            raise RequestCancelled()

    # -- notifications --------------------------------------------------------------------------
    @property
    def progress_token(self) -> str | int | None:
        token = self.meta.get("progressToken")
        return token if isinstance(token, (str, int)) and not isinstance(token, bool) else None

    async def send_notification(self, method: str, params: dict[str, Any] | None = None) -> None:
        """Send a notification related to this request."""
        await self._send(jsonrpc.notification(method, params))

    async def report_progress(self, progress: float, total: float | None = None, message: str | None = None) -> None:
        """Send ``notifications/progress``; a no-op when the client asked for no progress."""
        token = self.progress_token
        if token is None:
            return
        params: dict[str, Any] = {"progressToken": token, "progress": progress}
        if total is not None:
            params["total"] = total
        if message is not None and self.session.protocol_version >= "2025-03-26":
            params["message"] = message
        await self.send_notification("notifications/progress", params)

    def wants_log(self, level: str) -> bool:
        """Whether a log message of ``level`` goes out: at or above the minimum level; without one, always
        in a handshake session (``logging/setLevel`` is optional there) and never in the modern era (a
        request opts in with ``_meta["io.modelcontextprotocol/logLevel"]``)."""
        minimum = self.session.log_level
        if minimum is None:
            return self.era is Era.HANDSHAKE
        return LOG_LEVELS.index(level) >= LOG_LEVELS.index(minimum)

    async def log(self, level: str, data: Any, logger: str | None = None) -> None:
        """Send ``notifications/message`` if ``level`` reaches the session's minimum level."""
        if level not in LOG_LEVELS:
            raise ValueError(f"unknown log level {level!r}; use one of {', '.join(LOG_LEVELS)}")
        if not self.wants_log(level):
            return
        params: dict[str, Any] = {"level": level, "data": data}
        if logger is not None:
            params["logger"] = logger
        await self.send_notification("notifications/message", params)

    async def debug(self, data: Any, logger: str | None = None) -> None:
        await self.log("debug", data, logger)

    async def info(self, data: Any, logger: str | None = None) -> None:
        await self.log("info", data, logger)

    async def warning(self, data: Any, logger: str | None = None) -> None:
        await self.log("warning", data, logger)

    async def error(self, data: Any, logger: str | None = None) -> None:
        await self.log("error", data, logger)

    # -- the connection --------------------------------------------------------------------------
    async def close_stream(self) -> None:
        """Close the connection that carries this request's event stream, without ending the stream.

        For long work: the server need not hold a connection open meanwhile ("polling", SEP-1699). The
        client reconnects after ``SSE_RETRY_MS`` with ``Last-Event-ID`` (on any worker) and receives what
        the handler sends afterwards, its result included; the handler goes on running either way.
        Honoured on Streamable HTTP sessions of protocol 2025-11-25 and later (their streams are
        resumable and start with a priming event); a no-op elsewhere (the legacy transport, older
        protocol versions, the admin's try-it page), where closing would lose the answer.
        """
        if self._close_stream is not None:
            await self._close_stream()

    # -- requests to the client -----------------------------------------------------------------
    async def send_request(
        self, method: str, params: dict[str, Any] | None = None, *, timeout: float | None = None
    ) -> dict[str, Any]:
        """Send a request to the client and wait for its answer (which arrives on a later POST).

        Returns the answer's ``result``; raises :class:`ClientRequestError` when the client answered
        with an error or did not answer within the timeout.
        """
        request_id, future = self._pending.create(self.session.id)
        timeout = timeout or self._client_request_timeout
        try:
            await self._send(jsonrpc.request(request_id, method, params))
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise ClientRequestError(f"The client did not answer {method} within {timeout:g} seconds.") from None
        finally:
            self._pending.discard(self.session.id, request_id)

    def _require_capability(self, name: str, what: str) -> None:
        if name in self.client_capabilities:
            return
        if self.era is Era.MODERN:
            # The revision's own error (-32021, HTTP 400), not a tool result: the client must fix its request.
            raise MissingRequiredClientCapability(
                f"Missing required client capability: the server needs '{name}' to {what}; declare it in "
                "params._meta['io.modelcontextprotocol/clientCapabilities'].",
                required={name: {}},
            )
        raise ClientRequestError(f"The client did not declare the '{name}' capability, so the server cannot {what}.")

    def _require_sub_capability(self, name: str, sub: str, what: str) -> None:
        # Modern era only (the handshake era checks the top-level capability, as it always did): URL-mode
        # elicitation needs elicitation.url, tool-enabled sampling sampling.tools, and a client that lists
        # elicitation modes without "form" cannot show forms (an empty elicitation object means form only).
        declared = self.client_capabilities.get(name)
        declared = declared if isinstance(declared, dict) else {}
        if sub in declared or (sub == "form" and "url" not in declared):
            return
        raise MissingRequiredClientCapability(
            f"Missing required client capability: the server needs '{name}.{sub}' to {what}; declare it in "
            "params._meta['io.modelcontextprotocol/clientCapabilities'].",
            required={name: {sub: {}}},
        )

    def _ask(self, method: str, params: dict[str, Any], key: str | None) -> dict[str, Any]:
        """Modern era: the client's answer to this input request, or the request recorded and
        :class:`InputRequired` raised (the dispatcher answers an ``InputRequiredResult`` with every input
        recorded, and the client retries with the answers; the handler then runs again from the top)."""
        if self.input_round is None:
            # A request that cannot take input (only tools/call, prompts/get and resources/read can): the
            # dispatcher answers an internal error.
            self.input_round = InputRound()
        round_ = self.input_round
        key = key if key is not None else round_.next_key(method)
        answer = round_.answer(key, method)
        if answer is not None:
            return answer
        round_.ask(key, method, params)
        raise InputRequired(round_.asked)

    async def sample(
        self, messages: list[dict[str, Any]], *, max_tokens: int, key: str | None = None, **params: Any
    ) -> dict[str, Any]:
        """Ask the client's LLM for a message (``sampling/createMessage``) and return its
        CreateMessageResult.

        Handshake era: a request to the client, awaited. Modern era (2026-07-28): the answer from the
        client's retry, asked for with an ``InputRequiredResult`` (see :meth:`elicit`); ``key`` names the
        input (default ``sampling-1``, ``sampling-2``, ... in call order).
        """
        self._require_capability("sampling", "request sampling")
        request = {"messages": messages, "maxTokens": max_tokens, **params}
        if self.era is Era.MODERN:
            if "tools" in params:
                self._require_sub_capability("sampling", "tools", "request sampling with tools")
            return self._ask("sampling/createMessage", request, key)
        return await self.send_request("sampling/createMessage", request)

    async def elicit(
        self, message: str, requested_schema: dict[str, Any], *, key: str | None = None, **params: Any
    ) -> dict[str, Any]:
        """Ask the user for structured input (``elicitation/create``) and return the ElicitResult
        (``action``, and ``content`` when accepted).

        Handshake era: a request to the client, awaited. Modern era (2026-07-28): the server sends no
        requests; the first call ends the request with an ``InputRequiredResult`` asking for it, and when
        the client retries with the answer the handler runs again from the top and this call returns the
        answer. So code before the last question runs once per round: ask first, then act. ``key`` names
        the input (default ``elicitation-1``, ``elicitation-2``, ... in call order); several questions
        awaited together (``asyncio.gather``) are asked in one round.
        """
        self._require_capability("elicitation", "ask the user for input")
        request = {"message": message, "requestedSchema": requested_schema, **params}
        if self.era is Era.MODERN:
            mode = params.get("mode", "form")
            self._require_sub_capability("elicitation", mode if mode in ("form", "url") else "form", "ask the user for input")
            return self._ask("elicitation/create", request, key)
        return await self.send_request("elicitation/create", request)

    async def list_roots(self, *, key: str | None = None) -> dict[str, Any]:
        """Ask the client for its roots (``roots/list``) and return the ListRootsResult.

        Handshake era: a request to the client. Modern era: asked with an ``InputRequiredResult`` (see
        :meth:`elicit`); ``key`` names the input (default ``roots-1``, ...).
        """
        self._require_capability("roots", "list roots")
        if self.era is Era.MODERN:
            return self._ask("roots/list", {}, key)
        return await self.send_request("roots/list", {})
