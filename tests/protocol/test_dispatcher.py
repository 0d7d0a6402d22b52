"""The method table against a code registry, in memory, without HTTP or a database.

Every answer is validated against the official schema of the session's protocol version.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import pytest

from mcp_app import Context, Image, ResourceLink, ToolError
from mcp_app.protocol import jsonrpc
from mcp_app.protocol.context import MemorySession, PendingClientRequests, RequestContext
from mcp_app.protocol.dispatcher import Dispatcher
from mcp_app.protocol.pagination import CursorCodec
from mcp_app.providers.code import Registry
from tests.wire import assert_valid

VERSIONS = ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"]
RESULT_DEFS = {
    "tools/list": "ListToolsResult",
    "tools/call": "CallToolResult",
    "resources/list": "ListResourcesResult",
    "resources/templates/list": "ListResourceTemplatesResult",
    "resources/read": "ReadResourceResult",
    "prompts/list": "ListPromptsResult",
    "prompts/get": "GetPromptResult",
    "completion/complete": "CompleteResult",
    "initialize": "InitializeResult",
}


@dataclass
class Point:
    x: int
    y: int


def make_registry() -> Registry:
    registry = Registry()

    @registry.tool(title="Add", annotations={"readOnlyHint": True})
    def add(a: int, b: int = 1) -> int:
        """Add two numbers."""
        return a + b

    @registry.tool()
    async def point(x: int, y: int) -> Point:
        """Make a point."""
        return Point(x, y)

    @registry.tool()
    def fails() -> str:
        """Always fails with a message for the model."""
        raise ToolError("nope, try again")

    @registry.tool()
    def crashes() -> str:
        """Fails unexpectedly."""
        raise RuntimeError("secret database password=hunter2")

    @registry.tool()
    def picture() -> list:
        """An image and a link."""
        return [Image(b"\x89PNG", "image/png"), ResourceLink("demo://x", "x")]

    @registry.tool()
    async def slow(ctx: Context) -> str:
        """Waits until cancelled."""
        await asyncio.sleep(30)
        return "done"

    @registry.resource("demo://readme", mime_type="text/plain")
    def readme() -> str:
        """The readme."""
        return "hello"

    @registry.resource("demo://items/{item_id}", completions={"item_id": ["10", "11", "20"]})
    def item(item_id: int) -> dict[str, Any]:
        """One item."""
        return {"id": item_id}

    @registry.prompt(arguments={"topic": "What to write about"}, completions={"topic": ["cats", "cars", "dogs"]})
    def essay(topic: str, tone: str = "calm") -> str:
        """Write an essay."""
        return f"Write a {tone} essay about {topic}."

    return registry


@pytest.fixture
def dispatcher() -> Dispatcher:
    return Dispatcher(
        make_registry(),
        server_info={"name": "test", "version": "1", "title": "Test"},
        cursor_codec=CursorCodec(b"x" * 32),
        page_size=3,
    )


async def call(
    dispatcher: Dispatcher,
    method: str,
    params: dict[str, Any] | None = None,
    *,
    version: str = "2025-11-25",
    session: MemorySession | None = None,
    sent: list[dict[str, Any]] | None = None,
    request_id: int | str = 1,
) -> dict[str, Any]:
    session = session or MemorySession(protocol_version=version)

    async def send(message: dict[str, Any]) -> None:
        if sent is not None:
            sent.append(message)

    ctx = RequestContext(
        session=session, request_id=request_id, meta=(params or {}).get("_meta"), send=send, pending=PendingClientRequests()
    )
    answer = await dispatcher.handle_request(jsonrpc.Request(request_id, method, params or {}), ctx)
    assert answer is not None
    if "result" in answer and method in RESULT_DEFS:
        assert_valid(answer["result"], RESULT_DEFS[method], session.protocol_version)
    return answer


@pytest.mark.parametrize("version", VERSIONS)
def test_initialize_result_is_valid_per_version(dispatcher: Dispatcher, version: str) -> None:
    result = dispatcher.initialize_result(version)
    assert_valid(result, "InitializeResult", version)
    assert result["protocolVersion"] == version
    assert ("completions" in result["capabilities"]) == (version != "2024-11-05")
    assert ("title" in result["serverInfo"]) == (version >= "2025-06-18")


@pytest.mark.parametrize("version", VERSIONS)
async def test_lists_are_valid_and_paginated(dispatcher: Dispatcher, version: str) -> None:
    names, cursor = [], None
    for _ in range(5):
        answer = await call(dispatcher, "tools/list", {"cursor": cursor} if cursor else {}, version=version)
        names += [t["name"] for t in answer["result"]["tools"]]
        cursor = answer["result"].get("nextCursor")
        if cursor is None:
            break
    assert names == ["add", "point", "fails", "crashes", "picture", "slow"]
    for method in ("resources/list", "resources/templates/list", "prompts/list"):
        await call(dispatcher, method, version=version)


async def test_tool_schema_from_type_hints(dispatcher: Dispatcher) -> None:
    tools = await _all_tools(dispatcher)
    schema = tools["add"]["inputSchema"]
    assert schema["type"] == "object"
    assert schema["properties"]["a"]["type"] == "integer"
    assert schema["required"] == ["a"]
    assert tools["add"]["description"] == "Add two numbers."
    assert tools["add"]["annotations"] == {"readOnlyHint": True}
    assert tools["point"]["outputSchema"]["properties"]["x"]["type"] == "integer"
    assert "outputSchema" not in tools["add"]
    assert "ctx" not in tools["slow"]["inputSchema"].get("properties", {})


async def _all_tools(dispatcher: Dispatcher) -> dict[str, dict[str, Any]]:
    tools, cursor = {}, None
    while True:
        result = (await call(dispatcher, "tools/list", {"cursor": cursor} if cursor else {}))["result"]
        tools.update({t["name"]: t for t in result["tools"]})
        cursor = result.get("nextCursor")
        if not cursor:
            return tools


async def test_tools_call_results(dispatcher: Dispatcher) -> None:
    assert (await call(dispatcher, "tools/call", {"name": "add", "arguments": {"a": 2, "b": 3}}))["result"] == {
        "content": [{"type": "text", "text": "5"}]
    }
    point = (await call(dispatcher, "tools/call", {"name": "point", "arguments": {"x": 1, "y": 2}}))["result"]
    assert point["structuredContent"] == {"x": 1, "y": 2}
    assert point["content"][0]["type"] == "text"
    old = await call(dispatcher, "tools/call", {"name": "point", "arguments": {"x": 1, "y": 2}}, version="2025-03-26")
    assert "structuredContent" not in old["result"]
    picture = (await call(dispatcher, "tools/call", {"name": "picture"}))["result"]["content"]
    assert [c["type"] for c in picture] == ["image", "resource_link"]
    assert picture[0]["data"] == "iVBORw=="
    legacy = (await call(dispatcher, "tools/call", {"name": "picture"}, version="2024-11-05"))["result"]["content"]
    assert [c["type"] for c in legacy] == ["image"]


async def test_tool_errors(dispatcher: Dispatcher) -> None:
    unknown = await call(dispatcher, "tools/call", {"name": "nope"})
    assert unknown["error"]["code"] == -32602 and "Unknown tool: 'nope'" in unknown["error"]["message"]
    missing = await call(dispatcher, "tools/call", {"arguments": {}})
    assert missing["error"]["code"] == -32602 and "params.name" in missing["error"]["message"]
    bad_args = await call(dispatcher, "tools/call", {"name": "add", "arguments": []})
    assert bad_args["error"]["code"] == -32602
    invalid = (await call(dispatcher, "tools/call", {"name": "add", "arguments": {"a": "x"}}))["result"]
    assert invalid["isError"] is True and "a:" in invalid["content"][0]["text"]
    absent = (await call(dispatcher, "tools/call", {"name": "add"}))["result"]
    assert absent["isError"] is True and "a: Field required" in absent["content"][0]["text"]
    told = (await call(dispatcher, "tools/call", {"name": "fails"}))["result"]
    assert told == {"content": [{"type": "text", "text": "nope, try again"}], "isError": True}
    crashed = (await call(dispatcher, "tools/call", {"name": "crashes"}))["result"]
    assert crashed["isError"] is True
    assert "hunter2" not in crashed["content"][0]["text"] and "internal error" in crashed["content"][0]["text"]


@pytest.mark.parametrize(
    ("method", "hint"), [("listTools", "tools/list"), ("callTool", "tools/call"), ("readResource", "resources/read")]
)
async def test_tutorial_method_names_get_a_hint(dispatcher: Dispatcher, method: str, hint: str) -> None:
    answer = await call(dispatcher, method)
    assert answer["error"]["code"] == -32601
    assert f"'{hint}'" in answer["error"]["message"]


async def test_unknown_method(dispatcher: Dispatcher) -> None:
    answer = await call(dispatcher, "tools/destroy")
    assert answer["error"] == {
        "code": -32601,
        "message": "Method not found: 'tools/destroy' is not an MCP method this server offers.",
    }


async def test_resources(dispatcher: Dispatcher) -> None:
    read = (await call(dispatcher, "resources/read", {"uri": "demo://readme"}))["result"]
    assert read == {"contents": [{"uri": "demo://readme", "mimeType": "text/plain", "text": "hello"}]}
    item = (await call(dispatcher, "resources/read", {"uri": "demo://items/42"}))["result"]
    assert item["contents"][0]["text"] == '{"id": 42}'
    for uri in ("demo://items/abc", "demo://nothing", "demo://items/1/2"):
        missing = await call(dispatcher, "resources/read", {"uri": uri})
        assert missing["error"]["code"] == -32002 and uri in missing["error"]["message"]
    templates = (await call(dispatcher, "resources/templates/list"))["result"]["resourceTemplates"]
    assert templates == [{"uriTemplate": "demo://items/{item_id}", "name": "item", "description": "One item."}]
    session = MemorySession()
    assert (await call(dispatcher, "resources/subscribe", {"uri": "demo://readme"}, session=session))["result"] == {}
    assert session.subscriptions == {"demo://readme"}
    assert (await call(dispatcher, "resources/unsubscribe", {"uri": "demo://readme"}, session=session))["result"] == {}
    assert session.subscriptions == set()


async def test_prompts(dispatcher: Dispatcher) -> None:
    prompts = (await call(dispatcher, "prompts/list"))["result"]["prompts"]
    assert prompts == [
        {
            "name": "essay",
            "description": "Write an essay.",
            "arguments": [
                {"name": "topic", "required": True, "description": "What to write about"},
                {"name": "tone", "required": False},
            ],
        }
    ]
    got = (await call(dispatcher, "prompts/get", {"name": "essay", "arguments": {"topic": "owls"}}))["result"]
    assert got["messages"] == [{"role": "user", "content": {"type": "text", "text": "Write a calm essay about owls."}}]
    missing = await call(dispatcher, "prompts/get", {"name": "essay"})
    assert missing["error"]["code"] == -32602 and "topic" in missing["error"]["message"]
    not_str = await call(dispatcher, "prompts/get", {"name": "essay", "arguments": {"topic": 3}})
    assert not_str["error"]["code"] == -32602
    unknown = await call(dispatcher, "prompts/get", {"name": "poem"})
    assert unknown["error"]["code"] == -32602 and "Unknown prompt" in unknown["error"]["message"]


async def test_completion(dispatcher: Dispatcher) -> None:
    prompt = await call(
        dispatcher,
        "completion/complete",
        {"ref": {"type": "ref/prompt", "name": "essay"}, "argument": {"name": "topic", "value": "ca"}},
    )
    assert prompt["result"]["completion"]["values"] == ["cats", "cars"]
    template = await call(
        dispatcher,
        "completion/complete",
        {"ref": {"type": "ref/resource", "uri": "demo://items/{item_id}"}, "argument": {"name": "item_id", "value": "1"}},
    )
    assert template["result"]["completion"]["values"] == ["10", "11"]
    bad = await call(dispatcher, "completion/complete", {"ref": {"type": "ref/other"}, "argument": {"name": "x"}})
    assert bad["error"]["code"] == -32602


async def test_logging_level_filters_context_logs(dispatcher: Dispatcher) -> None:
    session = MemorySession()
    bad = await call(dispatcher, "logging/setLevel", {"level": "loud"}, session=session)
    assert bad["error"]["code"] == -32602 and "debug" in bad["error"]["message"]
    assert (await call(dispatcher, "logging/setLevel", {"level": "warning"}, session=session))["result"] == {}
    sent: list[dict[str, Any]] = []
    ctx = RequestContext(session=session, request_id=1, meta={}, send=_collect(sent), pending=PendingClientRequests())
    await ctx.info("hidden")
    await ctx.error("shown", logger="x")
    assert sent == [
        {"jsonrpc": "2.0", "method": "notifications/message", "params": {"level": "error", "data": "shown", "logger": "x"}}
    ]
    assert_valid(sent[0], "LoggingMessageNotification", "2025-11-25")


def _collect(sent: list[dict[str, Any]]):
    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    return send


async def test_progress_only_with_a_token() -> None:
    sent: list[dict[str, Any]] = []
    quiet = RequestContext(session=MemorySession(), request_id=1, meta={}, send=_collect(sent), pending=PendingClientRequests())
    await quiet.report_progress(1, 2)
    assert sent == []
    ctx = RequestContext(
        session=MemorySession(), request_id=1, meta={"progressToken": "t"}, send=_collect(sent), pending=PendingClientRequests()
    )
    await ctx.report_progress(1, 2, "half")
    assert sent[0]["params"] == {"progressToken": "t", "progress": 1, "total": 2, "message": "half"}
    assert_valid(sent[0], "ProgressNotification", "2025-11-25")


async def test_requests_to_the_client_are_answered_later() -> None:
    pending = PendingClientRequests()
    session = MemorySession(client_capabilities={"sampling": {}})
    sent: list[dict[str, Any]] = []
    ctx = RequestContext(session=session, request_id=1, meta={}, send=_collect(sent), pending=pending)
    task = asyncio.ensure_future(ctx.sample([{"role": "user", "content": {"type": "text", "text": "hi"}}], max_tokens=5))
    while not sent:
        await asyncio.sleep(0)
    request = sent[0]
    assert request["method"] == "sampling/createMessage"
    assert_valid(request, "CreateMessageRequest", "2025-11-25")
    assert not pending.resolve("another-session", jsonrpc.Response(request["id"], {"x": 1}))
    assert pending.resolve(session.id, jsonrpc.Response(request["id"], {"role": "assistant"}))
    assert await task == {"role": "assistant"}
    # An error answer raises in the handler.
    task = asyncio.ensure_future(ctx.sample([], max_tokens=5))
    while len(sent) < 2:
        await asyncio.sleep(0)
    pending.resolve(session.id, jsonrpc.Response(sent[1]["id"], None, {"code": -1, "message": "user declined"}))
    with pytest.raises(Exception, match="user declined"):
        await task


async def test_capability_is_required_for_client_requests() -> None:
    ctx = RequestContext(session=MemorySession(), request_id=1, meta={}, send=_collect([]), pending=PendingClientRequests())
    with pytest.raises(Exception, match="'elicitation' capability"):
        await ctx.elicit("name?", {"type": "object", "properties": {}})


async def test_cancellation(dispatcher: Dispatcher) -> None:
    session = MemorySession()
    task = asyncio.ensure_future(call_raw(dispatcher, session, "tools/call", {"name": "slow"}, 9))
    await asyncio.sleep(0.05)
    assert not dispatcher.cancel(session.id, 10)
    await dispatcher.handle_notification(
        jsonrpc.Notification("notifications/cancelled", {"requestId": 9, "reason": "user"}), session
    )
    assert await asyncio.wait_for(task, 2) is None


async def call_raw(
    dispatcher: Dispatcher, session: MemorySession, method: str, params: dict[str, Any], request_id: int
) -> dict[str, Any] | None:
    ctx = RequestContext(session=session, request_id=request_id, meta={}, send=_collect([]), pending=PendingClientRequests())
    return await dispatcher.handle_request(jsonrpc.Request(request_id, method, params), ctx)
