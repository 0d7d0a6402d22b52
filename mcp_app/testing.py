"""Test helpers for sites that use mcp_app: an MCP client that talks to the site in-process.

:class:`MCPTestClient` drives the site's real ASGI application (by default
``mcp_application(get_asgi_application())``, the same routing daphne serves) by calling it with ASGI
events, without a socket or a server process. Every request goes through the real transport: Host and
Origin checks, authentication, limits, sessions in the database, the dispatcher and your tools. It needs
no test framework: use it from pytest (with pytest-django) or from Django's ``TransactionTestCase``::

    from mcp_app.testing import MCPTestClient, MCPResponseError

    @pytest.mark.django_db(transaction=True)
    async def test_uppercase(django_user_model):
        user = await django_user_model.objects.acreate(username="alice")
        async with MCPTestClient(user=user) as client:  # initialize on enter, DELETE on exit
            result = await client.call_tool("uppercase_text", {"text": "hi"})
            assert result["content"][0]["text"] == "HI"

Sessions are database rows and tools may run in other threads, so tests need real transactions
(``transaction=True``, or ``TransactionTestCase``), as for any Channels consumer test.

With ``protocol_version="2026-07-28"`` the client speaks the modern era instead: no session, every request
carries its version and the client's capabilities (``_meta`` and headers), and the questions a tool asks
(``InputRequiredResult``) are answered by ``answer=`` and the call retried::

    async def answer(method, params):  # elicitation/create, sampling/createMessage or roots/list
        return {"action": "accept", "content": {"name": "Ada"}}

    async with MCPTestClient(protocol_version="2026-07-28", capabilities={"elicitation": {}}, answer=answer) as client:
        result = await client.call_tool("greet", {})
"""

from __future__ import annotations

import asyncio
import base64
import inspect
import itertools
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from asgiref.sync import sync_to_async

from .conf import mcp_settings
from .protocol import versions

__all__ = ["MCPResponse", "MCPResponseError", "MCPTestClient"]

#: What :class:`MCPTestClient` sends as ``clientInfo`` in ``initialize`` (modern era: in every request's ``_meta``).
CLIENT_INFO = {"name": "mcp_app.testing", "version": "1"}
#: Rounds of one multi round-trip request before :class:`MCPTestClient` gives up (as the official SDK's client).
MAX_INPUT_ROUNDS = 10
#: Answers an input request of the modern era: ``(method, params) -> result`` (plain or awaitable).
Answer = Callable[[str, dict[str, Any]], "dict[str, Any] | Awaitable[dict[str, Any]]"]


