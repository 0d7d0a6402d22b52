"""``/.well-known/oauth-protected-resource``: OAuth 2.0 Protected Resource Metadata (RFC 9728).

Tells an MCP client which authorization servers issue tokens for this server, and which scopes to ask
for. Served at the root and at the path-suffixed form (``…/oauth-protected-resource/mcp``) that the MCP
authorization specification has clients try first. 404 when no authorization server is configured.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit

from django.http.request import split_domain_port

from ..auth import origin
from ..conf import mcp_settings
from . import security
from .http import MCPConsumer

logger = logging.getLogger("mcp_app.oauth")

_DEFAULT_PORTS = {"http": 80, "https": 443}
# Said once per process: behind a proxy that changes the port, every request would repeat it.
_port_warning_logged = False


def _server_port(scope: dict[str, Any]) -> int | None:
    """The port this connection arrived on (the ASGI ``server`` field); None when unknown (a Unix socket)."""
    server = scope.get("server")
    if server and len(server) > 1 and isinstance(server[1], int):
        return server[1]
    return None


def resource_identifier(scope: dict[str, Any]) -> str:
    """This server's resource identifier: the audience OAuth access tokens must name (RFC 8707), and the
    ``resource`` of the protected resource metadata (RFC 9728).

    ``RESOURCE_URL`` when it is set (the way to run behind a proxy). Otherwise the request's scheme and host
    name plus ``PATH``, with the port the connection really arrived on, not the one the Host header names:
    ALLOWED_HOSTS ignores ports, so trusting the Host's port would let a caller make a token issued for
    another server on another port of the same host acceptable here. When the listening port is unknown (a
    Unix socket, always behind a proxy) the scheme's default port is assumed.
    """
    if mcp_settings.RESOURCE_URL:
        return mcp_settings.RESOURCE_URL
    scheme = scope.get("scheme", "http")
    host = security.header(scope, b"host") or "localhost"
    domain, claimed = split_domain_port(host)
    if not domain:  # not a valid host; the Host check refuses such requests before they get here
        return origin(scope) + mcp_settings.PATH
    default = _DEFAULT_PORTS.get(scheme)
    port = _server_port(scope) or default
    if claimed and claimed.isdigit() and int(claimed) != port:
        global _port_warning_logged
        if not _port_warning_logged:
            _port_warning_logged = True
            logger.warning("A request's Host names port %s but arrived on port %s; OAuth audiences use port %s. "
                           "Behind a proxy, set MCP_APP['RESOURCE_URL'] to the public URL of the endpoint.",
                           claimed, port, port)
    # split_domain_port lower-cases the name and keeps an IPv6 literal's brackets.
    netloc = domain if port == default else f"{domain}:{port}"
    return f"{scheme}://{netloc}{mcp_settings.PATH}"


def _normalized(url: str) -> tuple[str, str, int | None, str, str] | None:
    parts = urlsplit(url.strip())
    try:
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if not scheme or not parts.hostname:
        return None
    return scheme, parts.hostname.lower(), port or _DEFAULT_PORTS.get(scheme), parts.path.rstrip("/"), parts.query


def same_resource(a: str, b: str) -> bool:
    """True when two resource URLs name the same resource: equal scheme, host, port (an omitted port is the
    scheme's default), path (a trailing "/" aside) and query. Malformed URLs match nothing."""
    first, second = _normalized(a), _normalized(b)
    return first is not None and first == second


def authorization_servers(scope: dict[str, Any]) -> list[str]:
    """The configured issuers; a value starting with "/" is relative to this site's origin."""
    base = origin(scope)
    return [(base + server).rstrip("/") if server.startswith("/") else server
            for server in mcp_settings.OAUTH_AUTHORIZATION_SERVERS]


class ProtectedResourceMetadataConsumer(MCPConsumer):
    async def authenticate(self) -> bool:
        return True  # the metadata is how a client learns to authenticate: public by design

    async def handle(self, body: bytes) -> None:
        if self.scope.get("method") not in ("GET", "HEAD"):
            await self.error(405, "Method not allowed; GET the metadata.", headers=[(b"allow", b"GET")])
            return
        servers = authorization_servers(self.scope)
        if not servers:
            await self.error(404, "This server names no OAuth authorization server; use a bearer token from its admin.")
            return
        document = {
            "resource": resource_identifier(self.scope),
            "authorization_servers": servers,
            "scopes_supported": list(mcp_settings.REQUIRED_SCOPES),
            "bearer_methods_supported": ["header"],
            "resource_name": mcp_settings.SERVER_TITLE or mcp_settings.SERVER_NAME,
        }
        await self.json(200, document, [(b"cache-control", b"max-age=300")])
