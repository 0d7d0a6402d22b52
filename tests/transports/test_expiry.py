"""Access that ends while a client is connected, against a live daphne with a real site's defaults:

- a session opened with a token that expires ends at the expiry: its open streams (Streamable HTTP GET
  and legacy SSE) close within a couple of seconds, its row is ended, and the next request gets 401;
- a user removed from a group loses the group's permissions on the very next request (no cache delay),
  when the change is made in another process (the admin, a shell), through the channel layer.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.live import HEADERS, LiveServer, bearer, open_session, shell, start_daphne
from tests.transports.streams import Stream

SETTINGS = "tests.auth_settings"
REDIS = ("127.0.0.1", 6379)
# Seconds from a token's creation (in another process) to its expiry: enough to open a stream first.
LIFETIME = 6.0


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, dict[str, str], dict[str, Any]]]:
    workdir = tmp_path_factory.mktemp("expiry")
    env = {"MCP_TEST_DB": str(workdir / "db.sqlite3"), "MCP_TEST_RATE": "1000"}
    try:
        socket.create_connection(REDIS, timeout=2).close()
        env.update(MCP_TEST_REDIS_URL="redis://127.0.0.1:6379/0", MCP_TEST_REDIS_PREFIX=f"expiry{os.getpid()}")
    except OSError:
        pass  # in-memory layer: only the test that changes groups from another process needs Redis, and skips
    server = start_daphne(workdir, settings=SETTINGS, extra_env=env)
    data = json.loads(
        shell(
            SETTINGS,
            env,
            """
import json
from datetime import date
from django.contrib.auth.models import Group, Permission, User
from mcp_app.models import Token
from mcpsite.library.models import Member
desk = Group.objects.create(name="desk")
desk.permissions.add(Permission.objects.get(codename="view_member"))
dora = User.objects.create_user("dora", password="x")
dora.groups.add(desk)
member = Member.objects.create(name="Ann", email="ann@example.com", card_number="C1", joined=date(2020, 1, 1))
print(json.dumps({"dora": Token.create_for(dora, name="dora")[1], "member": member.pk}))
""",
        )
    )
    yield server, env, data
    server.stop()
    if "MCP_TEST_REDIS_PREFIX" in env:
        import redis

        client = redis.Redis(*REDIS)
        for key in client.scan_iter(f"{env['MCP_TEST_REDIS_PREFIX']}*"):
            client.delete(key)
    server.assert_no_traceback()


@pytest.fixture()
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=15) as client:
        yield client


def expiring_token(env: dict[str, str]) -> tuple[str, float]:
    """A fresh token for a new user that expires LIFETIME seconds from now; returns it and its expiry
    as this process's monotonic time."""
    out = json.loads(
        shell(
            SETTINGS,
            env,
            f"""
import json, secrets
from datetime import timedelta
from django.contrib.auth.models import User
from django.utils import timezone
from mcp_app.models import Token
user = User.objects.create_user("u" + secrets.token_hex(4))
expires = timezone.now() + timedelta(seconds={LIFETIME})
print(json.dumps({{"key": Token.create_for(user, name="short", expires=expires)[1], "expires": expires.timestamp()}}))
""",
        )
    )
    return out["key"], time.monotonic() + (out["expires"] - time.time())


def session_ended(env: dict[str, str], session_id: str) -> bool:
    return (
        shell(
            SETTINGS, env, f"from mcp_app.models import Session; print(Session.objects.get(id={session_id!r}).ended is not None)"
        )
        == "True"
    )


@pytest.mark.parametrize("transport", ["streamable_http", "sse"])
def test_open_streams_close_when_their_token_expires(site: Any, http: httpx.Client, transport: str) -> None:
    server, env, _data = site
    token, expires = expiring_token(env)
    if transport == "streamable_http":
        session = open_session(http, server.mcp_url, token)
        session_id = session["mcp-session-id"]
        stream = Stream(server.mcp_url, session)
    else:
        stream = Stream(f"{server.url}/sse", bearer(token))
        deadline = time.monotonic() + 5
        while stream.endpoint is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert stream.endpoint is not None, "no endpoint event"
        session_id = stream.endpoint.split("session_id=")[1]
    assert time.monotonic() < expires - 1, "the stream opened too late to test the expiry"
    try:
        ended = stream.wait_ended(timeout=max(0.0, expires - time.monotonic()) + 10)
        assert ended is not None, "the stream outlived its token's expiry"
        assert expires - 0.5 <= ended <= expires + 2.5, f"closed {ended - expires:+.2f}s from the expiry"
    finally:
        stream.close()
    assert session_ended(env, session_id)
    ping = {"jsonrpc": "2.0", "id": 9, "method": "ping"}
    if transport == "streamable_http":
        refused = http.post(server.mcp_url, json=ping, headers=session)
    else:
        refused = http.post(f"{server.url}{stream.endpoint}", json=ping, headers={**HEADERS, **bearer(token)})
    assert refused.status_code == 401 and 'error="invalid_token"' in refused.headers["www-authenticate"]


def test_a_session_without_a_stream_ends_at_its_token_expiry(site: Any, http: httpx.Client) -> None:
    server, env, _data = site
    token, expires = expiring_token(env)
    session = open_session(http, server.mcp_url, token)
    assert http.post(server.mcp_url, json={"jsonrpc": "2.0", "id": 2, "method": "ping"}, headers=session).status_code == 200
    time.sleep(max(0.0, expires - time.monotonic()) + 1.5)
    assert session_ended(env, session["mcp-session-id"])


def test_removing_a_user_from_a_group_takes_effect_on_the_next_request(site: Any, http: httpx.Client) -> None:
    server, env, data = site
    if "MCP_TEST_REDIS_URL" not in env:
        pytest.skip("Redis is not running on 127.0.0.1:6379; a change made in another process needs a shared channel layer")
    session = open_session(http, server.mcp_url, data["dora"])
    tools = {"jsonrpc": "2.0", "id": 3, "method": "tools/list"}
    read = {"jsonrpc": "2.0", "id": 4, "method": "resources/read", "params": {"uri": f"django://library/member/{data['member']}"}}

    def can_read_members() -> bool:
        names = {t["name"] for t in http.post(server.mcp_url, json=tools, headers=session).json()["result"]["tools"]}
        answer = http.post(server.mcp_url, json=read, headers=session).json()
        assert ("library_member_list" in names) == ("result" in answer), (names, answer)
        if "error" in answer:
            assert answer["error"]["code"] == -32002
        return "result" in answer

    assert can_read_members()  # and the token's principal is now cached by the worker
    for change, expected in (
        ("User.objects.get(username='dora').groups.remove(desk)", False),
        ("desk.user_set.add(User.objects.get(username='dora'))", True),
        ("desk.permissions.clear()", False),
        ("desk.permissions.add(Permission.objects.get(codename='view_member'))", True),
        (
            "u = User.objects.get(username='dora'); u.groups.clear(); "
            "u.user_permissions.add(Permission.objects.get(codename='view_member'))",
            True,
        ),
        ("User.objects.get(username='dora').user_permissions.clear()", False),
        ("u = User.objects.get(username='dora'); u.is_superuser = True; u.save()", True),
    ):
        shell(
            SETTINGS,
            env,
            "from django.contrib.auth.models import Group, Permission, User; "
            f"desk = Group.objects.get(name='desk'); {change}; print('ok')",
        )
        assert can_read_members() is expected, change
