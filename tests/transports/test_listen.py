"""``subscriptions/listen`` (MCP 2026-07-28) on a live daphne: the response stream as a client reads it.

- one worker, in-memory channel layer, keep-alives every 0.3 s: the acknowledgement first, only the opted-in
  types, each tagged with the subscription id, no event ids and no session, SSE comments during silence;
- credentials required (tests.auth_settings) with Redis: a listen stream counts against
  ``MAX_STREAMS_PER_PRINCIPAL`` and closing it frees its place (closing is cancellation); revoking the token
  in another process (as the admin would) ends the caller's streams with the graceful final result.

Across two worker processes: tests/transports/test_listen_redis.py. The protocol side:
tests/protocol/test_subscriptions.py.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import socket
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.live import LiveServer, shell, start_daphne
from tests.transports.test_backpressure import RSS_BOUND, peak_rss_while_flooding
from tests.wire import assert_valid

V = "2026-07-28"
META = {"io.modelcontextprotocol/protocolVersion": V, "io.modelcontextprotocol/clientCapabilities": {}}
SUBSCRIPTION_ID = "io.modelcontextprotocol/subscriptionId"
REDIS = ("127.0.0.1", 6379)


def headers(method: str, name: str | None = None, token: str | None = None) -> dict[str, str]:
    found = {
        "Content-Type": "application/json",
        "Accept": "application/json, text/event-stream",
        "MCP-Protocol-Version": V,
        "Mcp-Method": method,
    }
    if name is not None:
        found["Mcp-Name"] = name
    if token is not None:
        found["Authorization"] = f"Bearer {token}"
    return found


async def call_tool(client: httpx.AsyncClient, url: str, name: str, token: str | None = None) -> dict[str, Any]:
    message = {"jsonrpc": "2.0", "id": 99, "method": "tools/call", "params": {"name": name, "arguments": {}, "_meta": META}}
    response = await client.post(url, json=message, headers=headers("tools/call", name, token))
    assert response.status_code == 200, response.text
    return response.json()


@dataclass
class Stream:
    """One listen stream being read: its response, the JSON-RPC messages so far, and every raw line."""

    response: httpx.Response
    messages: list[dict[str, Any]] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def read(self) -> None:
        if self.response.headers.get("content-type", "").startswith("application/json"):
            self.messages.append(json.loads(await self.response.aread()))  # refused before the stream began
            self._arrived.set()
            return
        async for line in self.response.aiter_lines():
            self.lines.append(line)
            if line.startswith("data:"):
                self.messages.append(json.loads(line[5:]))
            self._arrived.set()

    async def wait_for(self, predicate: Any, timeout: float = 5) -> dict[str, Any]:
        """The first message matching ``predicate``, waiting up to ``timeout`` seconds."""

        async def find() -> dict[str, Any]:
            while True:
                for message in self.messages:
                    if predicate(message):
                        return message
                self._arrived.clear()
                await self._arrived.wait()

        return await asyncio.wait_for(find(), timeout)

    def methods(self) -> list[str]:
        return [m.get("method", "<answer>") for m in self.messages]


@asynccontextmanager
async def listening(
    client: httpx.AsyncClient, url: str, notifications: dict[str, Any], *, request_id: Any = 7, token: str | None = None
) -> AsyncIterator[Stream]:
    """Open a listen stream and read it in the background until the block ends (then close it)."""
    message = {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "subscriptions/listen",
        "params": {"notifications": notifications, "_meta": META},
    }
    async with client.stream("POST", url, json=message, headers=headers("subscriptions/listen", token=token)) as response:
        stream = Stream(response)
        reader = asyncio.ensure_future(stream.read())
        try:
            yield stream
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = start_daphne(tmp_path_factory.mktemp("listen"), extra_env={"MCP_TEST_KEEPALIVE": "0.3"})
    yield live
    live.stop()
    live.assert_no_traceback()


async def test_ack_first_filtered_tagged_notifications_and_keepalives(server: LiveServer) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        async with (
            listening(client, server.mcp_url, {"toolsListChanged": True, "resourceSubscriptions": ["test://nope"]}) as tools,
            listening(client, server.mcp_url, {"promptsListChanged": True}, request_id="prompts-1") as prompts,
        ):
            for stream in (tools, prompts):
                assert stream.response.status_code == 200
                assert stream.response.headers["content-type"].startswith("text/event-stream")
                assert stream.response.headers["x-accel-buffering"] == "no"
                assert "mcp-session-id" not in stream.response.headers
            ack = await tools.wait_for(lambda m: True)
            assert_valid(ack, "SubscriptionsAcknowledgedNotification", V)
            # An unknown URI is left out of the honoured subset (so is one the caller may not read).
            assert ack["params"] == {"notifications": {"toolsListChanged": True}, "_meta": {SUBSCRIPTION_ID: 7}}
            ack = await prompts.wait_for(lambda m: True)
            assert ack["params"]["_meta"] == {SUBSCRIPTION_ID: "prompts-1"}

            await call_tool(client, server.mcp_url, "test_trigger_tool_change")
            changed = await tools.wait_for(lambda m: m.get("method") == "notifications/tools/list_changed")
            assert changed["params"]["_meta"] == {SUBSCRIPTION_ID: 7}
            assert_valid(changed, "ToolListChangedNotification", V)
            await call_tool(client, server.mcp_url, "test_trigger_prompt_change")
            changed = await prompts.wait_for(lambda m: m.get("method") == "notifications/prompts/list_changed")
            assert changed["params"]["_meta"] == {SUBSCRIPTION_ID: "prompts-1"}

            await asyncio.sleep(0.8)  # quiet: keep-alive comments
            for stream in (tools, prompts):
                assert any(line.startswith(":") for line in stream.lines), stream.lines
                assert not any(line.startswith("id:") for line in stream.lines)  # no resumability in this era
            assert tools.methods() == ["notifications/subscriptions/acknowledged", "notifications/tools/list_changed"]
            assert prompts.methods() == ["notifications/subscriptions/acknowledged", "notifications/prompts/list_changed"]


async def test_a_bad_filter_is_a_plain_error(server: LiveServer) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        message = {"jsonrpc": "2.0", "id": 3, "method": "subscriptions/listen", "params": {"_meta": META}}
        response = await client.post(server.mcp_url, json=message, headers=headers("subscriptions/listen"))
        assert response.headers["content-type"].startswith("application/json")
        assert response.json()["error"]["code"] == -32602 and response.json()["id"] == 3


# -- credentials: the stream cap, and revocation ---------------------------------------------------------------
@pytest.fixture(scope="module")
def auth_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, str, dict[str, str]]]:
    """A site's settings (credentials required, two streams per principal) over Redis, and a bearer token."""
    try:
        socket.create_connection(REDIS, timeout=2).close()
    except OSError:
        pytest.skip("Redis is not running on 127.0.0.1:6379: revoking a token elsewhere needs a shared channel layer")
    workdir = tmp_path_factory.mktemp("listen-auth")
    env = {
        "MCP_TEST_DB": str(workdir / "db.sqlite3"),
        "MCP_TEST_REDIS_URL": "redis://127.0.0.1:6379/0",
        "MCP_TEST_REDIS_PREFIX": f"listen{secrets.token_hex(4)}",
    }
    live = start_daphne(workdir, settings="tests.auth_settings", extra_env=env)
    code = """
import secrets
from django.contrib.auth.models import User
from mcp_app.models import Token
user = User.objects.create_user("listener-" + secrets.token_hex(4))
print(Token.create_for(user, name="listen")[1])
"""
    token = shell("tests.auth_settings", env, code)
    yield live, token, env
    live.stop()
    import redis

    client = redis.Redis(*REDIS)
    for key in client.scan_iter(f"{env['MCP_TEST_REDIS_PREFIX']}*"):
        client.delete(key)
    live.assert_no_traceback()


