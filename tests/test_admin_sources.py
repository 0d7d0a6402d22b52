"""The admin shows everything clients can see, whatever its source (code, the exposures' data tools, query
tools, code exposures, code prompts), each with where it comes from, who may use it and a switch that
tools/list, tools/call and resources honour; code values shown on change pages; no Delete for code items and
no Save on read-only pages. Edits go through Django's test client; what clients get through the provider, as
the dispatcher calls it (tests/contexts.py)."""

from __future__ import annotations

import html
import re
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth.models import Permission, User

from mcp_app.conf import mcp_settings
from mcp_app.models import ModelExposure, Prompt, QueryTool, Session, Tool
from mcp_app.protocol import jsonrpc
from mcp_app.protocol.errors import InvalidParams
from mcp_app.providers.code import default_registry
from mcp_app.providers.exposures.resource import default_exposures
from mcp_app.runtime import get_server
from tests.contexts import ctx_for
from tests.wire import assert_valid

pytestmark = pytest.mark.django_db(transaction=True)  # the provider closes connections between calls, as in a server

TOOLS_CHANGED = {"jsonrpc": "2.0", "method": "notifications/tools/list_changed"}


def provider() -> Any:
    return mcp_settings.PROVIDER


def tool_names(user: Any = None) -> set[str]:
    return {t["name"] for t in async_to_sync(provider().list_tools)(ctx_for(user))}


def listed_tool(name: str, user: Any = None) -> dict[str, Any]:
    return {t["name"]: t for t in async_to_sync(provider().list_tools)(ctx_for(user))}[name]


def call(name: str, arguments: dict[str, Any], user: Any = None) -> dict[str, Any]:
    return async_to_sync(provider().call_tool)(name, arguments, ctx_for(user))


@pytest.fixture
def sent(monkeypatch: Any) -> list[dict[str, Any]]:
    """What is broadcast to every open stream (list_changed notifications), in order."""
    messages: list[dict[str, Any]] = []

    async def broadcast(message: dict[str, Any]) -> None:
        messages.append(message)

    monkeypatch.setattr("mcp_app.transports.events.broadcast", broadcast)
    return messages


@pytest.fixture
def superuser() -> User:
    return User.objects.create_superuser("boss", password="x")


def changelist_names(client: Any, url: str, **params: str) -> list[str]:
    page = client.get(url, params)
    assert page.status_code == 200
    return [str(obj) for obj in page.context["cl"].result_list]


# -- every tool, with its source -----------------------------------------------------------------------------
def test_the_tool_list_shows_every_tool_clients_see_with_its_source_and_audience(admin_client, superuser) -> None:
    client_sees = tool_names(superuser)
    assert {"uppercase_text", "library_book_list", "library_author_get"} <= client_sees
    listed = changelist_names(admin_client, "/admin/mcp_app/tool/")
    assert client_sees <= set(listed)
    assert Tool.objects.get(name="library_book_list").source == Tool.Source.DATA
    assert Tool.objects.get(name="library_book_list").exposure == "library.book"
    page = admin_client.get("/admin/mcp_app/tool/").content.decode()
    assert "data tool of library.book" in page and "Where it comes from" in page and "Who may use it" in page
    assert "anyone" in page  # the public catalogue's data tools
    assert "view permission (library.view_member)" in page  # members: librarians only
    # Searching by source or exposure finds the data tools.
    found = changelist_names(admin_client, "/admin/mcp_app/tool/", q="library")
    assert found and all(name.startswith("library_") for name in found)
    assert "library_book_list" in found and "uppercase_text" not in found
    assert set(changelist_names(admin_client, "/admin/mcp_app/tool/", source__exact="code")) == set(default_registry.tools)


