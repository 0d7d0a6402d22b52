"""A model save reaching 1,000 subscribed streams on two workers: latency from commit to each stream.

    .venv/bin/python -m tests.benchmarks.bench_fanout [--streams 1000] [--saves 5] [--gap 2]
        [--server daphne|uvicorn] [--version 2025-11-25|2024-11-05|2026-07-28|sse] [--clients 2] [--profile DIR]

Two daphne (or uvicorn) workers of the test site (tests/transports/cluster.py: a fresh PostgreSQL database, the Redis
channel layer with a private prefix) serve ``--streams`` Streamable HTTP sessions (``--version``, by default
2025-11-25: each GET stream is resumable and numbers and keeps its events, as deployed; 2026-07-28:
``subscriptions/listen`` streams instead; ``sse``: legacy HTTP+SSE sessions on ``/sse``), half on each worker.
Every session subscribes (``resources/subscribe``) to the URI of one library book and holds its GET stream open.

Another process (``manage.py shell``, as the admin or a cron job would be) then saves the book ``--saves``
times, ``--gap`` seconds apart, after one save that is not counted (a warm process, as a web worker is). Each
save records the wall clock of its commit (its first ``on_commit`` callback, registered before the save, so
it runs before the notification's); each stream records the wall clock at which the bytes of
``notifications/resources/updated`` were read from its socket, before any parsing. The streams are opened and
read by ``--clients`` processes of their own (on uvloop when installed), so that the client's work is neither
in the measuring process nor all on one core. Printed: p50, p99, min and max
of (read - commit) over every stream and save, how many streams missed a save, and the longest the saving
process took to hand its message over. Not part of the test suite: figures, not pass/fail.

Measured 2026-11-30 (2 shared cores, load 2-4 from other work; p50 / p99 ms, runs vary by tens of ms):
resumable GET streams (2025-11-25) before one COPY per batch (resume.py) -> after: uvicorn 104-137 / 185-492
-> 68-80 / 97-189, daphne 137-157 / 210-367 -> 107-124 / 173-276; unchanged paths: 2024-11-05 GET streams
uvicorn 33-39 / 77-87, daphne 53-74 / 156-187; legacy /sse uvicorn 27 / 56, daphne 103 / 215; 2026-07-28 listen
streams uvicorn 32 / 63, daphne 67 / 178. Later, with GC_FREEZE (a quiet VM): resumable GET streams uvicorn 35 / 54,
daphne 49 / 72; legacy /sse uvicorn 22 / 54, daphne 33 / 61; listen streams uvicorn 15 / 32, daphne 31 / 51.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from tests.benchmarks import sse_client
from tests.benchmarks.sse_client import Connection, run
from tests.live import HEADERS, LATEST, REPO, LiveServer, initialize_message, start_daphne
from tests.transports.cluster import SETTINGS, Workers, running_workers

UPDATED = "notifications/resources/updated"


def shell(cluster: Workers, code: str, timeout: float = 300) -> str:
    """Run ``code`` in ``manage.py shell`` against the workers' database and channel layer; its stdout."""
    done = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=REPO,
        timeout=timeout,
        capture_output=True,
        text=True,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": SETTINGS, **cluster.env},
    )
    if done.returncode:
        raise RuntimeError(f"manage.py shell failed:\n{done.stderr[-3000:]}")
    return done.stdout


CREATE_BOOK = (
    "from datetime import date; from mcpsite.library.models import Author, Book; "
    "a = Author.objects.create(name='Ada Costa'); "
    "b = Book.objects.create(title='The Silent River', isbn='9780001000001', author=a, genre='novel', "
    "published=date(2001, 5, 4), pages=321); print(b.pk)"
)

