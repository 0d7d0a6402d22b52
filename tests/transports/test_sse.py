"""The legacy HTTP+SSE transport (``GET /sse`` + ``POST /sse/messages``) against a live daphne:
the official SDK's ``sse_client``, the MCP Inspector CLI, and raw HTTP for every bad-input rule."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import mcp.types as types
import pytest
from mcp import ClientSession
from mcp.client.sse import sse_client

from tests.live import LiveServer, start_daphne
from tests.node_peers import node_env
from tests.wire import assert_valid

JSON = {"content-type": "application/json"}


@asynccontextmanager
async def connect(server: LiveServer, **callbacks: Any) -> AsyncIterator[tuple[ClientSession, str]]:
    sessions: list[str] = []
    async with (
        sse_client(f"{server.url}/sse", on_session_created=sessions.append) as (read, write),
        ClientSession(read, write, read_timeout_seconds=20, **callbacks) as session,
    ):
        await session.initialize()
        yield session, sessions[0]


# -- the official SDK client ---------------------------------------------------------------------------------
async def test_sdk_initialize_list_and_call(daphne_server: LiveServer) -> None:
    async with connect(daphne_server) as (session, session_id):
        assert len(session_id) >= 43
        tools = {t.name for t in (await session.list_tools()).tools}
        assert {"uppercase_text", "test_sampling"} <= tools
        result = await session.call_tool("uppercase_text", {"text": "hello world"})
        assert [(c.type, c.text) for c in result.content] == [("text", "HELLO WORLD")]
        prompt = await session.get_prompt("test_simple_prompt")
        assert prompt.messages[0].content.text == "This is a simple prompt for testing."


async def test_sdk_progress_and_logs(daphne_server: LiveServer) -> None:
    progress: list[float] = []
    logs: list[str] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append(value)

    async def on_log(params: types.LoggingMessageNotificationParams) -> None:
        logs.append(params.data)

    async with connect(daphne_server, logging_callback=on_log) as (session, _):
        await session.call_tool("test_tool_with_progress", {}, progress_callback=on_progress)
        await session.call_tool("test_tool_with_logging", {})
        with anyio.fail_after(5):
            while len(progress) < 3 or len(logs) < 3:
                await anyio.sleep(0.01)
    assert progress == [0, 50, 100]
    assert logs == ["Tool execution started", "Tool processing data", "Tool execution completed"]


async def test_sdk_sampling_elicitation_and_roots(daphne_server: LiveServer) -> None:
    async def sampling(ctx: Any, params: types.CreateMessageRequestParams) -> types.CreateMessageResult:
        return types.CreateMessageResult(
            role="assistant", content=types.TextContent(text="from the model"), model="m", stop_reason="endTurn"
        )

    async def elicitation(ctx: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        return types.ElicitResult(action="decline")

    async def roots(ctx: Any) -> types.ListRootsResult:
        return types.ListRootsResult(roots=[types.Root(uri="file:///work", name="work")])

    async with connect(
        daphne_server, sampling_callback=sampling, elicitation_callback=elicitation, list_roots_callback=roots
    ) as (session, _):
        sample = await session.call_tool("test_sampling", {"prompt": "hi"})
        assert sample.content[0].text == "LLM response: from the model"
        answer = await session.call_tool("test_elicitation", {"message": "name?"})
        assert answer.content[0].text == "User response: action=decline, content=null"
        listed = await session.call_tool("list_client_roots", {})
        assert listed.content[0].text == "file:///work"


def test_inspector_cli_over_sse(daphne_server: LiveServer, tmp_path: Path) -> None:
    env = node_env(tmp_path)
    base = ["mcp-inspector", "--cli", f"{daphne_server.url}/sse", "--transport", "sse"]
    listed = subprocess.run([*base, "--method", "tools/list"], env=env, capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0, listed.stderr
    assert '"name": "uppercase_text"' in listed.stdout
    called = subprocess.run(
        [*base, "--method", "tools/call", "--tool-name", "uppercase_text", "--tool-arg", "text=over sse"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert called.returncode == 0, called.stderr
    assert '"text": "OVER SSE"' in called.stdout


# -- raw HTTP ----------------------------------------------------------------------------------------------
class Stream:
    """An open ``GET /sse``, read event by event."""

    def __init__(self, client: httpx.Client, base: str, headers: dict[str, str] | None = None) -> None:
        self.response = client.send(client.build_request("GET", f"{base}/sse", headers=headers or {}), stream=True)
        self.lines = self.response.iter_lines()
        self.base = base

    def event(self) -> tuple[str, str]:
        """The next event's (name, data); comments (keep-alives) are skipped."""
        name, data = "message", []
        for line in self.lines:
            if line.startswith(":"):
                continue
            if not line:
                if data:
                    return name, "\n".join(data)
                continue
            field, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if field == "event":
                name = value
            elif field == "data":
                data.append(value)
        raise EOFError("the stream ended")

    def message(self) -> dict[str, Any]:
        name, data = self.event()
        assert name == "message"
        return json.loads(data)

    def close(self) -> None:
        self.response.close()


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as c:
        yield c