def test_syncing_rows_is_idempotent_and_keeps_the_admins_edits() -> None:
    # A data tool its exposure no longer makes (renamed or dropped since) loses its row; one of an exposure
    # that is off keeps it, switch and all, for when the exposure comes back.
    Tool.objects.create(name="library_author_search", source=Tool.Source.DATA, exposure="library.author")
    Tool.objects.create(name="shelf_shelf_list", source=Tool.Source.DATA, exposure="shelf.shelf", enabled=False)
    provider().sync(exposures=True)
    assert not Tool.objects.filter(name="library_author_search").exists()
    assert Tool.objects.get(name="shelf_shelf_list").enabled is False
    Tool.objects.filter(name="library_book_list").update(enabled=False, title="Books")
    before = sorted(Tool.objects.values_list("name", "source", "exposure", "enabled", "title"))
    exposures = sorted(ModelExposure.objects.values_list("content_type_id", "source", "enabled"))
    provider().sync(exposures=True)
    provider().sync()
    assert sorted(Tool.objects.values_list("name", "source", "exposure", "enabled", "title")) == before
    assert sorted(ModelExposure.objects.values_list("content_type_id", "source", "enabled")) == exposures
    assert len(exposures) == len(default_exposures.exposures)  # one row per code exposure, made once


# -- the switch, for every source ---------------------------------------------------------------------------
def test_disabling_a_data_tool_in_the_list_hides_it_refuses_calls_and_tells_clients(admin_client, superuser, sent) -> None:
    admin_client.get("/admin/mcp_app/tool/")  # the list makes the rows
    row = Tool.objects.get(name="library_author_list")
    assert "library_author_list" in tool_names(superuser)
    answer = admin_client.post("/admin/mcp_app/tool/", {"action": "disable", "_selected_action": [row.pk]})
    assert answer.status_code == 302
    assert TOOLS_CHANGED in sent
    assert "library_author_list" not in tool_names(superuser) and "library_author_list" not in tool_names()
    with pytest.raises(InvalidParams, match="Unknown tool: 'library_author_list'. Call tools/list"):
        call("library_author_list", {}, superuser)
    assert "library_author_get" in tool_names(superuser)  # the exposure's other tools stay
    sent.clear()
    admin_client.post("/admin/mcp_app/tool/", {"action": "enable", "_selected_action": [row.pk]})
    assert TOOLS_CHANGED in sent
    assert call("library_author_list", {}, superuser).get("isError") is not True


def test_the_enabled_box_of_the_tool_list_is_the_switch(admin_client, sent) -> None:
    admin_client.get("/admin/mcp_app/tool/")
    rows = list(Tool.objects.order_by("name"))
    data = {"form-TOTAL_FORMS": len(rows), "form-INITIAL_FORMS": len(rows), "_save": "Save"}
    for i, row in enumerate(rows):
        data[f"form-{i}-id"] = row.pk
        if row.name not in ("uppercase_text", "library_book_get"):
            data[f"form-{i}-enabled"] = "on"
    assert admin_client.post("/admin/mcp_app/tool/", data).status_code == 302
    assert TOOLS_CHANGED in sent
    names = tool_names()
    assert "uppercase_text" not in names and "library_book_get" not in names and "library_book_list" in names
    with pytest.raises(InvalidParams, match="Unknown tool"):
        call("uppercase_text", {"text": "hi"})
    with pytest.raises(InvalidParams, match="Unknown tool"):
        call("library_book_get", {"pk": 1})


