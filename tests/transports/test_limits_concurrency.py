"""Limits that limit, and limits that never lock a client out, against live daphne processes.

- **Rates hold under concurrency.** 20 clients of one token, each with its own session, send 4 x N requests
  at once against a limit of N: exactly N get through, the rest get 429 with JSON-RPC error -32029 and a
  ``Retry-After`` that is true (a retry after it succeeds). For ``TOOL_CALL_RATE`` and ``REQUEST_RATE``, counted
  in Django's default local-memory cache and in Django's RedisCache. (Django's async ``aincr`` is a get and
  a set: before counting was made atomic, every one of the 4 x N got through.)
- **The session cap never locks out.** At ``MAX_SESSIONS_PER_PRINCIPAL`` a new ``initialize`` succeeds and
  the credential's least recently used session ends: its open stream closes and its next request gets 404.
  20 concurrent initializes at the cap leave exactly the cap open.
- **Abandoned sessions are reaped without a cron job**: a session idle past ``SESSION_IDLE_TIMEOUT`` is ended
  by the worker itself (row ended, stream closed) without any request naming it.

The Redis cases skip when Redis (127.0.0.1:6379) is not running.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.live import HEADERS, LATEST, LiveServer, initialize_message, open_session, shell, start_daphne

SETTINGS = "tests.limits_settings"
INIT = initialize_message(client="limits")
CALL = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "uppercase_text", "arguments": {"text": "a"}}}
LIST = {"jsonrpc": "2.0", "id": 3, "method": "tools/list"}
CLIENTS = 20
REDIS = ("127.0.0.1", 6379)


# -- servers and credentials ------------------------------------------------------------------------------------
def redis_running() -> bool:
    try:
        socket.create_connection(REDIS, timeout=2).close()
        return True
    except OSError:
        return False


def serve(workdir: Path, **env: str) -> tuple[LiveServer, dict[str, str]]:
    env = {"MCP_TEST_DB": str(workdir / "db.sqlite3"), **env}
    return start_daphne(workdir, settings=SETTINGS, extra_env=env), env


def make_tokens(env: dict[str, str], count: int) -> list[tuple[int, str]]:
    """``count`` bearer tokens of one new user: (token pk, token)."""
    code = f"""
