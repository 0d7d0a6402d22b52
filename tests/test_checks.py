"""System checks report misconfiguration with ids and hints."""

from __future__ import annotations

import pytest
from django.test import override_settings

from mcp_app.checks import check_asgi, check_authentication, check_channel_layer, check_settings


def ids(messages: list) -> list[str]:
    return [m.id for m in messages]


def test_valid_settings_pass() -> None:
    assert check_settings() == []
    assert check_channel_layer() == []
    assert check_asgi() == []


@override_settings(MCP_APP={"PAGE_SIZ": 10, "ALLOWED_ORIGINS": "https://a.example", "MAX_BODY_SIZE": 0})
def test_bad_settings() -> None:
    messages = check_settings()
    assert ids(messages) == ["mcp_app.E001", "mcp_app.E002", "mcp_app.E003"]
    assert "PAGE_SIZE" in messages[0].hint
    assert all(m.hint for m in messages)


@override_settings(MCP_APP=["not", "a", "dict"])
def test_settings_must_be_a_dict() -> None:
    assert ids(check_settings()) == ["mcp_app.E001"]


@override_settings(CHANNEL_LAYERS={}, ASGI_APPLICATION=None)
def test_missing_channel_layer_and_asgi_warn() -> None:
    assert ids(check_channel_layer()) == ["mcp_app.W001"]
    assert ids(check_asgi()) == ["mcp_app.W002"]


@override_settings(
    CHANNEL_LAYERS={
        "default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": ["redis://127.0.0.1:6379/0"]}}
    }
)
def test_redis_hosts_with_the_default_read_timeout_warn() -> None:
    from mcp_app.checks import check_redis_timeout

    messages = check_redis_timeout()
    assert ids(messages) == ["mcp_app.W003"] and "socket_timeout" in messages[0].hint


@override_settings(
    CHANNEL_LAYERS={
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [{"address": "redis://127.0.0.1:6379/0", "socket_timeout": None}]},
        }
    }
)
def test_redis_hosts_without_a_read_timeout_pass() -> None:
    from mcp_app.checks import check_redis_timeout

    assert check_redis_timeout() == []


def test_authentication_settings() -> None:
    from django.conf import settings

    # The test server is deliberately open to anonymous callers, and says so.
    assert ids(check_authentication()) == ["mcp_app.W004"]
    with override_settings(MCP_APP={**settings.MCP_APP, "ALLOW_ANONYMOUS": False}):
        assert check_authentication() == []
    oauth = {"ALLOW_ANONYMOUS": False, "DEFAULT_AUTHENTICATION_CLASSES": ["mcp_app.contrib.oauth.OAuth2Authentication"]}
    with override_settings(MCP_APP=oauth):
        assert check_authentication() == []  # oauth2_provider is installed in the test settings
    apps = [a for a in settings.INSTALLED_APPS if a != "oauth2_provider"]
    with override_settings(MCP_APP=oauth, INSTALLED_APPS=apps):
        messages = check_authentication()
        assert ids(messages) == ["mcp_app.E005"] and "mcp_app[oauth]" in messages[0].hint


OAUTH = {"DEFAULT_AUTHENTICATION_CLASSES": ["mcp_app.contrib.oauth.OAuth2Authentication"]}


@pytest.mark.parametrize(
    ("mcp_app", "debug", "expected"),
    [
        (OAUTH, False, ["mcp_app.W005"]),  # the audience would come from the Host header in production
        ({"OAUTH_AUTHORIZATION_SERVERS": ["https://auth.example.com"]}, False, ["mcp_app.W005"]),
        ({**OAUTH, "RESOURCE_URL": "https://mcp.example.com/mcp"}, False, []),
        (OAUTH, True, []),  # development: the request's origin is fine
        ({}, False, []),  # no OAuth
        ({**OAUTH, "RESOURCE_URL": "mcp.example.com/mcp"}, False, ["mcp_app.E006"]),  # not an absolute URL
        ({**OAUTH, "RESOURCE_URL": "https://mcp.example.com/mcp#frag"}, True, ["mcp_app.E006"]),
    ],
)
def test_oauth_without_a_resource_url_warns_in_production(mcp_app: dict, debug: bool, expected: list[str]) -> None:
    from mcp_app.checks import check_resource_url

    with override_settings(MCP_APP=mcp_app, DEBUG=debug):
        messages = check_resource_url()
    assert ids(messages) == expected
    assert all(m.hint and "RESOURCE_URL" in m.hint for m in messages)