def open_stream(client: httpx.Client, server: LiveServer) -> tuple[Stream, str]:
    stream = Stream(client, server.url)
    assert stream.response.status_code == 200
    assert stream.response.headers["content-type"].startswith("text/event-stream")
    name, endpoint = stream.event()
    assert name == "endpoint"
    return stream, endpoint


def initialize(client: httpx.Client, server: LiveServer, stream: Stream, endpoint: str, version: str = "2024-11-05") -> None:
    body = {
        "jsonrpc": "2.0",
        "id": 0,
        "method": "initialize",
        "params": {"protocolVersion": version, "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}},
    }
    assert client.post(server.url + endpoint, json=body).status_code == 202
    answer = stream.message()
    assert answer["id"] == 0
    assert_valid(answer["result"], "InitializeResult", version)
    assert client.post(server.url + endpoint, json={"jsonrpc": "2.0", "method": "notifications/initialized"}).status_code == 202


def test_endpoint_event_names_a_fresh_random_session(client: httpx.Client, daphne_server: LiveServer) -> None:
    first, endpoint1 = open_stream(client, daphne_server)
    second, endpoint2 = open_stream(client, daphne_server)
    try:
        for endpoint in (endpoint1, endpoint2):
            assert endpoint.startswith("/sse/messages?session_id=")
            assert len(endpoint.split("=", 1)[1]) >= 43
        assert endpoint1 != endpoint2
    finally:
        first.close()
        second.close()


def test_answers_travel_on_the_stream_in_order(client: httpx.Client, daphne_server: LiveServer) -> None:
    stream, endpoint = open_stream(client, daphne_server)
    try:
        initialize(client, daphne_server, stream, endpoint)
        for n in range(1, 6):
            call = {
                "jsonrpc": "2.0",
                "id": n,
                "method": "tools/call",
                "params": {"name": "uppercase_text", "arguments": {"text": f"n{n}"}},
            }
            response = client.post(daphne_server.url + endpoint, json=call)
            assert (response.status_code, response.content) == (202, b"")
        for n in range(1, 6):
            answer = stream.message()
            assert answer["id"] == n
            assert answer["result"]["content"][0]["text"] == f"N{n}"
            assert_valid(answer["result"], "CallToolResult", "2024-11-05")
    finally:
        stream.close()


@pytest.mark.parametrize(("method", "name"), [("listTools", "tools/list"), ("callTool", "tools/call")])
def test_tutorial_method_names_get_32601_naming_the_real_ones(
    client: httpx.Client, daphne_server: LiveServer, method: str, name: str
) -> None:
    stream, endpoint = open_stream(client, daphne_server)
    try:
        initialize(client, daphne_server, stream, endpoint)
        assert client.post(daphne_server.url + endpoint, json={"jsonrpc": "2.0", "id": 7, "method": method}).status_code == 202
        answer = stream.message()
        assert answer["error"]["code"] == -32601
        assert f"'{name}'" in answer["error"]["message"]
    finally:
        stream.close()


def assert_error(response: httpx.Response, status: int, code: int) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"]["code"] == code
    assert body["error"]["message"] and "Traceback" not in response.text


def test_bad_posts(client: httpx.Client, daphne_server: LiveServer) -> None:
    stream, endpoint = open_stream(client, daphne_server)
    url = daphne_server.url + endpoint
    try:
        initialize(client, daphne_server, stream, endpoint)
        assert_error(
            client.post(f"{daphne_server.url}/sse/messages", json={"jsonrpc": "2.0", "id": 1, "method": "ping"}), 400, -32600
        )
        assert_error(
            client.post(f"{daphne_server.url}/sse/messages?session_id=nope", json={"jsonrpc": "2.0", "id": 1, "method": "ping"}),
            404,
            -32001,
        )
        assert_error(client.post(url, content=b"{oops", headers=JSON), 400, -32700)
        assert_error(client.post(url, content=b"\xff", headers=JSON), 400, -32700)
        assert_error(
            client.post(url, content=b'{"jsonrpc": "2.0", "id": 1, "method": "ping"}', headers={"content-type": "text/plain"}),
            415,
            -32600,
        )
        assert_error(client.post(url, content=b"[" + b" " * (5 * 1024 * 1024) + b"]", headers=JSON), 413, -32600)
        assert_error(client.post(url, json={"jsonrpc": "1.0", "id": 1, "method": "ping"}), 400, -32600)
        assert_error(client.post(url, json=[{"jsonrpc": "2.0", "id": 1, "method": "ping"}]), 400, -32600)
        assert_error(
            client.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "ping"}, headers={"origin": "http://evil.example.com"}),
            403,
            -32600,
        )
        assert_error(
            client.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "ping"}, headers={"host": "evil.example.com"}),
            421,
            -32600,
        )
        assert_error(client.get(url), 405, -32600)
        # A Streamable HTTP session's id is not a legacy session.
        init = client.post(
            daphne_server.mcp_url,
            headers={"accept": "application/json, text/event-stream"},
            json={
                "jsonrpc": "2.0",
                "id": 1,
                "method": "initialize",
                "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "x", "version": "1"}},
            },
        )
        other = init.headers["mcp-session-id"]
        assert_error(
            client.post(
                f"{daphne_server.url}/sse/messages?session_id={other}", json={"jsonrpc": "2.0", "id": 1, "method": "ping"}
            ),
            404,
            -32001,
        )
        # After all that, the session still works.
        assert client.post(url, json={"jsonrpc": "2.0", "id": 99, "method": "ping"}).status_code == 202
        assert stream.message() == {"jsonrpc": "2.0", "id": 99, "result": {}}
    finally:
        stream.close()


