"""The admin and MCP 2026-07-28: clients have no session (the session list says where their calls are, the
audit log filters on calls without a session), and an edited input schema keeps valid x-mcp-header annotations."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError

from mcp_app.models import Session, Tool, ToolCall

pytestmark = pytest.mark.django_db


def test_sessions_page_points_to_the_calls_without_a_session(admin_client) -> None:
    page = admin_client.get("/admin/mcp_app/session/")
    assert page.status_code == 200
    text = page.content.decode()
    assert "Clients of MCP 2026-07-28 have no session" in text
    assert "/admin/mcp_app/toolcall/?session__isempty=1" in text


def test_audit_log_filters_calls_without_a_session(admin_client) -> None:
    user = User.objects.create_user("modern-caller")
    session = Session.objects.create(transport=Session.Transport.STREAMABLE_HTTP, protocol_version="2025-11-25")
    ToolCall.objects.create(tool="in_a_session", outcome="ok", session=session, via="streamable_http")
    ToolCall.objects.create(tool="stateless_call", outcome="ok", user=user, via="streamable_http")
    listed = admin_client.get("/admin/mcp_app/toolcall/?session__isempty=1").context["cl"].result_list
    assert [(call.tool, call.user) for call in listed] == [("stateless_call", user)]
    listed = admin_client.get("/admin/mcp_app/toolcall/?session__isempty=0").context["cl"].result_list
    assert [call.tool for call in listed] == ["in_a_session"]


def test_an_edited_input_schema_with_invalid_param_headers_is_refused() -> None:
    row = Tool(name="uppercase_text")
    row.input_schema = {"type": "object", "properties": {"text": {"type": "object", "x-mcp-header": "Text"}}}
    with pytest.raises(ValidationError) as refused:
        row.full_clean(validate_unique=False)
    assert "x-mcp-header" in str(refused.value.message_dict["input_schema"])
    row.input_schema = {"type": "object", "properties": {"text": {"type": "string", "x-mcp-header": "Text"}}}
    row.full_clean(validate_unique=False)
