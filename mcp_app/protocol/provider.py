"""The interface between the protocol and whatever supplies tools, resources and prompts.

The dispatcher calls a :class:`Provider`; :mod:`mcp_app.providers.code` (tools, resources and prompts in
code) and :mod:`mcp_app.providers.managed` (the same through the admin's rows, plus model exposures)
implement it. Every method receives the :class:`~mcp_app.protocol.context.RequestContext`, so a provider
can filter by the caller and report progress; what a provider needs from the layers above arrives there
(``ctx.cursors``: the dispatcher's cursor codec), never by reaching up for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from .context import RequestContext
from .errors import InvalidParams

CacheScope = Literal["public", "private"]


@dataclass(frozen=True)
class CacheHint:
    """A cacheable result's ``ttlMs`` (freshness in milliseconds, 0: stale at once) and ``cacheScope``
    (``public``: identical for every caller; ``private``: reusable only by the same authorization context)."""

    ttl_ms: int = 0
    scope: CacheScope = "private"


class Provider:
    """Base class; methods raise :class:`NotImplementedError` unless the provider offers the feature."""

    async def list_tools(self, ctx: RequestContext) -> list[dict[str, Any]]:
        """Return Tool objects (``name``, ``inputSchema``, ...) the caller may see, in a stable order."""
        raise NotImplementedError

    async def call_tool(self, name: str, arguments: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
        """Run a tool and return a CallToolResult. Unknown tools raise ``InvalidParams`` (-32602)."""
        raise NotImplementedError

    async def list_resources(self, ctx: RequestContext) -> list[dict[str, Any]]:
        """Return Resource objects (``uri``, ``name``, ...) in a stable order."""
        raise NotImplementedError

    async def list_resources_page(self, ctx: RequestContext, position: Any, limit: int) -> tuple[list[dict[str, Any]], Any]:
        """Return up to ``limit`` Resource objects from ``position`` (None: the start) and the position
        of the next page (None: no more), a JSON value the dispatcher signs into the cursor.

        The default slices :meth:`list_resources` by offset; providers with large lists page by key.
        A position that makes no sense to the provider raises ``InvalidParams``.
        """
        offset = 0 if position is None else position
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            raise InvalidParams("Invalid cursor: pass back the nextCursor value exactly as received.")
        items = await self.list_resources(ctx)
        return items[offset : offset + limit], (offset + limit if offset + limit < len(items) else None)

    async def check_subscription(self, uri: str, ctx: RequestContext) -> None:
        """Raise ``ResourceNotFound`` unless the caller may read ``uri`` (called by resources/subscribe)."""
        await self.read_resource(uri, ctx)

    async def list_resource_templates(self, ctx: RequestContext) -> list[dict[str, Any]]:
        """Return ResourceTemplate objects (``uriTemplate``, ``name``, ...)."""
        raise NotImplementedError

    async def read_resource(self, uri: str, ctx: RequestContext) -> list[dict[str, Any]]:
        """Return the ``contents`` list for ``uri``; unknown URIs raise ``ResourceNotFound``."""
        raise NotImplementedError

    async def list_prompts(self, ctx: RequestContext) -> list[dict[str, Any]]:
        """Return Prompt objects (``name``, ``arguments``, ...)."""
        raise NotImplementedError

    async def get_prompt(self, name: str, arguments: dict[str, str], ctx: RequestContext) -> dict[str, Any]:
        """Return a GetPromptResult; unknown prompts and missing required arguments raise ``InvalidParams``."""
        raise NotImplementedError

    async def cache_hint(self, method: str, ctx: RequestContext, *, uri: str | None = None) -> CacheHint:
        """The caching hint of a complete result of ``method`` (``tools/list``, ``prompts/list``,
        ``resources/list``, ``resources/templates/list``, or ``resources/read`` of ``uri``) for this caller.

        Decided from the list's definition, never from one page's items: every page of a list carries the
        same scope. The default is the safe one: TTL 0, ``private``.
        """
        return CacheHint()

    async def tool_input_schema(self, name: str, ctx: RequestContext) -> dict[str, Any] | None:
        """The ``inputSchema`` of the tool ``name`` as this caller sees it, or None when it has none (the
        dispatcher checks ``Mcp-Param-*`` headers against its ``x-mcp-header`` properties). The default
        looks the tool up in :meth:`list_tools`."""
        for tool in await self.list_tools(ctx):
            if tool.get("name") == name:
                schema = tool.get("inputSchema")
                return schema if isinstance(schema, dict) else None
        return None

    async def complete(
        self, ref: dict[str, Any], argument: dict[str, Any], context: dict[str, Any], ctx: RequestContext
    ) -> list[str]:
        """Return completion values for an argument of a prompt or resource template."""
        raise NotImplementedError