def test_a_query_tool_has_a_row_whose_switch_is_its_own(admin_client, superuser, sent) -> None:
    query = QueryTool(name="recent_books", exposure="library.book", operation="list", ordering="-published", limit=5)
    query.full_clean()
    query.save()
    admin_client.get("/admin/mcp_app/tool/")
    row = Tool.objects.get(name="recent_books")
    assert (row.source, row.exposure, row.enabled) == (Tool.Source.QUERY, "library.book", True)
    page = admin_client.get("/admin/mcp_app/tool/", {"q": "recent"}).content.decode()
    assert "query tool on library.book" in page and f"/admin/mcp_app/querytool/{query.pk}/change/" in page
    assert "recent_books" in tool_names(superuser)
    own_page = admin_client.get(f"/admin/mcp_app/querytool/{query.pk}/change/").content.decode()
    assert f"/admin/mcp_app/tool/{row.pk}/change/" in own_page and "anyone" in own_page  # where to restrict it
    sent.clear()
    admin_client.post("/admin/mcp_app/tool/", {"action": "disable", "_selected_action": [row.pk]})
    assert TOOLS_CHANGED in sent
    assert QueryTool.objects.get(pk=query.pk).enabled is False  # one switch
    assert "recent_books" not in tool_names(superuser)
    with pytest.raises(InvalidParams, match="Unknown tool: 'recent_books'"):
        call("recent_books", {}, superuser)
    query.refresh_from_db()
    query.enabled = True
    query.save()  # switched on from the query tool's own page: the row follows
    assert Tool.objects.get(name="recent_books").enabled is True and "recent_books" in tool_names(superuser)
    # Its row is deleted with the query tool, not on its own (it would come back).
    assert admin_client.post(f"/admin/mcp_app/tool/{row.pk}/delete/", {"post": "yes"}).status_code == 403
    query.delete()
    assert not Tool.objects.filter(name="recent_books").exists()
    # A bulk delete (no delete() per row) leaves the row to the next sync.
    again = QueryTool.objects.create(name="again_books", exposure="library.book", operation="list", limit=5)
    admin_client.get("/admin/mcp_app/tool/")
    assert Tool.objects.filter(name="again_books").exists()
    QueryTool.objects.filter(pk=again.pk).delete()
    admin_client.get("/admin/mcp_app/tool/")
    assert not Tool.objects.filter(name="again_books").exists()


def test_a_data_tool_row_restricts_it_to_permission_holders(superuser) -> None:
    provider().sync()
    row = Tool.objects.get(name="library_book_list")
    row.required_permissions.add(Permission.objects.get(codename="change_book"))
    reader = User.objects.create_user("reader-1")
    clerk = User.objects.create_user("clerk")
    clerk.user_permissions.add(Permission.objects.get(codename="change_book"))
    assert "library_book_list" not in tool_names(reader) and "library_book_list" not in tool_names()
    assert "library_book_get" in tool_names(reader)
    assert "library_book_list" in tool_names(User.objects.get(pk=clerk.pk)) and "library_book_list" in tool_names(superuser)
    with pytest.raises(InvalidParams, match="Unknown tool"):
        call("library_book_list", {}, reader)


def test_a_data_tool_row_retitles_it(admin_client) -> None:
    provider().sync()
    row = Tool.objects.get(name="library_author_get")
    page = admin_client.get(f"/admin/mcp_app/tool/{row.pk}/change/").content.decode()
    assert 'name="input_schema"' not in page and 'name="read_only_hint"' not in page  # the exposure's own
    generated = listed_tool("library_author_get")
    assert f'value="{generated["title"]}"' in page  # the generated title as the default
    answer = admin_client.post(
        f"/admin/mcp_app/tool/{row.pk}/change/", {"enabled": "on", "title": "One author", "description": generated["description"]}
    )
    assert answer.status_code == 302, answer.content[:3000]
    row.refresh_from_db()
    assert row.title == "One author" and row.description == ""  # unchanged: still the generated one
    listed = listed_tool("library_author_get")
    assert listed["title"] == "One author" and listed["description"] == generated["description"]
    assert listed["annotations"]["readOnlyHint"] is True


