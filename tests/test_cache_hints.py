"""Caching hints (MCP 2026-07-28, *Server › Utilities › Caching*): ``ttlMs``/``cacheScope`` as the providers
decide them, the knobs (``MCP_APP["CACHE_HINTS"]``, ``@resource(cache_ttl_ms=, cache_scope=)``,
``ModelResource(cache_ttl_ms=, cache_scope=)``), and the rule that a result varying by caller is never public."""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from mcp_app.checks import check_cache_scopes, check_settings
from mcp_app.permissions import AllowAny, IsAuthenticated
from mcp_app.protocol import jsonrpc
from mcp_app.protocol.context import PendingClientRequests, RequestContext
from mcp_app.protocol.envelope import Envelope
from mcp_app.protocol.provider import CacheHint
from mcp_app.providers.code import Registry, default_registry
from mcp_app.providers.exposures.resource import ModelResource, default_exposures
from mcp_app.runtime import get_server
from mcpsite.library.models import Author

V = "2026-07-28"


def ctx() -> RequestContext:
    async def send(message: dict[str, Any]) -> None:
        return None

    return RequestContext(session=Envelope(V, {}), request_id=1, meta={}, send=send, pending=PendingClientRequests())


def hint(registry: Registry, method: str, uri: str | None = None) -> CacheHint:
    return async_to_sync(registry.cache_hint)(method, ctx(), uri=uri)


def open_registry() -> Registry:
    registry = Registry()

    @registry.tool(permission_classes=[AllowAny])
    def ping() -> str:
        """Public."""
        return "pong"

    @registry.resource("demo://open", permission_classes=[AllowAny])
    def open_resource() -> str:
        return "same for all"

    @registry.resource("demo://news", permission_classes=[AllowAny], cache_ttl_ms=5000, cache_scope="public")
    def news() -> str:
        return "news"

    @registry.resource("demo://mine", permission_classes=[IsAuthenticated], cache_ttl_ms=5000, cache_scope="public")
    def mine() -> str:
        return "per user"

    return registry


def test_lists_open_to_all_are_public_until_one_item_is_not() -> None:
    registry = open_registry()
    assert hint(registry, "tools/list") == CacheHint(0, "public")
    assert hint(registry, "resources/list") == CacheHint(0, "private")  # demo://mine is not open to all

    @registry.tool(permission_classes=[IsAuthenticated])
    def secret() -> str:
        """Signed-in users only."""
        return "s"

    assert hint(registry, "tools/list") == CacheHint(0, "private")


def test_reads_take_the_resources_own_hint_and_public_needs_an_open_resource() -> None:
    registry = open_registry()
    assert hint(registry, "resources/read", "demo://open") == CacheHint(0, "private")  # the default
    assert hint(registry, "resources/read", "demo://news") == CacheHint(5000, "public")
    assert hint(registry, "resources/read", "demo://mine") == CacheHint(5000, "private")  # asked public: refused
    assert hint(registry, "resources/read", "demo://nope") == CacheHint(0, "private")


def test_resource_options_are_checked() -> None:
    registry = Registry()
    with pytest.raises(ValueError, match="cache_scope"):
        registry.resource("demo://x", cache_scope="everyone")
    with pytest.raises(ValueError, match="cache_ttl_ms"):
        registry.resource("demo://x", cache_ttl_ms=-1)


def test_site_setting_sets_ttl_and_may_narrow_but_not_widen() -> None:
    registry = open_registry()
    hints = {"tools/list": {"ttl_ms": 60000, "scope": "private"}, "resources/list": {"ttl_ms": 1000, "scope": "public"}}
    with override_settings(MCP_APP={**settings.MCP_APP, "CACHE_HINTS": hints}):
        assert hint(registry, "tools/list") == CacheHint(60000, "private")
        assert hint(registry, "resources/list") == CacheHint(1000, "private")


def test_exposures_are_public_only_when_every_caller_sees_the_same_rows() -> None:
    assert ModelResource(Author, fields=["name"], permission_classes=[AllowAny]).same_for_all
    assert not ModelResource(Author, fields=["name"]).same_for_all  # the model's view permission
    assert not ModelResource(
        Author, fields=["name"], permission_classes=[AllowAny], queryset=lambda user: Author.objects.all()
    ).same_for_all

    class Mine(ModelResource):
        def get_queryset(self, user: Any) -> Any:
            return super().get_queryset(user).filter(name=getattr(user, "username", ""))

    assert not Mine(Author, fields=["name"], permission_classes=[AllowAny]).same_for_all
    with pytest.raises(ImproperlyConfigured, match="cache_scope"):
        ModelResource(Author, fields=["name"], cache_scope="shared")


@pytest.mark.django_db(transaction=True)
def test_served_lists_with_exposures_are_private_on_every_page() -> None:
    dispatcher = get_server().dispatcher

    def modern(method: str, params: dict[str, Any]) -> dict[str, Any]:
        answer = async_to_sync(dispatcher.handle_request)(jsonrpc.Request(1, method, params), ctx())
        assert "result" in answer, answer
        return answer["result"]

    scopes, cursor = set(), None
    for _ in range(50):
        page = modern("resources/list", {"cursor": cursor} if cursor else {})
        scopes.add((page["ttlMs"], page["cacheScope"]))
        cursor = page.get("nextCursor")
        if not cursor:
            break
    # The demo site exposes library models (rows filtered per user): every page is private, with one TTL.
    assert scopes == {(0, "private")}
    assert modern("resources/templates/list", {})["cacheScope"] == "private"
    assert modern("tools/list", {})["cacheScope"] == "private"  # the exposures' data tools are listed
    assert modern("server/discover", {})["cacheScope"] == "public"


def test_cache_hints_setting_is_checked() -> None:
    good = {"tools/list": {"ttl_ms": 60000, "scope": "private"}, "resources/read": {"ttl_ms": 0}}
    with override_settings(MCP_APP={**settings.MCP_APP, "CACHE_HINTS": good}):
        assert [m.id for m in check_settings()] == []
    for bad in (
        [],
        {"tools/call": {}},
        {"tools/list": {"ttl_ms": -1}},
        {"tools/list": {"scope": "shared"}},
        {"tools/list": {"ttl": 5}},
    ):
        with override_settings(MCP_APP={**settings.MCP_APP, "CACHE_HINTS": bad}):
            assert [m.id for m in check_settings()] == ["mcp_app.E003"], bad


def test_public_scope_that_cannot_be_granted_warns(monkeypatch: pytest.MonkeyPatch) -> None:
    assert check_cache_scopes() == []
    registry = open_registry()
    monkeypatch.setitem(default_registry.resources, "demo://mine", registry.resources["demo://mine"])
    monkeypatch.setitem(default_registry.resources, "demo://news", registry.resources["demo://news"])  # open: fine
    exposure = ModelResource(Author, fields=["name"], cache_scope="public")
    monkeypatch.setitem(default_exposures.exposures, "tests.per_user_author", exposure)
    messages = check_cache_scopes()
    assert [m.id for m in messages] == ["mcp_app.W007", "mcp_app.W007"]
    assert "demo://mine" in messages[0].msg and "tests.per_user_author" in messages[1].msg
