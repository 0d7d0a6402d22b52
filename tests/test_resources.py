"""Model exposures: permissions, row scoping, related objects, keyset pages, cursors, injection attempts,
secrets, data tools, query tools and the admin, through the dispatcher as a transport calls it.

The demo library (mcpsite.library) is the exposed data: authors and books are public, members need
``library.view_member``, loans need a signed-in user and are scoped to the user's own member card
unless the user has ``library.view_loan``.
"""

from __future__ import annotations

import base64
import json
from datetime import date, timedelta
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.conf import settings
from django.contrib.auth.models import Group, Permission, User
from django.core.management import call_command
from django.test import override_settings

from mcp_app.conf import mcp_settings
from mcp_app.models import ModelExposure, QueryTool, Subscription
from mcp_app.protocol import jsonrpc
from mcp_app.providers.exposures.resource import ModelResource, default_exposures
from mcp_app.runtime import get_server
from mcpsite.library.models import Author, Book, Loan, Member
from tests.contexts import ctx_for

pytestmark = pytest.mark.django_db(transaction=True)  # the provider works in its own DB thread, as in a server


def request(method: str, params: dict[str, Any] | None = None, user: Any = None, session: Any = None) -> dict[str, Any]:
    ctx = ctx_for(user, session=session)
    return async_to_sync(get_server().dispatcher.handle_request)(jsonrpc.Request(1, method, params or {}), ctx)


def result(method: str, params: dict[str, Any] | None = None, user: Any = None) -> dict[str, Any]:
    answer = request(method, params, user)
    assert "result" in answer, answer
    return answer["result"]


def error(method: str, params: dict[str, Any] | None = None, user: Any = None) -> dict[str, Any]:
    answer = request(method, params, user)
    assert "error" in answer, answer
    return answer["error"]


def read(uri: str, user: Any = None) -> dict[str, Any]:
    return json.loads(result("resources/read", {"uri": uri}, user)["contents"][0]["text"])


def call(name: str, arguments: dict[str, Any], user: Any = None) -> dict[str, Any]:
    return result("tools/call", {"name": name, "arguments": arguments}, user)


def provider_changed() -> None:
    mcp_settings.PROVIDER.invalidate()


@pytest.fixture
def library(db: Any) -> dict[str, Any]:
    """Three authors, a dozen books, two members with loans, and the users of the permission matrix."""
    authors = [
        Author.objects.create(name=n, country=c, birth_year=y)
        for n, c, y in (("Ada Costa", "Portugal", 1950), ("Bruno Weber", "Germany", None), ("Chen Xu", "China", 1980))
    ]
    books = [
        Book.objects.create(
            title=f"Book {i:02d}",
            isbn=f"97800000000{i:02d}",
            author=authors[i % 3],
            genre="novel" if i % 2 else "history",
            published=date(2000, 1, 1) + timedelta(days=400 * i),
            pages=100 + 10 * (i % 4),
        )
        for i in range(12)
    ]
    reader = User.objects.create_user("reader", password="x")
    other = User.objects.create_user("other", password="x")
    librarian = User.objects.create_user("librarian", password="x")
    group = Group.objects.create(name="Librarians")
    group.permissions.set(Permission.objects.filter(content_type__app_label="library", codename__startswith="view_"))
    librarian.groups.add(group)
    loans_only = User.objects.create_user("loans_only", password="x")  # view_loan without view_member
    loans_only.user_permissions.add(Permission.objects.get(codename="view_loan"))
    members = [
        Member.objects.create(
            name="Rosa Santos", email="rosa@example.org", card_number="LIB1", joined=date(2020, 1, 1), user=reader
        ),
        Member.objects.create(name="Omar Haddad", email="omar@example.org", card_number="LIB2", joined=date(2021, 1, 1)),
    ]
    loans = [
        Loan.objects.create(
            book=books[i],
            member=members[i % 2],
            borrowed=date(2026, 1, 1) + timedelta(days=i),
            due=date(2026, 2, 1),
            returned=None if i % 3 == 0 else date(2026, 1, 20),
        )
        for i in range(6)
    ]
    provider_changed()
    return {
        "authors": authors,
        "books": books,
        "members": members,
        "loans": loans,
        "reader": reader,
        "other": other,
        "librarian": librarian,
        "loans_only": loans_only,
    }


