"""The demo as a new user meets it (issue 15): a live daphne serving mcpsite with ``load_demo_data``'s
thousands of rows, the demo token, and real clients.

- The MCP Inspector CLI lists every resource of the demo. It gives up after 64 pages of
  ``resources/list``, and the demo used to list 14,001 rows (141 pages); books and loans are now
  ``listed=False`` (reached through their templates and data tools), so the listing is a few pages.
- ``tools/list`` stays at most a third of its size before the data tool schemas were made compact
  (a size bound, measured in bytes of the HTTP body; no timing).
- The official SDK client lists and calls the data tools, including the structured results it checks
  against their output schemas.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest
from mcp import ClientSession, MCPError
from mcp.client.streamable_http import streamable_http_client

from tests.live import LiveServer, bearer, open_session, shell, start_daphne
from tests.node_peers import node_env

DEMO_TOKEN = "mcp_demo-token-for-local-use-only"
#: Bytes of the body of the demo's tools/list answer (one page, all 13 tools; the demo token, Streamable HTTP,
#: 2025-11-25) before the compact schemas, measured at commit 2785f57.
TOOLS_LIST_BYTES_BEFORE = 23_089


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    workdir: Path = tmp_path_factory.mktemp("demo-listing")
    env = {"MCPSITE_SQLITE": str(workdir / "demo.sqlite3"), "DJANGO_DEBUG": "1"}
    server = start_daphne(workdir, settings="mcpsite.settings", extra_env=env, app="mcpsite.asgi:application")
    try:
        shell("mcpsite.settings", env, "from django.core.management import call_command; call_command('load_demo_data')")
        yield server
    finally:
        server.stop()
    server.assert_no_traceback()


def walk_resources(server: LiveServer) -> tuple[list[str], int]:
    """Every resource URI of the demo as the demo token's owner (the admin) sees them, and the pages."""
    uris: list[str] = []
    with httpx.Client(timeout=30) as http:
        headers = open_session(http, server.mcp_url, DEMO_TOKEN)
        cursor, pages = None, 0
        while True:
            params = {"cursor": cursor} if cursor else {}
            message = {"jsonrpc": "2.0", "id": 2, "method": "resources/list", "params": params}
            page = http.post(server.mcp_url, json=message, headers=headers).json()["result"]
            uris += [r["uri"] for r in page["resources"]]
            pages += 1
            cursor = page.get("nextCursor")
            if cursor is None or pages > 200:
                return uris, pages


def test_inspector_cli_lists_every_resource_of_the_demo(demo: LiveServer, tmp_path: Path) -> None:
    uris, pages = walk_resources(demo)
    kinds = {uri.rsplit("/", 1)[0] for uri in uris}
    # Authors (400, public) and members (600, the admin may read them) are listed; books and loans are not.
    assert kinds == {"mcpsite:/", "django://library/author", "django://library/member"}, kinds
    assert len(uris) == 1 + 400 + 600 and pages < 64
    listed = subprocess.run(
        [
            "mcp-inspector",
            "--cli",
            demo.mcp_url,
            "--transport",
            "http",
            "--method",
            "resources/list",
            "--header",
            f"Authorization: Bearer {DEMO_TOKEN}",
        ],
        env=node_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert listed.returncode == 0, listed.stderr[-2000:]
    seen = [r["uri"] for r in json.loads(listed.stdout)["resources"]]
    assert sorted(seen) == sorted(uris)


def test_inspector_cli_calls_a_data_tool_with_filters_and_a_query(demo: LiveServer, tmp_path: Path) -> None:
    arguments = ['filters={"genre": "novel", "pages__gte": 300}', "limit=2", "query=the"]
    called = subprocess.run(
        [
            *("mcp-inspector", "--cli", demo.mcp_url, "--transport", "http"),
            *("--header", f"Authorization: Bearer {DEMO_TOKEN}"),
            *("--method", "tools/call", "--tool-name", "library_book_list"),
            *(part for argument in arguments for part in ("--tool-arg", argument)),
        ],
        env=node_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert called.returncode == 0, called.stderr[-2000:]
    items = json.loads(called.stdout)["structuredContent"]["items"]
    assert len(items) == 2 and all(i["genre"] == "novel" and i["pages"] >= 300 and "the" in i["title"].lower() for i in items)


def test_unlisted_rows_are_still_reached_through_templates_and_tools(demo: LiveServer) -> None:
    with httpx.Client(timeout=30) as http:
        headers = open_session(http, demo.mcp_url, DEMO_TOKEN)

        def result(method: str, params: dict[str, Any]) -> dict[str, Any]:
            message = {"jsonrpc": "2.0", "id": 3, "method": method, "params": params}
            return http.post(demo.mcp_url, json=message, headers=headers).json()["result"]

        templates = {t["uriTemplate"] for t in result("resources/templates/list", {})["resourceTemplates"]}
        assert {"django://library/book/{pk}", "django://library/loan/{pk}"} <= templates
        book = json.loads(result("resources/read", {"uri": "django://library/book/1"})["contents"][0]["text"])
        assert book["uri"] == "django://library/book/1" and book["title"]
        loans = result("tools/call", {"name": "library_loan_list", "arguments": {"limit": 3}})["structuredContent"]
        assert len(loans["items"]) == 3 and loans["nextCursor"]


def test_tools_list_is_at_most_a_third_of_its_old_size(demo: LiveServer) -> None:
    with httpx.Client(timeout=30) as http:
        headers = open_session(http, demo.mcp_url, DEMO_TOKEN)
        answer = http.post(demo.mcp_url, json={"jsonrpc": "2.0", "id": 2, "method": "tools/list"}, headers=headers)
    assert answer.status_code == 200
    tools = answer.json()["result"]["tools"]
    assert "nextCursor" not in answer.json()["result"]  # one page: the whole list is measured
    # The same tools the demo offered (search is now an argument of the list tools), and 10 of them.
    names = {t["name"] for t in tools}
    assert {"uppercase_text", "count_words"} <= names and len(names) == 10
    for model in ("author", "book", "member", "loan"):
        assert {f"library_{model}_list", f"library_{model}_get"} <= names
    assert len(answer.content) <= TOOLS_LIST_BYTES_BEFORE // 3, len(answer.content)


async def test_sdk_client_lists_and_calls_the_data_tools(demo: LiveServer) -> None:
    async with (
        httpx2.AsyncClient(headers=bearer(DEMO_TOKEN), timeout=30) as http,
        streamable_http_client(demo.mcp_url, http_client=http) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        tools = {t.name: t for t in (await session.list_tools()).tools}
        assert tools["library_author_get"].title == "Get one author"
        filters = {"genre__in": ["novel", "history"], "pages__gte": 100}
        found = await session.call_tool(
            "library_book_list", {"query": "the", "filters": filters, "order_by": ["-published"], "limit": 5}
        )
        assert found.is_error is False, found.content
        items = found.structured_content["items"]
        assert 1 <= len(items) <= 5 and all(item["genre"] in ("novel", "history") and item["pages"] >= 100 for item in items)
        assert [item["published"] for item in items] == sorted((item["published"] for item in items), reverse=True)
        author = await session.call_tool("library_author_get", {"pk": 1})
        assert author.is_error is False and author.structured_content["uri"] == "django://library/author/1"
        # A range on a choice field is not a filter (its codes' order means nothing): -32602 naming what is.
        with pytest.raises(MCPError) as refused:
            await session.call_tool("library_book_list", {"filters": {"genre__gt": "novel"}})
        assert refused.value.error.code == -32602 and "genre__in" in refused.value.error.message
