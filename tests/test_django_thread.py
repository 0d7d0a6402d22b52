"""Sync tools and data queries run where ``database_sync_to_async`` would run them (run_in_django_thread).

In a server (a plain event loop) that is asgiref's one thread for thread-sensitive code, reached directly;
under an outer ``async_to_sync`` it is the caller's thread, as asgiref routes it. Either way the caller's
context variables are seen, exceptions come back, and connections are cleaned up around the call.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.db import connection

from mcp_app.models import ToolCall
from mcp_app.providers.code import run_in_django_thread

marker: contextvars.ContextVar[str] = contextvars.ContextVar("marker", default="unset")


def where() -> tuple[int, str]:
    return threading.get_ident(), marker.get()


async def both() -> tuple[tuple[int, str], tuple[int, str]]:
    marker.set("from the caller")
    return await run_in_django_thread(where), await sync_to_async(where)()


def test_in_a_server_loop_it_runs_in_asgirefs_thread_sensitive_thread_with_the_callers_context() -> None:
    ours, asgiref = asyncio.run(both())
    assert ours == asgiref  # the same thread database_sync_to_async uses, the same context
    assert ours[0] != threading.get_ident() and ours[1] == "from the caller"


def test_under_async_to_sync_it_runs_in_the_callers_thread() -> None:
    ours, asgiref = async_to_sync(both)()
    assert ours == asgiref == (threading.get_ident(), "from the caller")


def test_exceptions_come_back_to_the_caller() -> None:
    def fails(text: str, *, times: int) -> None:
        raise ValueError(text * times)

    with pytest.raises(ValueError, match="nono"):
        asyncio.run(run_in_django_thread(fails, "no", times=2))


@pytest.mark.django_db(transaction=True)
def test_connections_are_closed_after_the_call() -> None:
    def query() -> tuple[int, bool]:
        return ToolCall.objects.count(), connection.connection is not None

    def still_open() -> bool:
        return connection.connection is not None

    async def scenario() -> tuple[tuple[int, bool], bool]:
        return await run_in_django_thread(query), await run_in_django_thread(still_open)

    (count, open_during), open_after = asyncio.run(scenario())
    # CONN_MAX_AGE 0 (the test settings): the connection the query opened is closed once it returns, as
    # database_sync_to_async closes it; the thread holds none between calls.
    assert (count, open_during, open_after) == (0, True, False)
