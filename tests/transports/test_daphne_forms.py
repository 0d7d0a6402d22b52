"""Daphne's requests skip Twisted's form parsing (``mcp_app.transports.daphne``), in-process and live.

Daphne hands the raw body to the application and never reads ``request.args``; Twisted would parse a
form body into it, and work out every POST's Content-Type with the email package to decide. Once the
MCP routes are built (as ``mcp_application`` does), the requests daphne makes for its connections skip
that: a form body is left to the application, read whole as before. On the wire: a body that says it is
multipart and is not used to get Twisted's bare 400 (no body, the connection dropped) before any application
saw it; it now reaches the MCP endpoint, which answers its own JSON-RPC error. That Django still reads forms
under daphne (the admin's login) is ``test_admin_switch_live.py``'s sign-in.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.test import override_settings

daphne_http = pytest.importorskip("daphne.http_protocol")
from twisted.web import http  # noqa: E402 - loaded with daphne's protocol

from mcp_app.routing import http_urlpatterns  # noqa: E402
from mcp_app.transports.daphne import skip_form_parsing  # noqa: E402
from tests.live import LiveServer, start_daphne  # noqa: E402


class Channel:
    """What a request asks of its connection while it is made and while its body is read."""

    def __init__(self) -> None:
        self.connected: list[Any] = []
        self.transport = None
        self.factory = type("Factory", (), {"server": type("Server", (), {"protocol_connected": self.connected.append})()})()

    def getPeer(self) -> Any:  # noqa: N802 - Twisted's name
        return None

    def getHost(self) -> Any:  # noqa: N802 - Twisted's name
        return None


def form_post(request_class: type) -> Any:
    """A request of ``request_class`` that received a URL-encoded form POST (daphne's own processing of it,
    which would hand it to the application, left out)."""
    request = request_class(Channel())
    body = b"username=boss&password=secret"
    request.content = io.BytesIO()
    request.content.write(body)  # as the channel fills it: the position at the end says the length
    request.requestHeaders.setRawHeaders(b"content-type", [b"application/x-www-form-urlencoded"])
    request.requestHeaders.setRawHeaders(b"content-length", [str(len(body)).encode()])
    request.process = lambda: None
    http.Request.requestReceived(request, b"POST", b"/admin/login/", b"HTTP/1.1")
    return request


@pytest.fixture
def stock_request(monkeypatch: pytest.MonkeyPatch) -> type:
    """Daphne's request class as daphne ships it (routes built earlier in this process replaced it), put
    back as it was after the test."""
    original = daphne_http.WebRequest
    while original.__module__ == skip_form_parsing.__module__:  # ours: daphne's is the class it extends
        original = original.__bases__[0]
    monkeypatch.setattr(daphne_http, "WebRequest", original)
    return original


def test_building_the_routes_makes_daphnes_requests_skip_form_parsing(stock_request: type) -> None:
    assert form_post(stock_request).args == {b"username": [b"boss"], b"password": [b"secret"]}  # Twisted's default
    http_urlpatterns()
    made = daphne_http.WebRequest
    assert made is not stock_request and issubclass(made, stock_request)
    request = form_post(made)
    assert request.args == {}  # the form was not parsed into request.args ...
    assert request.content.read() == b"username=boss&password=secret"  # ... and the body is there as it came
    assert request.channel.connected == [request]  # made as daphne makes it (registered with its server)
    assert skip_form_parsing() is False and daphne_http.WebRequest is made  # once only


@override_settings(MCP_APP={"DAPHNE_SKIP_FORM_PARSING": False})
def test_the_setting_leaves_daphne_as_it_is(stock_request: type) -> None:
    http_urlpatterns()
    assert daphne_http.WebRequest is stock_request
    assert form_post(daphne_http.WebRequest).args == {b"username": [b"boss"], b"password": [b"secret"]}


@pytest.fixture(scope="module")
def daphne_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = start_daphne(Path(tmp_path_factory.mktemp("daphne_forms")))
    yield server
    server.stop()


def test_a_broken_multipart_body_reaches_the_endpoint_under_a_live_daphne(daphne_server: LiveServer) -> None:
    """Twisted, left to parse it, answered 400 with no body and closed the connection; the endpoint answers
    415 with a JSON-RPC error a client can act on."""
    answer = httpx.post(
        daphne_server.mcp_url,
        content=b"this is not a multipart body",
        headers={"content-type": "multipart/form-data; boundary=xyz", "accept": "application/json, text/event-stream"},
        timeout=10,
    )
    assert answer.status_code == 415, (answer.status_code, answer.headers, answer.text[:300])
    assert answer.headers["content-type"].startswith("application/json")
    assert answer.json()["error"]["code"] == -32600 and "application/json" in answer.json()["error"]["message"]
