"""The database goes away: PostgreSQL stopped for real under a live daphne, then started again.

During the outage every answer is a JSON-RPC error with ``503 Service Unavailable`` and ``Retry-After``,
never daphne's HTML 500 page or a traceback:

- a ``tools/call`` on an open session (its token and session cached by the worker) is refused before the
  tool runs, because its audit row cannot be written first: the tool's side effect (a file outside the
  database) does not happen, and the message says that nothing was done;
- a request with a bearer token the worker has not seen yet (authentication needs the database);
- ``initialize`` (a new session is a database row), on both transports.

After PostgreSQL is back, the same requests succeed from the same daphne process, without a restart.

PostgreSQL is stopped and started the way the machine's docs say, with ``pg_ctlcluster`` (the outage
lasts a few seconds; other tests' connections fail meanwhile and reconnect), and it is started again
however the test ends. The module skips only when PostgreSQL is not installed.

Also here, in process: the consumer maps a database error raised while authenticating to the same 503.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.live import REPO, LiveServer, start_daphne

PG_HOST = os.environ.get("MCP_TEST_POSTGRES_HOST", "127.0.0.1")
PG_USER = os.environ.get("MCP_TEST_POSTGRES_USER", "postgres")
PG_PASSWORD = os.environ.get("MCP_TEST_POSTGRES_PASSWORD", "")
SETTINGS = "tests.db_outage_settings"
VERSION = "2025-11-25"
UNAVAILABLE = -32003  # mcp_app.availability.UNAVAILABLE, spelled out: the wire contract


# -- PostgreSQL, as the machine runs it -------------------------------------------------------------------------------
def _cluster() -> tuple[str, str] | None:
    """The (version, name) of the machine's PostgreSQL cluster, or None when PostgreSQL is not installed."""
    if shutil.which("pg_ctlcluster") is None or not Path("/etc/postgresql").is_dir():
        return None
    versions = sorted(os.listdir("/etc/postgresql"))
    return (versions[-1], "main") if versions else None


def _pg_ctl(action: str) -> str:
    """Run ``pg_ctlcluster --skip-systemctl-redirect <version> main <action>`` (stop is ``-m fast``: sessions
    are cut at once, which is what an outage looks like to the workers) and return what it printed.

    Its exit status is not checked: "already running" (or stopped) is fine, and whether PostgreSQL accepts
    connections is what the callers wait for.
    """
    version, name = _cluster()  # type: ignore[misc]
    command = ["pg_ctlcluster", "--skip-systemctl-redirect", version, name, action]
    if action == "stop":
        command += ["-m", "fast"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    return f"{' '.join(command)} -> {done.returncode}: {done.stdout.strip()} {done.stderr.strip()}"


def _pg_connect(dbname: str = "postgres") -> Any:
    import psycopg

    return psycopg.connect(
        host=PG_HOST, user=PG_USER, password=PG_PASSWORD or None, dbname=dbname, connect_timeout=3, autocommit=True
    )


def _pg_accepts() -> bool:
    try:
        with _pg_connect() as conn:
            conn.execute("SELECT 1")
        return True
    except Exception:
        return False


def _wait_for_pg(up: bool, why: str = "", timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while _pg_accepts() != up:
        if time.monotonic() > deadline:
            raise TimeoutError(f"PostgreSQL did not {'accept' if up else 'refuse'} connections within {timeout} s ({why})")
        time.sleep(0.2)


def _start_pg() -> None:
    if not _pg_accepts():
        _wait_for_pg(True, _pg_ctl("start"))


def drop_database(database: str) -> None:
    """Drop a scratch database, ending whatever connections a stopped worker left to it."""
    from psycopg import sql  # imported here, as in _pg_connect: psycopg is only needed where PostgreSQL is

    with _pg_connect() as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            (database,),
        )
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(database)))


# -- the live worker --------------------------------------------------------------------------------------------------
class Outage:
    """One daphne worker on a fresh PostgreSQL database, with two users' bearer tokens."""

    def __init__(self, server: LiveServer, database: str, effects: Path, env: dict[str, str]) -> None:
        self.server = server
        self.database = database
        self.effects = effects
        self.env = env

    def effects_seen(self) -> list[str]:
        return self.effects.read_text().splitlines() if self.effects.exists() else []

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with _pg_connect(self.database) as conn:
            return conn.execute(sql, params).fetchall()


