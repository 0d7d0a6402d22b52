"""The admin: tools, prompts, sessions and the audit log, with a staff user through Django's test client;
and what its edits change for MCP clients (through the provider, as a transport calls it)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth.models import Group, Permission, User
from django.core.management import call_command
from django.utils import timezone

from mcp_app.conf import mcp_settings
from mcp_app.models import Prompt, PromptArgument, PromptMessage, Session, Tool, ToolCall
from mcp_app.protocol.errors import InvalidParams
from tests.contexts import ctx_for

pytestmark = pytest.mark.django_db(transaction=True)  # the provider closes connections between calls, as in a server


def tool_names(user: Any = None) -> list[str]:
    return [t["name"] for t in async_to_sync(mcp_settings.PROVIDER.list_tools)(ctx_for(user))]


def call(name: str, arguments: dict[str, Any], user: Any = None) -> dict[str, Any]:
    return async_to_sync(mcp_settings.PROVIDER.call_tool)(name, arguments, ctx_for(user))


@pytest.fixture(autouse=True)
def synced_rows() -> None:
    mcp_settings.PROVIDER.sync()


# -- tools ---------------------------------------------------------------------------------------------------
def test_every_code_tool_has_a_row_and_orphans_are_shown_but_never_listed(admin_client) -> None:
    assert Tool.objects.filter(name="uppercase_text").exists()
    Tool.objects.create(name="removed_from_code")
    page = admin_client.get("/admin/mcp_app/tool/")
    assert page.status_code == 200
    assert b"uppercase_text" in page.content and b"removed_from_code" in page.content
    orphans = admin_client.get("/admin/mcp_app/tool/?handler=orphaned")
    assert b"removed_from_code" in orphans.content and b"uppercase_text" not in orphans.content
    detail = admin_client.get(f"/admin/mcp_app/tool/{Tool.objects.get(name='removed_from_code').pk}/change/")
    assert b"Orphaned: no handler" in detail.content
    assert "removed_from_code" not in tool_names()
    assert admin_client.get("/admin/mcp_app/tool/add/").status_code == 403


def change_data(tool: Tool, **overrides: Any) -> dict[str, Any]:
    data = {
        "enabled": "on" if tool.enabled else "",
        "title": tool.title,
        "description": tool.description,
        "read_only_hint": "unknown",
        "destructive_hint": "unknown",
        "idempotent_hint": "unknown",
        "open_world_hint": "unknown",
        "input_schema": "null",
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v != ""}


def test_retitle_redescribe_and_annotate(admin_client) -> None:
    tool = Tool.objects.get(name="uppercase_text")
    response = admin_client.post(
        f"/admin/mcp_app/tool/{tool.pk}/change/",
        change_data(tool, title="SHOUT", description="Makes text loud.", destructive_hint="false", read_only_hint="true"),
    )
    assert response.status_code == 302, response.content[:2000]
    listed = {t["name"]: t for t in async_to_sync(mcp_settings.PROVIDER.list_tools)(ctx_for())}["uppercase_text"]
    assert listed["title"] == "SHOUT" and listed["description"] == "Makes text loud."
    assert listed["annotations"]["destructiveHint"] is False and listed["annotations"]["readOnlyHint"] is True


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        ('{"type": "object", "properties": 5}', b"Not a valid JSON Schema 2020-12"),
        ('{"type": "string"}', b"must have &quot;type&quot;: &quot;object&quot;"),
        ("[1, 2]", b"must be a JSON object"),
        ('{"type": "object",', b"Enter a valid JSON"),
    ],
)
def test_input_schema_edits_must_stay_valid(admin_client, schema: str, message: bytes) -> None:
    tool = Tool.objects.get(name="uppercase_text")
    response = admin_client.post(f"/admin/mcp_app/tool/{tool.pk}/change/", change_data(tool, input_schema=schema))
    assert response.status_code == 200
    assert message in response.content
    tool.refresh_from_db()
    assert tool.input_schema is None


def test_a_valid_schema_edit_is_listed_and_enforced(admin_client) -> None:
    tool = Tool.objects.get(name="uppercase_text")
    schema = '{"type": "object", "properties": {"text": {"type": "string", "maxLength": 5}}, "required": ["text"]}'
    assert admin_client.post(f"/admin/mcp_app/tool/{tool.pk}/change/", change_data(tool, input_schema=schema)).status_code == 302
    listed = {t["name"]: t for t in async_to_sync(mcp_settings.PROVIDER.list_tools)(ctx_for())}["uppercase_text"]
    assert listed["inputSchema"]["properties"]["text"]["maxLength"] == 5
    too_long = call("uppercase_text", {"text": "far too long"})
    assert too_long["isError"] is True and "text" in too_long["content"][0]["text"]
    assert call("uppercase_text", {"text": "ok"})["content"][0]["text"] == "OK"


def test_disable_action_hides_the_tool_and_calls_fail_like_unknown(admin_client) -> None:
    tool = Tool.objects.get(name="uppercase_text")
    response = admin_client.post("/admin/mcp_app/tool/", {"action": "disable", "_selected_action": [tool.pk]})
    assert response.status_code == 302
    assert "uppercase_text" not in tool_names()
    with pytest.raises(InvalidParams) as disabled:
        call("uppercase_text", {"text": "x"})
    with pytest.raises(InvalidParams) as unknown:
        call("no_such_tool", {})
    assert disabled.value.message.replace("uppercase_text", "X") == unknown.value.message.replace("no_such_tool", "X")
    admin_client.post("/admin/mcp_app/tool/", {"action": "enable", "_selected_action": [tool.pk]})
    assert "uppercase_text" in tool_names()


def test_permission_restricted_tool_is_visible_only_to_holders() -> None:
    tool = Tool.objects.get(name="uppercase_text")
    permission = Permission.objects.get(codename="view_session", content_type__app_label="mcp_app")
    tool.required_permissions.add(permission)
    plain = User.objects.create_user("plain", password="x")
    holder = User.objects.create_user("holder", password="x")
    holder.user_permissions.add(permission)
    holder = User.objects.get(pk=holder.pk)  # a fresh object: permissions are cached per instance
    assert "uppercase_text" not in tool_names(None)
    assert "uppercase_text" not in tool_names(plain)
    assert "uppercase_text" in tool_names(holder)
    with pytest.raises(InvalidParams):
        call("uppercase_text", {"text": "x"}, plain)
    assert call("uppercase_text", {"text": "x"}, holder)["content"][0]["text"] == "X"


def test_group_restricted_tool() -> None:
    tool = Tool.objects.get(name="count_words")
    editors = Group.objects.create(name="editors")
    tool.allowed_groups.add(editors)
    member = User.objects.create_user("member")
    member.groups.add(editors)
    outsider = User.objects.create_user("outsider")
    assert "count_words" in tool_names(member)
    assert "count_words" not in tool_names(outsider)


# -- try it --------------------------------------------------------------------------------------------------
def test_try_it_runs_as_the_staff_user_and_is_audited(admin_client, admin_user) -> None:
    tool = Tool.objects.get(name="uppercase_text")
    url = f"/admin/mcp_app/tool/{tool.pk}/try/"
    assert admin_client.get(url).status_code == 200
    page = admin_client.post(url, {"arguments": '{"text": "hello", "password": "hunter2"}'})
    assert page.status_code == 200
    assert b"HELLO" in page.content
    row = ToolCall.objects.get(tool="uppercase_text")
    assert (row.user, row.outcome, row.via) == (admin_user, "ok", "admin")
    assert row.arguments == {"text": "hello", "password": "[redacted]"}
    bad = admin_client.post(url, {"arguments": "[1]"})
    assert b"must be a JSON object" in bad.content
    broken = admin_client.post(url, {"arguments": "{nope"})
    assert b"Not valid JSON" in broken.content


# -- audit log -----------------------------------------------------------------------------------------------
def test_audit_rows_for_each_outcome_with_nested_redaction() -> None:
    call("uppercase_text", {"text": "a", "auth": {"api_key": "k", "user": "u"}})
    call("uppercase_text", {"text": 5})
    with pytest.raises(InvalidParams):
        call("nope", {"token": "t"})
    rows = {row.outcome: row for row in ToolCall.objects.all()}
    assert rows["ok"].arguments == {"text": "a", "auth": {"api_key": "[redacted]", "user": "u"}}
    assert "text" in rows["tool_error"].error_message
    assert rows["refused"].arguments == {"token": "[redacted]"} and rows["refused"].tool == "nope"
    assert all(row.duration_ms >= 0 for row in rows.values())


def test_audit_log_is_read_only_and_filterable(admin_client) -> None:
    call("uppercase_text", {"text": "a"})
    row = ToolCall.objects.get()
    assert admin_client.get("/admin/mcp_app/toolcall/?outcome=ok").status_code == 200
    assert admin_client.get("/admin/mcp_app/toolcall/add/").status_code == 403
    detail = admin_client.get(f"/admin/mcp_app/toolcall/{row.pk}/change/")
    assert detail.status_code == 200 and b"uppercase_text" in detail.content
    assert admin_client.post(f"/admin/mcp_app/toolcall/{row.pk}/change/", {"tool": "edited"}).status_code == 403


def test_prune_command_deletes_rows_past_retention() -> None:
    old = ToolCall.objects.create(tool="t", outcome="ok")
    ToolCall.objects.filter(pk=old.pk).update(created=timezone.now() - timedelta(days=100))
    fresh = ToolCall.objects.create(tool="t", outcome="ok")
    call_command("mcp_prune_audit", "--dry-run")
    assert ToolCall.objects.count() == 2
    call_command("mcp_prune_audit")
    assert list(ToolCall.objects.values_list("pk", flat=True)) == [fresh.pk]
    call_command("mcp_prune_audit", "--days", "0")
    assert ToolCall.objects.count() == 0


# -- prompts -------------------------------------------------------------------------------------------------
def make_prompt() -> Prompt:
    prompt = Prompt.objects.create(name="summarise", title="Summarise", description="Summarise a text.")
    PromptArgument.objects.create(
        prompt=prompt, name="text", description="What to summarise", required=True, completions="alpha\nalphabet\nbeta"
    )
    PromptArgument.objects.create(prompt=prompt, name="style", position=1)
    PromptMessage.objects.create(
        prompt=prompt, role="user", template="Summarise{% if style %} ({{ style }}){% endif %}: {{ text }}"
    )
    PromptMessage.objects.create(prompt=prompt, role="assistant", template="Here is a summary.", position=1)
    return prompt


def test_admin_authored_prompt_is_listed_rendered_and_completed() -> None:
    make_prompt()
    provider = mcp_settings.PROVIDER
    listed = {p["name"]: p for p in async_to_sync(provider.list_prompts)(ctx_for())}
    assert listed["summarise"]["arguments"] == [
        {"name": "text", "required": True, "description": "What to summarise"},
        {"name": "style", "required": False},
    ]
    assert "shout" in listed  # the demo's code prompt is there too
    got = async_to_sync(provider.get_prompt)("summarise", {"text": "<b>War & Peace</b>", "style": "short"}, ctx_for())
    assert got["messages"] == [
        {"role": "user", "content": {"type": "text", "text": "Summarise (short): <b>War & Peace</b>"}},
        {"role": "assistant", "content": {"type": "text", "text": "Here is a summary."}},
    ]
    with pytest.raises(InvalidParams, match="missing required argument.*text"):
        async_to_sync(provider.get_prompt)("summarise", {}, ctx_for())
    with pytest.raises(InvalidParams, match="unknown argument"):
        async_to_sync(provider.get_prompt)("summarise", {"text": "x", "colour": "red"}, ctx_for())
    values = async_to_sync(provider.complete)(
        {"type": "ref/prompt", "name": "summarise"}, {"name": "text", "value": "alp"}, {}, ctx_for()
    )
    assert values == ["alpha", "alphabet"]


def test_disabled_prompt_is_hidden() -> None:
    prompt = make_prompt()
    prompt.enabled = False
    prompt.save()
    assert "summarise" not in [p["name"] for p in async_to_sync(mcp_settings.PROVIDER.list_prompts)(ctx_for())]
    with pytest.raises(InvalidParams, match="Unknown prompt"):
        async_to_sync(mcp_settings.PROVIDER.get_prompt)("summarise", {"text": "x"}, ctx_for())


def test_prompt_admin_pages_and_template_validation(admin_client) -> None:
    prompt = make_prompt()
    assert admin_client.get("/admin/mcp_app/prompt/").status_code == 200
    assert admin_client.get("/admin/mcp_app/prompt/add/").status_code == 200
    page = admin_client.get(f"/admin/mcp_app/prompt/{prompt.pk}/change/")
    assert page.status_code == 200 and b"{{ text }}" in page.content
    message = PromptMessage(prompt=prompt, template="{% if %}")
    with pytest.raises(Exception, match="template"):
        message.full_clean()
    bad_name = Prompt(name="has spaces")
    with pytest.raises(Exception, match="letters, digits"):
        bad_name.full_clean()


# -- sessions ------------------------------------------------------------------------------------------------
def test_session_admin_lists_filters_shows_and_ends(admin_client) -> None:
    from mcp_app.runtime import get_server

    record = async_to_sync(get_server().sessions.create)(
        transport="streamable_http",
        protocol_version="2025-11-25",
        client_info={"name": "Claude", "version": "1"},
        client_capabilities={"sampling": {}},
    )
    async_to_sync(record.subscribe)("test://watched-resource")
    listing = admin_client.get("/admin/mcp_app/session/?state=active&client_name=Claude")
    assert listing.status_code == 200 and b"Claude" in listing.content
    detail = admin_client.get(f"/admin/mcp_app/session/{record.id}/change/")
    assert b"sampling" in detail.content and b"test://watched-resource" in detail.content
    response = admin_client.post("/admin/mcp_app/session/", {"action": "end_sessions", "_selected_action": [record.id]})
    assert response.status_code == 302
    assert Session.objects.get(id=record.id).ended is not None
    assert async_to_sync(get_server().sessions.get)(record.id) is None


# -- every add and change form: empty and malformed values are form errors, never a 500 ----------------------------
def _inlines(
    arguments: list[dict[str, str]] | None = None, messages: list[dict[str, str]] | None = None, total: str | None = None
) -> dict[str, str]:
    """The prompt page's two inline formsets (prefixes: the related names), with the rows given."""
    data: dict[str, str] = {}
    for prefix, rows in (("arguments", arguments or []), ("messages", messages or [])):
        data.update(
            {
                f"{prefix}-TOTAL_FORMS": total or str(len(rows)),
                f"{prefix}-INITIAL_FORMS": "0",
                f"{prefix}-MIN_NUM_FORMS": "0",
                f"{prefix}-MAX_NUM_FORMS": "1000",
            }
        )
        for i, row in enumerate(rows):
            data.update({f"{prefix}-{i}-{key}": value for key, value in row.items()})
    return data


