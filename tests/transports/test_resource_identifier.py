"""The OAuth audience is this server's full origin: scheme, host and the port the connection arrived on.

ALLOWED_HOSTS ignores ports, so the port a Host header names is the caller's choice; the audience takes
the listening port from the ASGI scope instead, or ``RESOURCE_URL`` when it is set. The end-to-end case (a
token for another port refused by a live server) is in test_oauth.py.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from django.test import override_settings

from mcp_app.contrib.oauth import resource_identifier, same_resource


def scope(host: str | None, server: tuple[str, int | None] | None = ("127.0.0.1", 8000), scheme: str = "http") -> dict[str, Any]:
    headers = [(b"host", host.encode())] if host is not None else []
    return {"type": "http", "scheme": scheme, "server": server, "headers": headers}


@pytest.mark.parametrize(
    ("host", "server", "scheme", "expected"),
    [
        ("127.0.0.1:8000", ("127.0.0.1", 8000), "http", "http://127.0.0.1:8000/mcp"),
        # The Host names another port: the connection's own port wins.
        ("127.0.0.1:9000", ("127.0.0.1", 8000), "http", "http://127.0.0.1:8000/mcp"),
        ("127.0.0.1", ("127.0.0.1", 8000), "http", "http://127.0.0.1:8000/mcp"),
        ("LocalHost:8000", ("127.0.0.1", 8000), "http", "http://localhost:8000/mcp"),
        ("example.com", ("0.0.0.0", 80), "http", "http://example.com/mcp"),
        ("example.com:443", ("0.0.0.0", 443), "https", "https://example.com/mcp"),
        ("[::1]:9000", ("::1", 8000), "http", "http://[::1]:8000/mcp"),
        # A Unix socket has no port: the scheme's default is assumed, never the Host's.
        ("example.com:8443", None, "https", "https://example.com/mcp"),
        ("example.com:8443", ("/run/daphne.sock", None), "https", "https://example.com/mcp"),
    ],
)
def test_the_audience_uses_the_port_the_connection_arrived_on(host: str, server: Any, scheme: str, expected: str) -> None:
    assert resource_identifier(scope(host, server, scheme)) == expected


def test_a_host_naming_another_port_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    import mcp_app.contrib.oauth as metadata

    metadata._port_warning_logged = False
    with caplog.at_level(logging.WARNING, logger="mcp_app.oauth"):
        resource_identifier(scope("127.0.0.1:9000"))
        resource_identifier(scope("127.0.0.1:9001"))
    warnings = [r for r in caplog.records if r.name == "mcp_app.oauth"]
    assert len(warnings) == 1 and "RESOURCE_URL" in warnings[0].getMessage()


@override_settings(MCP_APP={"RESOURCE_URL": "https://mcp.example.com/mcp"})
def test_resource_url_is_the_audience_whatever_the_host() -> None:
    assert resource_identifier(scope("127.0.0.1:9000")) == "https://mcp.example.com/mcp"
    assert resource_identifier(scope(None, None)) == "https://mcp.example.com/mcp"


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ("https://mcp.example.com/mcp", "https://mcp.example.com/mcp", True),
        ("https://mcp.example.com/mcp", "https://MCP.Example.com:443/mcp/", True),  # default port, case, trailing /
        ("http://127.0.0.1:8000/mcp", "http://127.0.0.1:8001/mcp", False),  # another port: another server
        ("https://mcp.example.com/mcp", "http://mcp.example.com/mcp", False),  # another scheme
        ("https://mcp.example.com/mcp", "https://mcp.example.com:8443/mcp", False),
        ("https://mcp.example.com/mcp", "https://other.example.com/mcp", False),
        ("https://mcp.example.com/mcp", "https://mcp.example.com/other", False),
        ("https://mcp.example.com/mcp?tenant=a", "https://mcp.example.com/mcp?tenant=b", False),
        ("https://mcp.example.com:99999/mcp", "https://mcp.example.com:99999/mcp", False),  # malformed port
        ("/mcp", "/mcp", False),  # not absolute
    ],
)
def test_resources_match_on_the_full_origin(a: str, b: str, same: bool) -> None:
    assert same_resource(a, b) is same
    assert same_resource(b, a) is same
