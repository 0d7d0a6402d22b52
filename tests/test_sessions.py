"""Sessions in the ORM with the per-worker cache in front."""

from __future__ import annotations

import asyncio

import pytest
from django.conf import settings
from django.test import override_settings

from mcp_app.models import Session, Subscription
from mcp_app.runtime import get_server
from mcp_app.sessions import SESSION_ID_RE

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
async def close_thread_connections(transactional_db: None):
    """The async ORM runs in asgiref's worker thread; close that thread's connection after each test,
    so later tests without database access do not find it open."""
    yield
    from asgiref.sync import sync_to_async
    from django.db import connections

    await sync_to_async(connections.close_all)()


async def make_session():
    return await get_server().sessions.create(
        transport=Session.Transport.STREAMABLE_HTTP,
        protocol_version="2025-06-18",
        client_info={"name": "tester", "version": "9"},
        client_capabilities={"sampling": {}},
    )


async def test_create_stores_a_row_with_a_random_visible_ascii_id() -> None:
    first, second = await make_session(), await make_session()
    assert first.id != second.id
    assert SESSION_ID_RE.match(first.id) and len(first.id) >= 43
    row = await Session.objects.aget(id=first.id)
    assert (row.client_name, row.client_version, row.protocol_version) == ("tester", "9", "2025-06-18")
    assert row.client_capabilities == {"sampling": {}}
    assert row.ended is None


async def test_get_is_served_from_cache_without_queries(monkeypatch: pytest.MonkeyPatch) -> None:
    record = await make_session()
    store = get_server().sessions

    def no_queries(*args: object, **kwargs: object) -> None:
        raise AssertionError("a cached session must not query the database")

    monkeypatch.setattr(Session.objects, "filter", no_queries)
    assert await store.get(record.id) is record


async def test_unknown_malformed_and_ended_sessions_are_none() -> None:
    store = get_server().sessions
    assert await store.get("no-such-session") is None
    assert await store.get("bad id with spaces") is None
    assert await store.get("x" * 500) is None
    record = await make_session()
    assert await store.end(record.id) is True
    assert await store.get(record.id) is None
    assert await store.end(record.id) is False
    assert (await Session.objects.aget(id=record.id)).ended is not None


async def test_another_worker_sees_an_ended_session_at_once() -> None:
    """A session ended behind the cache's back (another worker) is dropped through the bus."""
    record = await make_session()
    server = get_server()
    assert await server.sessions.get(record.id) is record
    await Session.objects.filter(id=record.id).aupdate(ended="2026-01-01T00:00:00Z")
    await server.bus.publish("session.invalidate", session_id=record.id)
    # The bus delivers asynchronously (here through the in-memory layer): within milliseconds.
    for _ in range(100):
        if await server.sessions.get(record.id) is None:
            break
        await asyncio.sleep(0.01)
    assert await server.sessions.get(record.id) is None


async def test_log_level_and_subscriptions_persist() -> None:
    record = await make_session()
    await record.set_log_level("error")
    await record.subscribe("test://a")
    await record.subscribe("test://a")
    await record.subscribe("test://b")
    await record.unsubscribe("test://a")
    row = await Session.objects.aget(id=record.id)
    uris = [uri async for uri in Subscription.objects.filter(session_id=record.id).values_list("uri", flat=True)]
    assert (row.log_level, uris) == ("error", ["test://b"])
    # A cold worker (empty cache) reads the same state from the database.
    with override_settings(MCP_APP={**settings.MCP_APP, "SESSION_CACHE_TIMEOUT": 0}):
        fresh = await get_server().sessions.get(record.id)
    assert fresh is not None and fresh is not record
    assert fresh.log_level == "error"
    # Ending the session drops its subscriptions: nothing is sent to it any more.
    await get_server().sessions.end(record.id)
    assert not await Subscription.objects.filter(session_id=record.id).aexists()


async def test_a_session_ends_when_its_credential_expires() -> None:
    """One timer per session, no polling: at the credential's expiry the session ends (row, caches), unless
    the credential was renewed meanwhile (an OAuth refresh), and then the timer follows the new expiry."""
    from datetime import timedelta

    from asgiref.sync import sync_to_async
    from django.contrib.auth.models import User
    from django.utils import timezone
    from oauth2_provider.models import AccessToken, Application

    from mcp_app.auth import Principal
    from mcp_app.models import Token

    store = get_server().sessions
    alice = await sync_to_async(User.objects.create_user)("alice")
    token, _ = await sync_to_async(Token.create_for)(alice, name="t", expires=timezone.now() + timedelta(seconds=0.4))
    record = await make_session()
    store.watch_expiry(record.id, Principal(key=token.principal, user=alice, kind="token", auth=token))
    assert await store.get(record.id) is record
    await asyncio.sleep(0.9)
    assert await store.get(record.id) is None and (await Session.objects.aget(id=record.id)).ended is not None
    assert record.id not in store._expiry_timers

    app = await Application.objects.acreate(
        name="c",
        client_type="public",
        authorization_grant_type="authorization-code",
        redirect_uris="http://127.0.0.1/cb",
        user=alice,
    )
    first = await AccessToken.objects.acreate(
        user=alice, application=app, token="a1", scope="mcp", expires=timezone.now() + timedelta(seconds=0.4)
    )
    await AccessToken.objects.acreate(
        user=alice,
        application=app,
        token="a2",
        scope="mcp",  # a refresh
        expires=timezone.now() + timedelta(hours=1),
    )
    renewed = await make_session()
    store.watch_expiry(renewed.id, Principal(key=f"oauth:{alice.pk}:{app.pk}", user=alice, kind="oauth", auth=first))
    await asyncio.sleep(0.9)
    assert await store.get(renewed.id) is renewed  # the client refreshed its token: the session goes on
    timer = store._expiry_timers[renewed.id]
    assert abs(timer.when() - asyncio.get_running_loop().time() - 3600) < 5  # now watching the refreshed token
    await store.end(renewed.id)
    for _ in range(100):  # the bus tells this worker (in-memory layer) within milliseconds
        if renewed.id not in store._expiry_timers:
            break
        await asyncio.sleep(0.01)
    assert renewed.id not in store._expiry_timers and timer.cancelled()
