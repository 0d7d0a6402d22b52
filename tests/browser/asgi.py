"""ASGI application of the browser tests' server: the site, with the admin's static files served (DEBUG is
off, as in production, and the admin's CSS decides whether its pages fit the screen), behind mcp_app."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.browser.settings")
django_asgi_app = get_asgi_application()

from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402  (after Django is set up)

from mcp_app.routing import mcp_application  # noqa: E402

application = mcp_application(ASGIStaticFilesHandler(django_asgi_app))