# -- templates and reads: the permission matrix ---------------------------------------------------------------
def test_templates_follow_permissions(library: dict[str, Any]) -> None:
    def templates(user: Any) -> set[str]:
        return {
            t["uriTemplate"]
            for t in result("resources/templates/list", user=user)["resourceTemplates"]
            if t["uriTemplate"].startswith("django://")
        }

    public = {"django://library/author/{pk}", "django://library/book/{pk}"}
    assert templates(None) == public
    assert templates(library["reader"]) == public | {"django://library/loan/{pk}"}
    assert templates(library["librarian"]) == public | {"django://library/loan/{pk}", "django://library/member/{pk}"}


def test_read_returns_only_allowed_fields_with_relations_as_links(library: dict[str, Any]) -> None:
    book = library["books"][4]
    contents = result("resources/read", {"uri": f"django://library/book/{book.pk}"})["contents"]
    assert contents[0]["mimeType"] == "application/json" and contents[0]["uri"] == f"django://library/book/{book.pk}"
    assert json.loads(contents[0]["text"]) == {
        "uri": f"django://library/book/{book.pk}",
        "title": "Book 04",
        "isbn": "9780000000004",
        "author": f"django://library/author/{book.author_id}",
        "genre": "history",
        "published": (date(2000, 1, 1) + timedelta(days=1600)).isoformat(),
        "pages": 100,
    }
    # The link is a readable resource in its own right.
    assert read(f"django://library/author/{book.author_id}")["name"] == book.author.name


def test_not_found_and_forbidden_are_the_same_error(library: dict[str, Any]) -> None:
    member = library["members"][0]
    cases = [
        f"django://library/member/{member.pk}",  # model not readable
        "django://library/member/999999",  # no such row
        f"django://library/loan/{library['loans'][1].pk}",  # anonymous: loans need a user
        "django://library/book/not-a-number",
        "django://library/book/",
        "django://library/book/1/extra",
        "django://auth/user/1",
        "django://library/book/1%2F2",
    ]
    for uri in cases:
        assert error("resources/read", {"uri": uri}) == {
            "code": -32002,
            "message": f"Resource not found: {uri}",
            "data": {"uri": uri},
        }


def test_row_scoping_and_related_objects_follow_their_own_rules(library: dict[str, Any]) -> None:
    reader, loans = library["reader"], library["loans"]
    own, foreign = loans[0], loans[1]  # loans alternate between the reader's member card and another's
    data = read(f"django://library/loan/{own.pk}", reader)
    # The book is public: linked. The member is not readable by the reader: the relation is left out.
    assert data["book"] == f"django://library/book/{own.book_id}" and "member" not in data
    assert error("resources/read", {"uri": f"django://library/loan/{foreign.pk}"}, reader)["code"] == -32002
    assert error("resources/read", {"uri": f"django://library/loan/{own.pk}"}, library["other"])["code"] == -32002
    # view_loan without view_member: every loan, still without the member link.
    assert "member" not in read(f"django://library/loan/{foreign.pk}", library["loans_only"])
    # A librarian may read members too, so the link is there.
    assert (
        read(f"django://library/loan/{foreign.pk}", library["librarian"])["member"]
        == f"django://library/member/{foreign.member_id}"
    )
    listed = call("library_loan_list", {"limit": 100}, reader)["structuredContent"]["items"]
    assert {item["uri"] for item in listed} == {f"django://library/loan/{loan.pk}" for loan in loans[0::2]}


def test_inactive_or_anonymous_users_get_nothing_restricted(library: dict[str, Any]) -> None:
    librarian = library["librarian"]
    librarian.is_active = False
    librarian.save()
    fresh = User.objects.get(pk=librarian.pk)
    assert error("resources/read", {"uri": f"django://library/member/{library['members'][0].pk}"}, fresh)["code"] == -32002
    assert not any(t["name"].startswith("library_member") for t in result("tools/list", user=fresh)["tools"])


