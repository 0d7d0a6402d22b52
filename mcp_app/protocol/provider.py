"""The interface between the protocol and whatever supplies tools, resources and prompts.

The dispatcher calls a :class:`Provider`; :mod:`mcp_app.registry` (code), the ORM rows and model
exposures implement it. Every method receives the :class:`~mcp_app.protocol.context.RequestContext`
so a provider can filter by the caller and report progress.
"""

from __future__ import annotations

from typing import Any

from .context import RequestContext


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

    async def complete(self, ref: dict[str, Any], argument: dict[str, Any], context: dict[str, Any],
                       ctx: RequestContext) -> list[str]:
        """Return completion values for an argument of a prompt or resource template."""
        raise NotImplementedError
