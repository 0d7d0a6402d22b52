"""ASGI routing: the MCP endpoints in front of Django's request handler.

In a site's ``asgi.py``::

    from django.core.asgi import get_asgi_application
    django_asgi_app = get_asgi_application()

    from mcp_app.routing import mcp_application
    application = mcp_application(django_asgi_app)

MCP requests never go through Django's middleware and URL resolver (that costs ~2 ms a request);
everything else reaches ``django_asgi_app`` unchanged, except that with ``DEBUG`` on static files are served
as ``manage.py runserver`` serves them (so the admin has its CSS under ``daphne mysite.asgi:application`` or
uvicorn too). In production, collect them (``collectstatic``) and serve them with whitenoise or the web server.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from channels.routing import ProtocolTypeRouter, URLRouter
from django.apps import apps
from django.conf import settings
from django.urls import path, re_path

from .conf import mcp_settings
from .transports.daphne import skip_form_parsing
from .transports.health import HealthConsumer
from .transports.metadata import ProtectedResourceMetadataConsumer
from .transports.sse import SSEMessagesConsumer, SSEStreamConsumer
from .transports.streamable_http import StreamableHTTPConsumer


def http_urlpatterns() -> list[Any]:
    """URL patterns of the MCP HTTP endpoints (for a site that builds its own URLRouter). Under daphne, also
    turns off Twisted's form parsing of request bodies, unless ``MCP_APP["DAPHNE_SKIP_FORM_PARSING"]`` is
    False (:func:`~mcp_app.transports.daphne.skip_form_parsing`)."""
    if mcp_settings.DAPHNE_SKIP_FORM_PARSING:
        skip_form_parsing()
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


def with_static_files(django_asgi_app: Any) -> Any:
    """``django_asgi_app``, serving ``STATIC_URL`` from the staticfiles finders first when ``DEBUG`` is on and
    ``django.contrib.staticfiles`` is installed: what ``manage.py runserver`` does, for any ASGI server. Unchanged
    otherwise (production: ``collectstatic``, then whitenoise or the web server), and when ``STATIC_URL`` is
    unset or on another host (a CDN), which Django's handler would refuse to serve."""
    if not settings.DEBUG or not apps.is_installed("django.contrib.staticfiles"):
        return django_asgi_app
    static_url = getattr(settings, "STATIC_URL", None)
    if not static_url or urlsplit(static_url).netloc:
        return django_asgi_app
    # imported here: only sites with staticfiles installed may import it (its finders read that app's settings)
    from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

    if isinstance(django_asgi_app, ASGIStaticFilesHandler):  # already wrapped by the site itself
        return django_asgi_app
    return ASGIStaticFilesHandler(django_asgi_app)


def mcp_application(django_asgi_app: Any, *, websocket: Any = None) -> ProtocolTypeRouter:
    """An ASGI application serving MCP and handing every other HTTP request to ``django_asgi_app`` (with static
    files in ``DEBUG``, see :func:`with_static_files`). Read once, when called: settings changed later (tests'
    ``override_settings``) do not re-route it."""
    routes: dict[str, Any] = {
        "http": URLRouter([*http_urlpatterns(), re_path(r"", with_static_files(django_asgi_app))]),
    }
    if websocket is not None:
        routes["websocket"] = websocket
    return ProtocolTypeRouter(routes)
