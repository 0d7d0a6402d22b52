"""``/.well-known/oauth-protected-resource``: OAuth 2.0 Protected Resource Metadata (RFC 9728).

Tells an MCP client which authorization servers issue tokens for this server, and which scopes to ask
for. Served at the root and at the path-suffixed form (``…/oauth-protected-resource/mcp``) that the MCP
authorization specification has clients try first. 404 when no authorization server is configured.
"""

from __future__ import annotations

from typing import Any

from ..auth import origin
from ..conf import mcp_settings
from ..contrib.oauth import resource_identifier
from .consumer import HTTPError, MCPConsumer


def authorization_servers(scope: dict[str, Any]) -> list[str]:
    """The configured issuers; a value starting with "/" is relative to this site's origin."""
    base = origin(scope)
    return [
        (base + server).rstrip("/") if server.startswith("/") else server for server in mcp_settings.OAUTH_AUTHORIZATION_SERVERS
    ]


class ProtectedResourceMetadataConsumer(MCPConsumer):
    async def authenticate(self) -> None:
        """Nobody: the metadata is how a client learns to authenticate, public by design."""

    async def handle(self, body: bytes) -> None:
        if self.scope.get("method") not in ("GET", "HEAD"):
            raise HTTPError(405, "Method not allowed; GET the metadata.", headers=[(b"allow", b"GET")])
        servers = authorization_servers(self.scope)
        if not servers:
            raise HTTPError(404, "This server names no OAuth authorization server; use a bearer token from its admin.")
        document = {
            "resource": resource_identifier(self.scope),
            "authorization_servers": servers,
            "scopes_supported": list(mcp_settings.REQUIRED_SCOPES),
            "bearer_methods_supported": ["header"],
            "resource_name": mcp_settings.SERVER_TITLE or mcp_settings.SERVER_NAME,
        }
        await self.json(200, document, [(b"cache-control", b"max-age=300")])
