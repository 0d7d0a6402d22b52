"""The "connect a client" page (mcp_app.connect) and the token admin's user picker: the token is shown once,
the configurations name this site's endpoint and the token, and who may make a token for whom."""

from __future__ import annotations

import json
import shlex

import pytest
from django.contrib.admin.models import ADDITION, LogEntry
from django.contrib.auth.models import Permission, User

from mcp_app.auth import authenticate_sync
from mcp_app.connect import client_configs
from mcp_app.models import Token

pytestmark = pytest.mark.django_db

URL = "/admin/mcp_app/token/connect/"


def staff(*codenames: str, username: str = "ops") -> User:
    user = User.objects.create_user(username, password="pw", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    return user


def create(client, **data) -> object:
    return client.post(URL, {"name": "Laptop", "scopes": "mcp", "expires": "", **data})


def test_the_form_offers_a_user_search_and_the_required_scope(admin_client, admin_user) -> None:
    page = admin_client.get(URL)
    assert page.status_code == 200
    html = page.content.decode()
    assert "admin-autocomplete" in html and 'data-field-name="user"' in html  # the user admin's search
    assert f'<option value="{admin_user.pk}" selected>' in html  # yourself, to begin with
    assert 'name="scopes"' in html and 'value="mcp"' in html
    # The autocomplete endpoint it calls answers for users, searched as the user admin searches.
    User.objects.create_user("findme")
    search = {"app_label": "mcp_app", "model_name": "token", "field_name": "user", "term": "findm"}
    found = admin_client.get("/admin/autocomplete/", search)
    assert [r["text"] for r in found.json()["results"]] == ["findme"]


def test_creating_shows_the_token_once_with_configs_for_this_site(admin_client, admin_user) -> None:
    alice = User.objects.create_user("alice")
    answer = create(admin_client, user=alice.pk, expires="30")
    assert answer.status_code == 200
    assert "no-store" in answer["Cache-Control"]
    key = answer.context["key"]
    token = Token.objects.get()
    assert (token.user, token.name, token.scopes, token.key_hash) == (alice, "Laptop", "mcp", Token.hash(key))
    assert token.expires is not None and 29 <= (token.expires - token.created).days <= 30
    html = answer.content.decode()
    assert html.count(key) >= 9  # the token itself and every configuration
    configs = {c.slug: c for c in answer.context["configs"]}
    vscode = json.loads(configs["vs-code-remote"].text)["servers"]["mcp_app-conformance"]
    assert vscode == {"type": "http", "url": "http://testserver/mcp", "headers": {"Authorization": f"Bearer {key}"}}
    local = json.loads(configs["claude-desktop-local"].text)["mcpServers"]["mcp_app-conformance"]
    assert local["args"][1:] == ["mcp_stdio", "--token", key] and local["args"][0].endswith("manage.py")
    # The token works, as its user, and Django's admin log records who made it.
    principal = authenticate_sync({"type": "http", "headers": [(b"authorization", f"Bearer {key}".encode())]})
    assert principal.user == alice and principal.scopes == {"mcp"}
    entry = LogEntry.objects.get()
    assert (entry.user, entry.action_flag, entry.object_id) == (admin_user, ADDITION, str(token.pk))
    # Afterwards only its prefix is ever shown.
    assert key not in admin_client.get(URL).content.decode()
    listing = admin_client.get("/admin/mcp_app/token/").content.decode()
    assert key not in listing and token.key_prefix in listing


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"scopes": "read"}, "Add mcp: without it the MCP endpoints refuse the token."),
        ({"scopes": 'mcp "x'}, "Not a valid scope"),
        ({"name": ""}, "This field is required."),
        ({"expires": "12"}, "Select a valid choice"),
        ({"user": "abc"}, "Select a valid choice"),
        ({"user": "99999999999999999999999"}, "Select a valid choice"),
    ],
)
def test_bad_input_is_a_form_error_and_makes_no_token(admin_client, admin_user, data, message) -> None:
    answer = create(admin_client, **{"user": admin_user.pk, **data})
    assert answer.status_code == 200
    assert message in answer.content.decode()
    assert not Token.objects.exists()


