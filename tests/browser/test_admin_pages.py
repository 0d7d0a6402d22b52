"""The admin in a real browser (Chromium through Playwright) against a live daphne: sign in, the dashboard after
real MCP calls, the try-it page, the "connect a client" page whose token and configuration the official SDK
client then uses, and every page of the app fitting a 1366x768 screen."""

from __future__ import annotations

import asyncio
import json
import re
import shlex
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import anyio
import httpx
import mcp.types as types
from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import create_mcp_http_client, streamable_http_client
from playwright.sync_api import Page, expect

from tests.browser.conftest import VIEWPORT, run_async, server_db
from tests.live import HEADERS, LiveServer, initialize_message, shell
from tests.node_peers import node_env


def make_token(live: LiveServer, username: str = "admin") -> str:
    return shell(
        "tests.browser.settings",
        server_db(live),
        "from django.contrib.auth.models import User; from mcp_app.models import Token; "
        f"print(Token.create_for(User.objects.get(username={username!r}), name='browser test')[1])",
    )


async def sdk_calls(url: str, authorization: str, calls: list[tuple[str, dict]]) -> tuple[list[str], list[tuple[bool, str]]]:
    """The official SDK client at ``url`` with ``authorization``: the tools it lists and each call's
    (isError, first text)."""
    async with (
        create_mcp_http_client(headers={"Authorization": authorization}) as http,
        streamable_http_client(url, http_client=http) as (read, write),
        ClientSession(read, write, read_timeout_seconds=20) as session,
    ):
        await session.initialize()
        tools = [t.name for t in (await session.list_tools()).tools]
        results = []
        for name, arguments in calls:
            result = await session.call_tool(name, arguments)
            results.append((bool(result.is_error), result.content[0].text if result.content else ""))
        return tools, results


async def stdio_calls(params: StdioServerParameters) -> tuple[bool, str]:
    """The official SDK's stdio client on the server ``params`` start: whether it lists uppercase_text, and what
    calling it answers."""
    async with stdio_client(params) as (read, write), ClientSession(read, write, read_timeout_seconds=30) as session:
        await session.initialize()
        listed = "uppercase_text" in {t.name for t in (await session.list_tools()).tools}
        result = await session.call_tool("uppercase_text", {"text": "over stdio"})
        return listed, result.content[0].text


def figure(page: Page, selector: str) -> int:
    return int(page.inner_text(selector).strip())


def test_sign_in_is_required_and_works(page: Page, live: LiveServer) -> None:
    expect(page.locator("#site-name")).to_be_visible()
    expect(page.locator("#user-tools")).to_contain_text("admin")
    anonymous = page.context.browser.new_page()  # type: ignore[union-attr]
    anonymous.goto(f"{live.url}/admin/mcp_app/toolcall/dashboard/")
    assert "/admin/login/" in anonymous.url
    anonymous.close()


def test_the_dashboard_shows_real_calls(page: Page, live: LiveServer, screenshots: Path) -> None:
    token = make_token(live)
    calls = [("uppercase_text", {"text": f"call {i}"}) for i in range(5)] + [("uppercase_text", {})]
    _, results = run_async(lambda: sdk_calls(live.mcp_url, f"Bearer {token}", calls))
    assert [error for error, _ in results] == [False] * 5 + [True]

    page.goto(f"{live.url}/admin/")
    page.click("text=MCP tool calls")
    page.click("ul.object-tools >> text=Dashboard")
    page.click(".mcp-windows >> text=Last hour")
    deadline = time.monotonic() + 15  # outcomes are written by the audit log's writer after the answer
    while figure(page, "#mcp-errors") < 1 and time.monotonic() < deadline:
        time.sleep(0.3)
        page.reload()
    assert figure(page, "#mcp-calls") >= 6 and figure(page, "#mcp-errors") >= 1
    expect(page.locator("#mcp-tools")).to_contain_text("uppercase_text")
    assert page.locator("svg.mcp-chart rect[fill='#79aec8'][height]:not([height='0.0'])").count() >= 1
    expect(page.locator("#mcp-p50")).to_contain_text("ms")
    expect(page.locator("#mcp-health .figure")).to_have_text("ok")  # the health endpoint, asked by the page
    assert figure(page, "#mcp-workers") >= 1 and figure(page, "#mcp-workers-lapsed") == 0
    # A failure links to its audit row.
    page.click("#mcp-failures a >> nth=0")
    expect(page.locator("#content")).to_contain_text("uppercase_text")
    page.go_back()
    page.screenshot(path=str(screenshots / "dashboard.png"), full_page=True)


def test_try_it_runs_a_tool(page: Page, live: LiveServer) -> None:
    page.goto(f"{live.url}/admin/mcp_app/tool/")
    page.click("#result_list >> text=uppercase_text")
    page.click("text=Run this tool as yourself")
    page.fill("textarea[name=arguments]", '{"text": "from the browser"}')
    page.click("input[type=submit][value=Run]")
    expect(page.locator("#tool-result")).to_contain_text("FROM THE BROWSER")
    page.fill("textarea[name=arguments]", "[1, 2]")
    page.click("input[type=submit][value=Run]")
    expect(page.locator(".errorlist")).to_contain_text("must be a JSON object")


