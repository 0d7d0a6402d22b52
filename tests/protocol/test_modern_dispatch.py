"""The modern era's method table (MCP 2026-07-28) against a code registry, in memory, without HTTP.

The context's session is the request's :class:`~mcp_app.protocol.envelope.Envelope`: no session exists.
Every result is validated against the official SDK's 2026-07-28 wire models.
"""

from __future__ import annotations

from typing import Annotated, Any

import pytest
from pydantic import Field

from mcp_app import Context
from mcp_app.permissions import AllowAny
from mcp_app.protocol import jsonrpc
from mcp_app.protocol.context import MemorySession, PendingClientRequests, RequestContext
from mcp_app.protocol.dispatcher import Dispatcher
from mcp_app.protocol.envelope import META_SERVER_INFO, Envelope, Headers
from mcp_app.protocol.pagination import CursorCodec
from mcp_app.protocol.provider import Provider
from mcp_app.protocol.versions import ALL_VERSIONS, Era
from tests.protocol.test_dispatcher import RESULT_DEFS as HANDSHAKE_RESULT_DEFS
from tests.protocol.test_dispatcher import make_registry
from tests.wire import assert_valid

V = "2026-07-28"
# The handshake era's result types, without initialize (gone in 2026-07-28), plus server/discover.
RESULT_DEFS = {**{m: d for m, d in HANDSHAKE_RESULT_DEFS.items() if m != "initialize"}, "server/discover": "DiscoverResult"}
CACHEABLE = {"server/discover", "tools/list", "prompts/list", "resources/list", "resources/templates/list", "resources/read"}
SERVER_INFO = {"name": "test", "version": "1", "title": "Test"}


def make_dispatcher(registry: Any = None) -> Dispatcher:
    registry = registry or make_registry()

    @registry.tool()
    async def chatty(ctx: Context) -> str:
        """Logs at every level."""
        await ctx.debug("d")
        await ctx.info("i")
        await ctx.error("e")
        return "ok"

    @registry.tool()
    async def asks(ctx: Context) -> str:
        """Needs sampling."""
        await ctx.sample([{"role": "user", "content": {"type": "text", "text": "hi"}}], max_tokens=5)
        return "sampled"

    return Dispatcher(
        registry, server_info=SERVER_INFO, cursor_codec=CursorCodec(b"x" * 32), page_size=3, instructions="Be nice."
    )


@pytest.fixture
def dispatcher() -> Dispatcher:
    return make_dispatcher()