HUGE = "99999999999999999999999"
VALID = {302}
FORM_ERROR = {200}
REFUSED = {403}
#: (form, values, the answers allowed). Empty boxes may be valid (302) where every field is optional.
ADMIN_FORM_CASES: list[tuple[str, dict[str, Any], set[int]]] = [
    ("tool_add", {}, REFUSED),
    ("tool_change", {}, VALID),
    ("tool_change", {"input_schema": "{", "read_only_hint": "maybe"}, FORM_ERROR),
    ("tool_change", {"input_schema": '{"type": "object", "properties": {"x": {"type": 5}}}'}, FORM_ERROR),
    ("tool_change", {"required_permissions": ["abc"], "allowed_groups": [HUGE]}, FORM_ERROR),
    ("tool_change", {"title": "x" * 500}, FORM_ERROR),
    ("prompt_add", {}, FORM_ERROR),  # not even the inline management forms
    ("prompt_add", _inlines(), FORM_ERROR),
    ("prompt_add", {"name": "bad name!", "required_permissions": ["abc"], **_inlines()}, FORM_ERROR),
    ("prompt_add", {"name": "p", **_inlines(total="abc")}, FORM_ERROR),
    (
        "prompt_add",
        {"name": "p", **_inlines([{"name": "", "position": "-1"}], [{"role": "robot", "template": "{% if %}"}])},
        FORM_ERROR,
    ),
    (
        "prompt_add",
        {"name": "p", **_inlines([{"name": "a", "position": HUGE}], [{"role": "user", "template": "", "position": "x"}])},
        FORM_ERROR,
    ),
    ("prompt_add", {"name": "x" * 300, **_inlines()}, FORM_ERROR),
    ("prompt_change", {}, FORM_ERROR),
    ("prompt_change", {"name": "", **_inlines()}, FORM_ERROR),
    ("prompt_change", {"name": "blank", **_inlines([{"name": "a" * 200}], [{"role": "", "template": "{{"}])}, FORM_ERROR),
    ("exposure_add", {}, FORM_ERROR),
    ("exposure_add", {"content_type": "abc"}, FORM_ERROR),
    ("exposure_add", {"content_type": HUGE}, FORM_ERROR),
    ("exposure_add", {"content_type": "session"}, FORM_ERROR),
    ("exposure_change", {}, FORM_ERROR),
    ("exposure_change", {"lookup_field": "pk", "base_filters": ""}, VALID),  # the 500 (IntegrityError) of the issue
    ("exposure_change", {"lookup_field": "pk", "base_filters": "null"}, VALID),
    ("exposure_change", {"lookup_field": "pk", "base_filters": "{"}, FORM_ERROR),
    ("exposure_change", {"lookup_field": "pk", "base_filters": "[1]"}, FORM_ERROR),
    ("exposure_change", {"lookup_field": "pk", "base_filters": '"text"'}, FORM_ERROR),
    ("exposure_change", {"lookup_field": "pk", "base_filters": '{"name__regex": "x"}'}, FORM_ERROR),
    ("exposure_change", {"lookup_field": "pk", "base_filters": '{"id__gt": ' + HUGE + "}"}, FORM_ERROR),
    ("exposure_change", {"lookup_field": "pk", "base_filters": '{"name": "a\\u0000b"}'}, FORM_ERROR),
    ("exposure_change", {"lookup_field": "zzz", "base_filters": "{}"}, FORM_ERROR),
    ("exposure_change", {"lookup_field": "pk", "fields": ["zzz"], "base_filters": "{}"}, FORM_ERROR),
    ("exposure_change", {"lookup_field": "pk", "ordering": "nope, -", "base_filters": "{}"}, FORM_ERROR),
    ("querytool_add", {}, FORM_ERROR),
    (
        "querytool_add",
        {"name": "q", "exposure": "library.book", "operation": "list", "fixed_filters": "", "caller_filters": "", "limit": "20"},
        VALID,
    ),
    ("querytool_add", {"name": "q", "exposure": "library.book", "operation": "list", "limit": HUGE}, FORM_ERROR),
    ("querytool_add", {"name": "q", "exposure": "library.book", "operation": "list", "limit": "-5"}, FORM_ERROR),
    ("querytool_add", {"name": "q", "exposure": "nope", "operation": "x", "limit": "abc"}, FORM_ERROR),
    (
        "querytool_add",
        {
            "name": "q",
            "exposure": "library.book",
            "operation": "list",
            "limit": "5",
            "fixed_filters": "{",
            "caller_filters": "{}",
        },
        FORM_ERROR,
    ),
    (
        "querytool_add",
        {
            "name": "q",
            "exposure": "library.book",
            "operation": "list",
            "limit": "5",
            "fixed_filters": '{"pages__gt": ' + HUGE + "}",
        },
        FORM_ERROR,
    ),
    (
        "querytool_add",
        {
            "name": "q",
            "exposure": "library.book",
            "operation": "list",
            "limit": "5",
            "fixed_filters": '{"title": "a\\u0000"}',
            "caller_filters": '["nope"]',
        },
        FORM_ERROR,
    ),
    ("querytool_change", {}, FORM_ERROR),
    (
        "querytool_change",
        {
            "name": "x" * 100,
            "exposure": "library.book",
            "operation": "list",
            "limit": "1",
            "fixed_filters": "null",
            "caller_filters": "null",
        },
        FORM_ERROR,
    ),
    ("token_add", {}, FORM_ERROR),
    ("token_add", {"user": "abc", "name": "t"}, FORM_ERROR),
    ("token_add", {"user": HUGE, "name": "t"}, FORM_ERROR),
    ("token_add", {"user": "admin", "name": "t", "expires_0": "not a date", "expires_1": "25:99"}, FORM_ERROR),
    ("token_add", {"user": "admin", "name": "t", "expires_0": "99999-01-01", "expires_1": "00:00"}, FORM_ERROR),
    ("token_add", {"user": "admin", "name": "x" * 200, "scopes": "y" * 300}, FORM_ERROR),
    ("token_change", {}, FORM_ERROR),
    ("token_change", {"name": "t", "expires_0": "garbage", "expires_1": ""}, FORM_ERROR),
    ("session_change", {}, REFUSED),
    ("toolcall_add", {}, REFUSED),
    ("toolcall_change", {"tool": "edited"}, REFUSED),
]


