"""Limits in-process: whose allowance a caller spends, what a POST's requests cost, and how a batch's
entries are run. The wire (429, 400, latency under a batch) is tested in tests/transports/test_batches.py
and tests/transports/test_abuse.py."""

from __future__ import annotations

import asyncio
import secrets
import time
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.conf import settings
from django.contrib.auth.models import User
from django.core.cache import caches
from django.test import override_settings
from django.utils import timezone
from oauth2_provider.models import AccessToken, Application

from mcp_app import auth, limits
from mcp_app.availability import Unavailable
from mcp_app.checks import check_settings
from mcp_app.models import Session, Token
from mcp_app.runtime import get_server, run_each

pytestmark = pytest.mark.django_db(transaction=True)

RESOURCE = "http://testserver/mcp"
OAUTH = {
    **settings.MCP_APP,
    "ALLOW_ANONYMOUS": False,
    "RESOURCE_URL": RESOURCE,
    "DEFAULT_AUTHENTICATION_CLASSES": ["mcp_app.auth.BearerTokenAuthentication", "mcp_app.contrib.oauth.OAuth2Authentication"],
}


def scope(token: str) -> dict[str, Any]:
    return {
        "type": "http",
        "method": "POST",
        "scheme": "http",
        "query_string": b"",
        "client": ("10.0.0.9", 5000),
        "headers": [(b"host", b"testserver"), (b"authorization", f"Bearer {token}".encode())],
    }


@pytest.fixture(autouse=True)
def fresh() -> None:
    auth.forget_credentials()
    caches[settings.MCP_APP.get("RATE_LIMIT_CACHE", "default")].clear()


def oauth_token(user: User, client: str) -> str:
    app = Application.objects.create(
        name=client,
        user=user,
        client_type="public",
        authorization_grant_type="authorization-code",
        redirect_uris="http://127.0.0.1:9/cb",
    )
    key = secrets.token_urlsafe(30)
    AccessToken.objects.create(
        user=user, application=app, token=key, scope="mcp", resource=[RESOURCE], expires=timezone.now() + timedelta(hours=1)
    )
    return key


def principals_of_three_clients() -> tuple[User, list[Any]]:
    reader = User.objects.create_user("reader")
    found = [auth.authenticate_sync(scope(oauth_token(reader, name))) for name in ("one", "two", "three")]
    assert len({p.key for p in found}) == 3  # three clients: three principals for session binding
    return reader, found


@override_settings(MCP_APP={**OAUTH, "TOOL_CALL_RATE": (4, 60), "REQUEST_RATE": None})
def test_oauth_clients_of_one_user_share_the_tool_call_allowance() -> None:
    reader, clients = principals_of_three_clients()
    assert {limits.limit_key(p, scope("x")) for p in clients} == {f"user:{reader.pk}"}
    for principal in (clients[0], clients[1], clients[2], clients[0]):
        async_to_sync(limits.count_requests)(principal, {}, ["tools/call"])
    for principal in clients:
        with pytest.raises(limits.Limited, match=r"tool calls: at most 4 every 60 s \(MCP_APP\['TOOL_CALL_RATE'\]\)"):
            async_to_sync(limits.count_requests)(principal, {}, ["tools/call"])
    # Another user's allowance, and a bearer token of the same user (issued by someone who may issue
    # tokens: an allowance of its own), are untouched.
    other_reader = User.objects.create_user("other")
    async_to_sync(limits.count_requests)(auth.authenticate_sync(scope(oauth_token(other_reader, "four"))), {}, ["tools/call"])
    issued = auth.authenticate_sync(scope(Token.create_for(reader, name="cli")[1]))
    assert limits.limit_key(issued, {}) == issued.key != f"user:{reader.pk}"
    async_to_sync(limits.count_requests)(issued, {}, ["tools/call"])


