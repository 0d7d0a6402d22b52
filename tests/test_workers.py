"""Worker leases (mcp_app.workers) and the bus re-joining its group, in one process.

The faults themselves (``kill -9`` of a worker, a Redis restart) are reproduced with real processes in
tests/transports/test_worker_death.py and tests/transports/test_redis_restart.py; these tests pin the
pieces those rely on: the lease rows, the reaper's choice of sessions, and the bus's re-join.
"""

from __future__ import annotations

import asyncio
import os
from datetime import timedelta
from typing import Any

import pytest
from channels.layers import InMemoryChannelLayer
from django.test import override_settings
from django.utils import timezone

from mcp_app import bus as bus_module
from mcp_app import workers
from mcp_app.checks import check_settings
from mcp_app.models import Session, Subscription, Worker

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def close_thread_connections(transactional_db: None) -> Any:
    yield
    from django.db import connections

    connections.close_all()


def open_session(worker: str) -> Session:
    return Session.objects.create(
        id=f"s-{worker or 'none'}-{Session.objects.count()}",
        transport=Session.Transport.SSE,
        protocol_version="2024-11-05",
        stream_channel="specific.x!y",
        worker=worker,
    )


def test_a_beat_creates_the_lease_then_renews_it() -> None:
    workers._beat("w1", 15)
    row = Worker.objects.get(id="w1")
    assert row.expires - row.heartbeat == timedelta(seconds=15) or abs((row.expires - row.heartbeat).total_seconds() - 15) < 1
    first = row.expires
    workers._beat("w1", 30)
    renewed = Worker.objects.get(id="w1")
    assert renewed.expires > first and renewed.started == row.started and Worker.objects.count() == 1


def test_the_reaper_ends_the_sessions_of_lapsed_and_vanished_workers_only() -> None:
    workers._beat("live", 60)
    workers._beat("me", 60)
    Worker.objects.create(id="lapsed", host="h", pid=1, expires=timezone.now() - timedelta(seconds=1))
    kept = [open_session("live"), open_session("me"), open_session("")]
    lost = [open_session("lapsed"), open_session("vanished")]  # "vanished": its row is gone altogether
    Subscription.objects.create(session=lost[0], uri="test://x")

    ended, dead = workers._reap("me")

    assert sorted(ended) == sorted((s.id, s.worker) for s in lost)
    assert [row[0] for row in dead] == ["lapsed"]
    assert set(Worker.objects.values_list("id", flat=True)) == {"live", "me"}
    assert not Session.objects.filter(id__in=[s.id for s in lost], ended__isnull=True).exists()
    assert Session.objects.filter(id__in=[s.id for s in kept], ended__isnull=True).count() == 3
    assert not Subscription.objects.exists()
    assert workers._reap("me") == ([], [])  # nothing left: the next round is a no-op


def test_the_reaper_never_takes_its_own_lapsed_row_for_another_worker() -> None:
    Worker.objects.create(id="me", host="h", pid=1, expires=timezone.now() - timedelta(seconds=1))
    _, dead = workers._reap("me")
    assert dead == [] and Worker.objects.filter(id="me").exists()


async def test_is_alive_reads_the_lease_and_caches_it_briefly(monkeypatch: pytest.MonkeyPatch) -> None:
    from asgiref.sync import sync_to_async

    maintenance = workers.Maintenance()
    await sync_to_async(workers._beat)("other", 60)
    await sync_to_async(Worker.objects.create)(id="gone", host="h", pid=1, expires=timezone.now() - timedelta(seconds=1))
    assert await maintenance.is_alive(workers.worker_id())  # this worker, without a query
    assert await maintenance.is_alive("other")
    assert not await maintenance.is_alive("gone")
    assert not await maintenance.is_alive("never-existed")
    await sync_to_async(Worker.objects.filter(id="other").delete)()
    assert await maintenance.is_alive("other")  # cached...
    monkeypatch.setattr(workers, "LEASE_CACHE_SECONDS", 0.0)
    assert not await maintenance.is_alive("other")  # ...for LEASE_CACHE_SECONDS only


def test_handoffs_to_a_worker_found_dead_are_logged_with_their_request_ids(caplog: pytest.LogCaptureFixture) -> None:
    maintenance = workers.Maintenance()
    maintenance.record_handoff("sess-1", "dead-worker", 41)
    maintenance.record_handoff("sess-1", "dead-worker", "req-42")
    maintenance.record_handoff("sess-2", workers.worker_id(), 7)  # its own streams: nothing to confirm
    with caplog.at_level("ERROR", logger="mcp_app.workers"):
        maintenance._on_lost({"sessions": {"sess-1": "dead-worker", "sess-2": "dead-worker"}})
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2, lines
    assert "request 41 of session sess-1" in lines[0] and "dead-worker" in lines[0]
    assert "request 'req-42' of session sess-1" in lines[1]


