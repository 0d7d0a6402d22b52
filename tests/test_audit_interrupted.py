"""A call the stopping server interrupts leaves no half-written audit row.

Daphne cancels, or simply abandons, the requests still running when it stops, so a call whose row was written
ahead may never reach its outcome. The writer's drain at exit (:meth:`mcp_app.audit.AuditWriter.drain`) marks
such rows ``failed`` with :data:`~mcp_app.audit.INTERRUPTED` instead of leaving them ``started``, and leaves
every finished row as it was.
"""

from __future__ import annotations

import asyncio

import pytest

from mcp_app.audit import INTERRUPTED, AuditWriter
from mcp_app.models import ToolCall

pytestmark = pytest.mark.django_db(transaction=True)  # the writer's thread has its own connection, as in a server


def test_drain_marks_the_calls_that_never_finished() -> None:
    writer = AuditWriter()

    async def calls() -> tuple[int, int, int]:
        finished = await writer.begin(tool="done", arguments={})
        await writer.finish(finished, outcome="ok")
        abandoned = await writer.begin(tool="abandoned", arguments={})  # its coroutine never resumes
        retried = await writer.begin(tool="recorded elsewhere", arguments={})
        return finished.pk, abandoned.pk, retried.pk

    finished, abandoned, retried = asyncio.run(calls())
    ToolCall.objects.filter(pk=retried).update(outcome="tool_error")  # e.g. a background retry got there first
    assert ToolCall.objects.get(pk=abandoned).outcome == "started"
    assert writer.drain(timeout=10)
    rows = {row.pk: (row.outcome, row.error_message) for row in ToolCall.objects.all()}
    assert rows[abandoned] == ("failed", INTERRUPTED)
    assert rows[finished] == ("ok", "")
    assert rows[retried] == ("tool_error", "")
    assert writer.interrupted() == 0  # each once