@override_settings(MCP_APP={**OAUTH, "MAX_SESSIONS_PER_PRINCIPAL": 2})
def test_oauth_clients_of_one_user_share_the_session_allowance() -> None:
    reader, clients = principals_of_three_clients()
    store = get_server().sessions

    def open_session(principal: Any) -> str:
        record = async_to_sync(store.create)(
            transport="streamable_http",
            protocol_version="2025-11-25",
            user=reader,
            principal=principal.key,
            cap_sharers=limits.session_owner_filter(principal),
        )
        return record.id

    def still_open() -> set[str]:
        return set(Session.objects.filter(ended__isnull=True).values_list("id", flat=True))

    first, second = open_session(clients[0]), open_session(clients[1])
    # A third client of the same user: their one cap of 2 is full, so the least recently used session ends
    # (never a 429: a client that never DELETEs is never locked out).
    third = open_session(clients[2])
    assert still_open() == {second, third}
    # The same user signed in with the session cookie shares it too; a token of theirs has its own.
    cookie = auth.Principal(key=f"user:{reader.pk}", user=reader, kind="session")
    fourth = open_session(cookie)
    assert still_open() == {third, fourth}
    issued = auth.authenticate_sync(scope(Token.create_for(reader, name="cli")[1]))
    fifth = open_session(issued)
    assert still_open() == {third, fourth, fifth}
    # Used since: no longer the least recently used one.
    Session.objects.filter(id=third).update(last_seen=timezone.now())
    sixth = open_session(clients[0])
    assert still_open() == {third, sixth, fifth}
    assert first not in still_open()
    # Anonymous callers are one principal for everyone: bounded by the idle timeout, never by a shared count.
    assert limits.session_owner_filter(auth.Principal(key=auth.ANONYMOUS)) is None


@override_settings(MCP_APP={**settings.MCP_APP, "REQUEST_RATE": (5, 60), "TOOL_CALL_RATE": (2, 60)})
def test_every_costly_request_counts_and_ping_is_free() -> None:
    anonymous = auth.Principal(key=auth.ANONYMOUS)
    here, elsewhere = {"client": ("10.0.0.1", 1)}, {"client": ("10.0.0.2", 1)}
    count = async_to_sync(limits.count_requests)
    count(anonymous, here, ["ping"] * 50 + ["initialize"])  # free
    count(anonymous, here, ["resources/read", "resources/list", "prompts/get"])  # one batch: three entries
    count(anonymous, here, ["tools/call", "completion/complete"])
    with pytest.raises(limits.Limited, match=r"requests: at most 5 every 60 s \(MCP_APP\['REQUEST_RATE'\]\)") as refused:
        count(anonymous, here, ["tools/list"])
    assert 1 <= refused.value.retry_after <= 60
    count(anonymous, here, ["ping"])  # still free when the budget is spent
    count(anonymous, elsewhere, ["resources/read"] * 2)  # anonymous callers: by address
    with pytest.raises(limits.Limited, match="tool calls"):  # 5 requests, 3 tool calls: TOOL_CALL_RATE on its own
        count(anonymous, elsewhere, ["ping"] * 3 + ["tools/call"] * 3)


@override_settings(MCP_APP={**settings.MCP_APP, "BATCH_CONCURRENCY": 3})
def test_a_batch_runs_a_few_entries_at_a_time_each_in_its_own_task() -> None:
    running, most, tasks = 0, 0, []

    async def run(item: int) -> None:
        nonlocal running, most
        running += 1
        most = max(most, running)
        tasks.append(asyncio.current_task())
        await asyncio.sleep(0.01)
        running -= 1

    async def main() -> None:
        await run_each(list(range(20)), run)
        assert most == 3 and len(set(tasks)) == 20
        # One request runs in the caller's own task (no extra task for the common case).
        tasks.clear()
        await run_each([1], run)
        assert tasks == [asyncio.current_task()]

    async_to_sync(main)()


