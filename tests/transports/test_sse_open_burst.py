"""Legacy streams opened all at once (live uvicorn, SQLite): every one gets its own session, committed before
its ``endpoint`` event, and answers its first POST.

Opening writes the session's row through the sessions' group writer (mcp_app/groupcommit.py): rows of streams
opening together share a transaction. Whatever the grouping, N streams leave exactly N open session rows, each
naming this worker and its bus channel, and a POST sent the moment the endpoint is known is accepted (202)
and answered on its own stream, never on another's.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

from tests.benchmarks.sse_client import Connection, open_stream
from tests.live import HEADERS, start_daphne

STREAMS = 200


async def open_and_ping(port: int, index: int) -> tuple[str, dict[str, object]]:
    """Open a stream, POST ping at once (id ``index``), and return the session id and the stream's answer."""
    stream, endpoint = await open_stream("127.0.0.1", port, "/sse", {})
    post = await Connection.open("127.0.0.1", port)
    try:
        status, body = await post.request(
            "POST", endpoint, HEADERS, json.dumps({"jsonrpc": "2.0", "id": index, "method": "ping"}).encode()
        )
        assert status == 202, (status, body)
        event = await asyncio.wait_for(stream.event(), 10)
        return endpoint.rsplit("=", 1)[1], json.loads(event.data)
    finally:
        post.close()
        stream.close()


def test_streams_opened_at_once_each_get_a_committed_session_that_answers(tmp_path: Path) -> None:
    server = start_daphne(tmp_path, server="uvicorn")
    try:

        async def burst() -> list[tuple[str, dict[str, object]]]:
            return await asyncio.gather(*(open_and_ping(server.port, index) for index in range(STREAMS)))

        results = asyncio.run(burst())
        assert [answer for _, answer in results] == [{"jsonrpc": "2.0", "id": i, "result": {}} for i in range(STREAMS)]
        ids = [session_id for session_id, _ in results]
        assert len(set(ids)) == STREAMS
        with sqlite3.connect(tmp_path / "db.sqlite3") as db:
            rows = db.execute("SELECT id, worker, stream_channel FROM mcp_app_session").fetchall()
        assert {row[0] for row in rows} == set(ids)
        assert all(worker and channel for _, worker, channel in rows)
        assert len({(worker, channel) for _, worker, channel in rows}) == 1  # one worker, one bus channel
    finally:
        server.stop()
    server.assert_no_traceback()