def test_bad_stream_requests(client: httpx.Client, daphne_server: LiveServer) -> None:
    assert_error(client.get(f"{daphne_server.url}/sse", headers={"origin": "http://evil.example.com"}), 403, -32600)
    assert_error(client.get(f"{daphne_server.url}/sse", headers={"host": "evil.example.com"}), 421, -32600)
    assert_error(client.get(f"{daphne_server.url}/sse", headers={"accept": "application/json"}), 406, -32600)
    assert_error(client.post(f"{daphne_server.url}/sse", json={}), 405, -32600)


def test_a_closed_stream_ends_its_session(client: httpx.Client, daphne_server: LiveServer) -> None:
    stream, endpoint = open_stream(client, daphne_server)
    initialize(client, daphne_server, stream, endpoint)
    stream.close()
    deadline = time.monotonic() + 5
    while True:
        response = client.post(daphne_server.url + endpoint, json={"jsonrpc": "2.0", "id": 1, "method": "ping"})
        if response.status_code == 404:
            break
        assert time.monotonic() < deadline, "the session outlived its stream"
        time.sleep(0.05)
    assert_error(response, 404, -32001)


def test_closing_the_stream_cancels_running_handlers(client: httpx.Client, daphne_server: LiveServer) -> None:
    stream, endpoint = open_stream(client, daphne_server)
    initialize(client, daphne_server, stream, endpoint)
    label = f"sse-{time.time_ns()}"
    call = {
        "jsonrpc": "2.0",
        "id": 5,
        "method": "tools/call",
        "params": {"name": "wait_until_cancelled", "arguments": {"label": label}},
    }
    assert client.post(daphne_server.url + endpoint, json=call).status_code == 202  # answered before the tool ends
    stream.close()
    other, other_endpoint = open_stream(client, daphne_server)
    try:
        initialize(client, daphne_server, other, other_endpoint)
        deadline = time.monotonic() + 5
        while True:
            read = {"jsonrpc": "2.0", "id": 2, "method": "resources/read", "params": {"uri": "test://cancelled"}}
            assert client.post(daphne_server.url + other_endpoint, json=read).status_code == 202
            if label in other.message()["result"]["contents"][0]["text"]:
                break
            assert time.monotonic() < deadline, "the tool kept running after its session's stream closed"
            time.sleep(0.05)
    finally:
        other.close()


