"""ASGI entry point of the demo: MCP endpoints in front of the Django site."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mcpsite.settings")
django_asgi_app = get_asgi_application()  # sets Django up before mcp_app imports models

from mcp_app.routing import mcp_application  # noqa: E402

application = mcp_application(django_asgi_app)
