"""Credentials can never be published, and client values the database cannot take are refused before any query.

- The credential rule (:func:`mcp_app.providers.exposures.credentials.credential_problem`): credential models and
  password hashes are refused by ``expose()``, by model validation, by the system check and again where exposures
  are served, so a ``ModelExposure`` row saved by the ORM (or a fixture, or a data migration) with every flag set serves nothing.
- The admin, attacked by a staff user holding only the exposure permissions: the model chooser, the publish
  permissions, the admin log.
- Filter, lookup and cursor values that overflow the database's integer range, non-finite numbers, dates that
  overflow in UTC, text with NUL or lone surrogates: -32602 saying what to send, before any query. On SQLite here,
  and on PostgreSQL (a fresh test database, through ``tests.pg_settings``) when it is reachable.
"""

from __future__ import annotations

import decimal
import json
import logging
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Group, Permission, User
from django.contrib.contenttypes.models import ContentType
from django.contrib.sessions.models import Session as DjangoSession
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.db import connection, models
from django.test import Client
from django.test.utils import CaptureQueriesContext
from oauth2_provider.models import (
    get_access_token_model,
    get_application_model,
    get_grant_model,
    get_id_token_model,
    get_refresh_token_model,
)
from rest_framework import serializers

from mcp_app.checks import check_exposures
from mcp_app.conf import mcp_settings
from mcp_app.models import ModelExposure, Subscription, Token, ToolCall
from mcp_app.models import Session as McpSession
from mcp_app.protocol import jsonrpc
from mcp_app.protocol.errors import InvalidParams
from mcp_app.providers.exposures.credentials import credential_problem
from mcp_app.providers.exposures.fields import convert_value, integer_range
from mcp_app.providers.exposures.resource import ModelResource, default_exposures, expose
from mcp_app.providers.exposures.serving import DataView, generated_tools
from mcp_app.runtime import get_server
from mcpsite.library.models import Author, Book, Member
from tests.contexts import ctx_for
from tests.on_postgresql import run_on_postgresql

pytestmark = pytest.mark.django_db(transaction=True)  # the provider works in its own DB thread, as in a server

REPO = Path(__file__).resolve().parent.parent


def request(method: str, params: dict[str, Any] | None = None, user: Any = None) -> dict[str, Any]:
    ctx = ctx_for(user)
    return async_to_sync(get_server().dispatcher.handle_request)(jsonrpc.Request(1, method, params or {}), ctx)


def provider_changed() -> None:
    mcp_settings.PROVIDER.invalidate()


CREDENTIAL_MODELS = [DjangoSession, Token, McpSession, Subscription, ToolCall, ModelExposure]


def oauth_models() -> list[type[models.Model]]:
    return [get_application_model(), get_grant_model(), get_access_token_model(), get_refresh_token_model(), get_id_token_model()]


# -- the rule ------------------------------------------------------------------------------------------------------
def test_credential_models_and_password_hashes_are_refused_by_the_one_rule() -> None:
    for model in [*CREDENTIAL_MODELS, *oauth_models()]:
        problem = credential_problem(model)
        assert problem is not None and "holds credentials" in problem, model
    assert "password hash" in credential_problem(User, ["username", "password"])
    assert credential_problem(User, ["username", "date_joined"]) is None
    assert credential_problem(Book, ["title", "author"]) is None
    # Through a relation (a serializer's source): the member's account's password.
    assert "password hash" in credential_problem(Member, ["user.password"])
    assert credential_problem(Member, ["user.username"]) is None


@pytest.mark.parametrize("model", [*CREDENTIAL_MODELS, "oauth"], ids=lambda m: getattr(m, "__name__", m))
def test_expose_refuses_credential_models_whatever_the_flags(model: Any) -> None:
    for target in oauth_models() if model == "oauth" else [model]:
        field = next(f.name for f in target._meta.concrete_fields if not f.primary_key)
        with pytest.raises(ImproperlyConfigured, match="holds credentials"):
            expose(target, fields=[field], allow_sensitive_fields=True)
        assert target._meta.label_lower not in default_exposures.exposures