def test_the_admin_shows_leases_read_only_and_the_worker_of_a_session(admin_client: Any) -> None:
    workers._beat("w-admin", 60)
    session = open_session("w-admin")
    page = admin_client.get("/admin/mcp_app/worker/")
    assert page.status_code == 200 and b"w-admin" in page.content
    assert admin_client.get("/admin/mcp_app/worker/w-admin/change/").status_code == 200
    assert admin_client.get("/admin/mcp_app/worker/add/").status_code == 403
    assert admin_client.post("/admin/mcp_app/worker/w-admin/change/", {}).status_code == 403
    assert admin_client.post("/admin/mcp_app/worker/w-admin/delete/", {"post": "yes"}).status_code == 403
    assert Worker.objects.filter(id="w-admin").exists()
    detail = admin_client.get(f"/admin/mcp_app/session/{session.pk}/change/")
    assert detail.status_code == 200 and b"w-admin" in detail.content


def test_the_heartbeat_setting_is_checked() -> None:
    for bad in (0, -1, "5", None, True, 7200):
        with override_settings(MCP_APP={"WORKER_HEARTBEAT_INTERVAL": bad}):
            assert [m.id for m in check_settings()] == ["mcp_app.E003"], bad
    with override_settings(MCP_APP={"WORKER_HEARTBEAT_INTERVAL": 0.5}):
        assert check_settings() == []


# -- the bus re-joins its group when the layer comes back ------------------------------------------------------
class RestartingLayer(InMemoryChannelLayer):
    """An in-memory layer that can "restart" like Redis: every group membership is lost, and pending and
    next operations fail until it is back."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self.joins = 0

    async def restart(self, downtime: float) -> None:
        self.down = True
        self.groups.clear()
        for queue in list(self.channels.values()):  # blocked receives see the connection drop
            queue.put_nowait((0, {"type": "__down__"}))
        await asyncio.sleep(downtime)
        self.down = False

    async def receive(self, channel: str) -> dict[str, Any]:
        while self.down:
            await asyncio.sleep(0.01)
            raise ConnectionError("Connection refused")
        message = await super().receive(channel)
        if message.get("type") == "__down__":
            raise ConnectionError("Connection closed by server.")
        return message

    async def group_add(self, group: str, channel: str) -> None:
        if self.down:
            raise ConnectionError("Connection refused")
        self.joins += 1
        await super().group_add(group, channel)

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        if self.down:
            raise ConnectionError("Connection refused")
        await super().group_send(group, message)


async def test_the_bus_rejoins_at_once_when_the_layer_is_back(monkeypatch: pytest.MonkeyPatch) -> None:
    layer = RestartingLayer()
    monkeypatch.setattr(bus_module, "get_channel_layer", lambda: layer)
    monkeypatch.setattr(bus_module, "_RETRY_SECONDS", 0.1)
    bus = bus_module.Bus()
    heard: list[str] = []
    resyncs: list[dict[str, Any]] = []
    bus.on("session.ended", lambda m: heard.append(m["session_id"]))
    bus.on(bus_module.RESYNC, resyncs.append)
    await bus.ensure_listening()
    try:
        await _until(lambda: layer.joins == 1, "the bus joined")
        await bus.publish("session.ended", session_id="before")
        await _until(lambda: heard == ["before"], "the bus delivers before the restart")
        await layer.restart(0.3)
        start = asyncio.get_running_loop().time()
        await _until(lambda: resyncs, "the bus re-joined after the layer came back", timeout=2)
        assert asyncio.get_running_loop().time() - start < 1.0
        await bus.publish("session.ended", session_id="after")
        await _until(lambda: heard == ["before", "after"], "the bus delivers again after the restart")
    finally:
        for task in bus._listeners.values():
            task.cancel()


async def test_a_failed_publish_makes_the_bus_rejoin(monkeypatch: pytest.MonkeyPatch) -> None:
    """A restart the listener did not notice (its receive never failed) is caught by the next failed publish."""
    layer = RestartingLayer()
    monkeypatch.setattr(bus_module, "get_channel_layer", lambda: layer)
    monkeypatch.setattr(bus_module, "_RETRY_SECONDS", 0.1)
    bus = bus_module.Bus()
    heard: list[str] = []
    bus.on("x", lambda m: heard.append(m["n"]))
    await bus.ensure_listening()
    try:
        await _until(lambda: layer.joins == 1, "the bus joined")
        layer.groups.clear()  # membership lost, quietly
        layer.down = True
        assert not await bus.publish("x", n="lost")
        layer.down = False
        await _until(lambda: layer.joins == 2, "the bus re-joined after a failed publish", timeout=2)
        assert await bus.publish("x", n="after")
        await _until(lambda: heard == ["after"], "the bus hears again")
    finally:
        for task in bus._listeners.values():
            task.cancel()


async def _until(check: Any, what: str, timeout: float = 3.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, what
        await asyncio.sleep(0.02)


def test_a_forked_process_is_another_worker_with_its_own_id() -> None:
    parent = workers.worker_id()
    assert workers.worker_id() == parent  # stable within a process
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its id, then leave without running the parent's exit hooks
        try:
            os.write(write, workers.worker_id().encode())
        finally:
            os._exit(0)
    os.close(write)
    child = os.read(read, 100).decode()
    os.close(read)
    os.waitpid(pid, 0)
    assert child and child != parent
    assert workers.worker_id() == parent