import json, secrets
from django.contrib.auth.models import User
from mcp_app.models import Token
user = User.objects.create_user("u" + secrets.token_hex(4))
made = [Token.create_for(user, name=f"t{{i}}") for i in range({count})]
print(json.dumps([[row.pk, key] for row, key in made]))
"""
    return [tuple(pair) for pair in json.loads(shell(SETTINGS, env, code))]


def open_sessions(env: dict[str, str], token_pk: int) -> int:
    with sqlite3.connect(env["MCP_TEST_DB"], timeout=20) as db:
        return db.execute(
            "SELECT count(*) FROM mcp_app_session WHERE principal = ? AND ended IS NULL", (f"token:{token_pk}",)
        ).fetchone()[0]


def wait_for_a_fresh_window(seconds: float, needed: float) -> None:
    """Sleep, if need be, until at least ``needed`` seconds are left in the current fixed window (the server
    counts in windows of ``int(time.time() // seconds)``, on the same clock), so the burst falls in one."""
    left = seconds - time.time() % seconds
    if left < needed:
        time.sleep(left + 0.05)


# -- rates ------------------------------------------------------------------------------------------------------
RATE_CASES = [
    pytest.param("locmem", "TOOL_CALL_RATE", id="tool-calls-locmem"),
    pytest.param("redis", "TOOL_CALL_RATE", id="tool-calls-redis"),
    pytest.param("locmem", "REQUEST_RATE", id="requests-locmem"),
    pytest.param("redis", "REQUEST_RATE", id="requests-redis"),
]


@pytest.mark.parametrize(("cache", "setting"), RATE_CASES)
def test_a_rate_holds_for_twenty_concurrent_sessions_of_one_token(tmp_path: Path, cache: str, setting: str) -> None:
    if cache == "redis" and not redis_running():
        pytest.skip("Redis is not running on 127.0.0.1:6379 (start it to test the Redis cache)")
    limit, window = 25, 20.0
    env = {
        "MCP_TEST_RATE_CACHE": cache,
        "MCP_TEST_REDIS_PREFIX": f"limits{os.getpid()}{time.monotonic_ns()}",
        f"MCP_TEST_LIMIT_{setting}": f"{limit},{window:g}",
    }
    server, env = serve(tmp_path, **env)
    try:
        [(_pk, token)] = make_tokens(env, 1)
        message = CALL if setting == "TOOL_CALL_RATE" else LIST
        per_client = 4 * limit // CLIENTS
        start = threading.Barrier(CLIENTS)
        clients = [httpx.Client(timeout=30) for _ in range(CLIENTS)]

        def burst(client: httpx.Client) -> list[httpx.Response]:
            session = open_session(client, server.mcp_url, token)  # initialize is free: it spends nothing
            if start.wait() == 0:
                wait_for_a_fresh_window(window, needed=12)
            start.wait()  # every client waits for the one that picked the moment
            return [client.post(server.mcp_url, json=message, headers=session) for _ in range(per_client)]

        try:
            with ThreadPoolExecutor(CLIENTS) as pool:
                answers = [r for rs in pool.map(burst, clients) for r in rs]
            through = [r for r in answers if r.status_code == 200]
            refused = [r for r in answers if r.status_code == 429]
            print(
                f"\n{setting} on {cache}: {len(through)} of {len(answers)} through a limit of {limit} "
                f"({CLIENTS} concurrent sessions of one token)"
            )
            assert len(answers) == 4 * limit
            assert len(through) == limit and len(refused) == 3 * limit, [r.status_code for r in answers]
            assert all("result" in r.json() for r in through)
            for r in refused:
                error = r.json()["error"]
                retry_after = int(r.headers["retry-after"])
                assert error["code"] == -32029 and setting in error["message"]
                assert error["data"] == {"retryAfter": retry_after} and 1 <= retry_after <= window
            # The Retry-After is true: a retry once it has passed goes through.
            last = refused[-1]
            time.sleep(int(last.headers["retry-after"]))
            retry = clients[0].post(
                server.mcp_url,
                json=message,
                headers={
                    **HEADERS,
                    **{k: v for k, v in last.request.headers.items() if k in ("authorization", "mcp-session-id")},
                    "mcp-protocol-version": LATEST,
                },
            )
            assert retry.status_code == 200 and "result" in retry.json(), retry.text
        finally:
            for client in clients:
                client.close()
    finally:
        server.stop()
        if cache == "redis":
            import redis

            connection = redis.Redis(*REDIS)
            for key in connection.scan_iter(f"{env['MCP_TEST_REDIS_PREFIX']}*"):
                connection.delete(key)
            connection.close()
    server.assert_no_traceback()


# -- sessions -------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def capped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, dict[str, str]]]:
    # Every message records its session's activity (the least recently used one is then exactly known).
    server, env = serve(tmp_path_factory.mktemp("capped"), MCP_TEST_MAX_SESSIONS="5", MCP_TEST_SESSION_TOUCH_INTERVAL="0")
    yield server, env
    server.stop()
    server.assert_no_traceback()


def test_at_the_session_cap_the_least_recently_used_session_ends(capped: tuple[LiveServer, dict[str, str]]) -> None:
    server, env = capped
    [(pk, token)] = make_tokens(env, 1)
    with httpx.Client(timeout=15) as client:
        sessions = []
        for _ in range(5):
            sessions.append(open_session(client, server.mcp_url, token))
            time.sleep(0.05)  # distinct last_seen times
        oldest, *others = sessions
        least_recent = others[0]
        stream_lines: list[str] = []
        with client.stream("GET", server.mcp_url, headers={**least_recent, "accept": "text/event-stream"}) as stream:
            assert stream.status_code == 200

            def read() -> None:
                stream_lines.extend(stream.iter_lines())  # returns once the server ends the stream

            reader = threading.Thread(target=read, daemon=True)
            reader.start()
            time.sleep(0.1)
            # Every session but the second is used after its stream opened (an open stream is not activity).
            with httpx.Client(timeout=15) as other_client:
                for session in [*others[1:], oldest]:
                    assert other_client.post(server.mcp_url, json=LIST, headers=session).status_code == 200
            # A sixth session: the credential is at its cap of 5, so its least recently used session ends.
            with httpx.Client(timeout=15) as other_client:
                newest = open_session(other_client, server.mcp_url, token)
            reader.join(10)
            assert not reader.is_alive(), "the evicted session's stream is still open"
        ended = client.post(server.mcp_url, json=LIST, headers=least_recent)
        assert ended.status_code == 404 and ended.json()["error"]["code"] == -32001
        for session in [oldest, *others[1:], newest]:
            assert client.post(server.mcp_url, json=LIST, headers=session).status_code == 200
    assert open_sessions(env, pk) == 5


def test_twenty_concurrent_initializes_near_the_cap_leave_the_cap_open(capped: tuple[LiveServer, dict[str, str]]) -> None:
    server, env = capped
    [(pk, token)] = make_tokens(env, 1)
    with httpx.Client(timeout=15) as client:
        for _ in range(4):
            open_session(client, server.mcp_url, token)
    assert open_sessions(env, pk) == 4  # one place left, twenty initializes at once
    start = threading.Barrier(CLIENTS)

    def initialize(_: int) -> int:
        with httpx.Client(timeout=30) as client:
            start.wait()
            return client.post(server.mcp_url, json=INIT, headers={**HEADERS, "authorization": f"Bearer {token}"}).status_code

    with ThreadPoolExecutor(CLIENTS) as pool:
        statuses = list(pool.map(initialize, range(CLIENTS)))
    left_open = open_sessions(env, pk)
    print(
        f"\nsessions open after {CLIENTS} concurrent initializes with 4 open and a cap of 5: {left_open}; "
        f"statuses {sorted(statuses)}"
    )
    assert statuses == [200] * CLIENTS  # never locked out
    assert left_open == 5


def test_abandoned_sessions_are_reaped_without_a_request(tmp_path: Path) -> None:
    server, env = serve(
        tmp_path, MCP_TEST_SESSION_IDLE_TIMEOUT="2", MCP_TEST_SESSION_REAP_INTERVAL="0.5", MCP_TEST_SESSION_TOUCH_INTERVAL="0"
    )
    try:
        [(pk, token)] = make_tokens(env, 1)
        with httpx.Client(timeout=15) as client:
            abandoned = open_session(client, server.mcp_url, token)
            assert open_sessions(env, pk) == 1
            started = time.monotonic()
            # An open stream is not activity: the session is abandoned all the same, and its stream closes.
            with client.stream("GET", server.mcp_url, headers={**abandoned, "accept": "text/event-stream"}) as stream:
                assert stream.status_code == 200
                for _ in stream.iter_lines():
                    pass  # returns when the server ends the stream
            closed_after = time.monotonic() - started
            assert open_sessions(env, pk) == 0  # ended in the database, with no request naming it
            assert 2 <= closed_after < 8, closed_after
            gone = client.post(server.mcp_url, json=LIST, headers=abandoned)
            assert gone.status_code == 404 and gone.json()["error"]["code"] == -32001
    finally:
        server.stop()
    server.assert_no_traceback()
