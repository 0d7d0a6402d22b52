"""The audit log of multi round-trip requests (MCP 2026-07-28): each round of a tools/call is a row of its own,
with the caller and no session; a round that ended asking the client for input is ``needs_input``, never
left ``started`` nor recorded as failed or done."""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import async_to_sync

from mcp_app import Context
from mcp_app.models import ToolCall
from mcp_app.permissions import AllowAny
from mcp_app.protocol import jsonrpc
from mcp_app.protocol.dispatcher import Dispatcher
from mcp_app.protocol.envelope import Envelope
from mcp_app.protocol.pagination import CursorCodec
from mcp_app.providers.code import Registry
from mcp_app.providers.exposures.resource import ExposureRegistry
from mcp_app.providers.managed import ManagedProvider

pytestmark = pytest.mark.django_db(transaction=True)  # the provider closes connections between calls, as in a server

registry = Registry()
NAME_FORM = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}


@registry.tool(permission_classes=[AllowAny])
async def two_questions(ctx: Context, topic: str) -> str:
    """Asks two questions, one round each."""
    first = await ctx.elicit("Name?", NAME_FORM)
    second = await ctx.elicit("Again?", NAME_FORM)
    return f"{topic}: {first['content']['name']}/{second['content']['name']}"


provider = ManagedProvider(registry, ExposureRegistry())
dispatcher = Dispatcher(provider, server_info={"name": "t", "version": "1"}, cursor_codec=CursorCodec(b"c" * 32))


def call(params: dict[str, Any], request_id: int, user: Any) -> dict[str, Any]:
    async def send(message: dict[str, Any]) -> None:
        return None

    async def run() -> dict[str, Any]:
        envelope = Envelope("2026-07-28", {"elicitation": {}})
        ctx = dispatcher.context(envelope, request_id, send=send, extra={"user": user, "via": "test", "principal": "p"})
        response = await dispatcher.handle_request(jsonrpc.Request(request_id, "tools/call", params), ctx)
        assert response is not None
        return response["result"]

    return async_to_sync(run)()


def test_every_round_is_a_row_with_the_caller_and_no_session(django_user_model: Any) -> None:
    user = django_user_model.objects.create_user("asker")
    params: dict[str, Any] = {"name": "two_questions", "arguments": {"topic": "t"}}
    first = call(params, 1, user)
    answer = {"action": "accept", "content": {"name": "Ada"}}
    second = call({**params, "inputResponses": {"elicitation-1": answer}, "requestState": first["requestState"]}, 2, user)
    third = call({**params, "inputResponses": {"elicitation-2": answer}, "requestState": second["requestState"]}, 3, user)
    assert third["content"][0]["text"] == "t: Ada/Ada"
    rows = list(ToolCall.objects.order_by("created", "pk").values_list("outcome", "error_message", "user", "session", "via"))
    assert rows == [
        ("needs_input", "asked the client for: elicitation-1", user.pk, None, "test"),
        ("needs_input", "asked the client for: elicitation-2", user.pk, None, "test"),
        ("ok", "", user.pk, None, "test"),
    ]
