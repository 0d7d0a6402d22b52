"""Calls that change nothing get their audit row once, whole, before their answer (``AUDIT_WRITE_AHEAD``).

A tool marked ``readOnlyHint`` (by its code or its admin row), a data or query tool and an unknown name run
without a row written ahead: the row is written when the call ends, with its outcome, in one INSERT and no
UPDATE, and the answer leaves only once it is committed. If it cannot be written, the answer is withheld
(-32003, "retry"). Every other tool keeps its row written ahead, and ``"always"`` writes every row ahead.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth.models import Group
from django.core.checks import run_checks
from django.db import OperationalError, connection
from django.test import override_settings
from django.utils import timezone

from mcp_app import audit
from mcp_app.audit import AuditWriter
from mcp_app.availability import UNAVAILABLE, Unavailable
from mcp_app.models import Session, Tool, ToolCall
from mcp_app.permissions import AllowAny
from mcp_app.providers.code import Registry
from mcp_app.providers.exposures.resource import ExposureRegistry, ModelResource
from mcp_app.providers.managed import ManagedProvider
from tests.contexts import ctx_for

pytestmark = pytest.mark.django_db(transaction=True)  # the writer's thread has its own connection, as in a server

registry = Registry()
seen: list[list[str]] = []  # what each tool saw of the audit log while it ran
gate: dict[str, asyncio.Event] = {}


@registry.tool(permission_classes=[AllowAny], annotations={"readOnlyHint": True})
def look(text: str) -> str:
    """Read-only: note the audit rows it sees while it runs, return the text."""
    seen.append(list(ToolCall.objects.values_list("outcome", flat=True)))
    return text


@registry.tool(permission_classes=[AllowAny])
def change(text: str) -> str:
    """Not marked read-only: may change something."""
    seen.append(list(ToolCall.objects.values_list("outcome", flat=True)))
    return text


@registry.tool(permission_classes=[AllowAny], annotations={"readOnlyHint": True})
async def quick(text: str) -> str:
    """Read-only, async, no database: calls made together end together."""
    return text


@registry.tool(permission_classes=[AllowAny], annotations={"readOnlyHint": True})
async def look_slowly() -> str:
    """Read-only, and waits until cancelled."""
    gate["started"].set()
    await asyncio.Event().wait()
    return "never"


exposures = ExposureRegistry()
exposures.register(ModelResource(Group, fields=["name"], permission_classes=[AllowAny]))


@pytest.fixture
def writer() -> AuditWriter:
    return AuditWriter(retry_delays=(0.05,))


@pytest.fixture
def provider(writer: AuditWriter) -> ManagedProvider:
    seen.clear()
    return ManagedProvider(registry, exposures, audit=writer)


def call(provider: ManagedProvider, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return async_to_sync(provider.call_tool)(name, arguments, ctx_for(request_id=7))


def test_a_read_only_tool_gets_its_row_once_whole_before_the_answer(provider: ManagedProvider, writer: AuditWriter) -> None:
    before = timezone.now()
    assert call(provider, "look", {"text": "hi"})["content"][0]["text"] == "hi"
    assert seen == [[]]  # nothing was written ahead
    row = ToolCall.objects.get()  # committed before the answer came back
    assert (row.tool, row.outcome, row.arguments, row.error_message, row.via) == ("look", "ok", {"text": "hi"}, "", "test")
    assert row.duration_ms >= 0 and before <= row.created <= timezone.now()
    assert (writer.row_groups, writer.outcome_groups) == (1, 0)  # one INSERT, no UPDATE


def test_a_tool_not_marked_read_only_keeps_its_row_written_ahead(provider: ManagedProvider, writer: AuditWriter) -> None:
    call(provider, "change", {"text": "x"})
    assert seen == [["started"]]
    assert ToolCall.objects.get().outcome == "ok"
    assert (writer.row_groups, writer.outcome_groups) == (1, 1)


@override_settings(MCP_APP={"AUDIT_WRITE_AHEAD": "always"})
def test_always_writes_every_row_ahead(provider: ManagedProvider, writer: AuditWriter) -> None:
    call(provider, "look", {"text": "x"})
    assert seen == [["started"]]
    assert (writer.row_groups, writer.outcome_groups) == (1, 1)


@pytest.mark.parametrize(("tool", "hint", "ahead"), [("look", False, True), ("change", True, False)])
def test_the_admin_rows_hint_decides(provider: ManagedProvider, tool: str, hint: bool, ahead: bool) -> None:
    call(provider, tool, {"text": "sync the rows"})  # the catalog writes the code tools' rows
    Tool.objects.filter(name=tool).update(read_only_hint=hint)
    provider.invalidate()
    seen.clear()
    call(provider, tool, {"text": "again"})
    assert [sorted(rows) for rows in seen] == [["ok", "started"] if ahead else ["ok"]]


@pytest.mark.parametrize(
    ("name", "arguments", "outcome"),
    [("auth_group_list", {}, "ok"), ("auth_group_get", {"pk": 999}, "tool_error"), ("no_such_tool", {}, "refused")],
)
def test_data_tools_and_unknown_names_are_written_once(
    provider: ManagedProvider, writer: AuditWriter, name: str, arguments: dict[str, Any], outcome: str
) -> None:
    try:
        call(provider, name, arguments)
    except Exception as exc:  # the unknown name: a JSON-RPC error, recorded as refused
        assert outcome == "refused", exc
    assert list(ToolCall.objects.values_list("tool", "outcome")) == [(name, outcome)]
    assert writer.outcome_groups == 0


def test_a_row_that_cannot_be_written_withholds_the_answer(
    provider: ManagedProvider, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def database_down(*args: Any, **kwargs: Any) -> Any:
        raise OperationalError('connection to server at "127.0.0.1", port 5432 failed: Connection refused')

    monkeypatch.setattr(audit, "_insert", database_down)
    with caplog.at_level(logging.WARNING, logger="mcp_app.audit"), pytest.raises(Unavailable) as info:
        call(provider, "look", {"text": "zebra-value"})
    assert seen == [[]]  # the tool ran (it changes nothing) ...
    error = info.value.to_error()  # ... but its answer was not sent: the client is told to retry
    assert error["code"] == UNAVAILABLE and "withheld" in error["message"] and "retry" in error["message"]
    assert "look" in error["message"] and "5432" not in error["message"]
    assert not ToolCall.objects.exists()
    assert "could not be written" in caplog.text and "look" in caplog.text and "zebra-value" not in caplog.text
    monkeypatch.undo()
    assert call(provider, "look", {"text": "again"})["content"][0]["text"] == "again"
    assert list(ToolCall.objects.values_list("outcome", flat=True)) == ["ok"]


def test_a_cancelled_read_only_call_is_recorded_as_failed(provider: ManagedProvider, writer: AuditWriter) -> None:
    async def scenario() -> None:
        gate["started"] = asyncio.Event()
        ctx = ctx_for()
        task = asyncio.ensure_future(provider.call_tool("look_slowly", {}, ctx))
        await gate["started"].wait()
        assert not await asyncio.to_thread(ToolCall.objects.exists)  # running, and no row yet
        ctx.cancel()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    async_to_sync(scenario)()
    assert writer.wait_idle(10)
    row = ToolCall.objects.get()
    assert (row.tool, row.outcome) == ("look_slowly", "failed") and "cancelled" in row.error_message


def test_concurrent_read_only_calls_leave_one_row_each_in_few_statements(provider: ManagedProvider, writer: AuditWriter) -> None:
    async def many() -> list[Any]:
        return await asyncio.gather(*(provider.call_tool("quick", {"text": f"t{i}"}, ctx_for()) for i in range(100)))

    results = async_to_sync(many)()
    assert [r["content"][0]["text"] for r in results] == [f"t{i}" for i in range(100)]
    assert sorted(ToolCall.objects.values_list("arguments__text", flat=True)) == sorted(f"t{i}" for i in range(100))
    assert writer.outcome_groups == 0 and writer.row_groups < 100


@override_settings(MCP_APP={"AUDIT_WRITE_AHEAD": "sometimes"})
def test_an_unknown_write_ahead_value_is_reported_by_the_checks() -> None:
    errors = [m for m in run_checks() if m.id == "mcp_app.E003" and "AUDIT_WRITE_AHEAD" in m.msg]
    assert errors and "'unless_read_only' or 'always'" in errors[0].msg


def test_rows_are_written_one_by_one_where_the_backend_cannot_return_pks_from_a_multi_row_insert(
    provider: ManagedProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(type(connection.features), "can_return_rows_from_bulk_insert", False)
    rows = [{"tool": f"t{i}", "outcome": "ok", "arguments": {"i": i}, "created": timezone.now()} for i in range(3)]
    # The writer hands over measured arguments (value and JSON text): saved one by one, the value is stored.
    rows[2]["arguments"] = audit._stored_arguments({"i": 2, "password": "p"})
    pks = audit._insert_rows(rows)
    stored = dict(ToolCall.objects.values_list("pk", "tool"))
    assert [stored[pk] for pk in pks] == ["t0", "t1", "t2"]  # each pk is its own row's, in order
    assert ToolCall.objects.get(pk=pks[2]).arguments == {"i": 2, "password": audit.REDACTED}


def test_plain_sql_rows_store_what_the_orm_stores(django_user_model: Any) -> None:
    """The multi-row INSERT converts each column itself (a foreign key by object or by pk, dates, JSON,
    defaults): read back, its rows equal rows the ORM saved from the same values."""
    user = django_user_model.objects.create_user("writer")
    session = Session.objects.create(protocol_version="2025-11-25")
    when = timezone.now()
    given = [
        {"tool": "a", "outcome": "ok", "user": user, "session_id": session.id, "created": when, "arguments": {"x": [1, None]}},
        {"tool": "b", "outcome": "error", "user_id": user.pk, "created": when, "error_message": "boom", "duration_ms": 1.25},
        {"tool": "c", "outcome": "ok", "user": None, "created": when, "arguments": {"s": "é"}, "via": "stdio"},
    ]
    ours = audit._insert_rows(given)
    theirs = [ToolCall.objects.create(**values).pk for values in given]
    columns = ["tool", "outcome", "user_id", "session_id", "created", "arguments", "error_message", "duration_ms", "via"]
    stored = {row["id"]: [row[c] for c in columns] for row in ToolCall.objects.values("id", *columns)}
    assert [stored[pk] for pk in ours] == [stored[pk] for pk in theirs]
    assert stored[ours[0]][2:4] == [user.pk, session.id] and stored[ours[2]][2] is None


def test_a_cold_workers_first_burst_loads_the_catalog_once(provider: ManagedProvider, monkeypatch: pytest.MonkeyPatch) -> None:
    loads: list[int] = []
    real_load = provider._load

    def counting_load() -> Any:
        loads.append(1)
        return real_load()

    monkeypatch.setattr(provider, "_load", counting_load)

    async def burst() -> list[Any]:
        return await asyncio.gather(*(provider.call_tool("look", {"text": f"b{i}"}, ctx_for()) for i in range(30)))

    assert len(async_to_sync(burst)()) == 30
    assert loads == [1]  # the 29 others waited for the first one's load instead of each loading the rows


def test_a_row_refused_for_another_reason_is_logged_with_its_traceback(
    provider: ManagedProvider, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def refuses(*args: Any, **kwargs: Any) -> Any:
        raise ValueError("a value the column refuses")

    monkeypatch.setattr(audit, "_insert", refuses)
    with caplog.at_level(logging.WARNING, logger="mcp_app.audit"), pytest.raises(Unavailable):
        call(provider, "look", {"text": "zebra-value"})
    errors = [r for r in caplog.records if r.levelno == logging.ERROR and "could not be written" in r.getMessage()]
    assert errors and errors[0].exc_info is not None and "'look'" in errors[0].getMessage()
    assert "zebra-value" not in caplog.text
