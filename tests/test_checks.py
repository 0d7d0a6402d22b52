"""System checks report misconfiguration with ids and hints."""

from __future__ import annotations

import sys

import pytest
from channels.auth import AuthMiddlewareStack
from channels.routing import ProtocolTypeRouter, URLRouter
from django.core.asgi import ASGIHandler
from django.test import override_settings
from django.urls import re_path

from mcp_app.checks import check_asgi, check_authentication, check_channel_layer, check_settings
from mcp_app.conf import mcp_settings
from mcp_app.permissions import AllowAny
from mcp_app.routing import http_urlpatterns


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


# -- runserver, the ASGI application, workers without a shared layer ------------------------------------------
# A site's asgi.py as `startproject` writes it: Django's handler for every path, /mcp included.
startproject_asgi = ASGIHandler()
# A site building its own router from mcp_app's patterns, behind Channels' auth middleware.
own_router = AuthMiddlewareStack(URLRouter([*http_urlpatterns(), re_path(r"", startproject_asgi)]))
# An MCP path routed to something else ahead of mcp_app (a site's own view at /mcp).
shadowed = ProtocolTypeRouter({"http": URLRouter([re_path(r"^mcp", startproject_asgi), *http_urlpatterns()])})
no_http = ProtocolTypeRouter({"websocket": URLRouter([])})


async def some_other_asgi_app(scope: dict, receive: object, send: object) -> None:
    """An application the check cannot see through (it might route /mcp itself)."""


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("tests.conformance.asgi.application", []),  # mcp_application(get_asgi_application())
        ("tests.test_checks.own_router", []),
        ("tests.test_checks.some_other_asgi_app", []),
        ("tests.test_checks.startproject_asgi", ["mcp_app.W009"]),
        ("tests.test_checks.shadowed", ["mcp_app.W009"]),
        ("tests.test_checks.no_http", ["mcp_app.W009"]),
        ("tests.test_checks.no_such_app", ["mcp_app.W009"]),
    ],
)
def test_an_asgi_application_that_does_not_route_mcp_warns(target: str, expected: list[str]) -> None:
    with override_settings(ASGI_APPLICATION=target):
        messages = check_asgi()
    assert ids(messages) == expected
    assert all("mcp_application(django_asgi_app)" in m.hint for m in messages)


def test_an_unimportable_asgi_application_says_why() -> None:
    with override_settings(ASGI_APPLICATION="tests.test_checks.no_such_app"):
        (message,) = check_asgi()
    assert "cannot be imported" in message.msg and "no_such_app" in message.msg


def test_the_mcp_path_setting_is_the_one_checked() -> None:
    from django.conf import settings

    # The conformance app was built with /mcp; a site that moved PATH must rebuild its router (restart).
    with override_settings(
        ASGI_APPLICATION="tests.conformance.asgi.application", MCP_APP={**settings.MCP_APP, "PATH": "/api/mcp"}
    ):
        assert ids(check_asgi()) == ["mcp_app.W009"]


@pytest.mark.parametrize(
    ("argv", "without_daphne", "expected"),
    [
        (["manage.py", "runserver"], True, ["mcp_app.W008"]),
        (["manage.py", "runserver", "127.0.0.1:8000"], True, ["mcp_app.W008"]),
        (["manage.py", "runserver"], False, []),  # daphne's runserver: ASGI
        (["manage.py", "migrate"], True, []),  # not serving
        (["daphne", "mysite.asgi:application"], True, []),  # an ASGI server needs no daphne app
    ],
)
def test_runserver_without_daphne_warns(
    monkeypatch: pytest.MonkeyPatch, argv: list[str], without_daphne: bool, expected: list[str]
) -> None:
    from django.conf import settings

    from mcp_app.checks import check_runserver

    monkeypatch.setattr(sys, "argv", argv)
    installed = [a for a in settings.INSTALLED_APPS if not (without_daphne and a == "daphne")]
    with override_settings(INSTALLED_APPS=installed):
        messages = check_runserver()
    assert ids(messages) == expected
    assert all('"daphne" first in INSTALLED_APPS' in m.hint and "/mcp" in m.msg for m in messages)