SAVES = """
import json, time
from django.db import transaction
from mcpsite.library.models import Book
commits, sent = [], []
book = Book.objects.get(pk={pk})
for n in range({saves} + 1):
    time.sleep({gap})
    with transaction.atomic():
        transaction.on_commit(lambda: commits.append(time.time()))
        book.pages += 1
        book.save()
    sent.append(time.time())  # the notifications' on_commit callbacks have run
print(json.dumps([commits[1:], sent[1:]]))
"""


async def open_session(http: httpx.AsyncClient, server: LiveServer, uri: str, version: str) -> dict[str, str]:
    """Initialize a session on ``server``, subscribe it to ``uri``; the headers its requests carry."""
    answer = await http.post(server.mcp_url, json=initialize_message(version, client="bench_fanout"), headers=HEADERS)
    answer.raise_for_status()
    headers = {**HEADERS, "mcp-session-id": answer.headers["mcp-session-id"], "mcp-protocol-version": version}
    (
        await http.post(server.mcp_url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=headers)
    ).raise_for_status()
    subscribe = {"jsonrpc": "2.0", "id": 2, "method": "resources/subscribe", "params": {"uri": uri}}
    answer = await http.post(server.mcp_url, json=subscribe, headers=headers)
    answer.raise_for_status()
    body = answer.text
    if '"result"' not in body:
        raise RuntimeError(f"resources/subscribe failed: {body[:300]}")
    return headers


MARK = b'"notifications/resources/updated"'


