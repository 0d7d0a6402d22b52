"""A worker killed with ``kill -9`` while it holds legacy streams: nothing is accepted for them in vain.

Two daphne workers, A and B, share PostgreSQL and Redis (tests/transports/cluster.py) and renew their
leases every ``HEARTBEAT`` seconds. Legacy streams are open on A and their POSTs go to B. Then A is killed
with SIGKILL, so it cleans up nothing, and:

- from the moment of the kill, no POST for those sessions is ever answered 202: the stream's worker must
  confirm it took the answer (a delivery acknowledgement), and a dead one cannot. Until A's lease lapses B
  answers 503 + Retry-After (the stream did not confirm within ``STREAM_ACK_TIMEOUT``), each POST within a
  bounded wait; after it, 404 with the message to reconnect, within a lease (three heartbeats) plus the
  acknowledgement's wait, and once refused a session stays refused;
- the sessions nobody POSTs to are ended in the database by the workers themselves, and A's lease row
  is deleted; no operator, no cron;
- a worker started afterwards (a restarted A) and B both answer the old session ids 404.

Figures (time until the first 404, until every session is ended) are printed; run with ``-s`` to see them.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from contextlib import AsyncExitStack
from typing import Any

from mcp_app.conf import DEFAULTS
from mcp_app.transports.sse import ANSWER_WAIT
from mcp_app.workers import LEASE_CACHE_SECONDS, LEASE_INTERVALS
from tests.transports.cluster import HEARTBEAT, Workers, workers_fixture  # noqa: F401 - the fixture
from tests.transports.test_multiprocess import initialize, new_client, open_stream, ping, request


async def test_posts_for_streams_of_a_killed_worker_get_404_and_its_sessions_end(workers: Workers) -> None:
    a, b = workers.start(), workers.start()
    posting, quiet = 3, 3
    async with new_client() as client, AsyncExitStack() as streams, asyncio.timeout(90):
        opened = [await streams.enter_async_context(open_stream(client, a)) for _ in range(posting + quiet)]
        for stream in opened:
            await initialize(client, stream, b)  # streams on A, POSTs on B: both workers are running
            await ping(client, stream, b)
        ids = [stream.session_id for stream in opened]
        holders = {row[0] for row in workers.query("SELECT worker FROM mcp_app_session WHERE id = ANY(%s)", (ids,))}
        assert len(holders) == 1 and "" not in holders, holders
        (a_worker,) = holders
        assert workers.query("SELECT pid FROM mcp_app_worker WHERE id = %s", (a_worker,)) == [(a.process.pid,)]
        await asyncio.sleep(HEARTBEAT)  # A's lease is as fresh as it gets: the worst case for detection

        os.kill(a.process.pid, signal.SIGKILL)
        a.process.wait(10)
        killed = time.monotonic()

        # POSTs for the first sessions, to B, every 0.1 s until refused (and once more after that).
        outcomes: dict[str, list[tuple[float, float, int, int, str, str | None]]] = {}

        async def keep_posting(session_id: str) -> None:
            seen = outcomes.setdefault(session_id, [])
            request_id, refused = 1000, 0
            while refused < 2 and time.monotonic() - killed < 20:
                request_id += 1
                sent = time.monotonic()
                response = await client.post(f"{b.url}/sse/messages?session_id={session_id}", json=request(request_id, "ping"))
                seen.append(
                    (
                        sent - killed,
                        time.monotonic() - sent,
                        request_id,
                        response.status_code,
                        response.text,
                        response.headers.get("retry-after"),
                    )
                )
                refused += response.status_code == 404
                await asyncio.sleep(0.1)

        await asyncio.gather(*(keep_posting(session_id) for session_id in ids[:posting]))

        # Nothing is accepted for a dead stream, not even before its worker's lease lapses.
        accepted = [
            (session_id, at, request_id)
            for session_id, seen in outcomes.items()
            for at, _, request_id, status, _, _ in seen
            if status == 202
        ]
        assert not accepted, (
            f"{len(accepted)} POST(s) answered 202 after the stream's worker was killed (session, "
            f"s after the kill, request id): {accepted[:5]}"
        )
        # Each POST is answered promptly: the answer's wait, the acknowledgement's, a fresh lease read, slack.
        post_bound = ANSWER_WAIT + DEFAULTS["STREAM_ACK_TIMEOUT"] + LEASE_CACHE_SECONDS + 1.0
        bound = LEASE_INTERVALS * HEARTBEAT + LEASE_CACHE_SECONDS + post_bound  # the first 404, after the kill
        first_refusals, unconfirmed, slowest = [], 0, 0.0
        for session_id, seen in outcomes.items():
            statuses = [status for _, _, _, status, _, _ in seen]
            assert 404 in statuses, f"B never refused session {session_id} after its worker died: {statuses}"
            first = statuses.index(404)
            assert set(statuses[:first]) <= {503} and set(statuses[first:]) == {404}, statuses  # never 202
            for _, took, _, status, body, retry_after in seen:
                slowest = max(slowest, took)
                assert took <= post_bound, f"a POST took {took:.2f}s (bound {post_bound}s): {status} {body}"
                if status == 503:
                    unconfirmed += 1
                    error = json.loads(body)["error"]
                    assert error["code"] == -32003 and "did not confirm" in error["message"], body
                    assert retry_after == "1" and error["data"]["retryAfter"] == 1, (retry_after, body)
            at, _, _, _, body, _ = seen[first]
            first_refusals.append(at)
            assert at <= bound, f"session {session_id} was refused only {at:.2f}s after its worker died (bound {bound}s)"
            error = json.loads(body)["error"]
            assert error["code"] == -32001 and "open GET /sse again" in error["message"], body

        # The sessions nobody POSTed to are ended by the workers themselves, and A's lease row is gone.
        def still_open() -> list[tuple[Any, ...]]:
            return workers.query("SELECT id FROM mcp_app_session WHERE id = ANY(%s) AND ended IS NULL", (ids,))

        await _eventually(
            lambda: not still_open(),
            lambda: f"sessions of the dead worker still open: {still_open()}",
            timeout=LEASE_INTERVALS * HEARTBEAT + 5,
        )
        all_ended = time.monotonic() - killed
        assert workers.query("SELECT id FROM mcp_app_worker WHERE id = %s", (a_worker,)) == []

        # A worker started afterwards (A restarted) and B refuse every old session, the quiet ones included.
        restarted = workers.start()
        for server in (restarted, b):
            for session_id in ids:
                response = await client.post(f"{server.url}/sse/messages?session_id={session_id}", json=request(1, "ping"))
                assert response.status_code == 404, (server.port, response.status_code, response.text)
        # ...and serve new sessions as ever.
        async with open_stream(client, restarted) as stream:
            await initialize(client, stream, b)
            await ping(client, stream, b)

    print(
        f"\nworker death: first 404 after kill -9 at {min(first_refusals):.2f}-{max(first_refusals):.2f}s "
        f"(heartbeat {HEARTBEAT}s, bound {bound}s); 0 POSTs accepted after the kill, {unconfirmed} answered 503 "
        f"(stream did not confirm), slowest POST {slowest:.2f}s; "
        f"every session ended in the database {all_ended:.2f}s after the kill"
    )
    b.assert_no_traceback()
    restarted.assert_no_traceback()


async def _eventually(check: Any, what: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what()
        await asyncio.sleep(0.1)
