"""The health endpoint (``MCP_APP["HEALTH_PATH"]``, ``/mcp/health``) for load balancers.

In process, through the ASGI application: 200 ``{"status": "ok"}`` and nothing else; 503
``{"status": "unavailable"}`` with ``Retry-After`` when the database or the channel layer fails or hangs, the
error's text (host names, versions) never in the answer; Host checked; no session, no audit row, no rate
budget spent; ``HEALTH_PATH = None`` serves nothing.

Live, under daphne: 200; PostgreSQL stopped for real -> 503 within a few seconds, and 200 again once it is
back (same process); Redis (the channel layer) stopped -> 503, and 200 again once it is back. PostgreSQL and
Redis are stopped and started the way tests/transports/test_db_outage.py and test_redis_restart.py do, and
always started again.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import time
from collections.abc import Callable, Iterator
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
from tests.live import LiveServer, start_daphne
from tests.transports.test_db_outage import _cluster, _pg_connect, _pg_ctl, _start_pg, _wait_for_pg, drop_database
from tests.transports.test_redis_restart import ensure_redis_running, redis_ping

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


@pytest.fixture
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A daphne worker on a fresh PostgreSQL database."""
    if _cluster() is None:
        pytest.skip("PostgreSQL is not installed (no pg_ctlcluster or /etc/postgresql)")
    _start_pg()
    from psycopg import sql  # imported here: psycopg is needed (and installed) only where PostgreSQL is

    database = f"mcp_app_health_{secrets.token_hex(6)}"
    with _pg_connect() as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
    server = None
    try:
        server = start_daphne(tmp_path_factory.mktemp("health_pg"), extra_env={"MCP_TEST_POSTGRES_DB": database})
        yield server
    finally:
        _start_pg()  # whatever happened, leave PostgreSQL running
        if server is not None:
            server.stop()
        drop_database(database)


def test_postgresql_stopped_is_503_within_seconds_and_back_to_200(pg_server: LiveServer) -> None:
    assert poll(pg_server, 200, WITHIN)[1].json() == OK
    try:
        _wait_for_pg(False, _pg_ctl("stop"))
        elapsed, response = poll(pg_server, 503, WITHIN)
        assert response.status_code == 503, f"still {response.status_code} {elapsed:.1f} s after PostgreSQL stopped"
        assert response.json() == UNAVAILABLE
        assert int(response.headers["retry-after"]) > 0
    finally:
        _start_pg()
    elapsed, response = poll(pg_server, 200, WITHIN)
    assert response.status_code == 200, f"still {response.status_code} {elapsed:.1f} s after PostgreSQL was back"
    assert response.json() == OK


@pytest.fixture
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A daphne worker whose channel layer is Redis."""
    if not redis_ping():
        pytest.skip("Redis is not running on 127.0.0.1:6379")
    extra = {"MCP_TEST_REDIS_URL": "redis://127.0.0.1:6379/0", "MCP_TEST_REDIS_PREFIX": f"health{os.getpid()}"}
    server = start_daphne(tmp_path_factory.mktemp("health_redis"), extra_env=extra)
    try:
        yield server
    finally:
        server.stop()


def test_redis_stopped_is_503_and_back_to_200(redis_server: LiveServer) -> None:
    assert poll(redis_server, 200, WITHIN)[1].json() == OK
    try:
        subprocess.run(["redis-cli", "-p", "6379", "shutdown", "nosave"], capture_output=True, timeout=10)
        deadline = time.monotonic() + 10
        while redis_ping() and time.monotonic() < deadline:
            time.sleep(0.05)
        elapsed, response = poll(redis_server, 503, WITHIN)
        assert response.status_code == 503, f"still {response.status_code} {elapsed:.1f} s after Redis stopped"
        assert response.json() == UNAVAILABLE
        assert "redis" not in response.text.lower()
    finally:
        ensure_redis_running()
    elapsed, response = poll(redis_server, 200, WITHIN)
    assert response.status_code == 200, f"still {response.status_code} {elapsed:.1f} s after Redis was back"