def test_the_connect_page_makes_a_token_the_sdk_client_uses(
    page: Page, live: LiveServer, screenshots: Path, tmp_path: Path
) -> None:
    page.goto(f"{live.url}/admin/mcp_app/token/")
    page.click("ul.object-tools >> text=Connect a client")
    # The owner is picked with the user admin's search.
    page.click("#connect-form .select2-selection")
    page.keyboard.type("read")
    page.click(".select2-results__option >> text=reader")
    page.fill("#id_name", "VS Code on my laptop")
    page.screenshot(path=str(screenshots / "connect-form.png"))
    page.select_option("#id_expires", "30")
    page.click("input[type=submit][value='Create token']")

    token = page.inner_text("#mcp-token").strip()
    assert token.startswith("mcp_")
    expect(page.locator("#mcp-connect h2 >> nth=0")).to_contain_text("for reader")
    config = json.loads(page.inner_text("#text-vs-code-remote"))["servers"]["mcp_app-conformance"]
    assert config["url"] == live.mcp_url and config["headers"] == {"Authorization": f"Bearer {token}"}
    for slug in ("claude-desktop-remote", "claude-desktop-local", "cursor-remote", "cursor-local", "vs-code-local"):
        assert token in page.inner_text(f"#text-{slug}")
    assert live.mcp_url in page.inner_text("#text-mcp-inspector-remote")
    page.screenshot(path=str(screenshots / "connect.png"))

    # The official SDK client, with exactly the URL and header of the configuration.
    tools, results = run_async(
        lambda: sdk_calls(config["url"], config["headers"]["Authorization"], [("uppercase_text", {"text": "connected"})])
    )
    assert "uppercase_text" in tools and results == [(False, "CONNECTED")]
    # The local configuration: the official SDK's stdio client starts the server exactly as Claude Desktop would
    # (with the test server's database, a test setting, added to its environment).
    local = json.loads(page.inner_text("#text-claude-desktop-local"))["mcpServers"]["mcp_app-conformance"]
    params = StdioServerParameters(command=local["command"], args=local["args"], env={**local["env"], **server_db(live)})
    assert run_async(lambda: stdio_calls(params)) == (True, "OVER STDIO")

    # The Inspector CLI commands (remote, and local over stdio) and the curl command, as the page writes them.
    env = node_env(tmp_path)
    for slug in ("mcp-inspector-remote", "mcp-inspector-local"):
        args = shlex.split(page.inner_text(f"#text-{slug}"))
        assert args[:3] == ["npx", "@modelcontextprotocol/inspector", "--cli"]
        # The installed Inspector instead of npx; the test server's database (a test setting) for the local one.
        extra = ["-e", f"MCP_TEST_DB={server_db(live)['MCP_TEST_DB']}"] if slug.endswith("local") else []
        run = subprocess.run(["mcp-inspector", "--cli", *extra, *args[3:]], env=env, capture_output=True, text=True, timeout=120)
        assert run.returncode == 0 and '"name": "uppercase_text"' in run.stdout, (slug, run.stdout[-2000:], run.stderr[-2000:])
    curl = subprocess.run(["bash", "-c", page.inner_text("#text-curl-remote")], capture_output=True, text=True, timeout=60)
    assert curl.stdout.startswith("HTTP/1.1 200") and "mcp-session-id:" in curl.stdout.lower(), curl.stdout[-2000:]

    # Without it the server refuses: the token is what let the client in.
    refused = httpx.post(live.mcp_url, json=initialize_message(), headers=HEADERS, timeout=20)
    assert refused.status_code == 401

    # Shown once: the token list shows its prefix only.
    page.goto(f"{live.url}/admin/mcp_app/token/")
    listing = page.content()
    assert token not in listing and token[:12] in listing


#: Rows of the demo's kind, made before the lists are measured: long tool names, long error messages, session
#: ids as the server makes them, long client and token names, every date column filled.
DEMO_ROWS = """
import secrets
from datetime import timedelta
from django.contrib.auth.models import User
from django.utils import timezone
from mcp_app.models import Session, Token, ToolCall, Worker
now = timezone.now()
admin = User.objects.get(username='admin')
session = Session.objects.create(
    id=secrets.token_urlsafe(32), client_name='Visual Studio Code - Insiders (GitHub Copilot Chat agent mode)',
    client_version='1.106.0-insider', transport='streamable_http', protocol_version='2025-11-25', user=admin)
for outcome in ('ok', 'refused', 'started', 'needs_input', 'tool_error'):
    ToolCall.objects.create(
        tool='library_catalogue_search_books_by_author_and_publication_year', outcome=outcome, user=admin,
        session=session, duration_ms=12345.678, via='streamable_http',
        error_message='ValidationError: the argument publication_year must be an integer between 1450 and 2100 ' * 3)
token, _ = Token.create_for(admin, name='Claude Desktop on the shared office laptop, second profile (reading room)')
token.scopes = 'mcp mcp:tools mcp:resources mcp:prompts read write'
token.expires, token.last_used, token.revoked = now + timedelta(days=30), now, now
token.save()
Worker.objects.create(id=secrets.token_hex(8), host='ip-10-0-12-34.eu-west-1.compute.internal', pid=123456,
                      expires=now + timedelta(minutes=1))
print(session.id)
"""