def test_a_code_exposure_is_listed_read_only_and_its_switch_withdraws_it(admin_client, superuser, sent) -> None:
    listed = changelist_names(admin_client, "/admin/mcp_app/modelexposure/")
    assert {"library.author", "library.book", "library.member", "library.loan"} <= set(listed)
    page = admin_client.get("/admin/mcp_app/modelexposure/").content.decode()
    assert "code (expose())" in page and "PUBLIC: every caller" in page
    assert changelist_names(admin_client, "/admin/mcp_app/modelexposure/", q="book") == ["library.book"]
    # The code rows describe the code's options, so the list's filters hold for them too.
    public = changelist_names(admin_client, "/admin/mcp_app/modelexposure/", public__exact="1")
    assert set(public) == {"library.author", "library.book"}
    book = ModelExposure.objects.get(content_type__model="book", source=ModelExposure.Source.CODE)
    assert book.fields == ["title", "isbn", "author", "genre", "published", "pages"] and book.data_tools is True
    row = ModelExposure.objects.get(content_type__app_label="library", content_type__model="author")
    assert (row.source, row.enabled) == (ModelExposure.Source.CODE, True)
    change = admin_client.get(f"/admin/mcp_app/modelexposure/{row.pk}/change/").content.decode()
    assert 'name="enabled"' in change and 'name="fields"' not in change and 'name="public"' not in change
    assert "django://library/author/{pk}" in change and "library_author_list" in change  # the code's options
    assert "deletelink" not in change
    assert admin_client.post(f"/admin/mcp_app/modelexposure/{row.pk}/delete/", {"post": "yes"}).status_code == 403
    sent.clear()
    # Switched off: the exposure's template and data tools are gone; a forged field is ignored.
    answer = admin_client.post(f"/admin/mcp_app/modelexposure/{row.pk}/change/", {"public": "", "fields": ["name"]})
    assert answer.status_code == 302, answer.content[:3000]
    row.refresh_from_db()
    assert row.enabled is False and row.fields == ["name", "birth_year", "country", "biography"]  # as in code
    assert TOOLS_CHANGED in sent and {"jsonrpc": "2.0", "method": "notifications/resources/list_changed"} in sent
    assert not {"library_author_list", "library_author_get"} & tool_names(superuser)
    templates = async_to_sync(provider().list_resource_templates)(ctx_for(superuser))
    assert "django://library/author/{pk}" not in [t["uriTemplate"] for t in templates]
    with pytest.raises(InvalidParams, match="Unknown tool"):
        call("library_author_get", {"pk": 1}, superuser)
    admin_client.post("/admin/mcp_app/modelexposure/", {"action": "enable", "_selected_action": [row.pk]})
    assert "library_author_list" in tool_names(superuser)


# -- code values on change pages -----------------------------------------------------------------------------
def test_a_code_tools_page_shows_the_codes_values_and_saving_them_keeps_following_the_code(admin_client) -> None:
    provider().sync()
    row = Tool.objects.get(name="uppercase_text")
    page = admin_client.get(f"/admin/mcp_app/tool/{row.pk}/change/").content.decode()
    assert 'value="Uppercase text"' in page  # the code's title, not a blank box
    description = re.search(r'<textarea name="description"[^>]*>(.*?)</textarea>', page, re.S)
    assert description is not None and description.group(1).strip() == "Convert text to uppercase (the tutorial&#x27;s tool)."
    schema = re.search(r'<textarea name="input_schema"[^>]*>(.*?)</textarea>', page, re.S)
    assert schema is not None and schema.group(1).strip() != "null"
    assert "\n  &quot;type&quot;: &quot;object&quot;" in schema.group(1)  # pretty-printed
    read_only = re.search(r'<select name="read_only_hint"[^>]*>(.*?)</select>', page, re.S)
    assert read_only is not None and re.search(r'<option value="true" selected>', read_only.group(1))
    assert "Unknown" not in read_only.group(1)
    destructive = re.search(r'<select name="destructive_hint"[^>]*>(.*?)</select>', page, re.S)
    assert destructive is not None and '<option value="unknown" selected>Not set</option>' in destructive.group(1)
    # Saved as shown: the row stays blank, so it follows the code.
    form = page_form_values(page)
    answer = admin_client.post(f"/admin/mcp_app/tool/{row.pk}/change/", form)
    assert answer.status_code == 302, answer.content[:3000]
    row.refresh_from_db()
    assert (row.title, row.description, row.input_schema, row.read_only_hint) == ("", "", None, None)


def page_form_values(page: str) -> dict[str, Any]:
    """The values a browser would post for the tool form as shown (inputs, textareas, selects)."""
    data: dict[str, Any] = {}
    for name, value in re.findall(r'<input type="text" name="(\w+)" value="([^"]*)"', page):
        data[name] = html.unescape(value)
    for name, value in re.findall(r'<textarea name="(\w+)"[^>]*>\n?(.*?)</textarea>', page, re.S):
        data[name] = html.unescape(value)
    for name, options in re.findall(r'<select name="(\w+)"[^>]*>(.*?)</select>', page, re.S):
        chosen = re.search(r'<option value="([^"]*)" selected>', options)
        if chosen:
            data[name] = chosen.group(1)
    if re.search(r'<input type="checkbox" name="enabled"[^>]*checked', page):
        data["enabled"] = "on"
    return data