class MCPResponseError(Exception):
    """A request that was not answered with a result.

    ``code``, ``message`` and ``data`` are the JSON-RPC error's (``code`` is None when the answer held no
    JSON-RPC error at all, e.g. an empty 202 to a request); ``status`` is the HTTP status of the answer and
    ``response`` the whole :class:`MCPResponse`.
    """

    def __init__(
        self, status: int, code: int | None, message: str, data: Any = None, response: MCPResponse | None = None
    ) -> None:
        super().__init__(f"HTTP {status}, JSON-RPC error {code}: {message}" if code is not None else f"HTTP {status}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.data = data
        self.response = response


@dataclass
class MCPResponse:
    """One HTTP answer of the MCP endpoint, as the client received it.

    ``headers`` are lower-cased names to Latin-1 decoded values (the first of repeated names). ``messages``
    are the JSON-RPC messages it carried: the JSON body's (one, or a batch's entries), or the SSE events'
    (notifications, server requests, then the answer); empty for 202/204 answers.
    """

    status: int
    headers: dict[str, str]
    body: bytes
    messages: list[dict[str, Any]] = field(default_factory=list)

    @property
    def streamed(self) -> bool:
        """True when the answer was upgraded to an SSE stream (``text/event-stream``)."""
        return self.headers.get("content-type", "").startswith("text/event-stream")

    def json(self) -> Any:
        """The body parsed as JSON (a JSON answer's only; raises ValueError otherwise)."""
        return json.loads(self.body)


def _parse_sse(body: bytes) -> list[dict[str, Any]]:
    """The JSON-RPC messages of an SSE body; priming events (empty data), comments and ``retry`` are skipped."""
    messages = []
    for event in body.decode().replace("\r\n", "\n").split("\n\n"):
        data = [line[5:].lstrip(" ") for line in event.split("\n") if line.startswith("data:")]
        text = "\n".join(data).strip()
        if text:
            messages.append(json.loads(text))
    return messages


class MCPTestClient:
    """An MCP client (Streamable HTTP) that calls the site's ASGI application in the test's own process.

    Credentials: ``token`` is sent as ``Authorization: Bearer <token>``; or give ``user`` and a
    :class:`mcp_app.models.Token` is created for them on first use (``user`` and ``token`` together are an
    error). Without either the client is anonymous (``MCP_APP["ALLOW_ANONYMOUS"]`` decides what it may do).

    ``protocol_version`` is offered in ``initialize``; the version the server agrees to is kept in
    :attr:`protocol_version` and sent as ``MCP-Protocol-Version`` on later requests. ``session_id``
    attaches the client to an existing session instead of calling :meth:`initialize`.

    A modern ``protocol_version`` (2026-07-28) selects the modern era: no ``initialize``, no session and no
    ``DELETE``; every request carries ``_meta`` (version, ``capabilities``, client info) and the headers the
    revision asks for (``MCP-Protocol-Version``, ``Mcp-Method``, ``Mcp-Name``; pass ``Mcp-Param-*`` for
    ``x-mcp-header`` arguments in ``headers``). :meth:`call_tool`, :meth:`get_prompt` and
    :meth:`read_resource` answer an ``InputRequiredResult`` with ``answer(method, params)`` for each input
    request and retry with the answers and the ``requestState``, up to :data:`MAX_INPUT_ROUNDS` rounds;
    without ``answer`` they return the ``InputRequiredResult`` itself. ``capabilities`` are also what
    ``initialize`` declares in the handshake era.

    ``app`` is the ASGI application to call (default: ``mcp_application(get_asgi_application())``, built
    when first needed); ``path`` the endpoint (default: ``MCP_APP["PATH"]``); ``host`` the Host header
    (``testserver``, which Django's test set-up adds to ``ALLOWED_HOSTS``); ``headers`` extra request
    headers; ``timeout`` the seconds one HTTP exchange may take before :class:`TimeoutError`.

    Notifications the server sends on a request's SSE answer (progress, logs, list_changed...) are
    appended to :attr:`notifications`, and requests it sends there (sampling, elicitation, roots) to
    :attr:`server_requests`; this client does not answer those, so a tool waiting for them waits until
    ``MCP_APP["CLIENT_REQUEST_TIMEOUT"]``. One client is one session; it is not safe to share between
    event loops.
    """

    def __init__(
        self,
        *,
        token: str | None = None,
        user: Any = None,
        protocol_version: str = versions.LATEST_VERSION,
        session_id: str | None = None,
        app: Any = None,
        path: str | None = None,
        host: str = "testserver",
        headers: dict[str, str] | None = None,
        timeout: float = 30.0,
        capabilities: dict[str, Any] | None = None,
        answer: Answer | None = None,
    ) -> None:
        if token is not None and user is not None:
            raise ValueError("MCPTestClient takes token= or user=, not both: a user's token is created for them.")
        self.token = token
        self.user = user
        self.protocol_version = protocol_version
        self.session_id = session_id
        self.path = path
        self.host = host
        self.extra_headers = dict(headers or {})
        self.timeout = timeout
        #: The client capabilities declared (``initialize``, or every modern request's ``_meta``).
        self.capabilities: dict[str, Any] = dict(capabilities or {})
        self.answer = answer
        self._app = app
        self._ids = itertools.count(1)
        #: Notifications received on SSE answers, oldest first (tests may clear it).
        self.notifications: list[dict[str, Any]] = []
        #: Requests the server sent to this client on SSE answers (never answered).
        self.server_requests: list[dict[str, Any]] = []
        #: The ``initialize`` result, once :meth:`initialize` has run (modern era: ``server/discover``'s).
        self.server_info: dict[str, Any] | None = None

    @property
    def modern(self) -> bool:
        """Whether this client speaks the modern era (protocol 2026-07-28 on: no session)."""
        return versions.is_modern(self.protocol_version)

    # -- the ASGI exchange -----------------------------------------------------------------------------
    @property
    def app(self) -> Any:
        """The ASGI application requests go to (built from the site's settings on first use)."""
        if self._app is None:
            # Imported here, not at the top: Django's ASGI handler sets Django up, and routing imports the
            # transports and models, which need the app registry ready; importing mcp_app.testing must not.
            from django.core.asgi import get_asgi_application

            from .routing import mcp_application

            self._app = mcp_application(get_asgi_application())
        return self._app

    async def _credentials(self) -> str | None:
        if self.token is None and self.user is not None:
            from .models import Token  # needs the app registry; see app

            self.token = (await sync_to_async(Token.create_for)(self.user, name="MCPTestClient"))[1]
        return self.token

    async def http(self, method: str, body: bytes = b"", headers: dict[str, str] | None = None) -> MCPResponse:
        """Make one HTTP request to the endpoint and return the whole answer (SSE answers read to their end).

        Sends Host, Accept, Content-Type (POST), Authorization, Mcp-Session-Id and MCP-Protocol-Version
        (once there is a session) unless ``headers`` overrides them (lower-case names; a value of ``""``
        leaves the header out). Raises :class:`TimeoutError` when the answer has not ended in ``timeout``.
        """
        token = await self._credentials()
        sent: dict[str, str] = {"host": self.host, "accept": "application/json, text/event-stream"}
        if method == "POST":
            sent["content-type"] = "application/json"
        if token is not None:
            sent["authorization"] = f"Bearer {token}"
        if self.session_id is not None:
            sent["mcp-session-id"] = self.session_id
            sent["mcp-protocol-version"] = self.protocol_version
        sent.update(self.extra_headers)
        sent.update(headers or {})
        path = "/" + (self.path if self.path is not None else mcp_settings.PATH).strip("/")
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "root_path": "",
            "query_string": b"",
            "client": ("127.0.0.1", 50000),
            "server": (self.host, 80),
            "headers": [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in sent.items() if v != ""],
        }
        events: list[dict[str, Any]] = []
        complete = asyncio.Event()
        bodies = [{"type": "http.request", "body": body, "more_body": False}]

        async def receive() -> dict[str, Any]:
            if bodies:
                return bodies.pop()
            # A client stays connected until it has read the answer; after that the application returns
            # on its own. (Sending http.disconnect here would cancel a handler still cleaning up.)
            await asyncio.Event().wait()
            raise AssertionError("unreachable")

        async def send(event: dict[str, Any]) -> None:
            events.append(event)
            if event["type"] == "http.response.body" and not event.get("more_body", False):
                complete.set()

        call = asyncio.ensure_future(self.app(scope, receive, send))
        answered = asyncio.ensure_future(complete.wait())
        # Until the answer ends, or the application returns (or raises) without ending it.
        await asyncio.wait({call, answered}, timeout=self.timeout, return_when=asyncio.FIRST_COMPLETED)
        answered.cancel()
        if not complete.is_set():
            if not call.done():
                call.cancel()
                await asyncio.gather(call, return_exceptions=True)
                raise TimeoutError(
                    f"{method} {path}: no complete answer within {self.timeout:g} s "
                    f"(MCPTestClient(timeout=...)); got {len(events)} ASGI events"
                )
            call.result()  # the application's exception, if it raised one
            raise AssertionError(
                f"{method} {path}: the application returned without a complete answer ({len(events)} ASGI events)"
            )
        await asyncio.wait_for(call, self.timeout)  # the application's clean-up after its answer
        start = next(e for e in events if e["type"] == "http.response.start")
        response_headers: dict[str, str] = {}
        for name, value in start.get("headers", []):
            response_headers.setdefault(name.decode("latin-1").lower(), value.decode("latin-1"))
        data = b"".join(e.get("body", b"") for e in events if e["type"] == "http.response.body")
        response = MCPResponse(status=start["status"], headers=response_headers, body=data)
        if response.streamed:
            response.messages = _parse_sse(data)
        elif data and response_headers.get("content-type", "").startswith("application/json"):
            payload = json.loads(data)
            response.messages = payload if isinstance(payload, list) else [payload]
        return response

    async def send(self, message: Any, *, headers: dict[str, str] | None = None) -> MCPResponse:
        """POST one JSON-RPC message (or a batch, or any JSON to test bad input) and return the answer.

        Notifications and requests the server sent on an SSE answer are recorded in :attr:`notifications`
        and :attr:`server_requests`; the answer's ``messages`` still hold every message received. ``headers``
        as for :meth:`http`.
        """
        response = await self.http("POST", json.dumps(message).encode(), headers)
        for item in response.messages:
            if "method" in item and "id" in item:
                self.server_requests.append(item)
            elif "method" in item:
                self.notifications.append(item)
        return response

    # -- JSON-RPC ----------------------------------------------------------------------------------------
    async def request(self, method: str, params: dict[str, Any] | None = None) -> Any:
        """Send a request and return its ``result``.

        Raises :class:`MCPResponseError` when the answer is a JSON-RPC error (its code, message and data,
        and the HTTP status) or holds no answer to this request.
        """
        request_id = next(self._ids)
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
        headers: dict[str, str] = {}
        if self.modern:
            params = {**(params or {}), "_meta": {**self._modern_meta(), **((params or {}).get("_meta") or {})}}
            headers = self._modern_headers(method, params)
        if params is not None:
            message["params"] = params
        response = await self.send(message, headers=headers)
        for item in response.messages:
            if "method" in item or item.get("id") not in (request_id, None):
                continue
            if "error" in item:
                error = item["error"]
                raise MCPResponseError(response.status, error.get("code"), error.get("message", ""), error.get("data"), response)
            if item.get("id") == request_id and "result" in item:
                return item["result"]
        raise MCPResponseError(
            response.status,
            None,
            f"no answer to {method} (id {request_id}) in the response: {response.body[:300]!r}",
            response=response,
        )

    def _modern_meta(self) -> dict[str, Any]:
        return {
            "io.modelcontextprotocol/protocolVersion": self.protocol_version,
            "io.modelcontextprotocol/clientCapabilities": self.capabilities,
            "io.modelcontextprotocol/clientInfo": CLIENT_INFO,
        }

    def _modern_headers(self, method: str, params: dict[str, Any]) -> dict[str, str]:
        headers = {"mcp-protocol-version": self.protocol_version, "mcp-method": method}
        name = params.get("uri") if method == "resources/read" else params.get("name")
        if method in ("tools/call", "prompts/get", "resources/read") and isinstance(name, str):
            headers["mcp-name"] = _header_value(name)
        return headers

    async def _with_input(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """``method`` (tools/call, prompts/get, resources/read); in the modern era an ``InputRequiredResult`` is
        answered with :attr:`answer` and the request retried, until a complete result."""
        result = await self.request(method, params)
        for _ in range(MAX_INPUT_ROUNDS):
            if not (self.modern and self.answer is not None and result.get("resultType") == "input_required"):
                return result
            responses = {}
            for key, asked in (result.get("inputRequests") or {}).items():
                answer = self.answer(asked["method"], asked.get("params") or {})
                responses[key] = await answer if inspect.isawaitable(answer) else answer
            retry = {**params, "inputResponses": responses}
            if "requestState" in result:
                retry["requestState"] = result["requestState"]
            result = await self.request(method, retry)
        raise MCPResponseError(200, None, f"{method}: still asking for input after {MAX_INPUT_ROUNDS} rounds")

    async def notify(self, method: str, params: dict[str, Any] | None = None) -> None:
        """Send a notification; raises :class:`MCPResponseError` unless it is accepted (202)."""
        message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            message["params"] = params
        response = await self.send(message)
        if response.status != 202:
            error = response.messages[0].get("error", {}) if response.messages else {}
            raise MCPResponseError(
                response.status,
                error.get("code"),
                error.get("message") or f"{method} was not accepted: {response.body[:300]!r}",
                error.get("data"),
                response,
            )

    async def initialize(self, capabilities: dict[str, Any] | None = None) -> dict[str, Any]:
        """Start a session: ``initialize``, then ``notifications/initialized``; returns the initialize result.

        Keeps the ``Mcp-Session-Id`` and the negotiated protocol version for the following requests. In the
        modern era there is no session: this sends ``server/discover`` and returns its result.
        """
        if capabilities is not None:
            self.capabilities = dict(capabilities)
        if self.modern:
            self.server_info = await self.request("server/discover")
            return self.server_info
        self.session_id = None
        response = await self.send(
            {
                "jsonrpc": "2.0",
                "id": next(self._ids),
                "method": "initialize",
                "params": {
                    "protocolVersion": self.protocol_version,
                    "capabilities": self.capabilities,
                    "clientInfo": CLIENT_INFO,
                },
            }
        )
        answer = response.messages[0] if response.messages else {}
        if "result" not in answer:
            error = answer.get("error", {})
            raise MCPResponseError(
                response.status,
                error.get("code"),
                error.get("message") or f"initialize failed: {response.body[:300]!r}",
                error.get("data"),
                response,
            )
        self.session_id = response.headers.get("mcp-session-id")
        self.protocol_version = answer["result"]["protocolVersion"]
        self.server_info = answer["result"]
        await self.notify("notifications/initialized")
        return answer["result"]

    async def close(self) -> int | None:
        """End the session with DELETE; returns its HTTP status (None when there was no session)."""
        if self.session_id is None:
            return None
        response = await self.http("DELETE")
        self.session_id = None
        return response.status

    async def __aenter__(self) -> MCPTestClient:
        """Initialize a session (unless one was given as ``session_id``; modern era: ``server/discover``)."""
        if self.session_id is None or self.modern:
            await self.initialize()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.close()

    # -- MCP methods ----------------------------------------------------------------------------------------
    async def list_tools(self, cursor: str | None = None) -> dict[str, Any]:
        """``tools/list``: the result (``tools`` and, when there are more pages, ``nextCursor``)."""
        return await self.request("tools/list", {"cursor": cursor} if cursor else None)

    async def call_tool(
        self, name: str, arguments: dict[str, Any] | None = None, *, progress_token: str | int | None = None
    ) -> dict[str, Any]:
        """``tools/call``: the result (``content``, ``isError``...). A tool that fails answers a result with
        ``isError: true``; an unknown tool or bad arguments raise :class:`MCPResponseError` (-32602).
        With ``progress_token``, the tool's progress notifications arrive in :attr:`notifications`."""
        params: dict[str, Any] = {"name": name, "arguments": arguments or {}}
        if progress_token is not None:
            params["_meta"] = {"progressToken": progress_token}
        return await self._with_input("tools/call", params)

    async def list_resources(self, cursor: str | None = None) -> dict[str, Any]:
        """``resources/list``: the result (``resources``, maybe ``nextCursor``)."""
        return await self.request("resources/list", {"cursor": cursor} if cursor else None)

    async def read_resource(self, uri: str) -> dict[str, Any]:
        """``resources/read``: the result (``contents``)."""
        return await self._with_input("resources/read", {"uri": uri})

    async def list_prompts(self, cursor: str | None = None) -> dict[str, Any]:
        """``prompts/list``: the result (``prompts``, maybe ``nextCursor``)."""
        return await self.request("prompts/list", {"cursor": cursor} if cursor else None)

    async def get_prompt(self, name: str, arguments: dict[str, str] | None = None) -> dict[str, Any]:
        """``prompts/get``: the result (``messages``, maybe ``description``)."""
        return await self._with_input("prompts/get", {"name": name, "arguments": arguments or {}})


def _header_value(value: str) -> str:
    """A header value as the 2026-07-28 revision encodes it: as is when it is visible ASCII without leading or
    trailing spaces, else ``=?base64?<Base64 of UTF-8>?=``."""
    if value and value.isascii() and value.isprintable() and value == value.strip():
        return value
    return f"=?base64?{base64.b64encode(value.encode()).decode()}?="