async def test_streams_count_against_the_cap_and_closing_frees_them(auth_server: tuple[LiveServer, str, dict[str, str]]) -> None:
    server, token, _ = auth_server
    url, flags = server.mcp_url, {"toolsListChanged": True}
    async with httpx.AsyncClient(timeout=10) as client:
        async with listening(client, url, flags, request_id=1, token=token) as first:
            await first.wait_for(lambda m: True)
            async with listening(client, url, flags, request_id=2, token=token) as second:
                await second.wait_for(lambda m: True)
                async with listening(client, url, flags, request_id=3, token=token) as third:
                    refused = await third.wait_for(lambda m: True)
                    assert refused["id"] == 3 and refused["error"]["code"] == -32600
                    assert "MAX_STREAMS_PER_PRINCIPAL" in refused["error"]["message"]
            # The second stream was closed by its client: that cancelled it and freed its place.
            await asyncio.sleep(0.3)
            async with listening(client, url, flags, request_id=4, token=token) as fourth:
                ack = await fourth.wait_for(lambda m: True)
                assert ack.get("method") == "notifications/subscriptions/acknowledged"


async def test_rows_list_changed_reaches_only_the_streams_that_may_read_the_exposure(
    auth_server: tuple[LiveServer, str, dict[str, str]],
) -> None:
    """Library members are for librarians only: a reader's listen stream is not told when they come and go."""
    server, _, env = auth_server
    code = """
import json, secrets
from django.contrib.auth.models import Group, Permission, User
from mcp_app.models import Token
librarians, _ = Group.objects.get_or_create(name="librarians")
librarians.permissions.add(*Permission.objects.filter(codename__in=["view_member", "view_loan"]))
librarian = User.objects.create_user("librarian-" + secrets.token_hex(3))
librarian.groups.add(librarians)
reader = User.objects.create_user("reader-" + secrets.token_hex(3))
print(json.dumps([Token.create_for(librarian, name="l")[1], Token.create_for(reader, name="r")[1]]))
"""
    librarian_token, reader_token = json.loads(await asyncio.to_thread(shell, "tests.auth_settings", env, code))
    create = (
        "from datetime import date; from mcpsite.library.models import Author, Member; tag = __import__('secrets').token_hex(4); "
        "{row}; print('ok')"
    )
    member = "Member.objects.create(name='M ' + tag, email='m@example.com', card_number=tag, joined=date(2020, 1, 1))"
    author = "Author.objects.create(name='A ' + tag)"
    changed = "notifications/resources/list_changed"
    flags = {"resourcesListChanged": True}
    async with httpx.AsyncClient(timeout=10) as client:
        async with (
            listening(client, server.mcp_url, flags, request_id="l", token=librarian_token) as librarian,
            listening(client, server.mcp_url, flags, request_id="r", token=reader_token) as reader,
        ):
            await librarian.wait_for(lambda m: True)
            await reader.wait_for(lambda m: True)
            await asyncio.to_thread(shell, "tests.auth_settings", env, create.format(row=member))
            told = await librarian.wait_for(lambda m: m.get("method") == changed)
            assert told["params"]["_meta"] == {SUBSCRIPTION_ID: "l"}
            await asyncio.sleep(1.0)
            assert changed not in reader.methods(), "the reader was told a member row was created"
            await asyncio.to_thread(shell, "tests.auth_settings", env, create.format(row=author))  # public
            told = await reader.wait_for(lambda m: m.get("method") == changed)
            assert told["params"]["_meta"] == {SUBSCRIPTION_ID: "r"}