def test_a_code_prompts_page_shows_the_codes_values(admin_client) -> None:
    provider().sync()
    row = Prompt.objects.get(name="shout")
    Prompt.objects.create(name="written_here")
    assert "shout" in changelist_names(admin_client, "/admin/mcp_app/prompt/", q="code")  # searchable by source
    assert changelist_names(admin_client, "/admin/mcp_app/prompt/", q="admin") == ["written_here"]
    listing = admin_client.get("/admin/mcp_app/prompt/").content.decode()
    assert "Where it comes from" in listing and "Who may use it" in listing and 'name="form-0-enabled"' in listing
    page = admin_client.get(f"/admin/mcp_app/prompt/{row.pk}/change/").content.decode()
    assert 'value="Shout"' in page and "deletelink" not in page
    assert admin_client.get(f"/admin/mcp_app/prompt/{row.pk}/delete/").status_code == 403
    answer = admin_client.post(f"/admin/mcp_app/prompt/{row.pk}/change/", {"enabled": "on", "title": "Shout", "description": ""})
    assert answer.status_code == 302, answer.content[:3000]
    row.refresh_from_db()
    assert row.title == ""  # as the code has it: still following the code


# -- no Delete for code items, no Save where nothing can be saved ----------------------------------------------
def test_code_items_have_no_delete_but_orphans_do(admin_client) -> None:
    provider().sync()
    code = Tool.objects.get(name="uppercase_text")
    data = Tool.objects.get(name="library_book_list")
    orphan = Tool.objects.create(name="removed_from_code")
    for row in (code, data):
        page = admin_client.get(f"/admin/mcp_app/tool/{row.pk}/change/").content.decode()
        assert "deletelink" not in page
        assert admin_client.post(f"/admin/mcp_app/tool/{row.pk}/delete/", {"post": "yes"}).status_code == 403
    listing = admin_client.get("/admin/mcp_app/tool/").content.decode()
    assert 'value="delete_selected"' not in listing
    assert "deletelink" in admin_client.get(f"/admin/mcp_app/tool/{orphan.pk}/change/").content.decode()
    assert admin_client.post(f"/admin/mcp_app/tool/{orphan.pk}/delete/", {"post": "yes"}).status_code == 302
    assert Tool.objects.filter(pk__in=[code.pk, data.pk]).count() == 2 and not Tool.objects.filter(pk=orphan.pk).exists()
    # Prompts: the bulk delete refuses a choice that holds a code prompt, and takes admin-written ones.
    written = Prompt.objects.create(name="written_here")
    shout = Prompt.objects.get(name="shout")
    refused = admin_client.post(
        "/admin/mcp_app/prompt/", {"action": "delete_selected", "_selected_action": [shout.pk, written.pk], "post": "yes"}
    )
    assert refused.status_code == 403 or b"items defined in code (shout)" in refused.content
    assert Prompt.objects.filter(pk__in=[shout.pk, written.pk]).count() == 2
    admin_client.post("/admin/mcp_app/prompt/", {"action": "delete_selected", "_selected_action": [written.pk], "post": "yes"})
    assert not Prompt.objects.filter(pk=written.pk).exists()


def test_read_only_pages_have_no_save(admin_client) -> None:
    session = Session.objects.create(id="s" * 32, protocol_version="2025-11-25", client_name="probe")
    page = admin_client.get(f"/admin/mcp_app/session/{session.pk}/change/").content.decode()
    assert page.count('name="_save"') == 0 and 'name="_continue"' not in page and "closelink" in page
    assert admin_client.post(f"/admin/mcp_app/session/{session.pk}/change/", {}).status_code == 403
    from mcp_app import workers

    workers._beat("w-readonly", 60)
    page = admin_client.get("/admin/mcp_app/worker/w-readonly/change/").content.decode()
    assert 'name="_save"' not in page and 'name="_continue"' not in page and "closelink" in page
    # An editable page keeps its buttons.
    tool = Tool.objects.get(name="uppercase_text")
    assert 'name="_save"' in admin_client.get(f"/admin/mcp_app/tool/{tool.pk}/change/").content.decode()


