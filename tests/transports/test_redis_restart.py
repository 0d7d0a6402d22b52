"""Redis restarts under load: the workers re-join the bus at once, and what one worker tells the others
arrives again.

A Redis restart drops every channel-layer group membership. Before, a worker re-joined the bus group only
hourly, so for minutes after the restart a session DELETEd on worker A was still served by worker B from
its cache, and cancellations, client answers, revocations and list_changed between workers were lost.

Two daphne workers (A, B) share PostgreSQL and Redis; a few clients keep sending requests to both. Redis is
stopped and started again the way this machine's docs say (``redis-cli shutdown nosave``, then
``redis-server --daemonize yes ...``; always started again, and left running). Once it answers PONG:

- a session used on B and DELETEd on A is refused by B within :data:`BOUND` seconds;
- a ``notifications/cancelled`` sent to A cancels the tool running on B;
- both workers go on serving every client.

The figure (seconds until B honoured the DELETE) is printed; run with ``-s`` to see it.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import subprocess
import time
from typing import Any

import httpx

from tests.live import LiveServer
from tests.transports.cluster import Workers, workers_fixture  # noqa: F401 - the fixture

#: Seconds within which B must refuse a session DELETEd on A once Redis is back (it was 300: the cache).
BOUND = 2.0
HEADERS = {"content-type": "application/json", "accept": "application/json, text/event-stream"}
VERSION = "2025-06-18"
REDIS_START = [
    "redis-server",
    "--daemonize",
    "yes",
    "--bind",
    "127.0.0.1",
    "-::1",
    "--port",
    "6379",
    "--save",
    "",
    "--appendonly",
    "no",
    "--dir",
    "/var/lib/redis",
    "--logfile",
    "/var/log/redis/ci.log",
]


def redis_ping() -> bool:
    result = subprocess.run(["redis-cli", "-p", "6379", "ping"], capture_output=True, text=True, timeout=5)
    return result.stdout.strip() == "PONG"


def ensure_redis_running() -> None:
    """Start Redis if it does not answer (with the machine's start command) and wait for PONG."""
    if not redis_ping():
        subprocess.run(REDIS_START, check=True, timeout=10)
    deadline = time.monotonic() + 20
    while not redis_ping():
        assert time.monotonic() < deadline, "Redis did not answer PONG within 20 s of being started"
        time.sleep(0.05)


def restart_redis(downtime: float) -> None:
    """Stop Redis, wait ``downtime`` seconds, start it again (however this goes) and wait for PONG."""
    try:
        subprocess.run(["redis-cli", "-p", "6379", "shutdown", "nosave"], capture_output=True, timeout=10)
        deadline = time.monotonic() + 10
        while redis_ping() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(downtime)
    finally:
        ensure_redis_running()


def rpc(request_id: int | None, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
    if request_id is not None:
        message["id"] = request_id
    if params is not None:
        message["params"] = params
    return message


async def open_session(client: httpx.AsyncClient, server: LiveServer) -> dict[str, str]:
    """initialize on ``server``; the headers that name the session (any worker serves it)."""
    init = rpc(
        0, "initialize", {"protocolVersion": VERSION, "capabilities": {}, "clientInfo": {"name": "redis-restart", "version": "1"}}
    )
    response = await client.post(server.mcp_url, json=init, headers=HEADERS)
    assert response.status_code == 200, response.text
    headers = {**HEADERS, "mcp-session-id": response.headers["mcp-session-id"], "mcp-protocol-version": VERSION}
    assert (await client.post(server.mcp_url, json=rpc(None, "notifications/initialized"), headers=headers)).status_code == 202
    return headers


async def ping(client: httpx.AsyncClient, server: LiveServer, headers: dict[str, str]) -> httpx.Response:
    return await client.post(server.mcp_url, json=rpc(1, "ping"), headers=headers)


def answer(response: httpx.Response) -> dict[str, Any]:
    """The JSON-RPC answer of a POST, whether it came as JSON or as an event stream."""
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        for line in response.text.splitlines():
            if line.startswith("data:") and line[5:].strip():
                message = json.loads(line[5:])
                if "id" in message:
                    return message
        raise AssertionError(f"no answer in the stream: {response.text!r}")
    return response.json()


async def test_workers_rejoin_the_bus_when_redis_restarts_under_load(workers: Workers) -> None:
    a, b = workers.start(), workers.start()
    async with httpx.AsyncClient(timeout=httpx.Timeout(10.0, read=60.0)) as client, asyncio.timeout(120):
        # The load: four clients, each pinging both workers over and over.
        served: dict[int, list[float]] = {a.port: [], b.port: []}
        stop = asyncio.Event()

        async def load() -> None:
            headers = await open_session(client, a)
            while not stop.is_set():
                for server in (a, b):
                    try:
                        if (await ping(client, server, headers)).status_code == 200:
                            served[server.port].append(time.monotonic())
                    except httpx.HTTPError:
                        pass
                await asyncio.sleep(0.02)

        loaders = [asyncio.create_task(load()) for _ in range(4)]
        try:
            doomed = await open_session(client, a)
            assert (await ping(client, b, doomed)).status_code == 200  # B has it cached now
            canceller = await open_session(client, a)
            assert (await ping(client, b, canceller)).status_code == 200

            await asyncio.to_thread(restart_redis, 0.5)
            back = time.monotonic()

            # B serves the session from its cache (it may have re-read it), until A ends it.
            assert (await ping(client, b, doomed)).status_code == 200
            deleted = await client.delete(a.mcp_url, headers=doomed)
            assert deleted.status_code in (200, 202, 204), deleted.text
            ended = time.monotonic()
            while (refused := await ping(client, b, doomed)).status_code != 404:
                assert refused.status_code == 200, refused.text
                assert time.monotonic() - ended < BOUND, (
                    f"B still served a session DELETEd on A {BOUND}s after Redis came back (the bus was not re-joined)"
                )
                await asyncio.sleep(0.05)
            honoured = time.monotonic() - ended

            # A cancellation sent to A reaches the tool running on B.
            label = f"redis-restart-{secrets.token_hex(4)}"
            call = asyncio.create_task(
                client.post(
                    b.mcp_url,
                    headers=canceller,
                    json=rpc(7, "tools/call", {"name": "wait_until_cancelled", "arguments": {"label": label}}),
                )
            )
            await asyncio.sleep(0.5)  # the tool is running on B
            cancel = rpc(None, "notifications/cancelled", {"requestId": 7, "reason": "test"})
            assert (await client.post(a.mcp_url, json=cancel, headers=canceller)).status_code == 202
            deadline = time.monotonic() + 5
            while True:
                read = await client.post(b.mcp_url, headers=canceller, json=rpc(8, "resources/read", {"uri": "test://cancelled"}))
                if label in json.loads(answer(read)["result"]["contents"][0]["text"]):
                    break
                assert time.monotonic() < deadline, "a cancellation sent to A never reached the tool running on B"
                await asyncio.sleep(0.1)
            call.cancel()

            # Both workers kept serving the clients once Redis was back.
            await asyncio.sleep(0.5)
            for server in (a, b):
                assert any(t > back for t in served[server.port]), f"worker {server.port} served nobody after the restart"
        finally:
            stop.set()
            await asyncio.gather(*loaders, return_exceptions=True)

    print(
        f"\nredis restart: a DELETE on A was honoured by B {honoured:.2f}s after it (Redis back {ended - back:.2f}s "
        "before the DELETE)"
    )
    for server in (a, b):
        server.assert_no_traceback()
