"""Where a code tool runs: a sync function in Django's thread for sync code (the default, so it may use the
ORM), or on the event loop with ``@tool(run_in_thread=False)``; an async function on the event loop either way.

A ``run_in_thread=False`` tool that uses the database anyway is answered as any failing tool (no details for
the client), and the log tells the operator which option to drop.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
from typing import Any

import pytest
from django.core.exceptions import SynchronousOnlyOperation

from mcp_app.models import ToolCall
from mcp_app.protocol.context import MemorySession, PendingClientRequests, RequestContext
from mcp_app.providers.code import Registry

marker: contextvars.ContextVar[str] = contextvars.ContextVar("marker", default="unset")


def make_registry() -> Registry:
    registry = Registry()

    def where(label: str) -> dict[str, Any]:
        return {"label": label, "thread": threading.get_ident(), "marker": marker.get()}

    registry.tool(name="threaded")(where)
    registry.tool(name="on_loop", run_in_thread=False)(where)

    @registry.tool(name="async_on_loop", run_in_thread=True)  # no effect on an async function
    async def where_async(label: str) -> dict[str, Any]:
        return where(label)

    def count_calls() -> int:
        return ToolCall.objects.count()

    registry.tool(name="orm_threaded")(count_calls)
    registry.tool(name="orm_on_loop", run_in_thread=False)(count_calls)

    @registry.tool(name="async_only_in_thread")
    def async_only() -> None:  # in Django's thread, a SynchronousOnlyOperation is any failure: nothing to add
        raise SynchronousOnlyOperation("You cannot call this from an async context")

    return registry


def context() -> RequestContext:
    return RequestContext(
        session=MemorySession(protocol_version="2025-11-25"),
        request_id=1,
        meta=None,
        send=_ignore,
        pending=PendingClientRequests(),
    )


async def _ignore(message: dict[str, Any]) -> None:
    pass


async def call(registry: Registry, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    marker.set("from the request")
    return await registry.tools[name].call(arguments, context())


@pytest.mark.parametrize(
    ("name", "on_the_loop"), [("threaded", False), ("on_loop", True), ("async_on_loop", True)], ids=["default", "off", "async"]
)
def test_where_a_tool_runs(name: str, on_the_loop: bool) -> None:
    registry = make_registry()

    async def scenario() -> tuple[dict[str, Any], int]:
        return await call(registry, name, {"label": name}), threading.get_ident()

    result, loop_thread = asyncio.run(scenario())
    assert not result.get("isError"), result
    ran = result["structuredContent"]
    assert ran["label"] == name and ran["marker"] == "from the request"  # the request's context either way
    assert (ran["thread"] == loop_thread) is on_the_loop
    assert registry.tools[name].run_in_thread is (name != "on_loop")


@pytest.mark.django_db(transaction=True)
def test_the_database_in_django_thread_works_and_on_the_loop_is_refused_with_a_log_naming_the_option(
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry = make_registry()

    async def scenario() -> tuple[dict[str, Any], dict[str, Any]]:
        return await call(registry, "orm_threaded", {}), await call(registry, "orm_on_loop", {})

    with caplog.at_level(logging.ERROR, logger="mcp_app"):
        threaded, on_loop = asyncio.run(scenario())
    assert threaded == {"content": [{"type": "text", "text": "0"}]}  # ToolCall.objects.count(), run in the thread
    assert on_loop["isError"] is True
    assert on_loop["content"][0]["text"] == "Tool 'orm_on_loop' failed with an internal error; the server logged the details."
    [record] = [r for r in caplog.records if "orm_on_loop" in r.getMessage()]
    assert "run_in_thread=False" in record.getMessage() and "used the database" in record.getMessage()
    assert record.exc_info is not None and type(record.exc_info[1]).__name__ == "SynchronousOnlyOperation"


def test_a_tool_in_django_thread_raising_synchronous_only_operation_is_an_ordinary_failure(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.ERROR, logger="mcp_app"):
        result = asyncio.run(call(make_registry(), "async_only_in_thread", {}))
    assert result == {
        "content": [
            {"type": "text", "text": "Tool 'async_only_in_thread' failed with an internal error; the server logged the details."}
        ],
        "isError": True,
    }
    [record] = [r for r in caplog.records if "async_only_in_thread" in r.getMessage()]
    assert record.getMessage() == "MCP tool async_only_in_thread failed"  # no advice about an option it lacks