# -- resources/list: keyset pages and cursors ------------------------------------------------------------------
@pytest.fixture
def every_exposure_listed(library: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The library with books and loans in resources/list too (the demo keeps them out, ``listed=False``),
    so that pages run across several exposures and the loans' row scoping shows in the listing."""
    for key in ("library.book", "library.loan"):
        monkeypatch.setattr(default_exposures.exposures[key], "listed", True)
    return library


def walk(user: Any) -> list[str]:
    uris, cursor = [], None
    for _ in range(100):
        page = result("resources/list", {"cursor": cursor} if cursor else {}, user)
        uris += [r["uri"] for r in page["resources"]]
        cursor = page.get("nextCursor")
        if cursor is None:
            return uris
    raise AssertionError("resources/list never ended")


@override_settings(MCP_APP={**settings.MCP_APP, "PAGE_SIZE": 4})
def test_resources_list_pages_through_every_readable_object_once(every_exposure_listed: dict[str, Any]) -> None:
    library = every_exposure_listed
    expected_public = (
        ["mcpsite://about"]
        + [f"django://library/author/{a.pk}" for a in library["authors"]]
        + [f"django://library/book/{b.pk}" for b in library["books"]]
    )
    code_resources = [u for u in walk(None) if not u.startswith(("django://", "mcpsite://"))]
    assert [u for u in walk(None) if not u.startswith("test://")] == expected_public
    assert len(code_resources) == len(set(code_resources))
    librarian = [u for u in walk(library["librarian"]) if u.startswith("django://")]
    assert librarian == expected_public[1:] + [f"django://library/loan/{loan.pk}" for loan in library["loans"]] + [
        f"django://library/member/{m.pk}" for m in library["members"]
    ]
    reader = [u for u in walk(library["reader"]) if u.startswith("django://library/loan/")]
    assert reader == [f"django://library/loan/{loan.pk}" for loan in library["loans"][0::2]]


def test_a_page_that_ends_with_the_code_resources_loses_no_row(every_exposure_listed: dict[str, Any]) -> None:
    library = every_exposure_listed
    static = [u for u in walk(None) if not u.startswith("django://")]
    expected = [f"django://library/author/{a.pk}" for a in library["authors"]] + [
        f"django://library/book/{b.pk}" for b in library["books"]
    ]
    for size in (len(static), len(static) + 3, 1):  # the code resources fill the page exactly; an exposure does
        with override_settings(MCP_APP={**settings.MCP_APP, "PAGE_SIZE": size}):
            uris = walk(None)
        assert uris == static + expected, size


@override_settings(MCP_APP={**settings.MCP_APP, "PAGE_SIZE": 4})
def test_forged_and_tampered_cursors_are_refused(every_exposure_listed: dict[str, Any]) -> None:
    first = result("resources/list")
    cursor = first["nextCursor"]
    payload, mac = cursor.split(".")
    state = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    forged_state = base64.urlsafe_b64encode(json.dumps({**state, "p": {"e": "library.member", "a": 0}}).encode())
    forged = forged_state.rstrip(b"=").decode() + "." + mac  # a position edited, the old signature kept
    tool_cursor = call("library_book_list", {"limit": 1})["structuredContent"]["nextCursor"]
    for bad in [
        forged,
        cursor[:-2] + ("AA" if not cursor.endswith("AA") else "BB"),
        "x",
        "",
        "a.b.c",
        12,
        tool_cursor,
        payload + ".",
        "." + mac,
        "€." + mac,
    ]:
        answer = error("resources/list", {"cursor": bad})
        assert answer["code"] == -32602 and "cursor" in answer["message"].lower(), (bad, answer)
    # A cursor signed with another site's key is refused too.
    with override_settings(SECRET_KEY="another-site", MCP_APP={**settings.MCP_APP, "PAGE_SIZE": 4}):
        foreign = result("resources/list")["nextCursor"]
    assert error("resources/list", {"cursor": foreign})["code"] == -32602
    # The genuine one still works, and the anonymous caller's cursor cannot reach a restricted exposure.
    assert result("resources/list", {"cursor": cursor})["resources"]


# -- completion ---------------------------------------------------------------------------------------------
def test_completion_suggests_existing_keys_the_caller_may_read(library: dict[str, Any]) -> None:
    pks = sorted(str(b.pk) for b in library["books"])
    prefix = pks[0][:-1] if len(pks[0]) > 1 else ""
    values = result(
        "completion/complete",
        {"ref": {"type": "ref/resource", "uri": "django://library/book/{pk}"}, "argument": {"name": "pk", "value": prefix}},
    )["completion"]["values"]
    assert set(values) == {p for p in pks if p.startswith(prefix)}
    # Members are not readable anonymously: the template is unknown to this caller.
    assert (
        error(
            "completion/complete",
            {"ref": {"type": "ref/resource", "uri": "django://library/member/{pk}"}, "argument": {"name": "pk", "value": ""}},
        )["code"]
        == -32602
    )
    member_pks = result(
        "completion/complete",
        {"ref": {"type": "ref/resource", "uri": "django://library/member/{pk}"}, "argument": {"name": "pk", "value": ""}},
        library["librarian"],
    )
    assert member_pks["completion"]["values"] == sorted(str(m.pk) for m in library["members"])


# -- data tools -------------------------------------------------------------------------------------------------
def test_data_tools_are_listed_per_readable_exposure_with_allowlisted_schemas(library: dict[str, Any]) -> None:
    tools = {t["name"]: t for t in result("tools/list")["tools"]}
    assert {"library_book_list", "library_book_get", "library_author_list", "library_author_get"} <= set(tools)
    assert not any(name.startswith(("library_member", "library_loan")) for name in tools)
    schema = tools["library_book_list"]["inputSchema"]
    assert set(schema["properties"]) == {"query", "filters", "order_by", "limit", "cursor"}
    assert schema["additionalProperties"] is False
    # The filters are patterns (tests/test_data_tool_schemas.py checks that they accept exactly the allowed keys).
    filters = schema["properties"]["filters"]
    assert filters["additionalProperties"] is False and "properties" not in filters
    assert filters["patternProperties"]["^genre$"]["enum"][:2] == ["novel", "mystery"]
    assert tools["library_book_get"]["annotations"]["readOnlyHint"] is True
    librarian_tools = {t["name"] for t in result("tools/list", user=library["librarian"])["tools"]}
    assert {"library_member_list", "library_loan_list"} <= librarian_tools


def test_list_filters_orders_and_pages_like_the_orm(library: dict[str, Any]) -> None:
    arguments = {"filters": {"published__gte": "2003-01-01", "genre": "history"}, "order_by": ["-pages", "title"], "limit": 2}
    expected = [
        f"django://library/book/{pk}"
        for pk in Book.objects.filter(published__gte="2003-01-01", genre="history")
        .order_by("-pages", "title", "pk")
        .values_list("pk", flat=True)
    ]
    seen, cursor = [], None
    while True:
        page = call("library_book_list", {**arguments, **({"cursor": cursor} if cursor else {})})["structuredContent"]
        assert len(page["items"]) <= 2
        seen += [item["uri"] for item in page["items"]]
        cursor = page.get("nextCursor")
        if cursor is None:
            break
    assert seen == expected and len(expected) > 2


def test_keyset_pages_handle_null_ordering_values(library: dict[str, Any]) -> None:
    for order in (["returned"], ["-returned"], ["returned", "-borrowed"]):
        seen, cursor = [], None
        while True:
            args = {"order_by": order, "limit": 1, **({"cursor": cursor} if cursor else {})}
            page = call("library_loan_list", args, library["librarian"])["structuredContent"]
            seen += [item["uri"] for item in page["items"]]
            cursor = page.get("nextCursor")
            if cursor is None:
                break
        assert len(seen) == len(set(seen)) == len(library["loans"]), order
        returned = [Loan.objects.get(pk=uri.rsplit("/", 1)[1]).returned for uri in seen]
        nulls = [r is None for r in returned]
        # NULL sorts as the largest value: last ascending, first descending.
        assert nulls == sorted(nulls) if not order[0].startswith("-") else nulls == sorted(nulls, reverse=True)


def test_cursor_is_bound_to_its_query(library: dict[str, Any]) -> None:
    cursor = call("library_book_list", {"filters": {"genre": "novel"}, "limit": 1})["structuredContent"]["nextCursor"]
    for other in ({"filters": {"genre": "history"}, "limit": 1}, {"filters": {"genre": "novel"}, "order_by": ["title"]}):
        answer = error("tools/call", {"name": "library_book_list", "arguments": {**other, "cursor": cursor}})
        assert answer["code"] == -32602 and "cursor" in answer["message"]
    assert error("tools/call", {"name": "library_author_list", "arguments": {"cursor": cursor}})["code"] == -32602


def test_search_and_get(library: dict[str, Any]) -> None:
    found = call("library_author_list", {"query": "germany"})["structuredContent"]["items"]
    assert [a["name"] for a in found] == ["Bruno Weber"]
    book = library["books"][3]
    got = call("library_book_get", {"pk": book.pk})
    assert got["structuredContent"]["title"] == "Book 03"
    assert got["content"][1] == {
        "type": "resource_link",
        "uri": f"django://library/book/{book.pk}",
        "name": "Book 03",
        "mimeType": "application/json",
    }
    missing = call("library_book_get", {"pk": 999999})
    assert missing["isError"] is True and "No book with pk 999999" in missing["content"][0]["text"]
    # Out of the caller's rows looks exactly like missing.
    foreign = call("library_loan_get", {"pk": library["loans"][1].pk}, library["reader"])
    assert foreign["isError"] is True and "(or you may not read it)" in foreign["content"][0]["text"]


INJECTIONS: list[tuple[dict[str, Any], str]] = [
    ({"filters": {"author__user__password__startswith": "pbkdf2"}}, "Unknown filter"),
    ({"filters": {"title__regex": "(a+)+$"}}, "Unknown filter"),
    ({"filters": {"title__startswith": "B"}}, "Unknown filter"),
    ({"filters": {"_connector": "OR"}}, "Unknown filter"),
    ({"filters": {"_negated": True}}, "Unknown filter"),
    ({"filters": {"author__name": "Ada Costa"}}, "Unknown filter"),
    ({"filters": {"pk__in": [1]}}, "Unknown filter"),
    ({"filters": {"title__icontains": {"$ne": 1}}}, "expected a string"),
    ({"filters": {"pages__gt": "1 OR 1=1"}}, "expected an integer"),
    ({"filters": {"pages__gt": True}}, "expected an integer"),
    ({"filters": {"published__gte": "yesterday"}}, "is not a date"),
    ({"filters": {"author__in": list(range(101))}}, "1 to 100 values"),
    ({"filters": {"title": "x" * 1001}}, "limited to 1000"),
    ({"filters": ["title", "x"]}, "filters must be an object"),
    ({"order_by": ["author__user__password"]}, "Cannot order"),
    ({"order_by": ["?"]}, "Cannot order"),
    ({"order_by": ["-author__name"]}, "Cannot order"),
    ({"order_by": ["title; DROP TABLE library_book"]}, "Cannot order"),
    ({"order_by": ["title", "pages", "isbn", "genre"]}, "up to 3"),
    ({"annotate": {"x": "Count('id')"}}, "unknown argument"),
    ({"extra": {"where": ["1=1"]}}, "unknown argument"),
    ({"limit": 0}, "limit must be"),
    ({"limit": 101}, "limit must be"),
    ({"limit": "5"}, "limit must be"),
    ({"limit": True}, "limit must be"),
]


@pytest.mark.parametrize(("arguments", "message"), INJECTIONS, ids=[str(i) for i in range(len(INJECTIONS))])
def test_injection_attempts_are_refused_naming_what_is_allowed(
    library: dict[str, Any], arguments: dict[str, Any], message: str
) -> None:
    answer = error("tools/call", {"name": "library_book_list", "arguments": arguments})
    assert answer["code"] == -32602 and message in answer["message"], answer
    if message == "Unknown filter":
        assert "title__icontains" in answer["message"] and "title__icontains" in answer["data"]["allowed"]
    if message == "Cannot order":
        assert answer["data"]["allowed"][:2] == ["id", "-id"]
    assert "Traceback" not in answer["message"] and "SELECT" not in answer["message"]


def test_search_query_is_bounded(library: dict[str, Any]) -> None:
    for query in ("", "   ", "x" * 1001, 7):
        assert error("tools/call", {"name": "library_book_list", "arguments": {"query": query}})["code"] == -32602
    # Loans have no text field to search: their list tool takes no query at all.
    refused = error("tools/call", {"name": "library_loan_list", "arguments": {"query": "x"}}, library["librarian"])
    assert refused["code"] == -32602 and "unknown argument(s) query" in refused["message"]


# -- secrets ------------------------------------------------------------------------------------------------------
def test_secrets_never_appear_in_values_schemas_descriptions_or_errors(library: dict[str, Any]) -> None:
    hashed = User.objects.get(username="reader").password
    exposure = default_exposures.register(
        ModelResource(User, fields=["username", "date_joined"], description="Accounts (names only).")
    )
    provider_changed()
    try:
        admin_user = User.objects.create_superuser("root", password="s3cret-pass")
        seen = json.dumps(
            [
                result("tools/list", user=admin_user),
                result("resources/templates/list", user=admin_user),
                read(f"django://auth/user/{library['reader'].pk}", admin_user),
                call("auth_user_list", {"limit": 100}, admin_user),
                error(
                    "tools/call",
                    {"name": "auth_user_list", "arguments": {"filters": {"password__startswith": "pbkdf2"}}},
                    admin_user,
                ),
                error("tools/call", {"name": "auth_user_list", "arguments": {"order_by": ["password"]}}, admin_user),
            ]
        )
        assert hashed not in seen and User.objects.get(username="root").password not in seen and "s3cret" not in seen
        assert '"password' not in seen.replace('"password__startswith', "")  # only the caller's own attempt is echoed
        assert "reader" in seen  # the allowed field is there
        assert exposure.sensitive_fields() == []
    finally:
        default_exposures.unregister("auth.user")
        provider_changed()


def test_system_check_refuses_credential_fields_unless_acknowledged() -> None:
    from django.core.exceptions import ImproperlyConfigured
    from rest_framework import serializers

    from mcp_app.checks import check_exposures

    class WithHint(serializers.ModelSerializer):
        token_hint = serializers.SerializerMethodField()

        class Meta:
            model = User
            fields = ["username", "token_hint"]

        def get_token_hint(self, obj: User) -> str:
            return obj.username[:1]

    default_exposures.register(ModelResource(User, fields=["username"], serializer_class=WithHint))
    try:
        errors = check_exposures()
        assert [e.id for e in errors] == ["mcp_app.E004"] and "token_hint" in errors[0].msg
        default_exposures.unregister("auth.user")
        default_exposures.register(
            ModelResource(User, fields=["username"], serializer_class=WithHint, allow_sensitive_fields=True)
        )
        assert check_exposures() == []
    finally:
        default_exposures.unregister("auth.user")
    # Password hashes are not "sensitive fields" to acknowledge: they are never exposed.
    with pytest.raises(ImproperlyConfigured, match="password hash"):
        ModelResource(User, fields=["username", "password"], allow_sensitive_fields=True)
    out = __import__("io").StringIO()
    call_command("check", stdout=out)  # the demo's own exposures pass


def test_bad_code_exposures_fail_loudly() -> None:
    from django.core.exceptions import ImproperlyConfigured

    for kwargs, message in [
        ({"fields": "title"}, "list of field names"),
        ({"fields": ["nope"]}, "not a field"),
        ({"fields": ["loans"]}, "reverse relation"),
        ({"fields": ["title"], "lookup_field": "title"}, "must be unique"),
        ({"fields": ["title"], "ordering": ["pages"]}, "not an allowed field"),
        ({"fields": ["title"], "search_fields": ["isbn"]}, "allowed text field"),
    ]:
        with pytest.raises(ImproperlyConfigured, match=message):
            ModelResource(Book, **kwargs)
    with pytest.raises(ImproperlyConfigured, match="exposed twice"):
        default_exposures.register(ModelResource(Book, fields=["title"]))


# -- subscriptions -------------------------------------------------------------------------------------------------
def test_subscribe_needs_a_readable_resource(library: dict[str, Any]) -> None:
    record = async_to_sync(get_server().sessions.create)(transport="streamable_http", protocol_version="2025-11-25")
    member_uri = f"django://library/member/{library['members'][0].pk}"
    answer = request("resources/subscribe", {"uri": member_uri}, None, record)
    assert answer["error"]["code"] == -32002
    book_uri = f"django://library/book/{library['books'][0].pk}"
    assert request("resources/subscribe", {"uri": book_uri}, None, record)["result"] == {}
    assert request("resources/subscribe", {"uri": book_uri}, None, record)["result"] == {}  # idempotent
    assert list(Subscription.objects.filter(session_id=record.id).values_list("uri", flat=True)) == [book_uri]
    assert request("resources/unsubscribe", {"uri": book_uri}, None, record)["result"] == {}
    assert not Subscription.objects.filter(session_id=record.id).exists()


def test_subscriptions_per_session_are_capped(library: dict[str, Any]) -> None:
    record = async_to_sync(get_server().sessions.create)(transport="streamable_http", protocol_version="2025-11-25")
    uris = [f"django://library/book/{book.pk}" for book in library["books"][:3]]
    with override_settings(MCP_APP={**settings.MCP_APP, "MAX_SUBSCRIPTIONS": 2}):
        for uri in uris[:2]:
            assert request("resources/subscribe", {"uri": uri}, None, record)["result"] == {}
        assert request("resources/subscribe", {"uri": uris[0]}, None, record)["result"] == {}  # again: no new row
        refused = request("resources/subscribe", {"uri": uris[2]}, None, record)["error"]
        assert refused["code"] == -32602 and "2 subscriptions" in refused["message"]
    assert Subscription.objects.filter(session_id=record.id).count() == 2


def test_saves_notify_subscribers_once_per_transaction_after_commit(library: dict[str, Any], monkeypatch: Any) -> None:
    from django.db import transaction

    from mcp_app import notifications

    sent: list[tuple[str, dict[str, Any]]] = []

    async def resources_updated(uris: list[str], sessions: dict[str, list[str]] | None = None) -> None:
        for uri, ids in (sessions or {}).items():  # one bus event names every subscribed session
            sent.extend((session_id, jsonrpc.notification(notifications.RESOURCE_UPDATED, {"uri": uri})) for session_id in ids)

    broadcasts: list[dict[str, Any]] = []
    audiences: list[list[str] | None] = []

    async def broadcast_coalesced(message: dict[str, Any], exposures: list[str] | None = None) -> None:
        broadcasts.append(message)
        audiences.append(exposures)

    monkeypatch.setattr("mcp_app.transports.events.resources_updated", resources_updated)
    monkeypatch.setattr("mcp_app.transports.events.broadcast_coalesced", broadcast_coalesced)
    record = async_to_sync(get_server().sessions.create)(transport="streamable_http", protocol_version="2025-11-25")
    book = library["books"][0]
    uri = f"django://library/book/{book.pk}"
    Subscription.objects.create(session_id=record.id, uri=uri)
    with transaction.atomic():
        book.pages += 1
        book.save()
        book.save()
        assert sent == []  # nothing before the commit
    assert sent == [(record.id, {"jsonrpc": "2.0", "method": notifications.RESOURCE_UPDATED, "params": {"uri": uri}})]
    assert broadcasts == []  # a change, not a new row: the list is the same
    with transaction.atomic():
        Author.objects.bulk_create([Author(name="bulk")])  # no signals: nothing
        for i in range(5):
            Author.objects.create(name=f"New {i}")
    assert broadcasts == [{"jsonrpc": "2.0", "method": notifications.RESOURCES_CHANGED}]  # five rows, one notification
    assert audiences == [["library.author"]]  # only for the streams that may read authors
    try:
        with transaction.atomic():
            book.save()
            Author.objects.create(name="rolled back")
            raise RuntimeError
    except RuntimeError:
        pass
    assert len(sent) == 1 and len(broadcasts) == 1  # rolled back: nobody is told
    book.delete()
    # Subscribers hear of it; the demo keeps books out of resources/list (listed=False): no list changed.
    assert sent[-1][1]["params"]["uri"] == uri and len(broadcasts) == 1
    Member.objects.create(name="Not exposed change", email="x@example.org", card_number="LIB9", joined=date(2024, 1, 1))
    assert len(broadcasts) == 2  # members are exposed (to librarians) and listed: their list changed
    # Ended sessions are not notified.
    async_to_sync(get_server().sessions.end)(record.id)
    Subscription.objects.create(session_id=record.id, uri=f"django://library/book/{library['books'][1].pk}")
    library["books"][1].save()
    assert len(sent) == 2


def test_coalescer_sends_first_at_once_and_one_at_the_end_of_the_window() -> None:
    from mcp_app.transports.streams import Coalescer

    c = Coalescer(1.0)
    changed = {"jsonrpc": "2.0", "method": "notifications/resources/list_changed"}
    assert c.offer(changed, 0.0) is changed
    assert c.offer(changed, 0.2) is None and c.offer(changed, 0.5) is None
    assert c.next_due() == 1.0 and c.take_due(0.9) == []
    assert c.take_due(1.0) == [changed] and c.next_due() is None
    assert c.offer(changed, 1.5) is None  # still within a window of the trailing send
    assert c.offer({"method": "other"}, 1.5) is not None  # per method
    assert c.take_due(2.0) == [changed] and c.offer(changed, 3.1) is changed


# -- the admin: exposures and query tools without code ------------------------------------------------------------
def test_admin_exposes_a_model_in_two_steps(library: dict[str, Any], admin_client: Any) -> None:
    from django.contrib.contenttypes.models import ContentType

    group_ct = ContentType.objects.get_for_model(Group)
    add = admin_client.post(
        "/admin/mcp_app/modelexposure/add/", {"content_type": group_ct.pk, "title": "Teams", "description": "Staff teams."}
    )
    row = ModelExposure.objects.get()
    assert add.status_code == 302 and row.enabled is False and row.fields == []
    page = admin_client.get(f"/admin/mcp_app/modelexposure/{row.pk}/change/")
    assert b'value="name"' in page.content and b'value="permissions"' in page.content
    data = {
        "enabled": "on",
        "title": "Teams",
        "description": "Staff teams.",
        "fields": ["name"],
        "lookup_field": "name",
        "ordering": "name",
        "base_filters": '{"name__icontains": "brar"}',
        "data_tools": "on",
    }
    saved = admin_client.post(f"/admin/mcp_app/modelexposure/{row.pk}/change/", data)
    assert saved.status_code == 302, saved.content.decode()[:2000]
    Group.objects.create(name="Hidden")  # outside the base filter
    superuser = User.objects.get(username="admin")
    assert read("django://auth/group/Librarians", superuser) == {"uri": "django://auth/group/Librarians", "name": "Librarians"}
    assert error("resources/read", {"uri": "django://auth/group/Hidden"}, superuser)["code"] == -32002
    assert error("resources/read", {"uri": "django://auth/group/Librarians"})["code"] == -32002  # not public
    assert "auth_group_list" in {t["name"] for t in result("tools/list", user=superuser)["tools"]}
    # Credential-like fields are refused unless acknowledged; bad filters and lookups too.
    user_ct = ContentType.objects.get_for_model(User)
    admin_client.post("/admin/mcp_app/modelexposure/add/", {"content_type": user_ct.pk})
    user_row = ModelExposure.objects.get(content_type=user_ct)
    url = f"/admin/mcp_app/modelexposure/{user_row.pk}/change/"
    refused = admin_client.post(url, {"fields": ["username", "password"], "lookup_field": "pk", "base_filters": "{}"})
    assert refused.status_code == 200 and b"password is not one of the available choices" in refused.content
    refused = admin_client.post(url, {"fields": ["username"], "lookup_field": "pk", "base_filters": '{"password__regex": "x"}'})
    assert refused.status_code == 200 and b"is not a field of User with one of the lookups" in refused.content
    # A model exposed in code cannot get a row.
    book_ct = ContentType.objects.get_for_model(Book)
    doubled = admin_client.post("/admin/mcp_app/modelexposure/add/", {"content_type": book_ct.pk})
    assert doubled.status_code == 200 and b"exposed in code" in doubled.content


def test_admin_query_tools(library: dict[str, Any], admin_client: Any) -> None:
    data = {
        "name": "overdue_loans",
        "enabled": "on",
        "title": "Overdue loans",
        "description": "Loans not returned yet.",
        "exposure": "library.loan",
        "operation": "list",
        "fixed_filters": '{"returned__isnull": true}',
        "caller_filters": '["borrowed__gte"]',
        "ordering": "borrowed",
        "limit": "50",
    }
    created = admin_client.post("/admin/mcp_app/querytool/add/", data)
    assert created.status_code == 302, created.content.decode()[:2000]
    librarian = library["librarian"]
    tool = {t["name"]: t for t in result("tools/list", user=librarian)["tools"]}["overdue_loans"]
    assert set(tool["inputSchema"]["properties"]) == {"filters", "limit", "cursor"}
    assert set(tool["inputSchema"]["properties"]["filters"]["properties"]) == {"borrowed__gte"}
    items = call("overdue_loans", {}, librarian)["structuredContent"]["items"]
    assert [i["uri"] for i in items] == [f"django://library/loan/{loan.pk}" for loan in library["loans"] if loan.returned is None]
    refused = error("tools/call", {"name": "overdue_loans", "arguments": {"filters": {"returned__isnull": False}}}, librarian)
    assert refused["message"] == "Unknown filter 'returned__isnull' for library.loan. Allowed filters: borrowed__gte."
    # The reader sees only their own overdue loans; anonymous callers do not see the tool at all.
    mine = call("overdue_loans", {}, library["reader"])["structuredContent"]["items"]
    assert [i["uri"] for i in mine] == [f"django://library/loan/{library['loans'][0].pk}"]
    assert "overdue_loans" not in {t["name"] for t in result("tools/list")["tools"]}
    count = {
        **data,
        "name": "novels",
        "exposure": "library.book",
        "operation": "count",
        "fixed_filters": '{"genre": "novel"}',
        "caller_filters": "[]",
        "ordering": "",
    }
    assert admin_client.post("/admin/mcp_app/querytool/add/", count).status_code == 302
    assert call("novels", {})["structuredContent"] == {"count": 6}
    bad = {**data, "name": "bad one!", "caller_filters": '["member__user__password"]', "fixed_filters": '{"x": 1}'}
    page = admin_client.post("/admin/mcp_app/querytool/add/", bad)
    assert page.status_code == 200 and QueryTool.objects.count() == 2
    for text in (b"Use 1 to 64 letters", b"A list of the exposure&#x27;s filters", b"is not a field of Loan"):
        assert text in page.content, text