def test_staff_who_cannot_view_users_make_tokens_only_for_themselves(client) -> None:
    ops = staff("add_token", "view_token")
    other = User.objects.create_user("other")
    client.force_login(ops)
    page = client.get(URL).content.decode()
    assert "admin-autocomplete" not in page and ">other<" not in page and "only create tokens for yourself" in page
    assert "Select a valid choice" in create(client, user=other.pk).content.decode()
    assert create(client, user=ops.pk).context["key"]
    assert Token.objects.get().user == ops
    # The token admin's add form offers them only themselves too, and refuses anyone else.
    form = client.get("/admin/mcp_app/token/add/").content.decode()
    assert f'<option value="{ops.pk}"' in form and f'value="{other.pk}"' not in form
    refused = client.post("/admin/mcp_app/token/add/", {"user": other.pk, "name": "x", "scopes": "mcp"})
    assert refused.status_code == 200 and "Select a valid choice" in refused.content.decode()
    assert Token.objects.count() == 1


def test_only_a_superuser_makes_a_superusers_token(client, admin_user) -> None:
    ops = staff("add_token", "view_user")
    client.force_login(ops)
    assert "Only a superuser may create a token for a superuser." in create(client, user=admin_user.pk).content.decode()
    inactive = User.objects.create_user("gone", is_active=False)
    assert "is inactive" in create(client, user=inactive.pk).content.decode()
    # The token admin's own add form holds to the same rules.
    answer = client.post("/admin/mcp_app/token/add/", {"user": admin_user.pk, "name": "x", "scopes": "mcp"})
    assert answer.status_code == 200 and "Only a superuser may create a token for a superuser." in answer.content.decode()
    assert not Token.objects.exists()


def test_the_token_admin_add_form_searches_users(admin_client) -> None:
    page = admin_client.get("/admin/mcp_app/token/add/").content.decode()
    assert "admin-autocomplete" in page and "vForeignKeyRawIdAdminField" not in page


def test_without_the_add_permission_the_page_is_refused(client) -> None:
    client.force_login(staff("view_token"))
    assert client.get(URL).status_code == 403
    assert client.post(URL, {"name": "x", "scopes": "mcp"}).status_code == 403
    assert not Token.objects.exists()


def test_the_token_list_and_the_app_index_link_to_the_page(admin_client) -> None:
    assert URL.encode() in admin_client.get("/admin/mcp_app/token/").content
    assert URL.encode() in admin_client.get("/admin/mcp_app/").content


def test_every_client_config_carries_the_url_and_header() -> None:
    key = "mcp_secret with space'quote"
    configs = client_configs(
        "https://example.com/mcp",
        key,
        server_name="site",
        python="/venv/bin/python",
        manage_py="/app/manage.py",
        settings_module="s",
    )
    assert {c.client for c in configs} == {"Claude Desktop", "Cursor", "VS Code", "MCP Inspector", "curl"}
    for config in configs:
        if config.where.endswith(".json"):
            json.loads(config.text)
    by_slug = {c.slug: c.text for c in configs}
    bridge = json.loads(by_slug["claude-desktop-remote"])["mcpServers"]["site"]
    assert bridge["args"][-3:] == ["https://example.com/mcp", "--header", "Authorization:${AUTH_HEADER}"]
    assert bridge["env"] == {"AUTH_HEADER": f"Bearer {key}"}
    assert json.loads(by_slug["cursor-remote"]) == {
        "mcpServers": {"site": {"url": "https://example.com/mcp", "headers": {"Authorization": f"Bearer {key}"}}}
    }
    inspector = shlex.split(by_slug["mcp-inspector-remote"])
    assert inspector[inspector.index("--header") + 1] == f"Authorization: Bearer {key}"
    assert "https://example.com/mcp" in inspector
    local = shlex.split(by_slug["mcp-inspector-local"])
    assert local[3:5] == ["-e", "DJANGO_SETTINGS_MODULE=s"] and local[-5:-2] == ["mcp_stdio", "--token", key]
    curl = shlex.split(by_slug["curl-remote"].split("\n#")[0].replace("\\\n", " "))
    assert f"Authorization: Bearer {key}" in curl and json.loads(curl[-1])["method"] == "initialize"
