"""The legacy HTTP+SSE transport across two worker processes sharing PostgreSQL and Redis.

Production deployments run several workers behind a load balancer, so a session's ``GET /sse`` stream
and its ``POST /sse/messages`` routinely land on different processes. Everything that connects them
must then travel outside the process: the session row (PostgreSQL), the stream's channel and the
answers (the Redis channel layer), client answers and cancellations (the bus). SQLite and the
in-memory layer of the other tests hide all of that, so here two real daphne processes, A and B,
share a fresh PostgreSQL database and a Redis key prefix of their own, and the tests check:

- **Ordering under concurrency**: 10 sessions at once, each with its stream on A and every POST on B,
  50 requests each (500 in all): initialize, then 49 pings and tool calls pipelined one 202 at a time,
  never waiting for an answer. Every POST is accepted, every answer arrives on the right stream exactly
  once, in the order its requests were sent, carrying its own result. (A POST holds its 202 until its
  answer is queued, for up to ``sse.ANSWER_WAIT``: that is what keeps quick answers in order across workers.)
- **Server-to-client requests across workers**: a tool running on B asks the client for sampling
  through the stream on A; the client answers to A, which must hand the answer to B (bus), whose tool
  result then comes back to the stream on A (channel layer).
- **Clients vanishing**: streams dropped mid-stream, POSTs dropped mid-body, and a stream closed while
  its tool runs on the other worker. Both workers keep serving, the dropped streams' sessions are
  ended in the database, the running tool is cancelled on the worker that ran it, and no database
  connection is left behind (``pg_stat_activity``).

At the end neither worker's log may hold a traceback. The module skips, saying what to start, when
PostgreSQL (127.0.0.1:5432, user postgres) or Redis (127.0.0.1:6379) is not reachable.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.live import LiveServer, start_daphne

PG_HOST = os.environ.get("MCP_TEST_POSTGRES_HOST", "127.0.0.1")
PG_USER = os.environ.get("MCP_TEST_POSTGRES_USER", "postgres")
PG_PASSWORD = os.environ.get("MCP_TEST_POSTGRES_PASSWORD", "")
REDIS_URL = os.environ.get("MCP_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")

SESSIONS = 10
REQUESTS_PER_SESSION = 50  # initialize + 49 others
VERSION = "2024-11-05"


# -- the two workers -----------------------------------------------------------------------------------------
def _pg_connect(dbname: str = "postgres") -> Any:
    import psycopg

    return psycopg.connect(
        host=PG_HOST, user=PG_USER, password=PG_PASSWORD or None, dbname=dbname, connect_timeout=3, autocommit=True
    )


def _redis_client() -> Any:
    import redis

    return redis.Redis.from_url(REDIS_URL, socket_timeout=3, socket_connect_timeout=3)


def _check_services() -> None:
    try:
        with _pg_connect() as conn:
            conn.execute("SELECT 1")
    except Exception as exc:
        pytest.skip(
            f"PostgreSQL is not reachable at {PG_HOST}:5432 as user {PG_USER} ({type(exc).__name__}: {exc}); "
            "start it (e.g. `service postgresql start`, trust auth for 127.0.0.1) to run the multi-process tests"
        )
    try:
        client = _redis_client()
        try:
            client.ping()
        finally:
            client.close()
    except Exception as exc:
        pytest.skip(
            f"Redis is not reachable at {REDIS_URL} ({type(exc).__name__}: {exc}); start it (e.g. "
            "`service redis-server start` or `redis-server --daemonize yes`) to run the multi-process tests"
        )


def _drop_database(name: str) -> None:
    from psycopg import sql

    with _pg_connect() as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()", (name,)
        )
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))


def _delete_redis_keys(prefix: str) -> None:
    client = _redis_client()
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@dataclass
class Cluster:
    a: LiveServer
    b: LiveServer
    database: str

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Run ``sql`` on the workers' database (from the test's own, short-lived connection)."""
        with _pg_connect(self.database) as conn:
            return conn.execute(sql, params).fetchall()

    def connections(self) -> int:
        """Connections to the workers' database, not counting the one asking (made from ``postgres``)."""
        with _pg_connect() as conn:
            return conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (self.database,)).fetchone()[0]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Two daphne workers (A and B) sharing a fresh PostgreSQL database and a private Redis prefix."""
    _check_services()
    from psycopg import sql

    token = secrets.token_hex(6)
    database = f"mcp_app_test_{token}"
    prefix = f"mcp_app_test_{token}:"
    with _pg_connect() as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
    env = {"MCP_TEST_POSTGRES_DB": database, "MCP_TEST_REDIS_URL": REDIS_URL, "MCP_TEST_REDIS_PREFIX": prefix}
    workdir = tmp_path_factory.mktemp("multiprocess")
    servers: list[LiveServer] = []
    try:
        servers.append(start_daphne(workdir, settings="tests.settings", extra_env=env, run_migrations=True))
        servers.append(start_daphne(workdir, settings="tests.settings", extra_env=env, run_migrations=False))
        yield Cluster(servers[0], servers[1], database)
    finally:
        for server in servers:
            server.stop()
        _drop_database(database)
        _delete_redis_keys(prefix)
    for server in servers:
        server.assert_no_traceback()


# -- a raw legacy client -------------------------------------------------------------------------------------
class Stream:
    """An open ``GET /sse`` read event by event; ``endpoint`` is the POST path its first event named."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.lines = response.aiter_lines()
        self.endpoint = ""

    async def event(self) -> tuple[str, str]:
        """The next event's (name, data); comments (keep-alives) are skipped."""
        name, data = "message", []
        async for line in self.lines:
            if line.startswith(":"):
                continue
            if not line:
                if data:
                    return name, "\n".join(data)
                name = "message"
                continue
            field, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if field == "event":
                name = value
            elif field == "data":
                data.append(value)
        raise EOFError("the stream ended")

    async def message(self) -> dict[str, Any]:
        """The next answer or request on the stream; broadcast notifications (list_changed, which an
        admin may cause at any time) are skipped."""
        while True:
            name, data = await self.event()
            assert name == "message", (name, data)
            message = json.loads(data)
            if "id" in message:
                return message

    @property
    def session_id(self) -> str:
        return self.endpoint.split("session_id=", 1)[1]

    def post_url(self, server: LiveServer) -> str:
        """The endpoint's path and query, on ``server`` (any worker may take the session's messages)."""
        return server.url + self.endpoint


