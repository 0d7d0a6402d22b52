"""mcp_app.testing.MCPTestClient against the test site (the conformance fixtures and the demo tools), in process."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth.models import User
from django.test import TransactionTestCase, override_settings

from mcp_app.models import Session, Token
from mcp_app.testing import MCPResponseError, MCPTestClient

pytestmark = pytest.mark.django_db(transaction=True)

INVALID_PARAMS = -32602
SESSION_NOT_FOUND = -32001
# A site that requires credentials (the test site is open to anonymous callers).
CLOSED = {**settings.MCP_APP, "ALLOW_ANONYMOUS": False, "DEFAULT_PERMISSION_CLASSES": ["mcp_app.permissions.IsAuthenticated"]}


async def test_every_method_round_trips_for_a_user() -> None:
    user = await User.objects.acreate(username="alice")
    client = MCPTestClient(user=user, protocol_version="2025-06-18")
    async with client:
        assert client.session_id and client.protocol_version == "2025-06-18"
        assert client.server_info is not None and client.server_info["serverInfo"]["name"] == "mcp_app-conformance"
        session = await Session.objects.aget(id=client.session_id)
        token = await Token.objects.aget(user=user)
        assert session.principal == token.principal and session.protocol_version == "2025-06-18"

        tools = {t["name"] for t in (await client.list_tools())["tools"]}
        assert {"uppercase_text", "test_tool_with_progress"} <= tools
        result = await client.call_tool("uppercase_text", {"text": "hello"})
        assert result["content"] == [{"type": "text", "text": "HELLO"}] and not result.get("isError")

        uris = {r["uri"] for r in (await client.list_resources())["resources"]}
        assert "test://static-text" in uris
        contents = (await client.read_resource("test://static-text"))["contents"]
        assert contents[0]["uri"] == "test://static-text" and contents[0]["text"]

        prompts = {p["name"] for p in (await client.list_prompts())["prompts"]}
        assert "test_prompt_with_arguments" in prompts
        got = await client.get_prompt("test_prompt_with_arguments", {"arg1": "one", "arg2": "two"})
        text = got["messages"][0]["content"]["text"]
        assert "one" in text and "two" in text

        assert await client.request("ping") == {}
        await client.notify("notifications/roots/list_changed")
        session_id = client.session_id
    # Leaving the block sent DELETE: the session has ended, and the client holds none.
    assert client.session_id is None
    assert (await Session.objects.aget(id=session_id)).ended is not None


async def test_an_unknown_tool_is_a_typed_error() -> None:
    async with MCPTestClient() as client:
        with pytest.raises(MCPResponseError) as info:
            await client.call_tool("no_such_tool", {})
    error = info.value
    assert error.code == INVALID_PARAMS and error.status == 200
    assert "no_such_tool" in error.message
    assert error.response is not None and error.response.messages[0]["error"]["code"] == INVALID_PARAMS


async def test_a_tool_that_fails_is_a_result_not_an_error() -> None:
    async with MCPTestClient() as client:
        result = await client.call_tool("test_error_handling")
    assert result["isError"] is True and "intentionally" in result["content"][0]["text"]


async def test_progress_and_logs_of_an_sse_answer_are_collected() -> None:
    async with MCPTestClient() as client:
        result = await client.call_tool("test_tool_with_progress", progress_token="p-1")
        assert result["content"][0]["text"] == "p-1"
        progress = [n["params"] for n in client.notifications if n["method"] == "notifications/progress"]
        assert [(p["progressToken"], p["progress"], p["total"]) for p in progress] == [
            ("p-1", 0, 100),
            ("p-1", 50, 100),
            ("p-1", 100, 100),
        ]
        client.notifications.clear()
        await client.request("logging/setLevel", {"level": "info"})
        await client.call_tool("test_tool_with_logging")
        logs = [n["params"]["data"] for n in client.notifications if n["method"] == "notifications/message"]
        assert logs == ["Tool execution started", "Tool processing data", "Tool execution completed"]


async def test_a_request_without_a_session_and_after_close_says_why() -> None:
    client = MCPTestClient()
    with pytest.raises(MCPResponseError) as info:
        await client.list_tools()  # no initialize: no Mcp-Session-Id
    assert info.value.status == 400 and "Mcp-Session-Id" in info.value.message
    with pytest.raises(MCPResponseError) as info:
        await client.notify("notifications/initialized")
    assert info.value.status == 400
    await client.initialize()
    session_id = client.session_id
    assert await client.close() == 204
    assert await client.close() is None  # nothing left to end
    stale = MCPTestClient(session_id=session_id)
    with pytest.raises(MCPResponseError) as info:
        await stale.request("ping")
    assert (info.value.status, info.value.code) == (404, SESSION_NOT_FOUND)


@override_settings(MCP_APP=CLOSED)
async def test_credentials_a_token_string_and_none() -> None:
    with pytest.raises(MCPResponseError) as info:
        await MCPTestClient().initialize()
    assert info.value.status == 401
    user = await User.objects.acreate(username="bob")
    _row, key = await sync_to_async(Token.create_for)(user, name="given")
    async with MCPTestClient(token=key) as client:
        assert (await client.call_tool("uppercase_text", {"text": "b"}))["content"][0]["text"] == "B"
    with pytest.raises(MCPResponseError) as info:
        await MCPTestClient(token="mcp_not-a-token").initialize()
    assert info.value.status == 401


def test_a_user_and_a_token_together_are_refused() -> None:
    with pytest.raises(ValueError, match="not both"):
        MCPTestClient(token="mcp_x", user=User(username="x"))


class DjangoTestCaseUse(TransactionTestCase):
    """The client in Django's own test case (an async test method), as the README shows."""

    async def test_uppercase(self) -> None:
        user = await User.objects.acreate(username="carol")
        async with MCPTestClient(user=user) as client:
            result = await client.call_tool("uppercase_text", {"text": "django"})
        self.assertEqual(result["content"][0]["text"], "DJANGO")
