"""ASGI routing: the MCP endpoints in front of Django's request handler.

In a site's ``asgi.py``::

    from django.core.asgi import get_asgi_application
    django_asgi_app = get_asgi_application()

    from mcp_app.routing import mcp_application
    application = mcp_application(django_asgi_app)

MCP requests never go through Django's middleware and URL resolver (that costs ~2 ms a request);
everything else reaches ``django_asgi_app`` unchanged.
"""

from __future__ import annotations

from typing import Any

from channels.routing import ProtocolTypeRouter, URLRouter
from django.urls import path, re_path

from .conf import mcp_settings
from .transports.health import HealthConsumer
from .transports.metadata import ProtectedResourceMetadataConsumer
from .transports.sse import SSEMessagesConsumer, SSEStreamConsumer
from .transports.streamable_http import StreamableHTTPConsumer


def http_urlpatterns() -> list[Any]:
    """URL patterns of the MCP HTTP endpoints (for a site that builds its own URLRouter)."""
    mcp_path = mcp_settings.PATH.strip("/")
    sse_path = mcp_settings.SSE_PATH.strip("/")
    patterns = [
        path(mcp_path, StreamableHTTPConsumer.as_asgi()),
        path(f"{mcp_path}/", StreamableHTTPConsumer.as_asgi()),
        path(sse_path, SSEStreamConsumer.as_asgi()),
        path(f"{sse_path}/messages", SSEMessagesConsumer.as_asgi()),
        path(f"{sse_path}/messages/", SSEMessagesConsumer.as_asgi()),
        path(".well-known/oauth-protected-resource", ProtectedResourceMetadataConsumer.as_asgi()),
        path(f".well-known/oauth-protected-resource/{mcp_path}", ProtectedResourceMetadataConsumer.as_asgi()),
    ]
    if mcp_settings.HEALTH_PATH is not None:
        patterns.append(path(mcp_settings.HEALTH_PATH.strip("/"), HealthConsumer.as_asgi()))
    return patterns


def mcp_application(django_asgi_app: Any, *, websocket: Any = None) -> ProtocolTypeRouter:
    """An ASGI application serving MCP and handing every other HTTP request to ``django_asgi_app``."""
    routes: dict[str, Any] = {
        "http": URLRouter([*http_urlpatterns(), re_path(r"", django_asgi_app)]),
    }
    if websocket is not None:
        routes["websocket"] = websocket
    return ProtocolTypeRouter(routes)
