"""Flow control of event streams: clients that read never see 503, clients that do not read are cut off.

- **Reading clients at normal concurrency** (two daphne workers on PostgreSQL and Redis, the stream on A, the
  POSTs on B, as a load balancer spreads them): 8 requests in flight at once on one legacy session, 1,600 in
  all, every POST is accepted (never 503) and every answer arrives once.
- **A legacy client that never reads its stream** while posting ``tools/list`` thousands of times, and **a GET
  stream that never reads under a flood of notifications** (sent from another process through Redis), on
  daphne and on uvicorn: the worker's memory (RSS) grows by a bounded amount, the stream is closed, and the
  legacy session's next POST gets 404.

Figures are printed (``pytest -s``).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.live import REPO, LiveServer, start_daphne
from tests.transports.test_multiprocess import (  # noqa: F401 - cluster is a fixture
    Cluster,
    _delete_redis_keys,
    cluster,
    initialize,
    new_client,
    open_stream,
    request,
)

REDIS_URL = os.environ.get("MCP_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")

CONCURRENCY = 8
PER_POSTER = 200


# -- reading clients never see 503 -------------------------------------------------------------------------------
async def test_reading_client_at_8_concurrent_posts_on_the_other_worker_never_gets_503(cluster: Cluster) -> None:  # noqa: F811
    statuses: dict[int, int] = {}
    answers: list[Any] = []
    async with new_client() as client, asyncio.timeout(120), open_stream(client, cluster.a) as stream:
        await initialize(client, stream, cluster.b)
        url = stream.post_url(cluster.b)
        expected = CONCURRENCY * PER_POSTER

        async def read() -> None:
            while len(answers) < expected:
                answers.append((await stream.message())["id"])

        async def poster(p: int) -> None:
            for n in range(PER_POSTER):
                response = await client.post(url, json=request(10_000 * (p + 1) + n, "tools/list"))
                statuses[response.status_code] = statuses.get(response.status_code, 0) + 1

        reader = asyncio.create_task(read())
        started = time.monotonic()
        await asyncio.gather(*(poster(p) for p in range(CONCURRENCY)))
        accepted = statuses.get(202, 0)
        with suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(reader), 30)
        reader.cancel()
        elapsed = time.monotonic() - started
    refused = statuses.get(503, 0)
    print(
        f"\n{CONCURRENCY} concurrent legacy POSTs on B, stream on A: {expected} POSTs, statuses {statuses}, "
        f"503 rate {100 * refused / expected:.1f} %, {len(answers)} answers in {elapsed:.1f}s"
    )
    assert statuses == {202: expected}, f"a reading client got refused: {statuses}"
    assert accepted == expected and len(answers) == expected and len(set(answers)) == expected


# -- clients that do not read ---------------------------------------------------------------------------------
RSS_BOUND = 16 * 1024 * 1024  # what one client that does not read may cost the worker, at most


def rss(pid: int) -> int:
    """Resident memory of a process, in bytes (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def peak_rss_while_flooding(server: LiveServer, env: dict[str, str], code: str) -> tuple[int, int]:
    """Run ``code`` (which must print "flooded") in ``manage.py shell`` while sampling the server's memory;
    returns its resident memory before and at the peak (a second after the flood, too)."""
    before = rss(server.process.pid)
    flooding = subprocess.Popen(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=REPO,
        text=True,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    peak = before
    try:
        while flooding.poll() is None:
            peak = max(peak, rss(server.process.pid))
            time.sleep(0.05)
        output = flooding.stdout.read() if flooding.stdout else ""
        assert flooding.returncode == 0 and "flooded" in output, output
        time.sleep(1)
        return before, max(peak, rss(server.process.pid))
    finally:
        if flooding.poll() is None:
            flooding.kill()


@pytest.fixture(params=["daphne", "uvicorn"])
def redis_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[LiveServer, dict[str, str]]]:
    """One worker (daphne or uvicorn) on SQLite and a private prefix of the shared Redis."""
    try:
        socket.create_connection(("127.0.0.1", 6379), timeout=2).close()
    except OSError:
        pytest.skip("Redis is not running on 127.0.0.1:6379; the flood comes from another process through it")
    prefix = f"bp{secrets.token_hex(4)}:"
    env = {"MCP_TEST_REDIS_URL": REDIS_URL, "MCP_TEST_REDIS_PREFIX": prefix, "MCP_TEST_DB": str(tmp_path / "db.sqlite3")}
    server = start_daphne(tmp_path, server=request.param, extra_env=env)
    try:
        yield server, env
    finally:
        server.stop()
        _delete_redis_keys(prefix)
    server.assert_no_traceback()


def silent_stream(server: LiveServer, path: str, headers: str = "") -> tuple[socket.socket, bytes]:
    """Open an event stream and read only its head (up to the first blank line after the first event), then
    never read again; a small receive buffer, so that the kernel holds little of what the server sends."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", server.port))
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nAccept: text/event-stream\r\n{headers}\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head or not head.endswith(b"\n\n"):
        chunk = sock.recv(1)
        assert chunk, head
        head += chunk
    assert head.startswith(b"HTTP/1.1 200"), head
    return sock, head


def closed_by_server(sock: socket.socket, timeout: float = 10) -> bool:
    """Read what the server sent until it closes the connection (True) or ``timeout`` passes (False)."""
    sock.settimeout(timeout)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if not sock.recv(65536):
                return True
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    return False


def test_legacy_client_that_never_reads_is_cut_off_with_bounded_memory(redis_server: tuple[LiveServer, dict[str, str]]) -> None:
    server, _ = redis_server
    sock, head = silent_stream(server, "/sse")
    endpoint = head.split(b"data: ", 1)[1].split(b"\n", 1)[0].decode()
    url = server.url + endpoint
    statuses: dict[int, int] = {}
    with httpx.Client(timeout=10) as client:
        warm_up(client, server)
        init = request(
            0,
            "initialize",
            {"protocolVersion": "2024-11-05", "capabilities": {}, "clientInfo": {"name": "silent", "version": "1"}},
        )
        assert client.post(url, json=init).status_code == 202
        assert client.post(url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}).status_code == 202
        time.sleep(0.5)
        before = rss(server.process.pid)
        peak = before
        for n in range(1, 4001):
            status = client.post(url, json=request(n, "tools/list")).status_code
            statuses[status] = statuses.get(status, 0) + 1
            if n % 100 == 0:
                peak = max(peak, rss(server.process.pid))
            if status == 404:
                break
        peak = max(peak, rss(server.process.pid))
        closed = closed_by_server(sock)
        sock.close()
        growth = peak - before
        print(
            f"\n{server.process.args[2]}: legacy client not reading, {sum(statuses.values())} tools/list POSTs "
            f"{statuses}: RSS {before / 2**20:.1f} MB -> peak {peak / 2**20:.1f} MB (+{growth / 2**20:.1f} MB), "
            f"stream closed: {closed}"
        )
        assert statuses.get(404) == 1, f"the stream of a client that never reads was never closed: {statuses}"
        assert set(statuses) <= {202, 404}, statuses
        assert closed
        assert growth < RSS_BOUND, f"the worker grew by {growth / 2**20:.1f} MB for one client that does not read"
        assert "is not reading its stream" in server.log() and "undelivered" in server.log()
        # The worker goes on serving others.
        answer = client.post(server.mcp_url, json=INIT_LATEST, headers=HEADERS_LATEST)
        assert answer.status_code == 200, answer.text


def warm_up(client: httpx.Client, server: LiveServer) -> None:
    """Answer tools/list a few times on a session of its own: the first answers build caches the RSS figures
    must not count."""
    headers = {
        **HEADERS_LATEST,
        "mcp-session-id": client.post(server.mcp_url, json=INIT_LATEST, headers=HEADERS_LATEST).headers["mcp-session-id"],
    }
    for n in range(30):
        assert client.post(server.mcp_url, json=request(n + 2, "tools/list"), headers=headers).status_code == 200


INIT_LATEST = request(
    1, "initialize", {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "silent", "version": "1"}}
)
HEADERS_LATEST = {"content-type": "application/json", "accept": "application/json, text/event-stream"}

FLOOD = """
import asyncio
from mcp_app.transports.events import send_to_session

async def flood():
    for n in range({count}):
        await send_to_session({session!r}, {{"jsonrpc": "2.0", "method": "notifications/message",
                                             "params": {{"level": "info", "data": "x" * {size}, "n": n}}}})

asyncio.run(flood())
print("flooded")
"""


def test_get_stream_that_never_reads_under_a_notification_flood_is_cut_off(
    redis_server: tuple[LiveServer, dict[str, str]],
) -> None:
    server, env = redis_server
    with httpx.Client(timeout=10) as client:
        answer = client.post(server.mcp_url, json=INIT_LATEST, headers=HEADERS_LATEST)
        session = answer.headers["mcp-session-id"]
    sock, _ = silent_stream(server, "/mcp", f"Mcp-Session-Id: {session}\r\n")
    time.sleep(0.5)
    count, size = 3000, 16_000
    try:
        before, peak = peak_rss_while_flooding(server, env, FLOOD.format(count=count, session=session, size=size))
        closed = closed_by_server(sock)
    finally:
        sock.close()
    growth = peak - before
    print(
        f"\n{server.process.args[2]}: GET stream not reading, {count} notifications of {size} bytes: RSS "
        f"{before / 2**20:.1f} MB -> peak {peak / 2**20:.1f} MB (+{growth / 2**20:.1f} MB), stream closed: {closed}"
    )
    assert closed, "the stream of a client that never reads was never closed"
    assert f"closing the stream of session {session}: the client is not reading its stream" in server.log()
    assert growth < RSS_BOUND, f"the worker grew by {growth / 2**20:.1f} MB for one client that does not read"
