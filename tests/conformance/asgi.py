"""ASGI application of the conformance fixture server."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.conformance.settings")
django_asgi_app = get_asgi_application()

from mcp_app.routing import mcp_application  # noqa: E402

application = mcp_application(django_asgi_app)
