"""The MCP conversation: the method table, one request in, one JSON-RPC response out, and everything else
a client sends.

Transports parse HTTP into JSON values and hand them here: :meth:`Dispatcher.take` acts on the client's
notifications (cancellation included) and its answers to our requests (sampling, elicitation, roots), and
returns the requests to run; :meth:`Dispatcher.context` builds each request's context (the one way to build
one); :meth:`Dispatcher.handle_request` validates params, answers ``initialize`` (negotiating the version
and recording it on the session), calls the :class:`~mcp_app.protocol.provider.Provider`, and turns every
exception into a JSON-RPC error in one place. What cannot be settled in this process (an answer or a
cancellation for a request running on another worker) goes to the :class:`Relay` the dispatcher was given.
It has no Django imports.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from . import jsonrpc, versions
from .context import LOG_LEVELS, CloseStream, PendingClientRequests, RequestContext, Send, SessionState
from .envelope import META_SERVER_INFO, check_param_headers
from .errors import (
    INVALID_PARAMS,
    RESOURCE_NOT_FOUND,
    InputRequired,
    InternalError,
    InvalidParams,
    McpError,
    MethodNotFound,
    RequestCancelled,
)
from .messages import INITIALIZE
from .pagination import CursorCodec
from .provider import CacheHint, Provider
from .request_state import MRTR_METHODS, InputRound, RequestStateCodec, StateBinding, read_input_responses
from .versions import Era

logger = logging.getLogger("mcp_app.protocol")

# The seed tutorial (and a few early clients) used camelCase method names; say what the protocol calls them.
_RENAMED_METHODS = {
    "listTools": "tools/list",
    "callTool": "tools/call",
    "listResources": "resources/list",
    "readResource": "resources/read",
    "listPrompts": "prompts/list",
    "getPrompt": "prompts/get",
}

Handler = Callable[[dict[str, Any], RequestContext], Awaitable[dict[str, Any]]]
CANCELLED = "notifications/cancelled"
DISCOVER = "server/discover"
# Handshake-era methods the 2026-07-28 revision removed (Streamable HTTP › Protocol Version Header): the
# modern table lacks them, so they answer -32601 (HTTP 404) there.
_REMOVED_IN_MODERN = frozenset({INITIALIZE, "ping", "logging/setLevel", "resources/subscribe", "resources/unsubscribe"})
# Results that carry caching hints in the modern era (Server › Utilities › Caching).
CACHEABLE_METHODS = frozenset(
    {DISCOVER, "tools/list", "prompts/list", "resources/list", "resources/templates/list", "resources/read"}
)


class Relay(Protocol):
    """Reaches the other processes serving the same sessions (a bus): what the dispatcher cannot settle here.

    Both are fire-and-forget: a message nobody is waiting for anywhere is dropped by whoever receives it.
    """

    async def response(self, session_id: str, response: jsonrpc.Response) -> None:
        """A client's answer to a request to the client that no handler in this process waits for."""

    async def cancel(self, session_id: str, request_id: str | int) -> None:
        """A ``notifications/cancelled`` for a request that does not run in this process."""


def _string_param(params: dict[str, Any], name: str, method: str) -> str:
    value = params.get(name)
    if not isinstance(value, str) or not value:
        raise InvalidParams(f"{method} needs params.{name} as a non-empty string.")
    return value


def _object_param(params: dict[str, Any], name: str, method: str) -> dict[str, Any]:
    value = params.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidParams(f"{method}: params.{name} must be an object.")
    return value