@pytest.fixture(scope="module")
def fast_keepalive_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = start_daphne(tmp_path_factory.mktemp("keepalive"), extra_env={"MCP_TEST_KEEPALIVE": "0.2"})
    yield server
    server.stop()
    server.assert_no_traceback()


def test_keepalive_comments_on_an_idle_stream(fast_keepalive_server: LiveServer) -> None:
    with httpx.Client(timeout=5) as client, client.stream("GET", f"{fast_keepalive_server.url}/sse") as response:
        lines = response.iter_lines()
        started = time.monotonic()
        seen = []
        for line in lines:
            seen.append(line)
            if line == ": keepalive":
                break
        assert seen[0] == "event: endpoint"
        assert time.monotonic() - started < 3


# -- a full or unreachable channel layer -------------------------------------------------------------------------
@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[tuple[int, subprocess.Popen]]:
    """A Redis of this test's own, on a free port, that the test may stop."""
    import shutil

    from tests.live import free_port, wait_for_port

    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (Debian package redis-server); it stands in for an unreachable layer")
    port = free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for_port(port, process)
    yield port, process
    process.kill()
    process.wait(5)


def test_unreachable_channel_layer_gives_503(private_redis: tuple[int, subprocess.Popen], tmp_path: Path) -> None:
    port, redis = private_redis
    server = start_daphne(tmp_path, extra_env={"MCP_TEST_REDIS_URL": f"redis://127.0.0.1:{port}/0"})
    try:
        with httpx.Client(timeout=10) as client:
            stream, endpoint = open_stream(client, server)
            initialize(client, server, stream, endpoint)
            redis.kill()
            redis.wait(5)
            # The stream is held by the worker that takes the POST: its answer needs no layer, and still arrives.
            response = client.post(server.url + endpoint, json={"jsonrpc": "2.0", "id": 1, "method": "ping"})
            assert response.status_code == 202, response.text
            assert stream.message() == {"jsonrpc": "2.0", "id": 1, "result": {}}
            # A new stream cannot be opened: answers reaching it from other workers would need the layer.
            response = client.get(f"{server.url}/sse")
            assert_error(response, 503, -32603)
            assert response.headers["retry-after"] == "1"
            assert "channel layer" in response.json()["error"]["message"]
            stream.close()
    finally:
        server.stop()
    server.assert_no_traceback()


def test_client_that_stops_reading_has_its_stream_closed(tmp_path: Path) -> None:
    """A client that stops reading its stream: uvicorn applies backpressure, the answers wait in the stream's
    bounded buffer (STREAM_BUFFER_BYTES, whatever the layer's capacity: 5 here), and when it overflows the
    stream is closed and its session ended: the next POST gets 404, and the log names what was not delivered."""
    import socket

    server = start_daphne(tmp_path, server="uvicorn", extra_env={"MCP_TEST_LAYER_CAPACITY": "5"})
    try:
        with httpx.Client(timeout=10) as client:
            sock = socket.create_connection(("127.0.0.1", server.port))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.sendall(f"GET /sse HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nAccept: text/event-stream\r\n\r\n".encode())
            head = b""
            while b"session_id=" not in head or not head.endswith(b"\n\n"):
                head += sock.recv(1)
            endpoint = head.split(b"data: ", 1)[1].split(b"\n", 1)[0].decode()
            statuses = []
            big = "x" * 200_000
            for n in range(200):
                call = {
                    "jsonrpc": "2.0",
                    "id": n,
                    "method": "tools/call",
                    "params": {"name": "uppercase_text", "arguments": {"text": big}},
                }
                response = client.post(server.url + endpoint, json=call)
                statuses.append(response.status_code)
                if response.status_code == 404:
                    assert_error(response, 404, -32001)
                    break
            assert statuses[-1] == 404, f"the stream was never closed: {statuses}"
            assert set(statuses[:-1]) == {202}
            sock.close()
            assert "is not reading its stream" in server.log() and "undelivered" in server.log()
            # The server goes on serving others.
            other, other_endpoint = open_stream(client, server)
            initialize(client, server, other, other_endpoint)
            other.close()
    finally:
        server.stop()