def test_every_page_of_the_app_fits_the_screen(page: Page, live: LiveServer) -> None:
    """No page of the app scrolls sideways at 1366x768, and neither does the results box of any changelist
    holding rows (the admin wraps the table in a box that scrolls by itself, so the page can fit while the
    table does not)."""
    session_id = shell("tests.browser.settings", server_db(live), DEMO_ROWS)
    page.goto(f"{live.url}/admin/mcp_app/")
    links = page.eval_on_selector_all("#content-main table a[href$='/']", "links => links.map(a => a.getAttribute('href'))")
    changelists = sorted({href for href in links if re.fullmatch(r"/admin/mcp_app/[a-z]+/", href)})
    assert {"/admin/mcp_app/tool/", "/admin/mcp_app/toolcall/", "/admin/mcp_app/token/"} <= set(changelists)
    pages = [*changelists, "/admin/mcp_app/", "/admin/mcp_app/toolcall/dashboard/", "/admin/mcp_app/token/connect/"]
    too_wide, with_rows = {}, set()
    for path in pages:
        page.goto(live.url + path)
        width = page.evaluate("document.documentElement.scrollWidth")
        if width > VIEWPORT["width"]:
            too_wide[path] = width
        measure = "boxes => boxes.map(b => [b.scrollWidth, b.clientWidth, b.querySelectorAll('tbody tr').length])"
        for box in page.eval_on_selector_all("#changelist .results", measure):
            scroll_width, client_width, rows = box
            if rows:
                with_rows.add(path)
            if scroll_width > client_width:
                too_wide[f"{path} results box"] = f"{scroll_width} px in {client_width}"
    assert {"/admin/mcp_app/toolcall/", "/admin/mcp_app/token/", "/admin/mcp_app/session/", "/admin/mcp_app/tool/"} <= with_rows
    assert too_wide == {}
    # What the lists cut is in full in the tooltips.
    page.goto(f"{live.url}/admin/mcp_app/toolcall/?outcome=tool_error&session__id__exact={session_id}")
    expect(page.locator(f"#result_list span[title='{session_id}']")).to_have_count(1)
    error = page.locator("#result_list span[title^='tool error']").get_attribute("title")
    assert "must be an integer between 1450 and 2100" in error
    page.goto(f"{live.url}/admin/mcp_app/token/?q=reading+room")
    assert page.locator("#result_list span[title^='Claude Desktop']").get_attribute("title").endswith("(reading room)")


def test_disabling_a_data_tool_in_the_tools_list_removes_it_for_a_live_sdk_client(page: Page, live: LiveServer) -> None:
    token = make_token(live)
    listed, disabled = threading.Event(), threading.Event()
    seen: dict[str, Any] = {}

    async def client() -> None:
        changed = anyio.Event()

        async def on_message(message: Any) -> None:
            if isinstance(message, types.ToolListChangedNotification):
                changed.set()

        async with (
            create_mcp_http_client(headers={"Authorization": f"Bearer {token}"}) as http,
            streamable_http_client(live.mcp_url, http_client=http) as (read, write),
            ClientSession(read, write, read_timeout_seconds=20, message_handler=on_message) as session,
        ):
            await session.initialize()
            seen["before"] = {t.name for t in (await session.list_tools()).tools}
            listed.set()
            assert await anyio.to_thread.run_sync(disabled.wait, 60)
            with anyio.fail_after(10):
                await changed.wait()  # told while connected, as a client with the list on screen needs
            seen["after"] = {t.name for t in (await session.list_tools()).tools}

    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(lambda: asyncio.run(client()))
        assert listed.wait(60), running.exception(timeout=0) if running.done() else "the SDK client did not connect"
        page.goto(f"{live.url}/admin/mcp_app/tool/?q=library")
        data_rows = page.locator("#result_list tbody tr", has_text="data tool of")
        assert data_rows.count() >= 2  # the data tools of the demo library's exposures are listed with the code tools
        name = data_rows.first.locator("th a, td a").first.inner_text().strip()
        assert name in seen["before"]
        data_rows.first.locator("th a, td a").first.click()
        page.uncheck("#id_enabled")
        page.click("input[name=_save]")
        expect(page.locator(".messagelist")).to_contain_text(name)
        disabled.set()
        running.result(timeout=60)
    assert name not in seen["after"] and seen["before"] - {name} == seen["after"]
