"""mcp_app.testing.MCPTestClient in the modern era (MCP 2026-07-28): no session, per-request _meta and headers,
and the questions of a tool answered through multi round-trip requests."""

from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.test import override_settings

from mcp_app.models import Session, ToolCall
from mcp_app.testing import MCPResponseError, MCPTestClient

pytestmark = pytest.mark.django_db(transaction=True)

MODERN = "2026-07-28"


async def test_every_method_round_trips_without_a_session() -> None:
    user = await User.objects.acreate(username="modern")
    async with MCPTestClient(user=user, protocol_version=MODERN) as client:
        assert client.modern and client.session_id is None
        assert client.server_info is not None and MODERN in client.server_info["supportedVersions"]
        tools = {t["name"] for t in (await client.list_tools())["tools"]}
        assert "uppercase_text" in tools
        result = await client.call_tool("uppercase_text", {"text": "hello"})
        assert result["content"] == [{"type": "text", "text": "HELLO"}] and result["resultType"] == "complete"
        contents = (await client.read_resource("test://static-text"))["contents"]
        assert contents[0]["uri"] == "test://static-text"
        got = await client.get_prompt("test_prompt_with_arguments", {"arg1": "ünï", "arg2": " two "})
        assert "ünï" in got["messages"][0]["content"]["text"]
        with pytest.raises(MCPResponseError) as info:
            await client.request("ping")  # removed in 2026-07-28
        assert (info.value.status, info.value.code) == (404, -32601)
    assert await Session.objects.acount() == 0
    assert await ToolCall.objects.filter(tool="uppercase_text", user=user, session=None).aexists()


async def test_questions_are_answered_by_the_callback_round_by_round() -> None:
    asked: list[tuple[str, Any]] = []

    async def answer(method: str, params: dict[str, Any]) -> dict[str, Any]:
        asked.append((method, params.get("message")))
        if method == "roots/list":
            return {"roots": [{"uri": "file:///w"}]}
        if method == "sampling/createMessage":
            return {"role": "assistant", "content": {"type": "text", "text": "hi"}, "model": "m"}
        field = next(iter(params["requestedSchema"]["properties"]))  # name, color or context
        return {"action": "accept", "content": {field: {"color": "blue"}.get(field, "Ada")}}

    capabilities = {"elicitation": {}, "sampling": {}, "roots": {}}
    async with MCPTestClient(protocol_version=MODERN, capabilities=capabilities, answer=answer) as client:
        result = await client.call_tool("test_input_required_result_multi_round", {})
        assert result["content"][0]["text"] == "Ada likes blue."
        assert [m for m, _ in asked] == ["elicitation/create", "elicitation/create"]
        result = await client.call_tool("test_input_required_result_multiple_inputs", {})
        assert result["content"][0]["text"] == "hi Ada (roots: file:///w)"
        prompt = await client.get_prompt("test_input_required_result_prompt")
        assert prompt["messages"][0]["content"]["text"].endswith("Ada")


async def test_without_a_callback_the_input_required_result_is_returned() -> None:
    async with MCPTestClient(protocol_version=MODERN, capabilities={"elicitation": {}}) as client:
        result = await client.call_tool("test_input_required_result_elicitation", {})
        assert result["resultType"] == "input_required" and list(result["inputRequests"]) == ["user_name"]
    async with MCPTestClient(protocol_version=MODERN) as client:  # no elicitation declared
        with pytest.raises(MCPResponseError) as info:
            await client.call_tool("test_input_required_result_elicitation", {})
        assert (info.value.status, info.value.code) == (400, -32021)


async def test_the_same_tool_in_the_handshake_era_still_asks_with_a_request() -> None:
    # This client does not answer requests from the server: the tool waits CLIENT_REQUEST_TIMEOUT, then its
    # question is an isError result (as before 2026-07-28), and the request was recorded.
    with override_settings(MCP_APP={**settings.MCP_APP, "CLIENT_REQUEST_TIMEOUT": 0.5}):
        async with MCPTestClient(capabilities={"elicitation": {}}) as client:
            assert client.session_id and not client.modern
            result = await client.call_tool("test_input_required_result_elicitation", {})
    assert result["isError"] is True and "did not answer elicitation/create" in result["content"][0]["text"]
    assert [r["method"] for r in client.server_requests] == ["elicitation/create"]
