"""The official MCP Python SDK client against a live daphne, over Streamable HTTP."""

from __future__ import annotations

import time
import warnings
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import mcp.types as types
import pytest
from mcp import ClientSession, MCPDeprecationWarning
from mcp.client.streamable_http import streamable_http_client

from tests.live import LiveServer, start_daphne


@asynccontextmanager
async def connect(server: LiveServer, **callbacks: Any) -> AsyncIterator[ClientSession]:
    async with (
        streamable_http_client(server.mcp_url) as (read, write),
        ClientSession(read, write, read_timeout_seconds=20, **callbacks) as session,
    ):
        await session.initialize()
        yield session


async def test_initialize_list_and_call_uppercase_text(daphne_server: LiveServer) -> None:
    async with connect(daphne_server) as session:
        assert session.protocol_version == "2025-11-25"
        assert session.server_info.name == "mcp_app-conformance"
        assert session.server_capabilities.tools is not None
        tools = {tool.name: tool for tool in (await session.list_tools()).tools}
        assert tools["uppercase_text"].input_schema["properties"]["text"]["type"] == "string"
        assert tools["uppercase_text"].input_schema["required"] == ["text"]
        result = await session.call_tool("uppercase_text", {"text": "hello world"})
        assert result.is_error is False
        assert [(c.type, c.text) for c in result.content] == [("text", "HELLO WORLD")]
        bad = await session.call_tool("uppercase_text", {})
        assert bad.is_error is True and "text" in bad.content[0].text
        await session.send_ping()


async def test_progress_notifications(daphne_server: LiveServer) -> None:
    seen: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, total, message))

    async with connect(daphne_server) as session:
        result = await session.call_tool("test_tool_with_progress", {}, progress_callback=on_progress)
        with anyio.fail_after(5):
            while len(seen) < 3:
                await anyio.sleep(0.01)
    assert [p for p, _, _ in seen] == [0, 50, 100]
    assert all(total == 100 for _, total, _ in seen)
    assert seen[-1][2] == "Completed step 100 of 100"
    assert result.content[0].text.isdigit()  # the tool echoes the progress token, the request id


async def test_log_messages_honour_set_level(daphne_server: LiveServer) -> None:
    logs: list[types.LoggingMessageNotificationParams] = []

    async def on_log(params: types.LoggingMessageNotificationParams) -> None:
        logs.append(params)

    async with connect(daphne_server, logging_callback=on_log) as session:
        await session.call_tool("test_tool_with_logging", {})
        with anyio.fail_after(5):
            while len(logs) < 3:
                await anyio.sleep(0.01)
        assert [(m.level, m.data) for m in logs] == [
            ("info", "Tool execution started"),
            ("info", "Tool processing data"),
            ("info", "Tool execution completed"),
        ]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MCPDeprecationWarning)
            await session.set_logging_level("warning")
        logs.clear()
        result = await session.call_tool("test_tool_with_logging", {})
        await anyio.sleep(0.2)
        assert result.content[0].text == "Tool with logging executed successfully"
        assert logs == []


