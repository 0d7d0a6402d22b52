"""The benchmark's ASGI app: /mcp as in production, plus two baselines on the same server.

- /bench/consumer: a trivial Channels AsyncHttpConsumer (the floor for a Channels-based endpoint)
- /bench/django: a trivial async Django view with default middleware (Django's request cycle)
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.benchmarks.settings")
django_asgi_app = get_asgi_application()

from channels.generic.http import AsyncHttpConsumer  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path, re_path  # noqa: E402

from mcp_app.routing import http_urlpatterns  # noqa: E402


class Trivial(AsyncHttpConsumer):
    async def handle(self, body: bytes) -> None:
        await self.send_response(200, b"{}", headers=[(b"content-type", b"application/json")])


application = ProtocolTypeRouter(
    {
        "http": URLRouter([path("bench/consumer", Trivial.as_asgi()), *http_urlpatterns(), re_path(r"", django_asgi_app)]),
    }
)