def test_expose_refuses_password_fields_even_when_sensitive_fields_are_allowed() -> None:
    with pytest.raises(ImproperlyConfigured, match="password hash.*whatever 'allow sensitive fields' says"):
        expose(User, fields=["username", "password"], allow_sensitive_fields=True)
    with pytest.raises(ImproperlyConfigured, match="password hash"):
        ModelResource(User, fields=["username"], lookup_field="password")  # never as the URI's key either

    class Everything(serializers.ModelSerializer):
        class Meta:
            model = User
            fields = "__all__"

    class MemberWithHash(serializers.ModelSerializer):
        account = serializers.CharField(source="user.password")

        class Meta:
            model = Member
            fields = ["name", "account"]

    with pytest.raises(ImproperlyConfigured, match="'password' is a password hash"):
        expose(User, fields=["username"], serializer_class=Everything)
    with pytest.raises(ImproperlyConfigured, match="'user.password' is a password hash"):
        ModelResource(Member, fields=["name"], serializer_class=MemberWithHash)
    assert "auth.user" not in default_exposures.exposures


def test_model_validation_refuses_credential_rows_and_password_fields() -> None:
    for model in [DjangoSession, Token, *oauth_models()]:
        row = ModelExposure(
            content_type=ContentType.objects.get_for_model(model), fields=[], public=True, allow_sensitive_fields=True
        )
        with pytest.raises(ValidationError) as refused:
            row.full_clean()
        assert "holds credentials" in str(refused.value.message_dict["content_type"]), model
    row = ModelExposure(
        content_type=ContentType.objects.get_for_model(User),
        fields=["username", "password"],
        allow_sensitive_fields=True,
        public=True,
    )
    with pytest.raises(ValidationError) as refused:
        row.full_clean()
    assert "password hash" in str(refused.value.message_dict["fields"])


class _Mutating(ModelResource):
    """An exposure whose fields change after it was checked (a subclass, or code that edits it later)."""


@pytest.fixture
def people(db: Any) -> dict[str, Any]:
    reader = User.objects.create_user("reader", password="reader-secret")
    root = User.objects.create_superuser("root", password="root-secret")
    provider_changed()
    return {"reader": reader, "root": root}


def _served_text(user: Any, uri: str, tool: str) -> str:
    """Everything a caller can get about an exposure: templates, tools, a read, a list call."""
    answers = [
        request("resources/templates/list", user=user),
        request("tools/list", user=user),
        request("resources/list", user=user),
        request("resources/read", {"uri": uri}, user),
        request("tools/call", {"name": tool, "arguments": {}}, user),
    ]
    return json.dumps(answers)


def test_a_row_saved_by_the_orm_with_every_flag_serves_no_password(people: dict[str, Any], caplog: Any) -> None:
    """The attack: a row that skipped validation (ORM, fixture, data migration) exposing auth.User's password,
    public, with sensitive fields allowed. It serves nothing at all, to anyone, and says why in the log."""
    ModelExposure.objects.create(
        content_type=ContentType.objects.get_for_model(User),
        enabled=True,
        public=True,
        allow_sensitive_fields=True,
        fields=["username", "password"],
    )
    ModelExposure.objects.create(
        content_type=ContentType.objects.get_for_model(get_access_token_model()),
        enabled=True,
        public=True,
        allow_sensitive_fields=True,
        fields=["token"],
    )
    provider_changed()
    hashes = [people["reader"].password, people["root"].password]
    with caplog.at_level(logging.WARNING, logger="mcp_app"):
        for user in (None, people["reader"], people["root"]):
            seen = _served_text(user, f"django://auth/user/{people['reader'].pk}", "auth_user_list")
            assert not any(h in seen for h in hashes)
            listed = json.dumps(
                [
                    request("resources/templates/list", user=user),
                    request("tools/list", user=user),
                    request("resources/list", user=user),
                ]
            )
            assert "auth/user" not in listed and "auth_user" not in listed and "oauth2_provider" not in listed
            assert error_of(request("resources/read", {"uri": f"django://auth/user/{people['reader'].pk}"}, user)) == -32002
            assert (
                error_of(request("tools/call", {"name": "auth_user_get", "arguments": {"pk": people["reader"].pk}}, user))
                == -32602
            )
    assert "model exposure auth.user is not served" in caplog.text and "password hash" in caplog.text
    assert "oauth2_provider.accesstoken is not served" in caplog.text


def error_of(answer: dict[str, Any]) -> int | None:
    return answer.get("error", {}).get("code")