async def test_sampling_and_elicitation_callbacks(daphne_server: LiveServer) -> None:
    sampled: list[types.CreateMessageRequestParams] = []
    elicited: list[types.ElicitRequestParams] = []

    async def sampling(ctx: Any, params: types.CreateMessageRequestParams) -> types.CreateMessageResult:
        sampled.append(params)
        return types.CreateMessageResult(
            role="assistant", content=types.TextContent(text="a fine answer"), model="test-model", stop_reason="endTurn"
        )

    async def elicitation(ctx: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        elicited.append(params)
        return types.ElicitResult(action="accept", content={"username": "ada", "email": "ada@example.com"})

    async with connect(daphne_server, sampling_callback=sampling, elicitation_callback=elicitation) as session:
        sample = await session.call_tool("test_sampling", {"prompt": "Say something"})
        assert sample.content[0].text == "LLM response: a fine answer"
        assert sampled[0].max_tokens == 100
        assert sampled[0].messages[0].content.text == "Say something"
        answer = await session.call_tool("test_elicitation", {"message": "Who are you?"})
        assert answer.content[0].text == 'User response: action=accept, content={"username": "ada", "email": "ada@example.com"}'
        assert elicited[0].message == "Who are you?"
        assert elicited[0].requested_schema["required"] == ["username", "email"]


async def test_sampling_declined_by_the_client_is_a_tool_error(daphne_server: LiveServer) -> None:
    async def sampling(ctx: Any, params: types.CreateMessageRequestParams) -> types.ErrorData:
        return types.ErrorData(code=-1, message="the user said no")

    async with connect(daphne_server, sampling_callback=sampling) as session:
        result = await session.call_tool("test_sampling", {"prompt": "x"})
        assert result.is_error is True
        assert result.content[0].text == "The client answered with an error: the user said no"


async def test_resources_prompts_and_completion(daphne_server: LiveServer) -> None:
    async with connect(daphne_server) as session:
        resources = {r.uri: r for r in (await session.list_resources()).resources}
        assert resources["test://static-text"].mime_type == "text/plain"
        text = await session.read_resource("test://static-text")
        assert text.contents[0].text == "This is the content of the static text resource."
        templated = await session.read_resource("test://template/42/data")
        assert '"id": "42"' in templated.contents[0].text
        templates = (await session.list_resource_templates()).resource_templates
        # The code registry's template, then the demo library's public exposures (members and loans need a user).
        assert [t.uri_template for t in templates] == [
            "test://template/{id}/data",
            "django://library/author/{pk}",
            "django://library/book/{pk}",
        ]
        prompt = await session.get_prompt("test_prompt_with_arguments", {"arg1": "a", "arg2": "b"})
        assert prompt.messages[0].content.text == "Prompt with arguments: arg1='a', arg2='b'"
        done = await session.complete(types.PromptReference(name="test_prompt_with_arguments"), {"name": "arg1", "value": "test"})
        assert done.completion.values == ["testValue1", "testValue2"]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MCPDeprecationWarning)
            await session.subscribe_resource("test://watched-resource")
            await session.unsubscribe_resource("test://watched-resource")


@pytest.fixture(scope="module")
def uvicorn_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = start_daphne(tmp_path_factory.mktemp("uvicorn"), server="uvicorn")
    yield server
    server.stop()
    server.assert_no_traceback()


async def test_runs_under_uvicorn_too(uvicorn_server: LiveServer) -> None:
    seen: list[float] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append(progress)

    async with connect(uvicorn_server) as session:
        result = await session.call_tool("uppercase_text", {"text": "uvicorn"})
        assert result.content[0].text == "UVICORN"
        await session.call_tool("test_tool_with_progress", {}, progress_callback=on_progress)
        with anyio.fail_after(5):
            while len(seen) < 3:
                await anyio.sleep(0.01)
        assert seen == [0, 50, 100]


async def test_roots_are_asked_of_the_client(daphne_server: LiveServer) -> None:
    async def list_roots(ctx: Any) -> types.ListRootsResult:
        return types.ListRootsResult(roots=[types.Root(uri="file:///srv/project", name="project")])

    async with connect(daphne_server, list_roots_callback=list_roots) as session:
        result = await session.call_tool("list_client_roots", {})
        assert result.content[0].text == "file:///srv/project"


async def test_a_timed_out_call_is_cancelled_on_the_server(daphne_server: LiveServer) -> None:
    from mcp import MCPError

    label = f"call-{time.time_ns()}"
    async with connect(daphne_server) as session:
        with pytest.raises(MCPError):
            await session.call_tool("wait_until_cancelled", {"label": label}, read_timeout_seconds=0.5)
        # The SDK sent notifications/cancelled; the server stops the handler.
        with anyio.fail_after(5):
            while True:
                cancelled = await session.read_resource("test://cancelled")
                if label in cancelled.contents[0].text:
                    break
                await anyio.sleep(0.05)
        # The session goes on working.
        assert (await session.call_tool("uppercase_text", {"text": "still here"})).content[0].text == "STILL HERE"