def _make_tokens(env: dict[str, str]) -> dict[str, str]:
    """Users ``warm`` and ``cold`` with a bearer token each, made by a separate process on the database."""
    code = (
        "import django, json; django.setup()\n"
        "from django.contrib.auth import get_user_model\n"
        "from mcp_app.models import Token\n"
        "keys = {}\n"
        "for name in ('warm', 'cold'):\n"
        "    user = get_user_model().objects.create_user(name)\n"
        "    keys[name] = Token.create_for(user, name='outage test')[1]\n"
        "print(json.dumps(keys))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def outage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Outage]:
    if _cluster() is None:
        pytest.skip(
            "PostgreSQL is not installed (no pg_ctlcluster or /etc/postgresql): the outage test stops and "
            "starts the machine's PostgreSQL cluster"
        )
    _start_pg()
    from psycopg import sql

    database = f"mcp_app_outage_{secrets.token_hex(6)}"
    with _pg_connect() as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
    workdir = tmp_path_factory.mktemp("db_outage")
    effects_dir = workdir / "effects"
    effects_dir.mkdir()
    extra = {"MCP_TEST_POSTGRES_DB": database, "MCP_TEST_SIDE_EFFECT_DIR": str(effects_dir)}
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": SETTINGS, **extra}
    server = None
    try:
        server = start_daphne(workdir, settings=SETTINGS, extra_env=extra, run_migrations=True)
        yield Outage(server, database, effects_dir / "effects.log", env)
    finally:
        _start_pg()  # whatever happened, leave PostgreSQL running
        if server is not None:
            server.stop()
        drop_database(database)
    server.assert_no_traceback()


# -- requests ---------------------------------------------------------------------------------------------------------
def _headers(token: str, session: str | None = None) -> dict[str, str]:
    headers = {
        "content-type": "application/json",
        "accept": "application/json, text/event-stream",
        "authorization": f"Bearer {token}",
        "mcp-protocol-version": VERSION,
    }
    if session:
        headers["mcp-session-id"] = session
    return headers


def _initialize(client: httpx.Client, url: str, token: str) -> httpx.Response:
    return client.post(
        url,
        headers=_headers(token),
        json={
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {"protocolVersion": VERSION, "capabilities": {}, "clientInfo": {"name": "outage", "version": "1"}},
        },
    )


def _call(
    client: httpx.Client, url: str, token: str, session: str, label: str, request_id: int, tool: str = "record_side_effect"
) -> httpx.Response:
    arguments = {"label": label} if tool == "record_side_effect" else {}
    return client.post(
        url,
        headers=_headers(token, session),
        json={"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": {"name": tool, "arguments": arguments}},
    )


def _assert_unavailable(response: httpx.Response, request_id: int | None = None) -> dict[str, Any]:
    """503 with Retry-After and a JSON-RPC error body (never daphne's HTML page)."""
    assert response.status_code == 503, (response.status_code, response.text[:500])
    assert response.headers["content-type"].startswith("application/json"), response.headers
    assert int(response.headers["retry-after"]) >= 1
    body = response.json()
    assert body["jsonrpc"] == "2.0" and body["id"] == request_id, body
    error = body["error"]
    assert error["code"] == UNAVAILABLE, error
    assert "retry" in error["message"].lower() and "database" in error["message"].lower(), error
    assert error["data"]["retryAfter"] == int(response.headers["retry-after"])
    assert "Traceback" not in response.text and "<html" not in response.text.lower()
    return error


def test_requests_during_a_postgresql_stop_get_503_and_service_resumes(outage: Outage) -> None:
    url = outage.server.mcp_url
    tokens = _make_tokens(outage.env)
    with httpx.Client(timeout=30) as client:
        # Before: a session, its token validated (and so cached by the worker), a tool call that runs.
        opened = _initialize(client, url, tokens["warm"])
        assert opened.status_code == 200, opened.text
        session = opened.headers["mcp-session-id"]
        client.post(
            url, headers=_headers(tokens["warm"], session), json={"jsonrpc": "2.0", "method": "notifications/initialized"}
        )
        before = _call(client, url, tokens["warm"], session, "before", 2)
        assert before.status_code == 200 and before.json()["result"]["content"][0]["text"] == "recorded before"

        stopped = _pg_ctl("stop")
        try:
            _wait_for_pg(False, stopped)
            refused = _call(client, url, tokens["warm"], session, "during", 3)
            error = _assert_unavailable(refused, 3)
            assert "nothing was done" in error["message"], error
            assert "record_side_effect" in error["message"], error
            assert outage.effects_seen() == ["before"]  # the tool did not run
            # A read-only tool runs (its row is written once, after it), but its answer is withheld: no answer
            # leaves unrecorded.
            withheld = _assert_unavailable(_call(client, url, tokens["warm"], session, "", 5, "read_side_effects"), 5)
            assert "withheld" in withheld["message"] and "read_side_effects" in withheld["message"], withheld
            assert "before" not in withheld["message"]  # the result itself never leaks into the error

            _assert_unavailable(_initialize(client, url, tokens["cold"]))  # authentication needs the database
            _assert_unavailable(_initialize(client, url, tokens["warm"]))  # a new session is a row
            legacy = client.get(
                f"{outage.server.url}/sse", headers={"accept": "text/event-stream", "authorization": f"Bearer {tokens['warm']}"}
            )
            _assert_unavailable(legacy)
        finally:
            _start_pg()

        # After: the same requests succeed from the same process (its connections were replaced).
        assert outage.server.process.poll() is None
        after = _call(client, url, tokens["warm"], session, "after", 4)
        assert after.status_code == 200, after.text
        assert after.json()["result"]["content"][0]["text"] == "recorded after"
        cold = _initialize(client, url, tokens["cold"])
        assert cold.status_code == 200 and cold.headers["mcp-session-id"], cold.text
        warm = _initialize(client, url, tokens["warm"])
        assert warm.status_code == 200 and warm.headers["mcp-session-id"] != session, warm.text

        read = _call(client, url, tokens["warm"], session, "", 6, "read_side_effects")
        assert read.status_code == 200 and read.json()["result"]["content"][0]["text"] == "before\nafter\n", read.text

    assert outage.effects_seen() == ["before", "after"]
    rows = outage.query("SELECT tool, arguments->>'label', outcome FROM mcp_app_toolcall ORDER BY created")
    # The refused call left no row (it never started); the withheld read left none either (that was the failure).
    assert rows == [
        ("record_side_effect", "before", "ok"),
        ("record_side_effect", "after", "ok"),
        ("read_side_effects", None, "ok"),
    ]


# -- in process: authentication's database errors -----------------------------------------------------------------------
async def test_a_database_error_while_authenticating_is_a_503_json_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    from django.db import OperationalError

    from mcp_app import auth
    from mcp_app.testing import MCPTestClient

    async def database_down(scope: dict[str, Any]) -> Any:
        raise OperationalError('connection to server at "127.0.0.1", port 5432 failed: Connection refused')

    monkeypatch.setattr(auth, "authenticate", database_down)
    response = await MCPTestClient(token="mcp_unseen").send({})
    assert response.status == 503
    assert response.headers["content-type"] == "application/json" and int(response.headers["retry-after"]) >= 1
    error = response.json()["error"]
    assert error["code"] == UNAVAILABLE and "database" in error["message"]
    assert "5432" not in error["message"]  # the driver's text stays in the log


# -- in process: provider reads, and which JSON answers are 503s ----------------------------------------------------------
async def test_a_provider_read_during_an_outage_is_unavailable_not_an_internal_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from django.db import OperationalError

    from mcp_app.availability import Unavailable
    from mcp_app.protocol.context import MemorySession, PendingClientRequests, RequestContext
    from mcp_app.providers.code import Registry
    from mcp_app.providers.managed import ManagedProvider

    provider = ManagedProvider(Registry())

    def database_down() -> Any:
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(provider, "_load", database_down)

    async def send(message: dict[str, Any]) -> None:
        return None

    ctx = RequestContext(session=MemorySession(), request_id=1, meta={}, send=send, pending=PendingClientRequests())
    with pytest.raises(Unavailable) as info:
        await provider.list_tools(ctx)
    assert info.value.code == UNAVAILABLE and "nothing was done" in info.value.message


def test_only_answers_made_of_unavailable_errors_are_503s() -> None:
    from mcp_app.availability import RETRY_AFTER, database_unavailable
    from mcp_app.protocol import jsonrpc
    from mcp_app.transports.consumer import _unavailable_retry_after

    down = jsonrpc.error_response(1, database_unavailable().to_error())
    other = jsonrpc.error_response(2, {"code": -32603, "message": "Internal error"})
    fine = jsonrpc.response(3, {})
    assert _unavailable_retry_after(down) == RETRY_AFTER
    assert _unavailable_retry_after([down, down]) == RETRY_AFTER
    assert _unavailable_retry_after([down, fine]) is None  # a batch with an answer stays 200
    assert _unavailable_retry_after(other) is None and _unavailable_retry_after(fine) is None
    assert _unavailable_retry_after([]) is None