REDIS_LAYER = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {"hosts": [{"address": "redis://127.0.0.1:6379/0", "socket_timeout": None}]},
    }
}
MEMORY_LAYER = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}


@pytest.mark.parametrize(
    ("layers", "concurrency", "expected"),
    [
        (MEMORY_LAYER, "4", ["mcp_app.W010"]),
        (MEMORY_LAYER, "1", []),
        (MEMORY_LAYER, None, []),
        (MEMORY_LAYER, "many", []),  # not a number: not ours to judge
        (REDIS_LAYER, "4", []),
    ],
)
def test_the_in_memory_layer_with_several_workers_warns(
    monkeypatch: pytest.MonkeyPatch, layers: dict, concurrency: str | None, expected: list[str]
) -> None:
    from mcp_app.checks import check_workers_share_a_layer

    if concurrency is None:
        monkeypatch.delenv("WEB_CONCURRENCY", raising=False)
    else:
        monkeypatch.setenv("WEB_CONCURRENCY", concurrency)
    with override_settings(CHANNEL_LAYERS=layers):
        messages = check_workers_share_a_layer()
    assert ids(messages) == expected
    assert all("channels_redis" in m.hint and "WEB_CONCURRENCY is 4" in m.msg for m in messages)


@pytest.mark.django_db
def test_live_leases_of_several_workers_with_the_in_memory_layer_warn(monkeypatch: pytest.MonkeyPatch) -> None:
    from datetime import timedelta

    from django.utils import timezone

    from mcp_app.checks import check_workers_share_a_layer
    from mcp_app.models import Worker

    monkeypatch.delenv("WEB_CONCURRENCY", raising=False)
    now = timezone.now()
    Worker.objects.create(id="a", host="h1", pid=1, expires=now + timedelta(seconds=15))
    Worker.objects.create(id="b", host="h2", pid=2, expires=now - timedelta(seconds=1))  # lapsed: dead
    with override_settings(CHANNEL_LAYERS=MEMORY_LAYER):
        assert check_workers_share_a_layer(databases=["default"]) == []  # one live worker is fine
        Worker.objects.filter(id="b").update(expires=now + timedelta(seconds=15))
        messages = check_workers_share_a_layer(databases=["default"])
        assert ids(messages) == ["mcp_app.W010"] and "2 worker processes" in messages[0].msg
        assert check_workers_share_a_layer() == []  # no databases given (plain `check`): no query
    with override_settings(CHANNEL_LAYERS=REDIS_LAYER):
        assert check_workers_share_a_layer(databases=["default"]) == []


def test_settings_are_read_once_and_again_after_a_change() -> None:
    with override_settings(
        MCP_APP={"AUDIT_MAX_ERROR_CHARS": 111, "DEFAULT_PERMISSION_CLASSES": ["mcp_app.permissions.AllowAny"]}
    ):
        assert mcp_settings.AUDIT_MAX_ERROR_CHARS == 111
        assert mcp_settings.DEFAULT_PERMISSION_CLASSES == [AllowAny]  # imported from its dotted path
        assert mcp_settings.DEFAULT_PERMISSION_CLASSES is mcp_settings.DEFAULT_PERMISSION_CLASSES  # kept, not redone
        with override_settings(MCP_APP={"AUDIT_MAX_ERROR_CHARS": 222}):
            assert mcp_settings.AUDIT_MAX_ERROR_CHARS == 222
        assert mcp_settings.AUDIT_MAX_ERROR_CHARS == 111
    assert mcp_settings.AUDIT_MAX_ERROR_CHARS == 2000  # the default again
    with pytest.raises(AttributeError, match="Invalid mcp_app setting"):
        mcp_settings.NO_SUCH_SETTING  # noqa: B018
