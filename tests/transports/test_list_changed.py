"""Live notifications: rows saved through the ORM in another process reach open sessions.

- A tool row saved: notifications/tools/list_changed.
- A subscribed library book saved: notifications/resources/updated; new authors: one coalesced
  notifications/resources/list_changed.

daphne and the process that saves share the database and a Redis channel layer, as a site's workers
and its admin would. The official SDK client must receive notifications/tools/list_changed (Streamable
HTTP: on its GET stream; legacy: on its SSE stream) within a second, and its next tools/list must
show the change.
"""

from __future__ import annotations

import json
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
        pytest.skip(
            "Redis is not running on 127.0.0.1:6379 (start it with redis-server); list_changed across "
            "processes needs a shared channel layer"
        )
    workdir = tmp_path_factory.mktemp("list_changed")
    env = {
        "MCP_TEST_REDIS_URL": "redis://127.0.0.1:6379/0",
        "MCP_TEST_REDIS_PREFIX": f"lc{secrets.token_hex(4)}",
        "MCP_TEST_DB": str(workdir / "db.sqlite3"),
    }
    server = start_daphne(workdir, extra_env=env)
    yield server, env
    server.stop()
    import redis

    client = redis.Redis(*REDIS)
    for key in client.scan_iter(f"{env['MCP_TEST_REDIS_PREFIX']}*"):  # leave the shared Redis as we found it
        client.delete(key)
    server.assert_no_traceback()


def save_in_another_process(env: dict[str, str], code: str) -> None:
    subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=REPO,
        check=True,
        timeout=60,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", **env},
    )


def set_enabled(env: dict[str, str], enabled: bool) -> None:
    save_in_another_process(
        env, f"from mcp_app.models import Tool; t = Tool.objects.get(name='uppercase_text'); t.enabled = {enabled}; t.save()"
    )


@pytest.mark.parametrize("transport", ["streamable_http", "sse"])
async def test_saved_tool_row_notifies_open_sessions(shared: tuple[LiveServer, dict[str, str]], transport: str) -> None:
    server, env = shared
    changed = anyio.Event()

    async def on_message(message: Any) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            changed.set()

    client = streamable_http_client(server.mcp_url) if transport == "streamable_http" else sse_client(f"{server.url}/sse")
    async with (
        client as (read, write),
        ClientSession(read, write, read_timeout_seconds=20, message_handler=on_message) as session,
    ):
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


LIBRARY = (
    "from datetime import date; from mcpsite.library.models import Author, Book; "
    "a = Author.objects.create(name='Ada Costa'); "
    "b = Book.objects.create(title='The Silent River', isbn='9780001000001', author=a, genre='novel', "
    "published=date(2001, 5, 4), pages=321); print(b.pk)"
)


@pytest.mark.filterwarnings("ignore:resources/(un)?subscribe is removed")  # the SDK's note about 2026-07-28
@pytest.mark.parametrize("transport", ["streamable_http", "sse"])
async def test_subscribed_object_saved_elsewhere_sends_resources_updated(
    shared: tuple[LiveServer, dict[str, str]], transport: str
) -> None:
    server, env = shared
    out = await anyio.to_thread.run_sync(
        lambda: (
            subprocess.run(
                [
                    sys.executable,
                    "manage.py",
                    "shell",
                    "-c",
                    LIBRARY.replace("9780001000001", f"97800010{secrets.randbelow(10**5):05d}"),
                ],
                cwd=REPO,
                check=True,
                timeout=60,
                capture_output=True,
                text=True,
                env={**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", **env},
            ).stdout
        )
    )
    pk = int(out.split()[-1])
    uri = f"django://library/book/{pk}"
    updated: list[str] = []
    got = anyio.Event()

    async def on_message(message: Any) -> None:
        if isinstance(message, types.ResourceUpdatedNotification):
            updated.append(str(message.params.uri))
            got.set()

    client = streamable_http_client(server.mcp_url) if transport == "streamable_http" else sse_client(f"{server.url}/sse")
    async with (
        client as (read, write),
        ClientSession(read, write, read_timeout_seconds=20, message_handler=on_message) as session,
    ):
        await session.initialize()
        templates = [t.uri_template for t in (await session.list_resource_templates()).resource_templates]
        assert "django://library/book/{pk}" in templates
        contents = (await session.read_resource(uri)).contents
        assert json.loads(contents[0].text)["title"] == "The Silent River"
        await session.subscribe_resource(uri)
        await anyio.sleep(0.5)  # Streamable HTTP: the SDK opens its GET stream after initialized
        code = f"from mcpsite.library.models import Book; b = Book.objects.get(pk={pk}); b.pages = 322; b.save()"
        await anyio.to_thread.run_sync(save_in_another_process, env, code)
        saved = time.monotonic()
        with anyio.fail_after(5):
            await got.wait()
        assert time.monotonic() - saved < 1.0, "resources/updated took more than a second"
        assert updated == [uri]
        assert json.loads((await session.read_resource(uri)).contents[0].text)["pages"] == 322
        # Unsubscribed: later saves are not announced.
        await session.unsubscribe_resource(uri)
        await anyio.to_thread.run_sync(save_in_another_process, env, code.replace("322", "323"))
        await anyio.sleep(1.0)
        assert updated == [uri]


async def test_many_new_rows_send_few_list_changed(shared: tuple[LiveServer, dict[str, str]]) -> None:
    server, env = shared
    changes: list[float] = []

    async def on_message(message: Any) -> None:
        if isinstance(message, types.ResourceListChangedNotification):
            changes.append(time.monotonic())

    async with (
        streamable_http_client(server.mcp_url) as (read, write),
        ClientSession(read, write, read_timeout_seconds=20, message_handler=on_message) as session,
    ):
        await session.initialize()
        await anyio.sleep(0.5)
        # Thirty authors, each in its own transaction (thirty group sends): the stream coalesces them. The
        # saving process prints its monotonic clock after the last commit (one clock for every process here).
        code = (
            "import time\nfrom mcpsite.library.models import Author\n"
            "for i in range(30): Author.objects.create(name=f'Author {i}')\nprint(time.monotonic())"
        )
        out = await anyio.to_thread.run_sync(
            lambda: (
                subprocess.run(
                    [sys.executable, "manage.py", "shell", "-c", code],
                    cwd=REPO,
                    check=True,
                    timeout=60,
                    capture_output=True,
                    text=True,
                    env={**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", **env},
                ).stdout
            )
        )
        last_commit = float(out.split()[-1])
        await anyio.sleep(1.5)  # longer than a coalescing window: the trailing notification has arrived
        # At most one a window while changes keep coming (the first at once), plus the trailing one.
        assert 1 <= len(changes) <= 3 + (last_commit - changes[0]) / 0.5, changes
        assert len(changes) < 30
        assert changes[-1] >= last_commit  # the last change is announced, not lost in the window
