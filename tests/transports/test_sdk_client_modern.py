"""The official Python SDK's ``Client`` (mcp 2.3.0) against a live daphne in every mode: ``auto`` (probes
``server/discover`` and picks 2026-07-28), pinned to ``2026-07-28``, and ``legacy`` (initialize): tools,
resources and templates followed page by page (pages of two), prompts, completion, a tool whose argument
travels in an ``Mcp-Param-*`` header, and the era's resource-not-found code. Multi round-trip requests are
tests/transports/test_sdk_mrtr.py; subscriptions/listen tests/transports/test_listen*.py."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import mcp.types as types
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError

from tests.live import LiveServer, start_daphne

MODERN = "2026-07-28"


@pytest.fixture(scope="module")
def paged_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = start_daphne(tmp_path_factory.mktemp("paged"), settings="tests.paging_settings")
    yield server
    server.stop()
    server.assert_no_traceback()


async def every_page(fetch: Any, key: str) -> tuple[list[Any], int]:
    items, pages, cursor = [], 0, None
    while True:
        result = await fetch(cursor=cursor, cache_mode="bypass")  # the SDK caches lists by default
        pages += 1
        items += getattr(result, key)
        cursor = result.next_cursor
        if not cursor:
            return items, pages


@pytest.mark.parametrize(("mode", "version"), [("auto", MODERN), (MODERN, MODERN), ("legacy", "2025-11-25")])
async def test_sdk_client_in_every_mode(paged_server: LiveServer, mode: str, version: str) -> None:
    async with Client(paged_server.mcp_url, mode=mode, read_timeout_seconds=20) as client:
        assert client.protocol_version == version
        tools, pages = await every_page(client.list_tools, "tools")
        names = [tool.name for tool in tools]
        assert pages > 3 and len(names) == len(set(names)) and names[0] == "test_simple_text"
        assert {"test_header_param", "json_schema_2020_12_tool"} <= set(names)
        resources, pages = await every_page(client.list_resources, "resources")
        assert pages >= 2 and "test://static-text" in {str(r.uri) for r in resources}
        templates, _ = await every_page(client.list_resource_templates, "resource_templates")
        assert "test://template/{id}/data" in {t.uri_template for t in templates}

        text = await client.call_tool("test_simple_text", {})
        assert text.content[0].text == "This is a simple text response for testing."
        header = await client.call_tool("test_header_param", {"region": "eu-west", "count": 3})
        assert header.content[0].text == "region=eu-west, count=3" and not header.is_error
        read = await client.read_resource("test://static-text")
        assert read.contents[0].text
        prompt = await client.get_prompt("test_prompt_with_arguments", {"arg1": "a", "arg2": "b"})
        assert prompt.messages
        completion = await client.complete(
            types.ResourceTemplateReference(type="ref/resource", uri="test://template/{id}/data"), {"name": "id", "value": "4"}
        )
        assert completion.completion.values == ["456"]

        with pytest.raises(MCPError) as missing:
            await client.read_resource("test://no-such-resource")
        assert missing.value.error.code == (-32602 if version == MODERN else -32002)
