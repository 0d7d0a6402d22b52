"""Session rows and ``last_seen`` touches are written in groups (mcp_app/groupcommit.py), off Django's thread
for sync code, and nothing accepted is lost.

- sessions created at once are committed together (fewer groups than sessions), each row whole, each found
  by any worker (a fresh store, as another process would be, reads it from the database);
- at ``MAX_SESSIONS_PER_PRINCIPAL``, rows created in one group keep the cap as if written one by one;
- touches queued together are one UPDATE, and land;
- a database outage while creating refuses the whole group and leaves no row; the writer recovers after it;
- ``GET /sse`` (in process) while the database is down: 503 with Retry-After and a JSON-RPC error, no row.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import HttpCommunicator
from django.conf import settings
from django.core.asgi import get_asgi_application
from django.db import OperationalError, connections
from django.db.backends import utils as db_utils
from django.test import override_settings

from mcp_app.bus import Bus
from mcp_app.groupcommit import GroupWriter, Pending
from mcp_app.models import Session
from mcp_app.routing import mcp_application
from mcp_app.sessions import SessionStore

pytestmark = pytest.mark.django_db(transaction=True)  # the writer's thread has its own connection, as in a server


@pytest.fixture(autouse=True)
async def close_thread_connections(transactional_db: None):
    """Close asgiref's thread's connection after each test (see tests/test_sessions.py)."""
    yield
    await sync_to_async(connections.close_all)()


async def _no_streams(session_id: str) -> None:
    return None


def store_with(writer: GroupWriter) -> SessionStore:
    return SessionStore(Bus(), _no_streams, writer=writer)


def held(writer: GroupWriter) -> tuple[threading.Event, threading.Event]:
    """Queue an item that keeps ``writer`` busy until ``release`` is set (``entered`` once it is), so that
    whatever is submitted meanwhile is written as one group."""
    entered, release = threading.Event(), threading.Event()

    def hold(group: list[Pending[Any]]) -> None:
        entered.set()
        assert release.wait(30)
        for pending in group:
            pending.done.set_result(None)

    writer.submit(hold, None)
    assert entered.wait(10)
    return entered, release


@pytest.fixture
def statements(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """Count SQL statements on the session table, on every thread; ``state["down"]`` makes them fail as a lost
    connection does."""
    state: dict[str, Any] = {"down": False, "sql": []}
    real = db_utils.CursorWrapper._execute

    def execute(self: Any, sql: str, params: Any, *rest: Any) -> Any:
        if "mcp_app_session" in sql:
            state["sql"].append(sql)
            if state["down"]:
                raise OperationalError("server closed the connection unexpectedly")
        return real(self, sql, params, *rest)

    monkeypatch.setattr(db_utils.CursorWrapper, "_execute", execute)
    yield state


async def test_sessions_created_at_once_are_committed_together_and_found_by_another_worker() -> None:
    writer = GroupWriter("test-sessions")
    store = store_with(writer)
    _, release = await asyncio.to_thread(held, writer)
    creating = [
        asyncio.ensure_future(store.create(transport="sse", protocol_version="2024-11-05", stream_channel=f"ch-{i}", worker="w1"))
        for i in range(50)
    ]
    await asyncio.sleep(0.2)
    assert not any(task.done() for task in creating)  # none answered before its row is committed
    release.set()
    records = await asyncio.gather(*creating)
    assert len({record.id for record in records}) == 50
    assert writer.groups["_create_rows"] < 50, writer.groups
    elsewhere = store_with(GroupWriter("test-other-worker"))  # another process: nothing cached
    for index, record in enumerate(records):
        found = await elsewhere.get(record.id)
        assert found is not None and found.stream_channel == f"ch-{index}" and found.worker == "w1"
    assert await Session.objects.filter(ended__isnull=True).acount() == 50


@override_settings(MCP_APP={**settings.MCP_APP, "MAX_SESSIONS_PER_PRINCIPAL": 2})
async def test_the_session_cap_holds_for_rows_created_in_one_group() -> None:
    from django.db.models import Q

    writer = GroupWriter("test-capped")
    store = store_with(writer)
    old = await store.create(transport="sse", protocol_version="2024-11-05", principal="p")
    _, release = await asyncio.to_thread(held, writer)
    creating = [
        asyncio.ensure_future(
            store.create(transport="sse", protocol_version="2024-11-05", principal="p", cap_sharers=Q(principal="p"))
        )
        for _ in range(3)
    ]
    await asyncio.sleep(0.1)
    release.set()
    records = await asyncio.gather(*creating)
    # As if written one after another: the last two created stay open; the oldest and the first new one end.
    still_open = {s async for s in Session.objects.filter(ended__isnull=True).values_list("id", flat=True)}
    assert still_open == {records[1].id, records[2].id}
    assert old.id not in still_open


async def test_touches_queued_together_are_one_update_and_land(statements: dict[str, Any]) -> None:
    writer = GroupWriter("test-touches")
    store = store_with(writer)
    records = [await store.create(transport="streamable_http", protocol_version="2025-11-25") for _ in range(20)]
    before = {r.id: r.last_active for r in records}
    await asyncio.sleep(0.01)
    stamps = dict([row async for row in Session.objects.values_list("id", "last_seen")])
    _, release = await asyncio.to_thread(held, writer)
    statements["sql"].clear()
    for record in records:
        store.touch(record)  # returns at once: nothing waits for the write
    release.set()
    assert await asyncio.to_thread(writer.wait_idle, 10)
    updates = [sql for sql in statements["sql"] if sql.lstrip().upper().startswith("UPDATE")]
    assert len(updates) == 1, updates
    after = dict([row async for row in Session.objects.values_list("id", "last_seen")])
    assert all(after[i] > stamps[i] for i in before)


async def test_a_failed_touch_is_written_again_by_the_next_message(statements: dict[str, Any]) -> None:
    writer = GroupWriter("test-touch-retry")
    store = store_with(writer)
    record = await store.create(transport="streamable_http", protocol_version="2025-11-25")
    stamp = (await Session.objects.aget(id=record.id)).last_seen
    statements["down"] = True
    with override_settings(MCP_APP={**settings.MCP_APP, "SESSION_TOUCH_INTERVAL": 0}):
        assert await store.get(record.id) is record  # served from the cache while the database is down
        assert await asyncio.to_thread(writer.wait_idle, 10)
        statements["down"] = False
        assert await store.get(record.id) is record
        assert await asyncio.to_thread(writer.wait_idle, 10)
    assert (await Session.objects.aget(id=record.id)).last_seen > stamp


async def test_an_outage_while_creating_refuses_the_whole_group_and_leaves_no_row(statements: dict[str, Any]) -> None:
    writer = GroupWriter("test-outage")
    store = store_with(writer)
    _, release = await asyncio.to_thread(held, writer)
    statements["down"] = True
    creating = [asyncio.ensure_future(store.create(transport="sse", protocol_version="2024-11-05")) for _ in range(5)]
    await asyncio.sleep(0.1)
    release.set()
    results = await asyncio.gather(*creating, return_exceptions=True)
    assert all(isinstance(result, OperationalError) for result in results), results
    statements["down"] = False
    assert await Session.objects.acount() == 0
    # The writer goes on once the database is back.
    record = await store.create(transport="sse", protocol_version="2024-11-05")
    assert await Session.objects.filter(id=record.id).aexists()


async def test_opening_a_legacy_stream_while_the_database_is_down_is_a_503_and_leaves_no_row(
    statements: dict[str, Any],
) -> None:
    statements["down"] = True
    communicator = HttpCommunicator(
        mcp_application(get_asgi_application()),
        "GET",
        "/sse",
        headers=[(b"host", b"localhost"), (b"accept", b"text/event-stream")],
    )
    response = await communicator.get_response(timeout=10)
    statements["down"] = False
    assert response["status"] == 503, response
    headers = dict(response["headers"])
    assert headers[b"content-type"] == b"application/json" and int(headers[b"retry-after"]) >= 1
    assert b"-32003" in response["body"] and b"Traceback" not in response["body"]
    assert await Session.objects.acount() == 0


async def test_sessions_ended_at_once_are_ended_together(statements: dict[str, Any]) -> None:
    writer = GroupWriter("test-ends")
    store = store_with(writer)
    records = [await store.create(transport="sse", protocol_version="2024-11-05") for _ in range(30)]
    _, release = await asyncio.to_thread(held, writer)
    statements["sql"].clear()
    ending = [asyncio.ensure_future(store.end(record.id)) for record in records]
    ending.append(asyncio.ensure_future(store.end(records[0].id)))  # a second end of the same session
    await asyncio.sleep(0.1)
    release.set()
    results = await asyncio.gather(*ending)
    assert results == [True] * 30 + [False]  # each was open once
    updates = [sql for sql in statements["sql"] if sql.lstrip().upper().startswith("UPDATE")]
    assert len(updates) < 30, updates
    assert await Session.objects.filter(ended__isnull=True).acount() == 0
    assert await store.get(records[5].id) is None
