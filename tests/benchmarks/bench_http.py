"""Throughput and memory of the Streamable HTTP endpoint, printed as figures.

    .venv/bin/python -m tests.benchmarks.bench_http [--seconds 10] [--connections 32] [--streams 500]

Starts the fixture server under daphne and uvicorn (127.0.0.1, SQLite, in-memory channel layer), opens a
session, and drives it with wrk (Debian package `wrk`): ping, tools/list and tools/call of the sync
`uppercase_text` tool, each an MCP message on an existing session. For comparison, on the same server:
a trivial Channels consumer and a trivial async Django view with default middleware. Then it opens
idle GET streams and reports the server's memory per stream. Not part of the test suite: figures, not
pass/fail. wrk runs on the same machine, so it takes CPU from the server: compare rows, not machines.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import httpx

from tests.live import HEADERS, LiveServer, initialize_message, start_daphne

from .load import rss_kb, wrk

MESSAGES = {
    "ping": {"jsonrpc": "2.0", "id": 1, "method": "ping"},
    "tools/list": {"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
    "tools/call uppercase_text": {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": "uppercase_text", "arguments": {"text": "hello"}},
    },
}


def initialize(server: LiveServer) -> str:
    response = httpx.post(server.mcp_url, json=initialize_message(client="bench"), headers=HEADERS)
    response.raise_for_status()
    return response.headers["mcp-session-id"]


def stream_memory(server: LiveServer, count: int) -> tuple[int, int]:
    """Open ``count`` idle GET streams (one per session); return (RSS before, RSS after) in KiB."""
    sessions = [initialize(server) for _ in range(count)]
    time.sleep(0.5)
    before = rss_kb(server.process.pid)
    client = httpx.Client(timeout=30, limits=httpx.Limits(max_connections=count + 10))
    streams = []
    for sid in sessions:
        request = client.build_request(
            "GET",
            server.mcp_url,
            headers={"accept": "text/event-stream", "mcp-session-id": sid, "mcp-protocol-version": "2025-11-25"},
        )
        response = client.send(request, stream=True)
        assert response.status_code == 200, response.status_code
        streams.append(response)
    time.sleep(1.0)
    after = rss_kb(server.process.pid)
    for response in streams:
        response.close()
    client.close()
    return before, after


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--streams", type=int, default=500)
    parser.add_argument("--servers", default="daphne,uvicorn")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed: apt-get install wrk")
    for name in args.servers.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            workdir = Path(tmp)
            server = start_daphne(
                workdir, server=name, settings="tests.benchmarks.settings", app="tests.benchmarks.asgi:application"
            )
            try:
                # Memory first, on a fresh process, so the load runs' freed memory does not hide it.
                before, after = stream_memory(server, args.streams)
                print(
                    f"== {name}: {args.streams} idle GET streams, RSS {before / 1024:.1f} -> {after / 1024:.1f} MiB, "
                    f"{(after - before) / args.streams:.1f} KiB per stream"
                )
                session_id = initialize(server)
                print(f"== {name} (wrk -t2 -c{args.connections} -d{args.seconds}s, one session)")
                runs = [(f"MCP {label}", server.mcp_url, message) for label, message in MESSAGES.items()]
                runs += [
                    ("baseline: Channels consumer", f"{server.url}/bench/consumer", None),
                    ("baseline: Django async view", f"{server.url}/bench/django", None),
                ]
                headers = {**HEADERS, "mcp-session-id": session_id, "mcp-protocol-version": "2025-11-25"}
                for label, url, message in runs:
                    result = wrk(
                        url,
                        body=message,
                        headers=headers if message is not None else None,
                        seconds=args.seconds,
                        connections=args.connections,
                        workdir=workdir,
                    )
                    print(f"{label:32s} {result.row()}")
            finally:
                server.stop()


if __name__ == "__main__":
    main()
