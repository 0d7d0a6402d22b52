"""``notifications/resources/list_changed`` goes only to the streams whose caller may read the exposure
whose rows were created or deleted: a reader is not told when library members (librarians only) come and
go, a librarian is. Rows are saved in another process (as the admin would), over a Redis channel layer,
against a live daphne with a real site's defaults; both transports' streams are watched.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.live import LiveServer, bearer, open_session, shell, start_daphne
from tests.transports.streams import Stream

SETTINGS = "tests.auth_settings"
REDIS = ("127.0.0.1", 6379)
LIST_CHANGED = "notifications/resources/list_changed"
# Long enough for a notification saved in another process to arrive (it takes milliseconds).
SETTLE = 2.0


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, dict[str, str], dict[str, Any]]]:
    try:
        socket.create_connection(REDIS, timeout=2).close()
    except OSError:
        pytest.skip(
            "Redis is not running on 127.0.0.1:6379 (start it with redis-server); rows saved in another "
            "process reach the streams through a shared channel layer"
        )
    workdir = tmp_path_factory.mktemp("list_changed_scoping")
    env = {
        "MCP_TEST_DB": str(workdir / "db.sqlite3"),
        "MCP_TEST_RATE": "1000",
        "MCP_TEST_REDIS_URL": "redis://127.0.0.1:6379/0",
        "MCP_TEST_REDIS_PREFIX": f"lcs{os.getpid()}",
    }
    server = start_daphne(workdir, settings=SETTINGS, extra_env=env)
    tokens = json.loads(
        shell(
            SETTINGS,
            env,
            """
import json
from django.contrib.auth.models import Group, Permission, User
from mcp_app.models import Token
librarians = Group.objects.create(name="librarians")
librarians.permissions.add(*Permission.objects.filter(codename__in=["view_member", "view_loan"]))
librarian = User.objects.create_user("librarian", password="x")
librarian.groups.add(librarians)
reader = User.objects.create_user("reader", password="x")
# One token per stream: each token is its own principal, with its own stream and session caps.
print(json.dumps({"librarian": [Token.create_for(librarian, name=f"l{i}")[1] for i in range(3)],
                  "reader": [Token.create_for(reader, name=f"r{i}")[1] for i in range(3)]}))
""",
        )
    )
    yield server, env, tokens
    server.stop()
    import redis

    client = redis.Redis(*REDIS)
    for key in client.scan_iter(f"{env['MCP_TEST_REDIS_PREFIX']}*"):
        client.delete(key)
    server.assert_no_traceback()


def open_stream(server: LiveServer, token: str, transport: str) -> Stream:
    if transport == "sse":
        return Stream(f"{server.url}/sse", bearer(token))
    with httpx.Client(timeout=15) as http:
        session = open_session(http, server.mcp_url, token)
    return Stream(server.mcp_url, session)


def create(env: dict[str, str], model: str) -> None:
    tag = secrets.token_hex(4)
    code = {
        "member": f"Member.objects.create(name='M {tag}', email='m@example.com', card_number='{tag}', joined=date(2020, 1, 1))",
        "author": f"Author.objects.create(name='A {tag}')",
    }[model]
    shell(SETTINGS, env, f"from datetime import date; from mcpsite.library.models import Author, Member; {code}; print('ok')")


@pytest.mark.parametrize("transport", ["streamable_http", "sse"])
def test_list_changed_reaches_only_the_sessions_that_may_read_the_exposure(site: Any, transport: str) -> None:
    server, env, tokens = site
    which = ["streamable_http", "sse"].index(transport)
    reader = open_stream(server, tokens["reader"][which], transport)
    librarian = open_stream(server, tokens["librarian"][which], transport)
    try:
        create(env, "member")  # librarians only
        assert librarian.wait_for(LIST_CHANGED, 1, SETTLE), "the librarian was not told about the new member"
        time.sleep(SETTLE / 2)
        assert reader.methods().count(LIST_CHANGED) == 0, "the reader was told a member row was created"
        create(env, "author")  # public: both are told, once each (coalesced per transaction)
        assert reader.wait_for(LIST_CHANGED, 1, SETTLE) and librarian.wait_for(LIST_CHANGED, 2, SETTLE)
        time.sleep(SETTLE / 2)
        assert (reader.methods().count(LIST_CHANGED), librarian.methods().count(LIST_CHANGED)) == (1, 2)
    finally:
        reader.close()
        librarian.close()


def test_a_stream_follows_its_users_permissions(site: Any) -> None:
    server, env, tokens = site
    librarian = open_stream(server, tokens["librarian"][2], "streamable_http")
    try:
        create(env, "member")
        assert librarian.wait_for(LIST_CHANGED, 1, SETTLE)
        shell(
            SETTINGS,
            env,
            "from django.contrib.auth.models import User; User.objects.get(username='librarian').groups.clear(); print('ok')",
        )
        time.sleep(1.0)  # past the coalescing window, so a notification would not be merged into the first
        create(env, "member")
        time.sleep(SETTLE)
        assert librarian.methods().count(LIST_CHANGED) == 1, "told about members after losing view_member"
    finally:
        librarian.close()
        shell(
            SETTINGS,
            env,
            "from django.contrib.auth.models import Group, User; "
            "User.objects.get(username='librarian').groups.add(Group.objects.get(name='librarians')); "
            "print('ok')",
        )
