"""Live list_changed: a tool row saved through the ORM in another process reaches open sessions.

daphne and the process that saves share the database and a Redis channel layer, as a site's workers
and its admin would. The official SDK client must receive notifications/tools/list_changed (Streamable
HTTP: on its GET stream; legacy: on its SSE stream) within a second, and its next tools/list must
show the change.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import anyio
import mcp.types as types
import pytest
from mcp import ClientSession
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client

from tests.live import REPO, LiveServer, start_daphne

REDIS = ("127.0.0.1", 6379)


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, dict[str, str]]]:
    try:
        socket.create_connection(REDIS, timeout=2).close()
    except OSError:
        pytest.skip("Redis is not running on 127.0.0.1:6379 (start it with redis-server); list_changed across "
                    "processes needs a shared channel layer")
    workdir = tmp_path_factory.mktemp("list_changed")
    env = {"MCP_TEST_REDIS_URL": "redis://127.0.0.1:6379/0", "MCP_TEST_REDIS_PREFIX": f"lc{secrets.token_hex(4)}",
           "MCP_TEST_DB": str(workdir / "db.sqlite3")}
    server = start_daphne(workdir, extra_env=env)
    yield server, env
    server.stop()
    import redis

    client = redis.Redis(*REDIS)
    for key in client.scan_iter(f"{env['MCP_TEST_REDIS_PREFIX']}*"):  # leave the shared Redis as we found it
        client.delete(key)
    server.assert_no_traceback()


def save_in_another_process(env: dict[str, str], code: str) -> None:
    subprocess.run([sys.executable, "manage.py", "shell", "-c", code], cwd=REPO, check=True, timeout=60,
                   env={**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", **env})


def set_enabled(env: dict[str, str], enabled: bool) -> None:
    save_in_another_process(env, "from mcp_app.models import Tool; t = Tool.objects.get(name='uppercase_text'); "
                                 f"t.enabled = {enabled}; t.save()")


@pytest.mark.parametrize("transport", ["streamable_http", "sse"])
async def test_saved_tool_row_notifies_open_sessions(shared: tuple[LiveServer, dict[str, str]], transport: str) -> None:
    server, env = shared
    changed = anyio.Event()

    async def on_message(message: Any) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            changed.set()

    client = streamable_http_client(server.mcp_url) if transport == "streamable_http" else sse_client(f"{server.url}/sse")
    async with client as (read, write), ClientSession(read, write, read_timeout_seconds=20,
                                                      message_handler=on_message) as session:
        await session.initialize()
        assert "uppercase_text" in {t.name for t in (await session.list_tools()).tools}
        await anyio.sleep(0.5)  # Streamable HTTP: the SDK opens its GET stream after initialized
        try:
            await anyio.to_thread.run_sync(set_enabled, env, False)
            saved = time.monotonic()
            with anyio.fail_after(5):
                await changed.wait()
            assert time.monotonic() - saved < 1.0, "list_changed took more than a second"
            assert "uppercase_text" not in {t.name for t in (await session.list_tools()).tools}
        finally:
            await anyio.to_thread.run_sync(set_enabled, env, True)
        assert "uppercase_text" in {t.name for t in (await session.list_tools()).tools}

