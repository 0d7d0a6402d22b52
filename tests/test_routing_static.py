"""mcp_application serves static files in DEBUG as runserver does, so the admin has its CSS under daphne or
uvicorn; never in production, where collectstatic and whitenoise (or the web server) do."""

from __future__ import annotations

import pytest
from asgiref.testing import ApplicationCommunicator
from django.core.asgi import ASGIHandler
from django.test import override_settings

from mcp_app.routing import mcp_application

ADMIN_CSS = "/static/admin/css/base.css"


async def get(application: object, path: str) -> dict:
    """GET ``path`` from ``application``: status, headers (a dict) and body. (Channels' HttpCommunicator
    insists on a "body" key in every body message, which Django's file responses leave out at the end.)"""
    scope = {
        "type": "http",
        "http_version": "1.1",
        "method": "GET",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "scheme": "http",
        "query_string": b"",
        "headers": [(b"host", b"127.0.0.1")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 80),
    }
    communicator = ApplicationCommunicator(application, scope)
    await communicator.send_input({"type": "http.request", "body": b""})
    start = await communicator.receive_output(10)
    body = b""
    while True:
        message = await communicator.receive_output(10)
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    await communicator.wait(5)
    return {"status": start["status"], "headers": {k.lower(): v for k, v in start["headers"]}, "body": body}


@pytest.mark.django_db(transaction=True)
async def test_debug_serves_the_admin_css() -> None:
    with override_settings(DEBUG=True):
        application = mcp_application(ASGIHandler())
    response = await get(application, ADMIN_CSS)
    assert response["status"] == 200
    assert response["headers"][b"content-type"].startswith(b"text/css")
    assert b"body" in response["body"]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "settings",
    [
        {"DEBUG": False},  # production: collectstatic + whitenoise or the web server
        {"DEBUG": True, "STATIC_URL": "https://cdn.example.com/static/"},  # served elsewhere
    ],
)
async def test_static_files_are_not_served_outside_debug_or_from_another_host(settings: dict) -> None:
    with override_settings(**settings):
        application = mcp_application(ASGIHandler())
    response = await get(application, ADMIN_CSS)
    assert response["status"] == 404


@pytest.mark.django_db(transaction=True)
async def test_mcp_paths_do_not_go_through_the_static_handler() -> None:
    with override_settings(DEBUG=True, STATIC_URL="/mcp/"):  # a static prefix that covers the MCP paths
        application = mcp_application(ASGIHandler())
    response = await get(application, "/mcp/health")  # mcp_app's, unauthenticated: routed ahead of Django
    assert response["status"] in (200, 503)
    assert response["headers"][b"content-type"].startswith(b"application/json")