async def test_revoking_the_token_elsewhere_ends_its_streams_gracefully(
    auth_server: tuple[LiveServer, str, dict[str, str]],
) -> None:
    server, token, env = auth_server
    async with httpx.AsyncClient(timeout=10) as client:
        async with listening(client, server.mcp_url, {"toolsListChanged": True}, request_id=21, token=token) as stream:
            await stream.wait_for(lambda m: True)
            code = f"from mcp_app.models import Token; Token.objects.get(key_hash=Token.hash({token!r})).delete()"
            await asyncio.to_thread(shell, "tests.auth_settings", env, code + "; print('ok')")
            final = await stream.wait_for(lambda m: "result" in m or "error" in m)
            assert final == {
                "jsonrpc": "2.0",
                "id": 21,
                "result": {"resultType": "complete", "_meta": {SUBSCRIPTION_ID: 21, **final["result"]["_meta"]}},
            }
            assert final["result"]["_meta"][SUBSCRIPTION_ID] == 21
            assert_valid(final["result"], "SubscriptionsListenResult", V)
            await asyncio.sleep(0.3)
            assert stream.response.is_closed or stream.lines[-1] == ""
        # The token is gone: a new stream is refused before it opens.
        message = {"jsonrpc": "2.0", "id": 22, "method": "subscriptions/listen", "params": {"notifications": {}, "_meta": META}}
        response = await client.post(server.mcp_url, json=message, headers=headers("subscriptions/listen", token=token))
        assert response.status_code == 401