@asynccontextmanager
async def open_stream(client: httpx.AsyncClient, server: LiveServer) -> AsyncIterator[Stream]:
    request = client.build_request("GET", f"{server.url}/sse", headers={"accept": "text/event-stream"})
    response = await client.send(request, stream=True)
    try:
        assert response.status_code == 200, (await response.aread()).decode(errors="replace")
        stream = Stream(response)
        name, endpoint = await stream.event()
        assert name == "endpoint" and endpoint.startswith("/sse/messages?session_id="), (name, endpoint)
        stream.endpoint = endpoint
        yield stream
    finally:
        await response.aclose()


def request(request_id: int, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
    if params is not None:
        message["params"] = params
    return message


def initialize_request(request_id: int, capabilities: dict[str, Any] | None = None) -> dict[str, Any]:
    return request(
        request_id,
        "initialize",
        {
            "protocolVersion": VERSION,
            "capabilities": capabilities or {},
            "clientInfo": {"name": "multiprocess-test", "version": "1"},
        },
    )


INITIALIZED = {"jsonrpc": "2.0", "method": "notifications/initialized"}


async def receive(stream: Stream, what: str, timeout: float = 10.0) -> dict[str, Any]:
    """The stream's next message, failing clearly when it does not come."""
    try:
        return await asyncio.wait_for(stream.message(), timeout)
    except TimeoutError:
        raise AssertionError(f"nothing arrived on the stream within {timeout}s; expected {what}") from None


async def post(client: httpx.AsyncClient, url: str, message: dict[str, Any]) -> None:
    response = await client.post(url, json=message)
    assert response.status_code == 202, f"{message.get('method') or 'response'} -> {response.status_code} {response.text}"


async def initialize(
    client: httpx.AsyncClient, stream: Stream, server: LiveServer, capabilities: dict[str, Any] | None = None
) -> None:
    """initialize (answer awaited, as the lifecycle asks) and notifications/initialized, POSTed to ``server``."""
    await post(client, stream.post_url(server), initialize_request(0, capabilities))
    answer = await receive(stream, "the answer to initialize")
    assert answer["id"] == 0 and answer["result"]["protocolVersion"] == VERSION, answer
    await post(client, stream.post_url(server), INITIALIZED)


async def ping(client: httpx.AsyncClient, stream: Stream, server: LiveServer, request_id: int = 99) -> None:
    await post(client, stream.post_url(server), request(request_id, "ping"))
    assert await receive(stream, f"the answer to ping {request_id}") == {"jsonrpc": "2.0", "id": request_id, "result": {}}


def new_client() -> httpx.AsyncClient:
    # Streams stay open; a generous read timeout, a bounded everything else.
    return httpx.AsyncClient(timeout=httpx.Timeout(10.0, read=60.0), limits=httpx.Limits(max_connections=200))


async def eventually(check: Callable[[], Awaitable[bool] | bool], what: str | Callable[[], str], timeout: float = 8.0) -> None:
    """Poll ``check`` until it holds (asynchronous clean-up), failing with ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        assert time.monotonic() < deadline, what() if callable(what) else what
        await asyncio.sleep(0.1)


# -- 500 pipelined requests over two workers ------------------------------------------------------------------
def planned_request(session: int, n: int) -> dict[str, Any]:
    """Request ``n`` (2..50) of ``session``: uppercase_text on even ids, ping on odd ones."""
    if n % 2 == 0:
        return request(n, "tools/call", {"name": "uppercase_text", "arguments": {"text": f"s{session}-{n}"}})
    return request(n, "ping")


async def run_pipelined_session(client: httpx.AsyncClient, a: LiveServer, b: LiveServer, session: int, deadline: float) -> None:
    async with open_stream(client, a) as stream:
        answers: list[dict[str, Any]] = []
        first = asyncio.Event()

        async def read() -> None:
            while True:
                answers.append(await stream.message())
                first.set()

        reader = asyncio.create_task(read())
        try:
            url = stream.post_url(b)
            await post(client, url, initialize_request(1))
            # As the lifecycle asks, nothing but pings before initialize is answered (initialize writes the
            # session row: it may outlast the ANSWER_WAIT a POST waits, and a later answer could then overtake it).
            # From here on each POST waits for its 202, never for an answer.
            await asyncio.wait_for(first.wait(), 20)
            await post(client, url, INITIALIZED)
            for n in range(2, REQUESTS_PER_SESSION + 1):
                await post(client, url, planned_request(session, n))
            while len(answers) < REQUESTS_PER_SESSION and not reader.done() and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.3)  # anything extra (a duplicate) would show up now
        finally:
            reader.cancel()
            with suppress(asyncio.CancelledError):
                await reader  # re-raises what ended the reader early (the stream closed, bad JSON)

    ids = [answer.get("id") for answer in answers]
    assert len(ids) == len(set(ids)), f"session {session}: duplicated answers: {ids}"
    assert ids == list(range(1, REQUESTS_PER_SESSION + 1)), f"session {session}: answers out of order or missing: {ids}"
    assert answers[0]["result"]["protocolVersion"] == VERSION
    for answer in answers[1:]:
        n = answer["id"]
        assert "error" not in answer, answer
        if n % 2 == 0:
            assert answer["result"]["content"] == [{"type": "text", "text": f"S{session}-{n}"}], answer
        else:
            assert answer["result"] == {}, answer


async def test_concurrent_sessions_stream_on_a_posts_on_b_keep_order(cluster: Cluster) -> None:
    deadline = time.monotonic() + 60  # for all 500 answers; then each session reports what it lacks
    async with new_client() as client, asyncio.timeout(75), asyncio.TaskGroup() as group:
        for session in range(SESSIONS):
            group.create_task(run_pipelined_session(client, cluster.a, cluster.b, session, deadline))


# -- a server-to-client request crossing workers ---------------------------------------------------------------
async def test_sampling_answer_posted_to_the_other_worker(cluster: Cluster) -> None:
    async with new_client() as client, asyncio.timeout(30), open_stream(client, cluster.a) as stream:
        await initialize(client, stream, cluster.b, capabilities={"sampling": {}})
        call = request(2, "tools/call", {"name": "test_sampling", "arguments": {"prompt": "hi"}})
        await post(client, stream.post_url(cluster.b), call)  # the tool runs on B
        asked = await receive(stream, "sampling/createMessage from the tool running on B")
        assert asked.get("method") == "sampling/createMessage", asked
        assert asked["params"]["messages"][0]["content"] == {"type": "text", "text": "hi"}
        reply = {
            "jsonrpc": "2.0",
            "id": asked["id"],
            "result": {"role": "assistant", "content": {"type": "text", "text": "ok"}, "model": "m", "stopReason": "endTurn"},
        }
        await post(client, stream.post_url(cluster.a), reply)  # ...its answer reaches A
        answer = await receive(stream, "the tool's result, after the sampling answer went to A")
        assert answer["id"] == 2, answer
        assert answer["result"]["content"] == [{"type": "text", "text": "LLM response: ok"}], answer
        assert not answer["result"].get("isError"), answer


# -- clients vanishing --------------------------------------------------------------------------------------
ENDPOINT_RE = re.compile(rb"data: /sse/messages\?session_id=([A-Za-z0-9_\-]+)\r?\n")


async def vanishing_stream(server: LiveServer) -> str:
    """Open ``GET /sse``, read up to the endpoint event, then drop the connection; the session's id."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(f"GET /sse HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nAccept: text/event-stream\r\n\r\n".encode())
        await writer.drain()
        received = b""
        while (match := ENDPOINT_RE.search(received)) is None:
            chunk = await asyncio.wait_for(reader.read(4096), 10)
            assert chunk, f"the stream ended before its endpoint event: {received!r}"
            received += chunk
        assert received.startswith(b"HTTP/1.1 200"), received
        return match.group(1).decode()
    finally:
        writer.close()
        with suppress(OSError):
            await writer.wait_closed()


async def vanishing_post(server: LiveServer, session_id: str) -> None:
    """Start a POST whose Content-Length promises more than is sent, then drop the connection."""
    body = json.dumps(request(1, "ping")).encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(
            f"POST /sse/messages?session_id={session_id} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body) + 1000}\r\n\r\n".encode()
        )
        writer.write(body[: len(body) // 2])
        await writer.drain()
        await asyncio.sleep(0.2)  # long enough for the worker to be reading the body
    finally:
        writer.close()
        with suppress(OSError):
            await writer.wait_closed()


async def test_vanishing_clients_leave_nothing_behind(cluster: Cluster) -> None:
    a, b = cluster.a, cluster.b
    async with new_client() as client, asyncio.timeout(45):
        # Warm both workers up (their bus listeners, database connections, channel-layer pools), both ways.
        for stream_on, post_to in ((a, b), (b, a)):
            async with open_stream(client, stream_on) as stream:
                await initialize(client, stream, post_to)
                await ping(client, stream, post_to)
        await asyncio.sleep(0.5)
        baseline = cluster.connections()

        async with open_stream(client, a) as survivor:  # a live session the vanishing POSTs name
            await initialize(client, survivor, b)

            # 20 streams on A dropped mid-stream, 20 POSTs on B dropped mid-body, all at once.
            results = await asyncio.gather(
                *(vanishing_stream(a) for _ in range(20)), *(vanishing_post(b, survivor.session_id) for _ in range(20))
            )
            dropped = [r for r in results if isinstance(r, str)]
            assert len(set(dropped)) == 20

            # A stream on A closed while its tool runs on B: B must cancel it.
            label = f"multiprocess-{secrets.token_hex(4)}"
            async with open_stream(client, a) as slow:
                await initialize(client, slow, b)
                await post(
                    client,
                    slow.post_url(b),
                    request(5, "tools/call", {"name": "wait_until_cancelled", "arguments": {"label": label}}),
                )
                slow_session = slow.session_id
            dropped.append(slow_session)

            # The survivor is untouched by all that.
            await ping(client, survivor, b, request_id=7)

        async with open_stream(client, a) as reader_stream:
            await initialize(client, reader_stream, b)
            read_id = 100

            async def cancelled_on_b() -> bool:
                nonlocal read_id
                read_id += 1
                await post(client, reader_stream.post_url(b), request(read_id, "resources/read", {"uri": "test://cancelled"}))
                answer = await receive(reader_stream, "the answer to resources/read")
                assert answer["id"] == read_id, answer
                return label in json.loads(answer["result"]["contents"][0]["text"])

            await eventually(cancelled_on_b, "the tool kept running on B after its session's stream closed on A")

        # Both workers still serve, each on its own.
        for server in (a, b):
            async with open_stream(client, server) as stream:
                await initialize(client, stream, server)
                await ping(client, stream, server)

        # The vanished streams' sessions are ended in the shared database; a POST for one is refused.
        open_sessions: list[str] = []

        def all_ended() -> bool:
            rows = cluster.query("SELECT id FROM mcp_app_session WHERE id = ANY(%s) AND ended IS NULL", (dropped,))
            open_sessions[:] = [row[0] for row in rows]
            return not rows

        await eventually(
            all_ended,
            lambda: (
                f"sessions of vanished streams not marked ended: {open_sessions} (of which "
                f"the slow tool's: {[s for s in open_sessions if s == slow_session]})"
            ),
        )
        known = cluster.query("SELECT count(*) FROM mcp_app_session WHERE id = ANY(%s)", (dropped,))[0][0]
        assert known == len(dropped)
        for server in (a, b):
            response = await client.post(f"{server.url}/sse/messages?session_id={dropped[0]}", json=request(1, "ping"))
            assert response.status_code == 404, response.text

        # No database connection outlives the clients that caused it.
        counts: list[int] = []

        def settled() -> bool:
            counts.append(cluster.connections())
            return counts[-1] <= baseline + 2

        await eventually(settled, lambda: f"connections to the database grew from {baseline}: last counts {counts[-5:]}")


async def test_keyset_pages_on_postgresql_across_workers(cluster: Cluster) -> None:
    """Model exposures on PostgreSQL: resources/list and a list tool ordered by a nullable field, walked
    with each page's cursor handed to the other worker (both sign with the site's key)."""
    import subprocess
    import sys

    from tests.live import REPO

    code = (
        "from mcpsite.library.models import Author\n"
        "Author.objects.bulk_create([Author(name=f'Author {i:02d}',"
        " birth_year=None if i % 3 == 0 else 1900 + (i * 7) % 50) for i in range(25)])"
    )
    subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=REPO,
        check=True,
        timeout=60,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "MCP_TEST_POSTGRES_DB": cluster.database},
    )
    rows = cluster.query("SELECT id, birth_year FROM library_author ORDER BY birth_year DESC NULLS FIRST, id")
    headers = {"content-type": "application/json", "accept": "application/json, text/event-stream"}
    async with new_client() as client:
        sessions = {}
        for server in (cluster.a, cluster.b):
            init = request(
                1,
                "initialize",
                {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "pg", "version": "1"}},
            )
            answer = await client.post(server.mcp_url, json=init, headers=headers)
            sessions[server.port] = {**headers, "mcp-session-id": answer.headers["mcp-session-id"]}

        async def walk(
            method: str,
            params: dict[str, Any],
            items: Callable[[dict[str, Any]], tuple[list[str], str | None]],
        ) -> list[str]:
            seen: list[str] = []
            cursor = None
            for page in range(100):
                server = (cluster.a, cluster.b)[page % 2]
                args = dict(params)
                if cursor is not None:
                    args = (
                        {**args, "arguments": {**args["arguments"], "cursor": cursor}}
                        if "arguments" in args
                        else {**args, "cursor": cursor}
                    )
                answer = (
                    await client.post(server.mcp_url, json=request(page + 2, method, args), headers=sessions[server.port])
                ).json()
                assert "result" in answer, answer
                found, cursor = items(answer["result"])
                seen += found
                if cursor is None:
                    return seen
            raise AssertionError("never ended")

        def tool_page(result: dict[str, Any]) -> tuple[list[str], str | None]:
            data = result["structuredContent"]
            return [item["uri"] for item in data["items"]], data.get("nextCursor")

        by_year = await walk(
            "tools/call", {"name": "library_author_list", "arguments": {"order_by": ["-birth_year"], "limit": 4}}, tool_page
        )
        assert by_year == [f"django://library/author/{pk}" for pk, _ in rows]
        with_nulls_last = await walk(
            "tools/call", {"name": "library_author_list", "arguments": {"order_by": ["birth_year"], "limit": 3}}, tool_page
        )
        ascending = cluster.query("SELECT id FROM library_author ORDER BY birth_year ASC NULLS LAST, id")
        assert with_nulls_last == [f"django://library/author/{pk}" for (pk,) in ascending]
        listed = await walk("resources/list", {}, lambda r: ([x["uri"] for x in r["resources"]], r.get("nextCursor")))
        authors = [u for u in listed if u.startswith("django://library/author/")]
        by_pk = cluster.query("SELECT id FROM library_author ORDER BY id")
        assert authors == [f"django://library/author/{pk}" for (pk,) in by_pk]