def test_an_exposure_changed_after_its_checks_is_refused_where_it_is_served(people: dict[str, Any], caplog: Any) -> None:
    exposure = _Mutating(User, fields=["username"], description="Accounts.")
    default_exposures.register(exposure)
    try:
        provider_changed()
        uri = f"django://auth/user/{people['reader'].pk}"
        assert json.loads(request("resources/read", {"uri": uri}, people["root"])["result"]["contents"][0]["text"]) == {
            "uri": uri,
            "username": "reader",
        }
        exposure.fields.append("password")  # past expose()'s check, so the system check and the server must catch it
        errors = check_exposures()
        assert [e.id for e in errors] == ["mcp_app.E007"] and "password hash" in errors[0].msg
        provider_changed()
        with caplog.at_level(logging.WARNING, logger="mcp_app"):
            for _ in range(3):
                seen = _served_text(people["root"], uri, "auth_user_list")
                assert people["reader"].password not in seen and people["root"].password not in seen
                assert error_of(request("resources/read", {"uri": uri}, people["root"])) == -32002
        refusals = [r for r in caplog.records if "auth.user is not served" in r.getMessage()]
        assert len(refusals) == 1, [r.getMessage() for r in refusals]  # logged once, not per request
    finally:
        default_exposures.unregister("auth.user")
        provider_changed()


# -- the admin, attacked by a staff user with only the exposure permissions -----------------------------------------
EXPOSURE_PERMS = ["add_modelexposure", "change_modelexposure", "view_modelexposure"]


@pytest.fixture
def staff(db: Any) -> tuple[User, Client]:
    user = User.objects.create_user("staffer", password="x", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(content_type__app_label="mcp_app", codename__in=EXPOSURE_PERMS))
    client = Client()
    client.force_login(user)
    return user, client


def grant(user: User, *codenames: str) -> None:
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))


def chooser_labels(client: Client) -> set[str]:
    page = client.get("/admin/mcp_app/modelexposure/add/")
    assert page.status_code == 200
    form = page.context["adminform"].form
    return {f"{ct.app_label}.{ct.model}" for ct in form.fields["content_type"].queryset}


def test_the_chooser_offers_only_models_the_staff_user_may_view(staff: tuple[User, Client], admin_client: Client) -> None:
    user, client = staff
    assert chooser_labels(client) == set()  # the exposure permissions alone show no model
    grant(user, "view_group", "view_book")
    assert chooser_labels(client) == {"auth.group", "library.book"}
    every = chooser_labels(admin_client)  # a superuser: everything, except what holds credentials
    assert {"auth.user", "auth.group", "library.member"} <= every
    forbidden = {m._meta.label_lower for m in [*CREDENTIAL_MODELS, *oauth_models()]} | {"admin.logentry"}
    assert not every & forbidden


@pytest.mark.parametrize("target", ["auth.user", "oauth2_provider.accesstoken", "sessions.session", "mcp_app.token"])
def test_posting_a_model_the_user_may_not_expose_is_a_form_error(
    staff: tuple[User, Client], admin_client: Client, target: str
) -> None:
    user, client = staff
    grant(user, "view_group")
    app_label, model = target.split(".")
    content_type = ContentType.objects.get(app_label=app_label, model=model)
    for who in (client, admin_client):  # not even a superuser may expose credential models
        if who is admin_client and target == "auth.user":
            continue
        page = who.post("/admin/mcp_app/modelexposure/add/", {"content_type": content_type.pk, "title": "x"})
        assert page.status_code == 200 and b"Select a valid choice" in page.content
    assert not ModelExposure.objects.exists()


def test_losing_the_view_permission_is_rechecked_on_save(staff: tuple[User, Client]) -> None:
    user, client = staff
    grant(user, "view_group")
    assert (
        client.post(
            "/admin/mcp_app/modelexposure/add/", {"content_type": ContentType.objects.get_for_model(Group).pk, "title": "Teams"}
        ).status_code
        == 302
    )
    row = ModelExposure.objects.get()
    user.user_permissions.remove(Permission.objects.get(codename="view_group"))
    page = client.post(
        f"/admin/mcp_app/modelexposure/{row.pk}/change/",
        {"fields": ["name"], "lookup_field": "pk", "base_filters": "{}", "title": "Teams"},
    )
    assert page.status_code == 200 and b"You may not view auth.Group, so you cannot expose it" in page.content
    row.refresh_from_db()
    assert row.fields == []


