"""Caching hints (MCP 2026-07-28, *Server › Utilities › Caching*) as the providers decide them.

A cacheable result carries ``ttlMs`` and ``cacheScope``. The scope is decided from who may see the result,
never from one page's items (every page of a list has the same scope): ``public`` only when the result is
the same for every caller, i.e. every item is open to all (``AllowAny`` alone) and nothing is filtered per
user; otherwise ``private``. A site (``MCP_APP["CACHE_HINTS"]``), a resource (``@resource(cache_ttl_ms=,
cache_scope=)``) or an exposure (``ModelResource(cache_ttl_ms=, cache_scope=)``) may set the TTL and ask for
a scope, but a result that varies by caller is ``private`` whatever it asks.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..conf import mcp_settings
from ..permissions import AllowAny, default_classes
from ..protocol.provider import CacheHint

SCOPES = ("public", "private")


def open_to_all(permission_classes: list[type] | None) -> bool:
    """Whether permission classes (None: the site's defaults) let every caller in: ``AllowAny`` only."""
    classes = default_classes(permission_classes)
    return bool(classes) and all(cls is AllowAny for cls in classes)


def all_open(items: Iterable[Any]) -> bool:
    """Whether every item (anything with ``permission_classes``) is open to all callers."""
    return all(open_to_all(getattr(item, "permission_classes", None)) for item in items)


def resolve(method: str, *, same_for_all: bool, ttl_ms: int | None = None, scope: str | None = None) -> CacheHint:
    """The hint of a result of ``method``: ``ttl_ms``/``scope`` when given (a resource's or exposure's own),
    else ``MCP_APP["CACHE_HINTS"][method]``, else TTL 0 and the widest scope allowed. ``same_for_all`` False
    forces ``private``."""
    configured: dict[str, Any] = (mcp_settings.CACHE_HINTS or {}).get(method) or {}
    ttl = ttl_ms if ttl_ms is not None else configured.get("ttl_ms", 0)
    asked = scope or configured.get("scope")
    if asked not in SCOPES:
        asked = "public" if same_for_all else "private"
    return CacheHint(max(0, int(ttl)), "public" if same_for_all and asked == "public" else "private")