# -- a client that never reads ---------------------------------------------------------------------------------
FLOOD = """
import asyncio
from mcp_app.transports.events import resources_updated

async def flood():
    for _ in range({count}):
        await resources_updated([{uri!r}])

asyncio.run(flood())
print("flooded")
"""


def ended_or_dropped(sock: socket.socket, timeout: float = 10) -> str:
    """Read what the server sent: "ended" when the response ended with the listen request's final result,
    "dropped" when the server closed the connection first, "open" when neither happened within ``timeout``."""
    sock.settimeout(timeout)
    deadline, seen = time.monotonic() + timeout, b""
    try:
        while time.monotonic() < deadline:
            chunk = sock.recv(65536)
            if not chunk:
                return "dropped"
            seen = (seen + chunk)[-4096:]
            if b'"resultType":"complete"' in seen and seen.endswith(b"0\r\n\r\n"):
                return "ended"
    except ConnectionResetError:
        return "dropped"
    except TimeoutError:
        pass
    return "open"


def test_a_listen_stream_that_never_reads_is_ended_with_bounded_memory(
    auth_server: tuple[LiveServer, str, dict[str, str]], tmp_path: Path
) -> None:
    """3,000 resources/updated of 16 kB each for a client that reads nothing after the acknowledgement: the
    worker (daphne, whose send never waits) holds a bounded amount and ends the stream."""
    _, _, redis_env = auth_server  # only for its Redis check
    env = {
        **redis_env,
        "MCP_TEST_REDIS_PREFIX": redis_env["MCP_TEST_REDIS_PREFIX"] + "flood",  # removed with the fixture's keys
        "MCP_TEST_DB": str(tmp_path / "db.sqlite3"),
        "MCP_TEST_KEEPALIVE": "1",
    }
    server = start_daphne(tmp_path, extra_env=env)
    try:
        uri = f"test://template/{'x' * 16_000}/data"
        body = json.dumps(
            {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "subscriptions/listen",
                "params": {"notifications": {"resourceSubscriptions": [uri]}, "_meta": META},
            }
        ).encode()
        head = "".join(f"{k}: {v}\r\n" for k, v in headers("subscriptions/listen").items())
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", server.port))
        request = f"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n{head}Content-Length: {len(body)}\r\n\r\n"
        sock.sendall(request.encode() + body)
        seen = b""
        while b"subscriptions/acknowledged" not in seen:
            chunk = sock.recv(4096)
            assert chunk, seen
            seen += chunk
        time.sleep(0.5)
        try:
            before, peak = peak_rss_while_flooding(server, env, FLOOD.format(count=3000, uri=uri))
            ended = ended_or_dropped(sock)
        finally:
            sock.close()
        growth = peak - before
        print(f"\nlisten stream not reading, 3000 x 16 kB: RSS +{growth / 2**20:.1f} MB, {ended}")
        # Ended with its final result (what waited for it overflowed STREAM_BUFFER_BYTES), or dropped (it took
        # nothing for two keep-alive intervals): either way, never held open with an unbounded buffer.
        assert ended in ("ended", "dropped"), "the listen stream of a client that never reads was kept open"
        assert "ending a listen stream: the client is not reading" in server.log() or (
            "dropping the connection of a 2026-07-28 event stream" in server.log()
        )
        assert growth < RSS_BOUND, f"the worker grew by {growth / 2**20:.1f} MB for one client that does not read"
    finally:
        server.stop()
    server.assert_no_traceback()