def test_password_is_never_offered_nor_accepted(admin_client: Client) -> None:
    user_ct = ContentType.objects.get_for_model(User)
    assert admin_client.post("/admin/mcp_app/modelexposure/add/", {"content_type": user_ct.pk}).status_code == 302
    row = ModelExposure.objects.get()
    url = f"/admin/mcp_app/modelexposure/{row.pk}/change/"
    page = admin_client.get(url)
    assert b'value="username"' in page.content and b'value="password"' not in page.content
    refused = admin_client.post(
        url,
        {
            "fields": ["username", "password"],
            "allow_sensitive_fields": "on",
            "public": "on",
            "lookup_field": "pk",
            "base_filters": "{}",
        },
    )
    assert refused.status_code == 200
    assert b"Select a valid choice. password is not one of the available choices" in refused.content
    row.refresh_from_db()
    assert row.fields == [] and not row.public and not row.allow_sensitive_fields


def test_public_and_sensitive_need_their_own_permissions_and_are_logged(staff: tuple[User, Client]) -> None:
    user, client = staff
    grant(user, "view_group")
    client.post("/admin/mcp_app/modelexposure/add/", {"content_type": ContentType.objects.get_for_model(Group).pk})
    row = ModelExposure.objects.get()
    url = f"/admin/mcp_app/modelexposure/{row.pk}/change/"
    data = {"fields": ["name"], "lookup_field": "pk", "base_filters": "{}", "enabled": "on", "data_tools": "on"}
    form = client.get(url).context["adminform"].form
    assert "public" not in form.fields and "allow_sensitive_fields" not in form.fields  # shown read-only
    saved = client.post(url, {**data, "public": "on", "allow_sensitive_fields": "on"})  # forged: ignored
    assert saved.status_code == 302
    row.refresh_from_db()
    assert row.enabled and row.fields == ["name"] and not row.public and not row.allow_sensitive_fields
    assert request("resources/templates/list")["result"]["resourceTemplates"] == [] or all(
        not t["uriTemplate"].startswith("django://auth/group")
        for t in request("resources/templates/list")["result"]["resourceTemplates"]
    )
    grant(user, "publish_modelexposure", "allow_sensitive_modelexposure")
    user = User.objects.get(pk=user.pk)
    assert client.post(url, {**data, "public": "on", "allow_sensitive_fields": "on"}).status_code == 302
    row.refresh_from_db()
    assert row.public and row.allow_sensitive_fields
    entry = LogEntry.objects.filter(object_id=str(row.pk)).order_by("-action_time", "-pk").first()
    assert entry.user_id == user.pk
    message = entry.get_change_message()
    assert "Made auth.group public: every caller may read it" in message
    assert "Allowed credential-like fields on auth.group" in message
    listing = client.get("/admin/mcp_app/modelexposure/")
    assert b"PUBLIC: every caller" in listing.content and b"ALLOWED" in listing.content
    assert client.post(url, {**data}).status_code == 302  # both ticks off again
    latest = LogEntry.objects.filter(object_id=str(row.pk)).order_by("-action_time", "-pk").first().get_change_message()
    assert "Made auth.group private" in latest and "No longer allows credential-like fields" in latest


# -- values the database cannot take: -32602 before any query ------------------------------------------------------
@pytest.fixture
def catalogue(db: Any) -> dict[str, Any]:
    author = Author.objects.create(name="Ada Costa", birth_year=1950)
    book = Book.objects.create(
        title="Book", isbn="9780000000001", author=author, genre="novel", published=date(2000, 1, 1), pages=120
    )
    provider_changed()
    return {"author": author, "book": book}


BIG = 10**30
UNCONVERTIBLE: list[tuple[str, dict[str, Any], str]] = [
    ("library_book_list", {"filters": {"pages__in": [1, BIG]}}, "out of range; pages takes integers from"),
    ("library_book_list", {"filters": {"pages__gt": BIG}}, "out of range"),
    ("library_book_list", {"filters": {"pages__lte": -BIG}}, "out of range"),
    ("library_book_list", {"filters": {"author": 2**63}}, "out of range; id takes integers from"),
    ("library_book_list", {"filters": {"author__in": [2**64]}}, "out of range"),
    ("library_book_list", {"filters": {"id__gte": BIG}}, "out of range"),
    ("library_book_list", {"filters": {"title": "a\x00b"}}, "NUL"),
    ("library_book_list", {"filters": {"title__icontains": "\ud800"}}, "unpaired surrogates"),
    ("library_book_list", {"filters": {"published__gte": "99999-01-01"}}, "is not a date"),
    ("library_book_list", {"query": "x\x00"}, "NUL"),
    ("library_book_get", {"pk": BIG}, "out of range"),
    ("library_book_list", {"limit": BIG}, "limit must be an integer from 1 to 100"),
    ("auth_user_list", {"filters": {"date_joined__gt": "0001-01-01T00:00:00+05:00"}}, "out of range once converted to UTC"),
    ("auth_user_list", {"filters": {"date_joined__lt": "9999-12-31T23:59:59-05:00"}}, "out of range once converted to UTC"),
]


