"""Thousands of clients leaving at once leak nothing (one daphne worker, SQLite, the shared Redis under a private
key prefix).

2,000 legacy streams are opened, then all dropped in the same instant. Afterwards:

- no channel-layer group holds a member per stream: a broadcast costs one message per worker process (the
  bus), whatever the number of streams, and no dead member can be left behind (before, every stream joined
  an all-streams group and its session's group, and a burst of leaves exhausted redis-py's pool of 100
  connections, leaving thousands of dead members);
- every session of a dropped stream is ended, and the worker logged no failure to publish or leave;
- a stream opened afterwards still gets broadcasts at once.

Figures are printed (``pytest -s``).
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path

import pytest

from tests.live import HEADERS, LATEST, REPO, LiveServer, initialize_message, start_daphne
from tests.transports.streams import Stream

STREAMS = 2000
REDIS = ("127.0.0.1", 6379)
ENDPOINT_RE = re.compile(rb"data: /sse/messages\?session_id=([A-Za-z0-9_\-]+)\r?\n")


@pytest.fixture
def worker(tmp_path: Path) -> Iterator[tuple[LiveServer, dict[str, str], Path]]:
    try:
        socket.create_connection(REDIS, timeout=2).close()
    except OSError:
        pytest.skip("Redis is not running on 127.0.0.1:6379 (start it with redis-server)")
    prefix = f"burst{secrets.token_hex(4)}:"
    db = tmp_path / "db.sqlite3"
    env = {"MCP_TEST_REDIS_URL": "redis://127.0.0.1:6379/0", "MCP_TEST_REDIS_PREFIX": prefix, "MCP_TEST_DB": str(db)}
    server = start_daphne(tmp_path, extra_env=env)
    try:
        yield server, env, db
    finally:
        server.stop()
        client = redis_client()
        for key in client.scan_iter(f"{prefix}*"):
            client.delete(key)
    server.assert_no_traceback()


def redis_client():  # noqa: ANN201 - redis is a test dependency
    import redis

    return redis.Redis(*REDIS, socket_timeout=5)


def group_members(prefix: str) -> dict[str, int]:
    client = redis_client()
    return {key.decode(): client.zcard(key) for key in client.scan_iter(f"{prefix}:group:*")}


async def open_and_hold(port: int, ready: asyncio.Event, leave: asyncio.Event) -> str:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"GET /sse HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: text/event-stream\r\n\r\n".encode())
        received = b""
        while (match := ENDPOINT_RE.search(received)) is None:
            chunk = await asyncio.wait_for(reader.read(4096), 120)
            assert chunk, received
            received += chunk
        ready.set()
        await leave.wait()
        return match.group(1).decode()
    finally:
        writer.transport.abort()  # all at once, as a crashed proxy or client fleet would


def test_thousands_of_streams_leaving_at_once_leave_nothing_behind(worker: tuple[LiveServer, dict[str, str], Path]) -> None:
    server, env, db = worker
    prefix = env["MCP_TEST_REDIS_PREFIX"]

    async def scenario() -> tuple[list[str], float, dict[str, int]]:
        leave = asyncio.Event()
        readies = [asyncio.Event() for _ in range(STREAMS)]
        started = time.monotonic()
        tasks = [asyncio.create_task(open_and_hold(server.port, ready, leave)) for ready in readies]
        all_ready = asyncio.ensure_future(asyncio.gather(*(r.wait() for r in readies)))
        # Until every stream has its endpoint, or one of them fails (a task ends only by failing before `leave`).
        await asyncio.wait({all_ready, *tasks}, timeout=300, return_when=asyncio.FIRST_COMPLETED)
        all_ready.cancel()
        failed = [t for t in tasks if t.done() and t.exception() is not None]
        assert not failed, f"{len(failed)} streams failed to open: {failed[0].exception()!r}"
        opened = time.monotonic() - started
        while_open = group_members(prefix)
        leave.set()
        ids = await asyncio.gather(*tasks)
        return ids, opened, while_open

    ids, opened, while_open = asyncio.run(scenario())
    assert len(set(ids)) == STREAMS

    def open_sessions() -> int:
        with sqlite3.connect(db, timeout=30) as conn:
            marks = ",".join("?" * len(ids))
            query = f"SELECT count(*) FROM mcp_app_session WHERE id IN ({marks}) AND ended IS NULL"  # noqa: S608
            return conn.execute(query, ids).fetchone()[0]

    deadline = time.monotonic() + 120
    while (remaining := open_sessions()) and time.monotonic() < deadline:
        time.sleep(0.5)
    after = group_members(prefix)
    print(
        f"\n{STREAMS} legacy streams opened in {opened:.1f}s; group members while open: {while_open}; "
        f"after all left at once: {after}; sessions left open: {remaining}"
    )
    assert remaining == 0, f"{remaining} sessions of dropped streams are still open"
    assert sum(while_open.values()) <= 1, f"group membership grows with streams: {while_open}"
    assert sum(after.values()) <= 1, f"dead members left in channel-layer groups: {after}"
    log = server.log()
    for failure in ("could not leave", "could not publish", "Too many connections", "could not end the session"):
        assert failure not in log, f"the worker logged {failure!r} during the burst"

    # A stream opened now gets a broadcast at once: a tool row saved in another process -> tools/list_changed.
    import httpx

    with httpx.Client(timeout=10) as http:
        answer = http.post(server.mcp_url, json=initialize_message(client="burst"), headers=HEADERS)
        headers = {**HEADERS, "mcp-session-id": answer.headers["mcp-session-id"], "mcp-protocol-version": LATEST}
    stream = Stream(server.mcp_url, headers)
    try:
        subprocess.run(
            [
                sys.executable,
                "manage.py",
                "shell",
                "-c",
                "from mcp_app.models import Tool\nt = Tool.objects.first()\nt.title = 'burst'\nt.save()",
            ],
            cwd=REPO,
            check=True,
            timeout=60,
            capture_output=True,
            env={**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", **env},
        )
        assert stream.wait_for("notifications/tools/list_changed", 1, 10), stream.methods()
    finally:
        with suppress(Exception):
            stream.close()


def test_a_burst_of_40000_list_changed_is_coalesced_and_the_last_change_is_announced(monkeypatch: pytest.MonkeyPatch) -> None:
    """40,000 tools/list_changed broadcast as fast as one process can: a handful cross to the workers (not
    40,000 that would fill the layer), and the stream's last one is sent after the last change."""
    from asgiref.sync import async_to_sync

    from mcp_app.transports import events, fanout

    sent: list[tuple[float, dict]] = []

    def deliver(event: dict) -> None:
        sent.append((time.monotonic(), event))
        original(event)

    original = fanout.deliver
    monkeypatch.setattr(events, "get_channel_layer", lambda: None)  # this process's streams directly
    monkeypatch.setattr(fanout, "deliver", deliver)
    stream = fanout.LocalStream("burst-session", 1024 * 1024)
    fanout.register(stream)
    try:
        message = {"jsonrpc": "2.0", "method": "notifications/tools/list_changed"}

        async def flood() -> float:
            for _ in range(40_000):
                await events.broadcast(message)
            return time.monotonic()

        last_change = async_to_sync(flood)()
        time.sleep(1.5)  # the window (0.5 s) ends: the held one goes out
    finally:
        fanout.unregister(stream)
    print(f"\n40,000 list_changed broadcast: {len(sent)} crossed to the workers; the stream holds {len(stream)}")
    assert 1 <= len(sent) <= 40, f"{len(sent)} of 40,000 crossed: not coalesced"
    assert sent[-1][0] >= last_change, "no list_changed was sent after the last change"
    assert 1 <= len(stream) <= 2  # waiting ones merged: at most the first and the trailing one
