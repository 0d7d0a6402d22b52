"""Legacy SSE round trip, measured: ``python -m tests.transports.sse_roundtrip [N]``.

Two daphne workers (A, B) share PostgreSQL and Redis (tests/transports/cluster.py); one session's stream is
open on A. N (300) sequential ``ping`` POSTs, each answered on the stream before the next is sent, first to A
(stream and POST on one worker) and then to B (the answer crosses the layer to A). Prints the mean and the
median round trip (POST sent -> answer read from the stream) of each. Needs PostgreSQL and Redis running.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

from tests.transports.cluster import workers_fixture
from tests.transports.test_multiprocess import initialize, new_client, open_stream, receive, request


async def measure(count: int, workers: object) -> None:
    a, b = workers.start(), workers.start()  # type: ignore[attr-defined]
    async with new_client() as client, open_stream(client, a) as stream:
        await initialize(client, stream, a)
        for name, target in (("POST on the stream's worker", a), ("POST on the other worker", b)):
            for warm in range(20):  # connections, caches, the bus listener of B
                await client.post(stream.post_url(target), json=request(10_000 + warm, "ping"))
                await receive(stream, "a warm-up ping's answer")
            times = []
            for n in range(count):
                started = time.perf_counter()
                response = await client.post(stream.post_url(target), json=request(n + 1, "ping"))
                assert response.status_code == 202, response.text
                answer = await receive(stream, f"the answer to ping {n + 1}")
                assert answer["id"] == n + 1, answer
                times.append(time.perf_counter() - started)
            print(
                f"{name}: {count} pings, mean {statistics.mean(times) * 1000:.2f} ms, "
                f"median {statistics.median(times) * 1000:.2f} ms, p95 "
                f"{sorted(times)[int(count * 0.95)] * 1000:.2f} ms"
            )


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    fixture = workers_fixture.__wrapped__(Path(tempfile.mkdtemp(prefix="sse-roundtrip-")))  # type: ignore[attr-defined]
    workers = next(fixture)
    try:
        asyncio.run(measure(count, workers))
    finally:
        next(fixture, None)


if __name__ == "__main__":
    main()