class Reader:
    """One open stream, recording the wall clock at which each resources/updated arrives.

    The clock is read as soon as the bytes are read from the socket, before anything is parsed: the time
    the client spends decoding is never counted as the server's. The stream's bytes are only searched for
    the method's name (the server writes nothing else that contains it)."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.arrivals: list[float] = []

    async def run(self) -> None:
        # What the opening read past (the head, the priming event) is already in the connection's buffer.
        tail = self.connection._buffer
        self.arrivals.extend([time.time()] * tail.count(MARK))
        tail = tail[-(len(MARK) - 1) :]
        while data := await self.connection.reader.read(1 << 16):
            now = time.time()
            seen = tail + data
            self.arrivals.extend([now] * seen.count(MARK))
            tail = seen[-(len(MARK) - 1) :]  # a name cut between two reads is counted once, in the second


MODERN = "2026-07-28"
#: ``--version sse``: legacy HTTP+SSE sessions (2024-11-05 on ``/sse``) instead of Streamable HTTP ones.
LEGACY = "sse"
LISTEN_HEADERS = {"content-type": "application/json", "accept": "application/json, text/event-stream",
                  "mcp-protocol-version": MODERN, "mcp-method": "subscriptions/listen"}  # fmt: skip


async def open_listen(server: LiveServer, uri: str, request_id: int) -> Reader:
    """A 2026-07-28 ``subscriptions/listen`` stream for ``uri`` on ``server``, read past its acknowledgement."""
    connection = await Connection.open("127.0.0.1", server.port)
    meta = {"io.modelcontextprotocol/protocolVersion": MODERN, "io.modelcontextprotocol/clientCapabilities": {}}
    params = {"notifications": {"resourceSubscriptions": [uri]}, "_meta": meta}
    body = json.dumps({"jsonrpc": "2.0", "id": request_id, "method": "subscriptions/listen", "params": params})
    connection._send("POST", "/mcp", LISTEN_HEADERS, body.encode())
    await connection.writer.drain()
    status, _ = await connection._head()
    if status != 200:
        raise RuntimeError(f"subscriptions/listen answered {status}")
    ack = json.loads((await connection.event()).data)
    if ack.get("method") != "notifications/subscriptions/acknowledged" or ack["params"]["notifications"].get(
        "resourceSubscriptions"
    ) != [uri]:
        raise RuntimeError(f"not acknowledged: {ack}")
    return Reader(connection)


async def open_stream(server: LiveServer, headers: dict[str, str]) -> Reader:
    connection = await Connection.open("127.0.0.1", server.port)
    stream_headers = {k: v for k, v in headers.items() if k not in ("content-type", "accept")}
    status = await connection.start_stream("/mcp", stream_headers)
    if status != 200:
        raise RuntimeError(f"GET /mcp answered {status}")
    return Reader(connection)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def start_worker(cluster: Workers, serving: str) -> LiveServer:
    """One more worker of the cluster under ``serving`` (daphne or uvicorn); the first migrates."""
    worker = start_daphne(
        cluster.workdir, settings=SETTINGS, extra_env=cluster.env, run_migrations=not cluster.servers, server=serving
    )
    cluster.servers.append(worker)
    return worker


async def open_legacy(server: LiveServer, uri: str) -> Reader:
    """A legacy HTTP+SSE session (2024-11-05, ``/sse``) subscribed to ``uri``: its event stream."""
    session = await sse_client.open_session("127.0.0.1", server.port, "/sse", {})
    answer = await session.call({"jsonrpc": "2.0", "id": 2, "method": "resources/subscribe", "params": {"uri": uri}})
    if "result" not in answer:
        raise RuntimeError(f"resources/subscribe failed: {answer}")
    session.post.close()
    return Reader(session.stream)


async def open_readers(ports: list[int], uri: str, version: str, indices: list[int]) -> list[Reader]:
    """Open the streams ``indices`` (stream ``i`` on ``ports[i % 2]``), 16 at a time; ``version`` "sse": legacy
    HTTP+SSE sessions."""
    servers = [LiveServer(port=port, process=None, log_path=Path()) for port in ports]  # type: ignore[arg-type]
    gate = asyncio.Semaphore(16)
    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=32)) as http:

        async def one(i: int) -> Reader:
            server = servers[i % len(servers)]
            async with gate:
                if version == MODERN:
                    return await open_listen(server, uri, i + 1)
                if version == LEGACY:
                    return await open_legacy(server, uri)
                headers = await open_session(http, server, uri, version)
                return await open_stream(server, headers)

        return await asyncio.gather(*(one(i) for i in indices))


def client_process(ports: list[int], uri: str, version: str, indices: list[int], expected: int, pipe: Any) -> None:
    """One client process: open its share of the streams, say so, read them until the saves are over (told
    through ``pipe``) and each has ``expected`` notifications or 10 s more pass; send back their arrivals."""

    async def work() -> None:
        readers = await open_readers(ports, uri, version, indices)
        tasks = [asyncio.ensure_future(reader.run()) for reader in readers]
        pipe.send("ready")
        await asyncio.to_thread(pipe.recv)  # "saved"
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(len(r.arrivals) < expected for r in readers):
            await asyncio.sleep(0.1)
        for task in tasks:
            task.cancel()
        for reader in readers:
            reader.connection.close()
        pipe.send([reader.arrivals for reader in readers])

    run(work())


async def measure(
    cluster: Workers, streams: int, saves: int, gap: float, version: str, serving: str, clients: int, profile: str | None
) -> None:
    """``version`` "2026-07-28": ``subscriptions/listen`` streams instead of sessions' GET streams. The streams
    are opened and read by ``clients`` processes of their own (the client never shares a process, nor an event
    loop, with the saving or the measuring). With ``profile`` (a folder), py-spy records each worker during the
    saves (``worker0.txt``, ``worker1.txt``: collapsed stacks)."""
    servers = [start_worker(cluster, serving), start_worker(cluster, serving)]
    pk = int(shell(cluster, CREATE_BOOK).split()[-1])
    uri = f"django://library/book/{pk}"
    started = time.monotonic()
    context = multiprocessing.get_context("spawn")
    pipes, processes = [], []
    for n in range(clients):
        mine, theirs = context.Pipe()
        process = context.Process(
            target=client_process,
            args=([s.port for s in servers], uri, version, list(range(n, streams, clients)), saves + 1, theirs),
            daemon=True,  # ended with this process when a save fails (they would wait for "saved" forever)
        )
        process.start()
        pipes.append(mine)
        processes.append(process)
    for pipe in pipes:
        if await asyncio.to_thread(pipe.recv) != "ready":
            raise RuntimeError("a client process failed to open its streams")
    took = time.monotonic() - started
    kind = {MODERN: "subscriptions/listen streams", LEGACY: "legacy HTTP+SSE sessions subscribed"}.get(
        version, "sessions subscribed, GET streams open"
    )
    print(f"{serving}: {streams} {kind} ({version}) for {uri}, in {took:.1f} s, read by {clients} client processes")
    await asyncio.sleep(1)
    spies = [
        subprocess.Popen(
            [str(Path(sys.executable).parent / "py-spy"), "record", "-p", str(server.process.pid), "-r", "200", "-f", "raw"]
            + ["-o", str(Path(profile) / f"worker{n}.txt")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for n, server in enumerate(servers if profile else [])
    ]
    code = SAVES.format(pk=pk, saves=saves, gap=gap)
    out = await asyncio.to_thread(shell, cluster, code)
    for spy in spies:
        spy.send_signal(signal.SIGINT)  # py-spy writes its profile when interrupted
        spy.wait(30)
    commits, sent = json.loads(out.strip().splitlines()[-1])
    sending = [done - commit for commit, done in zip(commits, sent, strict=True)]
    arrivals: list[list[float]] = []
    for pipe in pipes:
        pipe.send("saved")
    for pipe, process in zip(pipes, processes, strict=True):
        arrivals.extend(await asyncio.to_thread(pipe.recv))
        process.join(10)
    latencies: list[float] = []
    missed = 0
    for stream_arrivals in arrivals:
        later = stream_arrivals[1:]  # the first save warms the saving process and is not counted
        missed += max(0, saves - len(later))
        latencies.extend(arrival - commit for arrival, commit in zip(later, commits, strict=False))
    print(
        f"commit -> resources/updated on each of {streams} streams (2 workers, PostgreSQL, Redis), {saves} saves: "
        f"p50 {percentile(latencies, 0.5) * 1000:.0f} ms, p99 {percentile(latencies, 0.99) * 1000:.0f} ms, "
        f"min {min(latencies) * 1000:.0f} ms, max {max(latencies) * 1000:.0f} ms; {len(latencies)} deliveries, {missed} missed"
    )
    for n, commit in enumerate(commits):
        # Per save: the first and the last stream reached (a slow save, or a slow tail within every save).
        got = sorted(a[n + 1] - commit for a in arrivals if len(a) > n + 1)
        if got:
            first, middle, last = (round(x * 1000) for x in (got[0], percentile(got, 0.5), got[-1]))
            print(f"  save {n + 1}: first {first} ms, p50 {middle} ms, last {last} ms")
    print(f"  of which the saving process's sending (commit -> its on_commit callbacks done): max {max(sending) * 1000:.0f} ms")
    for server in servers:
        log = server.log()
        if "Traceback" in log:
            print(f"worker {server.port} logged a traceback:\n{log[log.find('Traceback') : log.find('Traceback') + 3000]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--saves", type=int, default=5)
    parser.add_argument("--gap", type=float, default=2.0, help="seconds between saves")
    parser.add_argument("--server", choices=["daphne", "uvicorn"], default="daphne", help="what serves the two workers")
    parser.add_argument(
        "--version",
        default=LATEST,
        help="the sessions' protocol version (2024-11-05: GET streams keep no events; 2026-07-28: listen streams;"
        " sse: legacy HTTP+SSE sessions, 2024-11-05 on /sse)",
    )
    parser.add_argument("--clients", type=int, default=2, help="client processes reading the streams")
    parser.add_argument("--profile", metavar="DIR", help="py-spy each worker during the saves (raw stacks in DIR)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir, running_workers(Path(workdir)) as cluster:
        run(measure(cluster, args.streams, args.saves, args.gap, args.version, args.server, args.clients, args.profile))


if __name__ == "__main__":
    main()