@pytest.fixture
def accounts(catalogue: dict[str, Any]) -> Any:
    default_exposures.register(ModelResource(User, fields=["username", "date_joined"], permission_classes=None))
    provider_changed()
    yield User.objects.create_superuser("root", password="x")
    default_exposures.unregister("auth.user")
    provider_changed()


@pytest.mark.parametrize(("tool", "arguments", "message"), UNCONVERTIBLE, ids=[str(i) for i in range(len(UNCONVERTIBLE))])
def test_unconvertible_values_are_invalid_params_before_any_query(
    accounts: Any, tool: str, arguments: dict[str, Any], message: str
) -> None:
    exposure = default_exposures.exposures["auth.user" if tool.startswith("auth") else "library.book"]
    data_tool = {t.name: t for t in generated_tools(exposure)}[tool]
    view = DataView({exposure.key: exposure}, accounts, get_server().dispatcher.cursors)
    with CaptureQueriesContext(connection) as queries, pytest.raises(InvalidParams) as refused:
        view.run(data_tool, arguments)
    assert message in refused.value.message and queries.captured_queries == []
    # On the wire: -32602 with the same message, never -32603.
    answer = request("tools/call", {"name": tool, "arguments": arguments}, accounts)
    assert answer["error"]["code"] == -32602 and message in answer["error"]["message"], answer
    if "takes integers from" in message:
        low, high = answer["error"]["data"]["minimum"], answer["error"]["data"]["maximum"]
        assert low < 0 < high < BIG and f"from {low} to {high}" in answer["error"]["message"]


def test_unconvertible_uris_and_completions_are_simply_not_found(catalogue: dict[str, Any]) -> None:
    for uri in (f"django://library/book/{BIG}", "django://library/book/-99999999999999999999", "django://library/book/1%00"):
        assert request("resources/read", {"uri": uri})["error"]["code"] == -32002
    ref = {"type": "ref/resource", "uri": "django://library/book/{pk}"}
    for value in ("1\x00", "\ud800"):
        answer = request("completion/complete", {"ref": ref, "argument": {"name": "pk", "value": value}})
        assert answer["result"]["completion"]["values"] == [], answer


def test_number_and_decimal_values_must_be_finite_and_fit_the_column() -> None:
    duration = ToolCall._meta.get_field("duration_ms")  # a FloatField
    for value in (float("inf"), float("nan"), 10**400):
        with pytest.raises(InvalidParams, match="finite number|is not a number"):
            convert_value(duration, value, where="filters.duration_ms")
    assert convert_value(duration, 1.5, where="x") == 1.5
    price = models.DecimalField(max_digits=5, decimal_places=2, name="price")
    for value in ("NaN", "Infinity", "1e999999999"):
        with pytest.raises(InvalidParams, match="finite decimal|digits|is not a decimal number"):
            convert_value(price, value, where="filters.price")
    with pytest.raises(InvalidParams, match=r"price holds up to 5 digits, 2 after the point"):
        convert_value(price, "123456", where="filters.price")
    assert convert_value(price, "123.45", where="x") == decimal.Decimal("123.45")


def test_the_integer_range_is_the_databases() -> None:
    birth_year = Author._meta.get_field("birth_year")  # PositiveSmallIntegerField: a smallint column on PostgreSQL
    expected = (-32768, 32767) if connection.vendor == "postgresql" else (-(2**63), 2**63 - 1)
    assert integer_range(birth_year) == expected
    # A positive column still compares with a negative value: only the storage type's range is refused.
    assert convert_value(birth_year, -1, where="x") == -1
    with pytest.raises(InvalidParams, match=f"from {expected[0]} to {expected[1]}"):
        convert_value(birth_year, expected[1] + 1, where="filters.birth_year")


@pytest.mark.skipif(connection.vendor == "postgresql", reason="already running on PostgreSQL")
def test_the_same_values_on_postgresql() -> None:
    """The value tests again, in a subprocess on a fresh PostgreSQL test database (psycopg raises on NUL and
    on integers past a column's type where SQLite raises OverflowError: both must be -32602 first)."""
    run_on_postgresql(
        "tests/test_exposure_security.py", "unconvertible or integer_range or finite", database_prefix="test_mcp_app_values"
    )