# -- forms -------------------------------------------------------------------------------------------------------
def test_the_prompt_add_form_puts_messages_before_the_permissions(admin_client) -> None:
    page = admin_client.get("/admin/mcp_app/prompt/add/").content.decode()
    positions = [
        page.index(marker)
        for marker in (
            'name="name"',
            'name="description"',
            'id="arguments-group"',
            'id="messages-group"',
            'name="required_permissions"',
        )
    ]
    assert positions == sorted(positions)
    assert 'name="messages-0-template"' in page  # a first message to write
    folded = page[page.index('id="messages-group"') :]
    assert re.search(r"<details[^>]*>\s*<summary>.*?Who may use it", folded, re.S)  # folded, last


def test_the_exposure_form_offers_listed_next_to_data_tools(admin_client) -> None:
    from django.contrib.auth.models import Group
    from django.contrib.contenttypes.models import ContentType

    content_type = ContentType.objects.get_for_model(Group)
    admin_client.post("/admin/mcp_app/modelexposure/add/", {"content_type": content_type.pk, "title": "Teams"})
    row = ModelExposure.objects.get(content_type=content_type)
    page = admin_client.get(f"/admin/mcp_app/modelexposure/{row.pk}/change/").content.decode()
    assert page.index('name="data_tools"') < page.index('name="listed"') < page.index('name="data_tools"') + 1500
    data = {"enabled": "on", "title": "Teams", "fields": ["name"], "lookup_field": "pk", "data_tools": "on", "base_filters": "{}"}
    assert admin_client.post(f"/admin/mcp_app/modelexposure/{row.pk}/change/", data).status_code == 302
    row.refresh_from_db()
    assert row.listed is False and row.data_tools is True
    data["listed"] = "on"
    admin_client.post(f"/admin/mcp_app/modelexposure/{row.pk}/change/", data)
    row.refresh_from_db()
    assert row.listed is True


def test_changelists_stay_narrow(admin_client) -> None:
    """At most six columns, and long text as a tooltip, so the lists fit 1366 px (the browser suite measures)."""
    provider().sync()
    title = " ".join(["A very long title"] * 8)
    Tool.objects.filter(name="uppercase_text").update(title=title)
    for url in ("/admin/mcp_app/tool/", "/admin/mcp_app/prompt/", "/admin/mcp_app/modelexposure/"):
        page = admin_client.get(url)
        assert len(page.context["cl"].list_display) <= 7, url  # the action checkbox and six columns
    page = admin_client.get("/admin/mcp_app/tool/", {"q": "uppercase"}).content.decode()
    assert f'<span title="{title}" style="overflow-wrap: anywhere">uppercase_text</span>' in page  # the title: the name's tooltip


def dispatch(method: str, params: dict[str, Any], user: Any = None) -> dict[str, Any]:
    """A JSON-RPC request through the site's dispatcher, as every transport hands it over."""
    return async_to_sync(get_server().dispatcher.handle_request)(jsonrpc.Request(7, method, params), ctx_for(user))


def test_through_the_dispatcher_a_disabled_data_tool_is_not_listed_and_its_call_is_a_clear_error(admin_client, superuser) -> None:
    admin_client.get("/admin/mcp_app/tool/")
    row = Tool.objects.get(name="library_book_get")
    admin_client.post(f"/admin/mcp_app/tool/{row.pk}/change/", {"title": "", "description": ""})  # "enabled" unticked
    assert Tool.objects.get(pk=row.pk).enabled is False
    listed = dispatch("tools/list", {}, superuser)
    assert_valid(listed["result"], "ListToolsResult", "2025-11-25")
    names = [tool["name"] for tool in listed["result"]["tools"]]
    assert "library_book_get" not in names and "library_book_list" in names
    refused = dispatch("tools/call", {"name": "library_book_get", "arguments": {"pk": 1}}, superuser)
    assert refused["error"]["code"] == -32602
    assert refused["error"]["message"] == "Unknown tool: 'library_book_get'. Call tools/list to see the tools you can use."