class Dispatcher:
    """Routes MCP requests to a provider.

    ``server_info`` is the Implementation object sent at initialize; ``page_size`` bounds every list;
    ``cursor_codec`` signs list cursors. ``pending`` holds the futures of this process's requests to the
    client (a new one by default); ``client_request_timeout`` bounds the wait for their answers (seconds);
    ``relay`` reaches the other processes (None: a single process, nothing to forward).
    """

    def __init__(
        self,
        provider: Provider,
        *,
        server_info: dict[str, Any],
        cursor_codec: CursorCodec,
        instructions: str | None = None,
        page_size: int = 100,
        pending: PendingClientRequests | None = None,
        client_request_timeout: float = 300.0,
        relay: Relay | None = None,
        request_state: RequestStateCodec | None = None,
    ) -> None:
        self.provider = provider
        #: Seals and opens the ``requestState`` of multi round-trip requests (modern era). Every worker must
        #: share its key (the runtime derives one from SECRET_KEY); the default, a random key, suits one process.
        self.request_state = request_state if request_state is not None else RequestStateCodec(secrets.token_bytes(32))
        self.server_info = server_info
        self.instructions = instructions
        self.page_size = page_size
        self.cursors = cursor_codec
        self.pending = pending if pending is not None else PendingClientRequests()
        self.client_request_timeout = client_request_timeout
        self.relay = relay
        # (session id, request id) -> contexts of requests still running here, for notifications/cancelled.
        self._in_flight: dict[tuple[str, str | int], list[tuple[asyncio.Task[Any], RequestContext]]] = {}
        self._methods: dict[str, Handler] = {
            INITIALIZE: self._initialize,
            "ping": self._ping,
            "tools/list": self._tools_list,
            "tools/call": self._tools_call,
            "resources/list": self._resources_list,
            "resources/templates/list": self._resource_templates_list,
            "resources/read": self._resources_read,
            "resources/subscribe": self._resources_subscribe,
            "resources/unsubscribe": self._resources_unsubscribe,
            "prompts/list": self._prompts_list,
            "prompts/get": self._prompts_get,
            "completion/complete": self._complete,
            "logging/setLevel": self._set_level,
        }
        #: The modern era's method table (2026-07-28 on): the handshake table without the removed methods,
        #: plus ``server/discover``. Other layers add methods here (``subscriptions/listen``); a method absent
        #: from it answers -32601 with HTTP 404 in the modern era.
        self.modern_methods: dict[str, Handler] = {
            name: handler for name, handler in self._methods.items() if name not in _REMOVED_IN_MODERN
        }
        self.modern_methods[DISCOVER] = self._discover

    def methods_for(self, era: Era) -> dict[str, Handler]:
        """The method table of ``era`` (the modern one is :attr:`modern_methods`)."""
        return self.modern_methods if era is Era.MODERN else self._methods

    # -- initialize ---------------------------------------------------------------------------------
    def capabilities(self, version: str) -> dict[str, Any]:
        caps: dict[str, Any] = {
            "logging": {},
            "tools": {"listChanged": True},
            "resources": {"subscribe": True, "listChanged": True},
            "prompts": {"listChanged": True},
        }
        if versions.at_least(version, versions.V2025_03_26):
            caps["completions"] = {}
        return caps

    def _validate_initialize(self, params: dict[str, Any]) -> tuple[str, dict[str, Any], dict[str, Any]]:
        """Check initialize params; return (negotiated version, clientInfo, client capabilities)."""
        requested = params.get("protocolVersion")
        if not isinstance(requested, str):
            raise InvalidParams('initialize needs params.protocolVersion, for example "2025-11-25".')
        client_info = params.get("clientInfo", {})
        capabilities = params.get("capabilities", {})
        if not isinstance(client_info, dict):
            raise InvalidParams("initialize: params.clientInfo must be an object with name and version.")
        if not isinstance(capabilities, dict):
            raise InvalidParams("initialize: params.capabilities must be an object.")
        return versions.negotiate(requested), client_info, capabilities

    def initialize_result(self, version: str) -> dict[str, Any]:
        """The InitializeResult for a session of ``version``: capabilities, serverInfo, instructions."""
        result: dict[str, Any] = {
            "protocolVersion": version,
            "capabilities": self.capabilities(version),
            "serverInfo": versions.adapt("implementation", self.server_info, version),
        }
        if self.instructions:
            result["instructions"] = self.instructions
        return result

    def discover_result(self) -> dict[str, Any]:
        """The DiscoverResult body (modern era): every version served, newest first (auto clients pick the
        newest modern one and fall back to ``initialize`` when none is listed), capabilities, instructions.
        ``resultType``, ``serverInfo`` and the caching hints are added with every modern result's."""
        result: dict[str, Any] = {
            "supportedVersions": list(versions.ALL_VERSIONS),
            "capabilities": self.capabilities(versions.MODERN_VERSIONS[-1]),
        }
        if self.instructions:
            result["instructions"] = self.instructions
        return result

    async def _discover(self, params: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
        return self.discover_result()

    async def _initialize(self, params: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
        # Recorded before answering: a session whose negotiated version could not be kept is not answered
        # as if it had been (the session's own error is the answer).
        version, client_info, capabilities = self._validate_initialize(params)
        await ctx.session.record_initialize(version, client_info, capabilities)
        return self.initialize_result(version)

    # -- what the client sends ----------------------------------------------------------------------
    async def take(self, session: SessionState, items: list[Any]) -> tuple[list[jsonrpc.Request], list[dict[str, Any]]]:
        """Act on the client's answers and notifications among ``items`` (decoded JSON values, one POST's
        worth) in order, and return the requests still to run, plus error answers for the items that are
        not JSON-RPC messages."""
        requests: list[jsonrpc.Request] = []
        errors: list[dict[str, Any]] = []
        for item in items:
            try:
                message = jsonrpc.parse_message(item)
            except jsonrpc.InvalidMessage as exc:
                errors.append(jsonrpc.error_response(exc.request_id, exc.to_error()))
                continue
            if isinstance(message, jsonrpc.Request):
                requests.append(message)
            elif isinstance(message, jsonrpc.Response):
                await self.handle_response(session.id, message)
            else:
                await self.handle_notification(message, session)
        return requests, errors

    async def handle_response(self, session_id: str, response: jsonrpc.Response) -> None:
        """Give a client's answer to the handler waiting for it, in this process or (through the relay)
        another."""
        if not self.pending.resolve(session_id, response) and self.relay is not None:
            await self.relay.response(session_id, response)

    def context(
        self,
        session: SessionState,
        request_id: str | int | None,
        *,
        send: Send,
        meta: dict[str, Any] | None = None,
        extra: dict[str, Any] | None = None,
        close_stream: CloseStream | None = None,
    ) -> RequestContext:
        """The context of one request on ``session``: the one way to build a :class:`RequestContext`.

        ``send`` carries what the handler emits (notifications, requests to the client); ``meta`` is the
        request's ``_meta``; ``extra`` what the transport or site adds (the Django user, the HTTP scope,
        ``via``); ``close_stream`` ends the connection carrying the request's stream, where that is
        possible. The dispatcher supplies the rest: pending client requests, their timeout, the cursor codec.
        """
        return RequestContext(
            session=session,
            request_id=request_id,
            meta=meta,
            send=send,
            pending=self.pending,
            client_request_timeout=self.client_request_timeout,
            extra=extra,
            close_stream=close_stream,
            cursors=self.cursors,
        )

    # -- requests -----------------------------------------------------------------------------------
    async def handle_request(self, request: jsonrpc.Request, ctx: RequestContext) -> dict[str, Any] | None:
        """Run one request and return its JSON-RPC response.

        Returns None when the client cancelled the request (the protocol says not to answer it).
        Never raises for a handler's failure: errors become JSON-RPC errors here and only here.
        """
        era = ctx.era
        handler = self.methods_for(era).get(request.method)
        if handler is None:
            return jsonrpc.error_response(request.id, self._unknown_method(request.method).to_error())
        if ctx.cursors is None:
            ctx.cursors = self.cursors
        key = (ctx.session.id, request.id)
        task = asyncio.current_task()
        # Modern requests have no session, and are cancelled by closing their stream, never by
        # notifications/cancelled: nothing to find them by.
        entry = (task, ctx) if task is not None and era is Era.HANDSHAKE else None
        if entry is not None:
            self._in_flight.setdefault(key, []).append(entry)
        try:
            if era is Era.MODERN:
                result = await self._run_round(request, handler, ctx)
                result = await self._finish_modern(request.method, request.params, result, ctx)
            else:
                result = await handler(request.params, ctx)
            return jsonrpc.response(request.id, result)
        except asyncio.CancelledError:
            if ctx.cancelled:
                return None
            raise
        except RequestCancelled:
            return None
        except McpError as exc:
            return jsonrpc.error_response(request.id, self._error_for(exc, era))
        except Exception:
            logger.exception("MCP request %s failed", request.method)
            return jsonrpc.error_response(
                request.id,
                {"code": -32603, "message": f"Internal error while handling {request.method}; the server logged the details."},
            )
        finally:
            if entry is not None:
                entries = self._in_flight.get(key, [])
                if entry in entries:
                    entries.remove(entry)
                if not entries:
                    self._in_flight.pop(key, None)

    async def _run_round(self, request: jsonrpc.Request, handler: Handler, ctx: RequestContext) -> dict[str, Any]:
        """Run a modern request's handler as one round of a multi round-trip request (MCP 2026-07-28,
        *Basic › Patterns › Multi Round-Trip Requests*).

        On ``tools/call``, ``prompts/get`` and ``resources/read``: a ``requestState`` is verified before the
        handler runs (a bad one is -32602 with ``data.reason``, and nothing runs), and ``inputResponses`` is
        checked to be an object of objects; the handler's ``ctx.elicit()``/``sample()``/``list_roots()`` find
        the answers there. When it still needs input, the answer is an ``InputRequiredResult`` with every
        input it asked for and a new state carrying the answers so far, bound to the caller
        (``ctx.extra["principal"]``), this method and these params. On any other method asking for input
        is a server bug: an internal error.
        """
        if request.method not in MRTR_METHODS:
            try:
                return await handler(request.params, ctx)
            except InputRequired:
                logger.error("MCP request %s asked the client for input, which only %s can", request.method, MRTR_METHODS)
                raise InternalError(
                    f"Internal error while handling {request.method}: it cannot ask the client for input."
                ) from None

        # The binding (a digest of the params) only when a state is opened or sealed: most calls need neither.
        def binding() -> StateBinding:
            return StateBinding.of(str(ctx.extra.get("principal", "")), request.method, request.params)

        known = self.request_state.open(request.params["requestState"], binding()) if "requestState" in request.params else {}
        ctx.input_round = InputRound(known, read_input_responses(request.params))
        try:
            return await handler(request.params, ctx)
        except InputRequired as exc:
            return {
                "resultType": "input_required",
                "inputRequests": exc.input_requests,
                "requestState": self.request_state.seal(binding(), ctx.input_round.answers_to_keep()),
            }

    async def _finish_modern(
        self, method: str, params: dict[str, Any], result: dict[str, Any], ctx: RequestContext
    ) -> dict[str, Any]:
        """What every modern result carries: ``resultType``, ``serverInfo`` in ``_meta`` and, on the
        cacheable methods' complete results, ``ttlMs``/``cacheScope`` (asked of the provider)."""
        result = dict(result)
        result.setdefault("resultType", "complete")
        meta = dict(result.get("_meta") or {})
        meta.setdefault(META_SERVER_INFO, self.server_info)
        result["_meta"] = meta
        if method in CACHEABLE_METHODS and result["resultType"] == "complete":
            hint = await self.cache_hint(method, params, ctx)
            result.setdefault("ttlMs", hint.ttl_ms)
            result.setdefault("cacheScope", hint.scope)
        return result

    async def cache_hint(self, method: str, params: dict[str, Any], ctx: RequestContext) -> CacheHint:
        """The caching hint of a cacheable result: ``server/discover`` is the same for every caller (public,
        TTL 0); the rest are the provider's to say (it knows whether its lists vary by caller)."""
        if method == DISCOVER:
            return CacheHint(0, "public")
        if "requestState" in params or "inputResponses" in params:
            # The final result of a multi round-trip request depends on this caller's answers: stale at once,
            # for this caller only (the fields stay: ReadResourceResult requires them).
            return CacheHint(0, "private")
        uri = params.get("uri") if method == "resources/read" else None
        return await self.provider.cache_hint(method, ctx, uri=uri if isinstance(uri, str) else None)

    @staticmethod
    def _error_for(exc: McpError, era: Era) -> dict[str, Any]:
        """The JSON-RPC error of ``exc`` in ``era``: an unknown resource is -32002 in the handshake era and
        -32602 (with ``data.uri``) in the modern one (Resources › Error Handling, 2026-07-28)."""
        error = exc.to_error()
        if era is Era.MODERN and error["code"] == RESOURCE_NOT_FOUND:
            error["code"] = INVALID_PARAMS
        return error

    def _unknown_method(self, method: str) -> MethodNotFound:
        if method in _RENAMED_METHODS:
            return MethodNotFound(
                f"Method not found: '{method}'. MCP method names are slash-separated: use '{_RENAMED_METHODS[method]}'."
            )
        return MethodNotFound(f"Method not found: '{method}' is not an MCP method this server offers.")

    async def handle_notification(self, notification: jsonrpc.Notification, session: SessionState) -> None:
        """Act on a client notification; unknown notifications are ignored, as JSON-RPC asks.

        ``notifications/cancelled`` cancels the request wherever it runs: here, or through the relay.
        """
        if notification.method == CANCELLED:
            request_id = notification.params.get("requestId")
            if isinstance(request_id, (str, int)) and not self.cancel(session.id, request_id) and self.relay is not None:
                await self.relay.cancel(session.id, request_id)

    def cancel(self, session_id: str, request_id: str | int) -> bool:
        """Cancel a request running in this process; False when it is not running here."""
        entries = self._in_flight.get((session_id, request_id))
        if not entries:
            return False
        for task, ctx in list(entries):
            ctx.cancel()
            task.cancel()
        return True

    # -- method handlers ----------------------------------------------------------------------------
    async def _ping(self, params: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
        return {}

    def _page(self, items: list[dict[str, Any]], params: dict[str, Any], key: str) -> dict[str, Any]:
        page, next_cursor = self.cursors.paginate(items, params.get("cursor"), self.page_size, kind=key)
        result: dict[str, Any] = {key: page}
        if next_cursor:
            result["nextCursor"] = next_cursor
        return result

    async def _tools_list(self, params: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
        version = ctx.session.protocol_version
        tools = [versions.adapt("tool", tool, version) for tool in await self.provider.list_tools(ctx)]
        return self._page(tools, params, "tools")

    async def _tools_call(self, params: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
        name = _string_param(params, "name", "tools/call")
        arguments = _object_param(params, "arguments", "tools/call")
        headers = getattr(ctx.session, "headers", None) if ctx.era is Era.MODERN else None
        if headers is not None:
            # Rung 6: arguments the tool mirrors into Mcp-Param-* headers must agree with them (-32020, 400),
            # before anything runs. An unknown tool has no schema: call_tool refuses it below.
            schema = await self.provider.tool_input_schema(name, ctx)
            if schema:
                check_param_headers(schema, arguments, headers)
        result = await self.provider.call_tool(name, arguments, ctx)
        version = ctx.session.protocol_version
        result = versions.adapt("tool_result", result, version)
        content = result.get("content", [])
        if any(not versions.content_allowed(block, version) for block in content):
            result = {**result, "content": [b for b in content if versions.content_allowed(b, version)]}
        return result

    async def _resources_list(self, params: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
        # Paged by the provider (model rows are never all loaded); the dispatcher only signs positions.
        position = None
        if params.get("cursor") is not None:
            state = self.cursors.decode(params["cursor"])
            if state.get("k") != "resources" or "p" not in state:
                raise InvalidParams("Invalid cursor: this cursor does not belong to resources.")
            position = state["p"]
        items, following = await self.provider.list_resources_page(ctx, position, self.page_size)
        version = ctx.session.protocol_version
        result: dict[str, Any] = {"resources": [versions.adapt("resource", r, version) for r in items]}
        if following is not None:
            result["nextCursor"] = self.cursors.encode({"k": "resources", "p": following})
        return result

    async def _resource_templates_list(self, params: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
        version = ctx.session.protocol_version
        templates = [versions.adapt("resource", t, version) for t in await self.provider.list_resource_templates(ctx)]
        return self._page(templates, params, "resourceTemplates")

    async def _resources_read(self, params: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
        uri = _string_param(params, "uri", "resources/read")
        return {"contents": await self.provider.read_resource(uri, ctx)}

    async def _resources_subscribe(self, params: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
        uri = _string_param(params, "uri", "resources/subscribe")
        await self.provider.check_subscription(uri, ctx)  # unknown or unreadable: the same -32002 as a read
        await ctx.session.subscribe(uri)
        return {}

    async def _resources_unsubscribe(self, params: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
        await ctx.session.unsubscribe(_string_param(params, "uri", "resources/unsubscribe"))
        return {}

    async def _prompts_list(self, params: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
        version = ctx.session.protocol_version
        prompts = [versions.adapt("prompt", p, version) for p in await self.provider.list_prompts(ctx)]
        return self._page(prompts, params, "prompts")

    async def _prompts_get(self, params: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
        name = _string_param(params, "name", "prompts/get")
        arguments = _object_param(params, "arguments", "prompts/get")
        bad = [key for key, value in arguments.items() if not isinstance(value, str)]
        if bad:
            raise InvalidParams(f"prompts/get: prompt arguments are strings; {', '.join(sorted(bad))} is not.")
        return await self.provider.get_prompt(name, arguments, ctx)

    async def _complete(self, params: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
        ref = _object_param(params, "ref", "completion/complete")
        argument = _object_param(params, "argument", "completion/complete")
        if ref.get("type") not in ("ref/prompt", "ref/resource"):
            raise InvalidParams('completion/complete: params.ref.type must be "ref/prompt" or "ref/resource".')
        if not isinstance(argument.get("name"), str) or not isinstance(argument.get("value", ""), str):
            raise InvalidParams("completion/complete: params.argument needs a string name and a string value.")
        context = _object_param(params, "context", "completion/complete")
        values = await self.provider.complete(ref, argument, context, ctx)
        # The protocol caps a completion answer at 100 values.
        return {"completion": {"values": values[:100], "total": len(values), "hasMore": len(values) > 100}}

    async def _set_level(self, params: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
        level = params.get("level")
        if level not in LOG_LEVELS:
            raise InvalidParams(f"logging/setLevel: params.level must be one of {', '.join(LOG_LEVELS)}.")
        await ctx.session.set_log_level(level)
        return {}
