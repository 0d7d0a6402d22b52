"""The health endpoint (``MCP_APP["HEALTH_PATH"]``, ``/mcp/health``) for load balancers.

In process, through the ASGI application: 200 ``{"status": "ok"}`` and nothing else; 503
``{"status": "unavailable"}`` with ``Retry-After`` when the database or the channel layer fails or hangs, the
error's text (host names, versions) never in the answer; Host checked; no session, no audit row, no rate
budget spent; ``HEALTH_PATH = None`` serves nothing.

Live, under daphne: 200.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from channels.testing import HttpCommunicator
from django.core.asgi import get_asgi_application
from django.db import OperationalError
from django.test import override_settings

from mcp_app.models import Session, ToolCall
from mcp_app.routing import mcp_application
from mcp_app.transports import health
from tests.live import LiveServer

OK = {"status": "ok"}
UNAVAILABLE = {"status": "unavailable"}
#: Seconds within which an outage (or the end of one) must show in the answer: probes time out after 2 s
#: and results are reused for 1 s.
WITHIN = 5.0


# -- in process ---------------------------------------------------------------------------------------------------------
@pytest.fixture(autouse=True)
def _fresh_prober(monkeypatch: pytest.MonkeyPatch) -> None:
    """No probe result carried over from another test (they are reused for a second)."""
    monkeypatch.setattr(health, "_prober", health._Prober())


async def get(
    path: str = "/mcp/health", *, method: str = "GET", host: bytes = b"localhost"
) -> tuple[int, dict[bytes, bytes], bytes]:
    communicator = HttpCommunicator(mcp_application(get_asgi_application()), method, path, headers=[(b"host", host)])
    response = await communicator.get_response(timeout=10)
    return response["status"], dict(response["headers"]), response["body"]


@pytest.mark.django_db(transaction=True)
async def test_healthy_is_200_ok_and_nothing_else() -> None:
    status, headers, body = await get()
    assert status == 200
    assert json.loads(body) == OK
    assert headers[b"content-type"].startswith(b"application/json")
    assert headers[b"cache-control"] == b"no-store"
    status, _headers, _body = await get(method="HEAD")
    assert status == 200


@pytest.mark.django_db(transaction=True)
async def test_health_checks_cost_no_session_no_audit_row_and_no_rate_budget() -> None:
    with override_settings(MCP_APP={"REQUEST_RATE": (2, 60), "TOOL_CALL_RATE": (1, 60)}):
        for _ in range(10):
            health._prober = health._Prober()  # a real probe each time, not the reused result
            status, _headers, body = await get()
            assert (status, json.loads(body)) == (200, OK)
    assert await Session.objects.acount() == 0
    assert await ToolCall.objects.acount() == 0


def _failing(message: str) -> Callable[..., Any]:
    def fail(*args: Any, **kwargs: Any) -> Any:
        raise OperationalError(message)

    return fail


@pytest.mark.django_db(transaction=True)
async def test_a_database_error_is_503_unavailable_revealing_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    secret = 'connection to server at "db-7.internal" (10.0.0.7), port 5432 failed: PostgreSQL 16.4'
    monkeypatch.setattr(health, "_query_database", _failing(secret))
    monkeypatch.setattr(health, "_database_query", [])
    status, headers, body = await get()
    assert status == 503
    assert json.loads(body) == UNAVAILABLE
    assert int(headers[b"retry-after"]) > 0
    for leak in (b"db-7", b"10.0.0.7", b"5432", b"PostgreSQL", b"16.4"):
        assert leak not in body and all(leak not in value for value in headers.values())


class _DeadLayer:
    async def new_channel(self, prefix: str = "specific") -> str:
        return f"{prefix}.dead!1"

    async def send(self, channel: str, message: dict[str, Any]) -> None:
        raise ConnectionError("Error 111 connecting to redis-3.internal:6379. Connection refused.")

    async def receive(self, channel: str) -> dict[str, Any]:
        raise AssertionError("not reached")


class _HungLayer(_DeadLayer):
    async def send(self, channel: str, message: dict[str, Any]) -> None:
        await asyncio.sleep(60)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("layer", [_DeadLayer(), _HungLayer()], ids=["refused", "hung"])
async def test_a_channel_layer_down_or_hung_is_503(monkeypatch: pytest.MonkeyPatch, layer: Any) -> None:
    monkeypatch.setattr(health, "get_channel_layer", lambda: layer)
    monkeypatch.setattr(health, "PROBE_TIMEOUT", 0.3)
    started = time.monotonic()
    status, _headers, body = await get()
    assert time.monotonic() - started < 2
    assert (status, json.loads(body)) == (503, UNAVAILABLE)
    assert b"redis" not in body


@pytest.mark.django_db(transaction=True)
async def test_a_hung_database_is_503_within_the_timeout_and_is_not_queried_twice(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def hang() -> None:
        calls.append(1)
        time.sleep(1.5)

    monkeypatch.setattr(health, "_query_database", hang)
    monkeypatch.setattr(health, "_database_query", [])
    monkeypatch.setattr(health, "PROBE_TIMEOUT", 0.3)
    started = time.monotonic()
    first = await get()
    health._prober = health._Prober()
    second = await get()  # joins the query still running instead of queueing another behind it
    assert time.monotonic() - started < 1.5
    assert [(status, json.loads(body)) for status, _headers, body in (first, second)] == [(503, UNAVAILABLE)] * 2
    assert len(calls) == 1
    await asyncio.sleep(1.5)  # let the hung query end before the next test


@pytest.mark.django_db(transaction=True)
async def test_the_host_is_checked_and_only_get_and_head_are_answered() -> None:
    status, _headers, _body = await get(host=b"rebound.example")
    assert status == 421
    status, headers, _body = await get(method="POST")
    assert status == 405
    assert headers[b"allow"] == b"GET, HEAD"


@pytest.mark.django_db(transaction=True)
async def test_health_path_none_serves_nothing() -> None:
    with override_settings(MCP_APP={"HEALTH_PATH": None}):
        status, _headers, body = await get()
    assert status == 404
    assert b"unavailable" not in body and b'"ok"' not in body


@pytest.mark.django_db(transaction=True)
async def test_health_path_is_configurable() -> None:
    with override_settings(MCP_APP={"HEALTH_PATH": "/healthz"}):
        status, _headers, body = await get("/healthz")
    assert (status, json.loads(body)) == (200, OK)


# -- live ---------------------------------------------------------------------------------------------------------------
def poll(server: LiveServer, want: int, within: float) -> tuple[float, httpx.Response]:
    """GET the health endpoint until it answers ``want`` (each request with a short timeout); the seconds it
    took and the answer."""
    started = time.monotonic()
    while True:
        response = httpx.get(f"{server.url}/mcp/health", timeout=within)
        elapsed = time.monotonic() - started
        if response.status_code == want or elapsed > within:
            return elapsed, response
        time.sleep(0.1)


def test_live_daphne_answers_200(daphne_server: LiveServer) -> None:
    response = httpx.get(f"{daphne_server.url}/mcp/health", timeout=10)
    assert response.status_code == 200
    assert response.json() == OK