@pytest.mark.parametrize(
    ("form", "values", "allowed"), ADMIN_FORM_CASES, ids=[f"{form}-{i}" for i, (form, _, _) in enumerate(ADMIN_FORM_CASES)]
)
def test_every_admin_form_answers_bad_values_with_a_form_error(
    admin_client, admin_user, form: str, values: dict[str, Any], allowed: set[int]
) -> None:
    """Django's test client raises what a view raised, so a 500 (IntegrityError, ValueError...) fails here."""
    from django.contrib.contenttypes.models import ContentType

    from mcp_app.models import ModelExposure, QueryTool, Token
    from mcp_app.runtime import get_server

    session = async_to_sync(get_server().sessions.create)(transport="streamable_http", protocol_version="2025-11-25")
    rows = {
        "tool": Tool.objects.get(name="uppercase_text").pk,
        "prompt": Prompt.objects.create(name="blank").pk,
        "exposure": ModelExposure.objects.create(content_type=ContentType.objects.get_for_model(Group)).pk,
        "querytool": QueryTool.objects.create(name="existing", exposure="library.book").pk,
        "token": Token.create_for(admin_user, name="t")[0].pk,
        "session": session.id,
        "toolcall": ToolCall.objects.create(tool="t", outcome="ok").pk,
    }
    model, _, step = form.partition("_")
    path = {
        "tool": "tool",
        "prompt": "prompt",
        "exposure": "modelexposure",
        "querytool": "querytool",
        "token": "token",
        "session": "session",
        "toolcall": "toolcall",
    }[model]
    url = f"/admin/mcp_app/{path}/add/" if step == "add" else f"/admin/mcp_app/{path}/{rows[model]}/change/"
    substitutes = {"admin": str(admin_user.pk), "session": str(ContentType.objects.get(app_label="sessions", model="session").pk)}
    data = {k: (substitutes.get(v, v) if isinstance(v, str) and k in ("user", "content_type") else v) for k, v in values.items()}
    response = admin_client.post(url, data)
    assert response.status_code in allowed, (response.status_code, response.content[:3000])
    if response.status_code == 200:
        assert b"errornote" in response.content or b"errorlist" in response.content, response.content[:3000]