async def call(
    dispatcher: Dispatcher,
    method: str,
    params: dict[str, Any] | None = None,
    *,
    capabilities: dict[str, Any] | None = None,
    log_level: str | None = None,
    sent: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    envelope = Envelope(V, capabilities or {}, {"name": "client", "version": "0"}, log_level, Headers())

    async def send(message: dict[str, Any]) -> None:
        if sent is not None:
            sent.append(message)

    ctx = RequestContext(session=envelope, request_id=5, meta=None, send=send, pending=PendingClientRequests())
    assert ctx.era is Era.MODERN
    answer = await dispatcher.handle_request(jsonrpc.Request(5, method, params or {}), ctx)
    assert answer is not None and answer["id"] == 5
    if "result" in answer:
        assert_valid(answer["result"], RESULT_DEFS[method], V)
    return answer


async def test_discover(dispatcher: Dispatcher) -> None:
    result = (await call(dispatcher, "server/discover"))["result"]
    assert result["supportedVersions"] == list(ALL_VERSIONS) and result["supportedVersions"][0] == V
    assert set(result["capabilities"]) == {"tools", "prompts", "resources", "completions", "logging"}
    assert "tasks" not in result["capabilities"]
    assert result["instructions"] == "Be nice."
    assert (result["ttlMs"], result["cacheScope"], result["resultType"]) == (0, "public", "complete")
    assert result["_meta"][META_SERVER_INFO] == SERVER_INFO


@pytest.mark.parametrize("method", ["initialize", "ping", "logging/setLevel", "resources/subscribe", "resources/unsubscribe"])
async def test_removed_methods(dispatcher: Dispatcher, method: str) -> None:
    assert method not in dispatcher.methods_for(Era.MODERN)
    assert method in dispatcher.methods_for(Era.HANDSHAKE)
    answer = await call(dispatcher, method, {"uri": "demo://readme", "level": "info", "protocolVersion": V})
    assert answer["error"]["code"] == -32601


async def test_discover_is_not_a_handshake_method(dispatcher: Dispatcher) -> None:
    ctx = RequestContext(session=MemorySession(), request_id=1, meta=None, send=_drop, pending=PendingClientRequests())
    answer = await dispatcher.handle_request(jsonrpc.Request(1, "server/discover", {}), ctx)
    assert answer is not None and answer["error"]["code"] == -32601


async def _drop(message: dict[str, Any]) -> None:
    pass


@pytest.mark.parametrize(
    ("method", "params"),
    [
        ("tools/list", {}),
        ("tools/call", {"name": "add", "arguments": {"a": 1}}),
        ("resources/list", {}),
        ("resources/templates/list", {}),
        ("resources/read", {"uri": "demo://readme"}),
        ("prompts/list", {}),
        ("prompts/get", {"name": "essay", "arguments": {"topic": "cats"}}),
        ("completion/complete", {"ref": {"type": "ref/prompt", "name": "essay"}, "argument": {"name": "topic", "value": "c"}}),
    ],
)
async def test_every_result_has_result_type_server_info_and_hints_where_cacheable(
    dispatcher: Dispatcher, method: str, params: dict[str, Any]
) -> None:
    result = (await call(dispatcher, method, params))["result"]
    assert result["resultType"] == "complete"
    assert result["_meta"][META_SERVER_INFO] == SERVER_INFO
    assert ("ttlMs" in result) == ("cacheScope" in result) == (method in CACHEABLE)


async def test_every_page_of_a_list_has_the_same_scope(dispatcher: Dispatcher) -> None:
    scopes, cursor, names = set(), None, []
    while True:
        result = (await call(dispatcher, "tools/list", {"cursor": cursor} if cursor else {}))["result"]
        scopes.add(result["cacheScope"])
        names += [t["name"] for t in result["tools"]]
        cursor = result.get("nextCursor")
        if not cursor:
            break
    assert len(names) > 3 and len(scopes) == 1


async def test_tool_execution_field_is_dropped() -> None:
    class Tasky(Provider):
        async def list_tools(self, ctx: RequestContext) -> list[dict[str, Any]]:
            schema = {"type": "object"}
            return [{"name": "tasky", "inputSchema": schema, "execution": {"taskSupport": "optional"}}]

    dispatcher = Dispatcher(Tasky(), server_info=SERVER_INFO, cursor_codec=CursorCodec(b"x" * 32))
    assert "execution" not in (await call(dispatcher, "tools/list"))["result"]["tools"][0]
    # 2025-11-25 sessions keep it (it was added there).
    ctx = RequestContext(session=MemorySession(), request_id=1, meta=None, send=_drop, pending=PendingClientRequests())
    legacy = await dispatcher.handle_request(jsonrpc.Request(1, "tools/list", {}), ctx)
    assert legacy is not None and "execution" in legacy["result"]["tools"][0]


async def test_unknown_resource_is_invalid_params(dispatcher: Dispatcher) -> None:
    error = (await call(dispatcher, "resources/read", {"uri": "demo://missing"}))["error"]
    assert error["code"] == -32602 and error["data"] == {"uri": "demo://missing"}
    # The handshake era keeps -32002.
    ctx = RequestContext(session=MemorySession(), request_id=1, meta=None, send=_drop, pending=PendingClientRequests())
    legacy = await dispatcher.handle_request(jsonrpc.Request(1, "resources/read", {"uri": "demo://missing"}), ctx)
    assert legacy is not None and legacy["error"]["code"] == -32002


async def test_input_validation_errors_are_tool_results(dispatcher: Dispatcher) -> None:
    result = (await call(dispatcher, "tools/call", {"name": "add", "arguments": {"a": "x"}}))["result"]
    assert result["isError"] is True


async def test_log_level_is_per_request(dispatcher: Dispatcher) -> None:
    silent: list[dict[str, Any]] = []
    await call(dispatcher, "tools/call", {"name": "chatty"}, sent=silent)
    assert silent == []  # no logLevel in _meta: no notifications/message at all
    some: list[dict[str, Any]] = []
    await call(dispatcher, "tools/call", {"name": "chatty"}, log_level="info", sent=some)
    assert [m["params"]["level"] for m in some if m["method"] == "notifications/message"] == ["info", "error"]


async def test_undeclared_capability_is_32021(dispatcher: Dispatcher) -> None:
    error = (await call(dispatcher, "tools/call", {"name": "asks"}))["error"]
    assert error["code"] == -32021
    assert error["data"] == {"requiredCapabilities": {"sampling": {}}}


async def test_param_headers_are_checked_before_the_tool_runs() -> None:
    registry = make_registry()
    ran: list[str] = []

    @registry.tool()
    def regional(region: Annotated[str, Field(json_schema_extra={"x-mcp-header": "Region"})]) -> str:
        """Runs in a region."""
        ran.append(region)
        return region

    dispatcher = make_dispatcher(registry)

    async def call_with(headers: dict[str, str]) -> dict[str, Any]:
        envelope = Envelope(V, {}, {}, None, Headers.from_pairs(headers.items()))
        ctx = RequestContext(session=envelope, request_id=1, meta=None, send=_drop, pending=PendingClientRequests())
        params = {"name": "regional", "arguments": {"region": "eu"}}
        answer = await dispatcher.handle_request(jsonrpc.Request(1, "tools/call", params), ctx)
        assert answer is not None
        return answer

    assert (await call_with({"Mcp-Param-Region": "eu"}))["result"]["content"][0]["text"] == "eu"
    for bad in ({}, {"Mcp-Param-Region": "us"}, {"Mcp-Param-Region": "=?base64?ZXU?="}):
        assert (await call_with(bad))["error"]["code"] == -32020
    assert ran == ["eu"]  # refused calls never ran
    # The handshake era has no such headers and checks nothing.
    ctx = RequestContext(session=MemorySession(), request_id=1, meta=None, send=_drop, pending=PendingClientRequests())
    legacy = await dispatcher.handle_request(
        jsonrpc.Request(1, "tools/call", {"name": "regional", "arguments": {"region": "x"}}), ctx
    )
    assert legacy is not None and legacy["result"]["content"][0]["text"] == "x"


def test_tools_with_invalid_param_header_annotations_are_refused() -> None:
    registry = make_registry()
    with pytest.raises(ValueError, match="x-mcp-header"):

        @registry.tool()
        def bad(where: Annotated[dict, Field(json_schema_extra={"x-mcp-header": "Where"})]) -> str:
            """An object cannot travel in a header."""
            return "x"

    assert "bad" not in registry.tools


async def test_a_retried_requests_result_is_never_cached() -> None:
    registry = make_registry()

    @registry.resource("demo://public", cache_ttl_ms=9000, cache_scope="public", permission_classes=[AllowAny])
    def public() -> str:
        return "for everyone"

    dispatcher = make_dispatcher(registry)
    first = (await call(dispatcher, "resources/read", {"uri": "demo://public"}))["result"]
    assert (first["ttlMs"], first["cacheScope"]) == (9000, "public")
    retried = (await call(dispatcher, "resources/read", {"uri": "demo://public", "inputResponses": {}}))["result"]
    assert (retried["ttlMs"], retried["cacheScope"]) == (0, "private")