def test_try_it_runs_a_data_tool(admin_client) -> None:
    from mcpsite.library.models import Author

    Author.objects.create(name="Ada Costa", country="Portugal")
    admin_client.get("/admin/mcp_app/tool/")
    row = Tool.objects.get(name="library_author_list")
    page = admin_client.get(f"/admin/mcp_app/tool/{row.pk}/change/").content.decode()
    assert f"/admin/mcp_app/tool/{row.pk}/try/" in page
    result = admin_client.post(f"/admin/mcp_app/tool/{row.pk}/try/", {"arguments": "{}"}).content.decode()
    assert "Ada Costa" in result


def test_the_session_list_stays_narrow(admin_client) -> None:
    Session.objects.create(id="n" * 32, protocol_version="2025-11-25", client_name="Claude", client_version="1.2")
    page = admin_client.get("/admin/mcp_app/session/")
    assert len(page.context["cl"].list_display) <= 7
    text = page.content.decode()
    assert "Claude 1.2" in text and "Streamable HTTP (2025-11-25)" in text


def test_every_kind_of_row_has_a_working_change_page(admin_client) -> None:
    """Code, data, query and gone tools; code and admin exposures; code and admin prompts; the add pages."""
    from django.contrib.auth.models import Group
    from django.contrib.contenttypes.models import ContentType

    query = QueryTool(name="long_books", exposure="library.book", operation="count", fixed_filters={"pages__gte": 500})
    query.full_clean()
    query.save()
    admin_client.post("/admin/mcp_app/modelexposure/add/", {"content_type": ContentType.objects.get_for_model(Group).pk})
    admin_client.get("/admin/mcp_app/modelexposure/")
    admin_client.get("/admin/mcp_app/tool/")
    Tool.objects.create(name="library_gone_list", source=Tool.Source.DATA, exposure="library.gone")
    written = Prompt.objects.create(name="written_here", description="By hand")
    pages = {
        f"/admin/mcp_app/tool/{Tool.objects.get(name=name).pk}/change/": text
        for name, text in (
            ("uppercase_text", "Definition in code"),
            ("library_book_list", "data tool of library.book"),
            ("long_books", "query tool on library.book"),
            ("library_gone_list", "Not served: its exposure or query tool is off or gone"),
        )
    }
    code_exposure = ModelExposure.objects.get(source=ModelExposure.Source.CODE, content_type__model="loan")
    admin_exposure = ModelExposure.objects.get(source=ModelExposure.Source.ADMIN)
    pages[f"/admin/mcp_app/modelexposure/{code_exposure.pk}/change/"] = "signed-in users"
    pages[f"/admin/mcp_app/modelexposure/{admin_exposure.pk}/change/"] = 'name="listed"'
    pages[f"/admin/mcp_app/prompt/{Prompt.objects.get(name='shout').pk}/change/"] = "Definition in code"
    pages[f"/admin/mcp_app/prompt/{written.pk}/change/"] = 'name="messages-TOTAL_FORMS"'
    pages["/admin/mcp_app/prompt/add/"] = 'name="arguments-TOTAL_FORMS"'
    pages["/admin/mcp_app/querytool/add/"] = 'name="exposure"'
    for url, text in pages.items():
        page = admin_client.get(url)
        assert page.status_code == 200, url
        assert text in page.content.decode(), (url, text)


def test_rows_are_synced_after_migrate_only_when_the_migrated_state_has_their_columns() -> None:
    """``migrate mcp_app 0012`` (a rollback) sends post_migrate too: syncing then would query columns that are
    not there any more (sqlite3.OperationalError: no such column: mcp_app_tool.source)."""
    from django.db import connection
    from django.db.migrations.loader import MigrationLoader

    from mcp_app.apps import _columns_current

    loader = MigrationLoader(connection)
    assert _columns_current(loader.project_state(("mcp_app", "0012_modelexposure_listed")).apps) is False
    assert _columns_current(loader.project_state().apps) is True
