"""The admin's switch, end to end on a live daphne: a staff user disables a data tool in the admin over HTTP
(signed in, with the CSRF token, as a browser posts the list's action), and the official SDK client, connected
to the same server, gets notifications/tools/list_changed, no longer lists the tool, and is refused when it
calls it; enabling it again brings it back."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import mcp.types as types
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import create_mcp_http_client, streamable_http_client
from mcp.shared.exceptions import MCPError

from tests.live import LiveServer, shell, start_daphne

PASSWORD = "live-admin-pw-1"


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, str]]:
    workdir: Path = tmp_path_factory.mktemp("admin_switch")
    server = start_daphne(workdir)
    token = shell(
        "tests.settings",
        {"MCP_TEST_DB": str(workdir / "db.sqlite3")},
        "from django.contrib.auth.models import User; from mcp_app.models import Token; "
        f"u = User.objects.create_superuser('boss', password={PASSWORD!r}); print(Token.create_for(u, name='live')[1])",
    )
    yield server, token
    server.stop()
    server.assert_no_traceback()


async def admin_action(admin: httpx.AsyncClient, action: str, tool: str) -> None:
    """Tick ``tool`` in the admin's tool list and run ``action`` on it, as the page's form posts it."""
    page = await admin.get("/admin/mcp_app/tool/", params={"q": tool})
    assert page.status_code == 200, page.text[:500]
    rows = [row for row in page.text.split("<tr")[1:] if f">{tool}</span>" in row]  # the row naming it
    assert len(rows) == 1, page.text[-3000:]
    row = re.search(r'name="_selected_action" value="(\d+)"', rows[0])
    assert row is not None, rows[0]
    answer = await admin.post(
        "/admin/mcp_app/tool/",
        data={"action": action, "_selected_action": row.group(1), "csrfmiddlewaretoken": admin.cookies["csrftoken"]},
    )
    assert answer.status_code == 302, answer.text[:1000]


async def signed_in_admin(server: LiveServer) -> httpx.AsyncClient:
    admin = httpx.AsyncClient(base_url=server.url, timeout=20)
    await admin.get("/admin/login/")
    signed_in = await admin.post(
        "/admin/login/?next=/admin/",
        data={"username": "boss", "password": PASSWORD, "csrfmiddlewaretoken": admin.cookies["csrftoken"]},
    )
    assert signed_in.status_code == 302 and signed_in.headers["location"] == "/admin/", signed_in.text[:1000]
    return admin


async def test_disabling_a_data_tool_in_the_admin_removes_it_for_a_live_sdk_client(live: tuple[LiveServer, str]) -> None:
    server, token = live
    changed = anyio.Event()

    async def on_message(message: Any) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            changed.set()

    admin = await signed_in_admin(server)
    try:
        async with (
            create_mcp_http_client(headers={"Authorization": f"Bearer {token}"}) as http,
            streamable_http_client(server.mcp_url, http_client=http) as (read, write),
            ClientSession(read, write, read_timeout_seconds=20, message_handler=on_message) as session,
        ):
            await session.initialize()
            assert "library_author_list" in {t.name for t in (await session.list_tools()).tools}
            await anyio.sleep(0.5)  # the SDK opens its GET stream (where list_changed arrives) after initialized
            await admin_action(admin, "disable", "library_author_list")
            with anyio.fail_after(5):
                await changed.wait()
            names = {t.name for t in (await session.list_tools()).tools}
            assert "library_author_list" not in names and "library_author_get" in names
            with pytest.raises(MCPError, match="Unknown tool: 'library_author_list'"):
                await session.call_tool("library_author_list", {})
            await admin_action(admin, "enable", "library_author_list")
            assert "library_author_list" in {t.name for t in (await session.list_tools()).tools}
            result = await session.call_tool("library_author_list", {})
            assert result.is_error is False
    finally:
        await admin.aclose()