def test_other_work_runs_between_a_batchs_entries() -> None:
    order: list[str] = []

    async def run(item: int) -> None:
        order.append(f"entry {item}")  # never awaits anything: without yielding, the batch would run in one go

    async def other() -> None:
        for _ in range(3):
            order.append("other")
            await asyncio.sleep(0)

    async def main() -> None:
        await asyncio.gather(run_each(list(range(12)), run, concurrency=1), other())

    async_to_sync(main)()
    assert order.index("other", 1) < order.index("entry 11")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("MAX_BATCH_SIZE", 0),
        ("MAX_BATCH_SIZE", "100"),
        ("BATCH_CONCURRENCY", -1),
        ("REQUEST_RATE", 600),
        ("REQUEST_RATE", (600, 0)),
        ("TOOL_CALL_RATE", (True, 60)),
        ("TOOL_CALL_RATE", (1, 2, 3)),
    ],
)
def test_the_limit_settings_are_checked(name: str, value: Any) -> None:
    with override_settings(MCP_APP={name: value}):
        messages = check_settings()
    assert [m.id for m in messages] == ["mcp_app.E003"] and name in messages[0].msg and messages[0].hint
    with override_settings(MCP_APP={"REQUEST_RATE": None, "TOOL_CALL_RATE": [10, 0.5], "MAX_BATCH_SIZE": 1}):
        assert check_settings() == []


@pytest.mark.parametrize(
    ("backend", "warned"),
    [
        ("django.core.cache.backends.locmem.LocMemCache", False),
        ("django.core.cache.backends.redis.RedisCache", False),
        ("django.core.cache.backends.db.DatabaseCache", True),
        ("django.core.cache.backends.filebased.FileBasedCache", True),
        ("django.core.cache.backends.dummy.DummyCache", True),
    ],
)
def test_w006_warns_when_the_rate_limit_cache_cannot_count_atomically(backend: str, warned: bool) -> None:
    from mcp_app.checks import check_rate_limit_cache

    caches_setting = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
        "rates": {"BACKEND": backend, "LOCATION": "unused"},
    }
    with override_settings(CACHES=caches_setting, MCP_APP={**settings.MCP_APP, "RATE_LIMIT_CACHE": "rates"}):
        found = check_rate_limit_cache()
    assert [m.id for m in found] == (["mcp_app.W006"] if warned else [])
    if warned:
        assert "'rates'" in found[0].msg and backend in found[0].msg


@pytest.mark.parametrize(
    ("name", "value", "ok"),
    [
        ("BODY_TIMEOUT", 30, True),
        ("BODY_TIMEOUT", None, True),
        ("BODY_TIMEOUT", 0, False),
        ("BODY_TIMEOUT", "30", False),
        ("SESSION_REAP_INTERVAL", 0.5, True),
        ("SESSION_REAP_INTERVAL", -1, False),
        ("SESSION_REAP_INTERVAL", True, False),
    ],
)
def test_body_timeout_and_reap_interval_are_validated(name: str, value: Any, ok: bool) -> None:
    with override_settings(MCP_APP={**settings.MCP_APP, name: value}):
        errors = [m for m in check_settings() if name in m.msg]
    assert errors == [] if ok else [e.id for e in errors] == ["mcp_app.E003"]


def test_an_unreachable_rate_limit_cache_is_a_503_not_a_500() -> None:
    unreachable = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
        "rates": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:9/0",  # the discard port: nothing listens there
            "OPTIONS": {"socket_connect_timeout": 1},
        },
    }
    with override_settings(
        CACHES=unreachable, MCP_APP={**settings.MCP_APP, "RATE_LIMIT_CACHE": "rates", "TOOL_CALL_RATE": (5, 60)}
    ):
        with pytest.raises(Unavailable, match=r"rate-limit cache .* unreachable; nothing was done"):
            async_to_sync(limits.count_requests)(auth.Principal(key=auth.ANONYMOUS), {"client": ("10.0.0.3", 1)}, ["tools/call"])


def test_concurrent_counting_in_threads_lets_exactly_the_limit_through() -> None:
    """The counting itself, without a server: 200 calls at once from 20 threads against a limit of 50."""
    from concurrent.futures import ThreadPoolExecutor

    anonymous = auth.Principal(key=auth.ANONYMOUS)

    def call(_: int) -> bool:
        try:
            async_to_sync(limits.count_requests)(anonymous, {"client": ("10.0.0.4", 1)}, ["tools/call"])
            return True
        except limits.Limited:
            return False

    if 3600 - time.time() % 3600 < 10:  # all in one window of the hour
        time.sleep(11)
    with override_settings(MCP_APP={**settings.MCP_APP, "TOOL_CALL_RATE": (50, 3600), "REQUEST_RATE": None}):
        with ThreadPoolExecutor(20) as pool:
            through = sum(pool.map(call, range(200)))
    assert through == 50
