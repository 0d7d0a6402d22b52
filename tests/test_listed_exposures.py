"""``listed=False`` (issue 15): an exposure whose rows stay out of ``resources/list`` and are still reached
through its template (read, completion, subscriptions) and its data tools. In code it is
``expose(..., listed=False)``; in the admin, the ModelExposure row's ``listed`` field.

The demo's books and loans are exposed that way (mcpsite/library/mcp.py); its authors are listed.
"""

from __future__ import annotations

import json
from datetime import date
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth.models import Group
from django.contrib.contenttypes.models import ContentType

from mcp_app.conf import mcp_settings
from mcp_app.models import ModelExposure, Subscription
from mcp_app.protocol import jsonrpc
from mcp_app.providers.exposures.resource import ModelResource, default_exposures
from mcp_app.runtime import get_server
from mcpsite.library.models import Author, Book
from tests.contexts import ctx_for

pytestmark = pytest.mark.django_db(transaction=True)


def request(method: str, params: dict[str, Any] | None = None, session: Any = None) -> dict[str, Any]:
    ctx = ctx_for(None, session=session)
    return async_to_sync(get_server().dispatcher.handle_request)(jsonrpc.Request(1, method, params or {}), ctx)


def result(method: str, params: dict[str, Any] | None = None, session: Any = None) -> dict[str, Any]:
    answer = request(method, params, session)
    assert "result" in answer, answer
    return answer["result"]


def listed_uris() -> list[str]:
    uris, cursor = [], None
    for _ in range(100):
        page = result("resources/list", {"cursor": cursor} if cursor else {})
        uris += [r["uri"] for r in page["resources"]]
        cursor = page.get("nextCursor")
        if cursor is None:
            return uris
    raise AssertionError("resources/list never ended")


@pytest.fixture
def catalogue(db: Any) -> dict[str, Any]:
    authors = [Author.objects.create(name=f"Author {i}") for i in range(2)]
    books = [
        Book.objects.create(
            title=f"Book {i}",
            isbn=f"97811111111{i:02d}",
            author=authors[i % 2],
            genre="novel",
            published=date(2001, 1, 1),
            pages=99,
        )
        for i in range(3)
    ]
    mcp_settings.PROVIDER.invalidate()
    return {"authors": authors, "books": books}


def test_the_option_defaults_to_listed() -> None:
    assert ModelResource(Book, fields=["title"]).listed is True
    assert ModelResource(Book, fields=["title"], listed=False).listed is False
    assert default_exposures.exposures["library.book"].listed is False  # the demo's choice
    assert default_exposures.exposures["library.author"].listed is True


def test_unlisted_rows_are_out_of_the_list_and_everywhere_else_as_before(catalogue: dict[str, Any]) -> None:
    book = catalogue["books"][1]
    uri = f"django://library/book/{book.pk}"
    uris = listed_uris()
    assert [u for u in uris if u.startswith("django://")] == [f"django://library/author/{a.pk}" for a in catalogue["authors"]]
    templates = {t["uriTemplate"] for t in result("resources/templates/list")["resourceTemplates"]}
    assert "django://library/book/{pk}" in templates
    assert json.loads(result("resources/read", {"uri": uri})["contents"][0]["text"])["title"] == "Book 1"
    completion = result(
        "completion/complete",
        {"ref": {"type": "ref/resource", "uri": "django://library/book/{pk}"}, "argument": {"name": "pk", "value": ""}},
    )
    assert completion["completion"]["values"] == sorted(str(b.pk) for b in catalogue["books"])
    session = async_to_sync(get_server().sessions.create)(transport="streamable_http", protocol_version="2025-11-25")
    assert result("resources/subscribe", {"uri": uri}, session) == {}
    assert list(Subscription.objects.filter(session_id=session.id).values_list("uri", flat=True)) == [uri]
    call = {"name": "library_book_list", "arguments": {"filters": {"title": "Book 1"}}}
    assert [i["uri"] for i in result("tools/call", call)["structuredContent"]["items"]] == [uri]
    got = result("tools/call", {"name": "library_book_get", "arguments": {"pk": book.pk}})
    assert got["structuredContent"]["uri"] == uri


def test_an_admin_exposure_can_stay_out_of_the_list(catalogue: dict[str, Any]) -> None:
    team = Group.objects.create(name="Team")
    row = ModelExposure.objects.create(
        content_type=ContentType.objects.get_for_model(Group), fields=["name"], enabled=True, public=True, listed=True
    )
    mcp_settings.PROVIDER.invalidate()
    uri = f"django://auth/group/{team.pk}"
    assert uri in listed_uris()
    row.listed = False
    row.save()
    mcp_settings.PROVIDER.invalidate()
    assert ModelResource.from_row(row).listed is False
    assert not any(u.startswith("django://auth/group/") for u in listed_uris())
    assert json.loads(result("resources/read", {"uri": uri})["contents"][0]["text"])["name"] == "Team"
    items = result("tools/call", {"name": "auth_group_list", "arguments": {}})["structuredContent"]["items"]
    assert [i["uri"] for i in items] == [uri]
