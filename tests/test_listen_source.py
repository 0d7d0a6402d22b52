"""The listen streams' source (mcp_app.transports.listen), in-process: every stream counts against
``MAX_STREAMS_PER_PRINCIPAL``, anonymous callers by address (they have no session to bound them), and closing
one frees its place; an event for its URIs, list_changed, and the close of its caller's streams reach it.
The wire: tests/transports/test_listen.py."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from django.conf import settings
from django.test import override_settings

from mcp_app.auth import Principal
from mcp_app.protocol.context import MemorySession, PendingClientRequests, RequestContext
from mcp_app.protocol.errors import InvalidRequest
from mcp_app.protocol.subscriptions import SubscriptionFilter, resource_updated
from mcp_app.transports import fanout
from mcp_app.transports.listen import Listening


def context(address: str) -> RequestContext:
    async def send(message: dict[str, Any]) -> None:
        pass

    extra = {
        "credential": Principal(key="anonymous"),
        "principal": "anonymous",
        "user": None,
        "scope": {"client": (address, 1234)},
    }
    return RequestContext(
        session=MemorySession(), request_id=1, meta=None, send=send, pending=PendingClientRequests(), extra=extra
    )


async def test_anonymous_listen_streams_are_capped_by_address_and_closing_frees_a_place() -> None:
    with override_settings(MCP_APP={**settings.MCP_APP, "MAX_STREAMS_PER_PRINCIPAL": 2}):
        subscription = SubscriptionFilter.parse({"notifications": {"toolsListChanged": True}})
        first, second = Listening(subscription, context("10.0.0.1")), Listening(subscription, context("10.0.0.1"))
        elsewhere = Listening(subscription, context("10.0.0.2"))  # another address has its own allowance
        with pytest.raises(InvalidRequest, match="MAX_STREAMS_PER_PRINCIPAL"):
            Listening(subscription, context("10.0.0.1"))
        await second.aclose()
        await second.aclose()  # idempotent: frees one place only once
        third = Listening(subscription, context("10.0.0.1"))
        with pytest.raises(InvalidRequest):
            Listening(subscription, context("10.0.0.1"))
        for listening in (first, third, elsewhere):
            await listening.aclose()
        assert fanout.listener_count() == 0


async def test_what_reaches_a_listen_stream_and_how_it_ends() -> None:
    subscription = SubscriptionFilter.parse({"notifications": {"resourceSubscriptions": ["a://1"]}})
    listening = Listening(subscription, context("10.0.0.3"))
    try:
        fanout.deliver({"type": fanout.UPDATED, "uris": ["a://2", "a://1"]})
        fanout.deliver({"type": "mcp.message", "message": {"jsonrpc": "2.0", "method": "notifications/tools/list_changed"}})
        fanout.deliver({"type": "mcp.close", "listeners": {"principal": "someone-else"}})
        assert await asyncio.wait_for(listening.__anext__(), 1) == resource_updated("a://1")
        assert (await asyncio.wait_for(listening.__anext__(), 1))["method"] == "notifications/tools/list_changed"
        fanout.deliver({"type": "mcp.close", "listeners": {"principal": "anonymous"}})
        with pytest.raises(StopAsyncIteration):
            await asyncio.wait_for(listening.__anext__(), 1)
    finally:
        await listening.aclose()
