"""The audit log's group commit: rows and outcomes queued by concurrent calls are written together, and the
log stays complete.

N concurrent tools/calls leave exactly N rows with their outcomes, in fewer groups than calls; a database
failure under a group refuses every call of that group (-32003, 503) and runs none of their tools; and what
is queued when the process exits is written before it goes (the writer's :mod:`atexit` drain).
"""

from __future__ import annotations

import asyncio
import datetime
import os
import subprocess
import sys
import textwrap
import threading
import zoneinfo
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.db import IntegrityError, OperationalError, connection
from django.db.backends import utils as db_utils
from django.utils import timezone

from mcp_app import audit
from mcp_app.audit import AuditWriter
from mcp_app.availability import UNAVAILABLE, Unavailable
from mcp_app.models import ToolCall
from mcp_app.permissions import AllowAny
from mcp_app.providers.code import Registry
from mcp_app.providers.exposures.resource import ExposureRegistry
from mcp_app.providers.managed import ManagedProvider
from tests.contexts import ctx_for
from tests.on_postgresql import run_on_postgresql

pytestmark = pytest.mark.django_db(transaction=True)  # the writer's thread has its own connection, as in a server

registry = Registry()
runs: list[str] = []


@registry.tool(permission_classes=[AllowAny])
async def note(text: str) -> str:
    """Record that it ran (a side effect the test can count) and return the text."""
    runs.append(text)
    return text


async def call_many(provider: ManagedProvider, count: int) -> list[Any]:
    """``count`` concurrent calls of ``note``; each one's result, or the exception it raised."""
    calls = [provider.call_tool("note", {"text": f"call-{i}"}, ctx_for(request_id=i)) for i in range(count)]
    return await asyncio.gather(*calls, return_exceptions=True)


@pytest.fixture
def held_writer(monkeypatch: pytest.MonkeyPatch) -> tuple[AuditWriter, threading.Event, threading.Event]:
    """A writer whose first lone row waits for ``release`` (``entered`` is set once it waits), so that every
    call made meanwhile queues behind it and is written as one group."""
    entered, release = threading.Event(), threading.Event()
    real_insert = audit._insert

    def held_insert(fields: dict[str, Any], arguments: Any) -> int:
        if not entered.is_set():
            entered.set()
            assert release.wait(30)
        return real_insert(fields, arguments)

    monkeypatch.setattr(audit, "_insert", held_insert)
    return AuditWriter(retry_delays=(0.05,)), entered, release


def test_concurrent_calls_leave_one_row_each_written_in_fewer_groups_than_calls() -> None:
    writer = AuditWriter()
    provider = ManagedProvider(registry, ExposureRegistry(), audit=writer)
    runs.clear()
    results = async_to_sync(call_many)(provider, 200)
    assert [r["content"][0]["text"] for r in results] == [f"call-{i}" for i in range(200)]
    assert writer.wait_idle(10)
    rows = list(ToolCall.objects.values_list("arguments", "outcome", "tool", "via"))
    assert sorted(args["text"] for args, *_ in rows) == sorted(f"call-{i}" for i in range(200))
    assert {(outcome, tool, via) for _, outcome, tool, via in rows} == {("ok", "note", "test")}
    # One by one, 200 rows would be 200 INSERTs: the rows queued while a group was written go together. (The
    # outcomes come back one at a time, as each tool ends, so they are grouped only when they pile up.)
    assert writer.row_groups < 100, writer.row_groups
    assert writer.row_groups + writer.outcome_groups <= 400


def test_rows_queued_behind_a_write_go_in_one_statement(held_writer: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    writer, entered, release = held_writer
    provider = ManagedProvider(registry, ExposureRegistry(), audit=writer)
    groups: list[int] = []
    real_rows = audit._insert_rows
    monkeypatch.setattr(audit, "_insert_rows", lambda rows: groups.append(len(rows)) or real_rows(rows))
    inserts: list[str] = []
    real_execute = db_utils.CursorWrapper._execute

    def counting_execute(self: Any, sql: str, params: Any, *rest: Any) -> Any:
        if sql.startswith("INSERT") and ToolCall._meta.db_table in sql:
            inserts.append(sql)
        return real_execute(self, sql, params, *rest)

    monkeypatch.setattr(db_utils.CursorWrapper, "_execute", counting_execute)

    async def scenario() -> list[Any]:
        first = asyncio.ensure_future(provider.call_tool("note", {"text": "first"}, ctx_for(request_id=0)))
        while not entered.is_set():
            await asyncio.sleep(0.01)
        rest = asyncio.ensure_future(call_many(provider, 50))
        while writer.pending() < 51:  # the held row and the 50 queued behind it
            await asyncio.sleep(0.01)
        release.set()
        return [await first, *await rest]

    runs.clear()
    assert len(async_to_sync(scenario)()) == 51
    assert writer.wait_idle(10)
    assert groups == [1, 50]  # the held lone row, then the 50 queued behind it together
    if connection.features.can_return_rows_from_bulk_insert:
        assert len(inserts) == 2  # the held row's INSERT and one INSERT of 50 rows
    assert ToolCall.objects.filter(outcome="ok").count() == 51 and len(runs) == 51


def audit_rows(count: int) -> list[dict[str, Any]]:
    """``count`` rows as the writer hands them to ``_insert_rows``."""
    now = timezone.now()
    return [
        {"tool": "note", "via": "test", "created": now, "outcome": ToolCall.Outcome.OK, "arguments": {"i": i}}
        for i in range(count)
    ]


@pytest.mark.skipif(not connection.features.can_return_rows_from_bulk_insert, reason="one save() per row there")
def test_a_group_in_one_statement_has_no_transaction_of_its_own_and_a_bigger_one_is_all_or_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A single INSERT is atomic by itself: the usual group pays no BEGIN and COMMIT of its own (two more round
    trips on PostgreSQL). A group that needs several statements runs them in one transaction, so a failure in
    its last statement leaves none of its rows."""
    statements: list[tuple[int, bool]] = []  # (rows, inside a transaction) of each INSERT into the log
    fail_after = {"statements": None}
    real_execute = db_utils.CursorWrapper._execute

    def execute(self: Any, sql: str, params: Any, *rest: Any) -> Any:
        if sql.startswith("INSERT") and ToolCall._meta.db_table in sql:
            # Rows of a VALUES list, or of the arrays (one per column) of PostgreSQL's unnest form.
            rows = len(params[0]) if "unnest(" in sql else sql.count("), (") + 1
            statements.append((rows, self.db.in_atomic_block))
            if fail_after["statements"] is not None and len(statements) > fail_after["statements"]:
                raise IntegrityError("refused by the test")
        return real_execute(self, sql, params, *rest)

    monkeypatch.setattr(db_utils.CursorWrapper, "_execute", execute)
    pks = audit._insert_rows(audit_rows(3))
    assert statements == [(3, False)]  # one statement, in autocommit mode
    assert sorted(ToolCall.objects.values_list("pk", flat=True)) == sorted(pks) and len(set(pks)) == 3

    statements.clear()
    monkeypatch.setattr(type(connection.ops), "bulk_batch_size", lambda self, fields, objs: 2)
    pks = audit._insert_rows(audit_rows(5))
    assert statements == [(2, True), (2, True), (1, True)]  # three statements, one transaction
    assert ToolCall.objects.count() == 8 and len(pks) == 5

    statements.clear()
    fail_after["statements"] = 2  # the third statement of the next group fails
    with pytest.raises(IntegrityError):
        audit._insert_rows(audit_rows(5))
    assert len(statements) == 3
    assert ToolCall.objects.count() == 8  # the first two statements' rows were rolled back with it


def test_measured_arguments_are_encoded_once_and_stored_as_the_orm_stores_them(monkeypatch: pytest.MonkeyPatch) -> None:
    """Redaction measures each row's arguments as JSON; where the backend stores JSON as that very text
    (SQLite), or the statement takes the text and casts it (PostgreSQL's unnest), the INSERT reuses it rather
    than encoding the arguments again. Either way the rows read back
    equal rows the ORM saved from the same arguments: truncated ones, non-ASCII text, nested values."""
    given = [
        {"text": "hello"},
        {"s": "é", "nested": {"a": [1, None, 2.5]}},
        {"big": "x" * 5_000},
        {},
    ]
    stored = [audit._stored_arguments(arguments, patterns=[], max_bytes=1_000) for arguments in given]
    assert stored[2].value["_truncated"] is True and len(stored[2].text) <= 1_000
    encoded: list[int] = []
    real_dumps = audit.json.dumps

    def counting_dumps(*args: Any, **kwargs: Any) -> str:
        encoded.append(1)
        return real_dumps(*args, **kwargs)

    monkeypatch.setattr(audit.json, "dumps", counting_dumps)
    now = timezone.now()
    ours = audit._insert_rows([{"tool": "t", "outcome": "ok", "created": now, "arguments": a} for a in stored])
    if connection.vendor in ("sqlite", "postgresql"):
        assert encoded == []  # the text made while measuring went in as it was (PostgreSQL: cast to jsonb)
    monkeypatch.setattr(audit.json, "dumps", real_dumps)
    theirs = [ToolCall.objects.create(tool="t", outcome="ok", created=now, arguments=a.value).pk for a in stored]
    rows = dict(ToolCall.objects.values_list("pk", "arguments"))
    assert [rows[pk] for pk in ours] == [rows[pk] for pk in theirs] == [a.value for a in stored]
    assert audit.audit_arguments(given[1], patterns=[], max_bytes=1_000) == stored[1].value


def test_the_datetime_shortcut_stores_what_the_backends_adapter_stores() -> None:
    """On SQLite a ``timezone.now()`` value skips the adapter's checks; every kind of value still gives the
    adapter's own result (naive, in another zone, with and without microseconds, None)."""
    adapt = audit._datetime_adapter(connection)
    if connection.vendor == "sqlite":
        assert adapt != connection.ops.adapt_datetimefield_value  # the shortcut is in use here
    values = [
        timezone.now(),
        datetime.datetime(2026, 1, 1, 5, tzinfo=datetime.UTC),
        datetime.datetime(2026, 1, 1, 5, 0, 0, 123, tzinfo=datetime.UTC),
        datetime.datetime(2026, 6, 1, 12, tzinfo=zoneinfo.ZoneInfo("Europe/Paris")),
        None,
    ]
    assert [adapt(v) for v in values] == [connection.ops.adapt_datetimefield_value(v) for v in values]


def test_a_group_of_outcomes_is_one_update_without_a_transaction_of_its_own(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Outcomes queued together on PostgreSQL are one ``UPDATE ... FROM unnest(...)``, run in autocommit
    mode (a ``BEGIN`` and a ``COMMIT`` fewer), with one array per column for parameters; each row gets its
    own outcome, a row named twice keeps the last, and a row pruned meanwhile is reported, not fatal. Other
    backends run one prepared UPDATE per row in one transaction, with the same result. (This suite runs on
    SQLite; ``test_the_statements_of_groups_hold_on_postgresql`` runs it on PostgreSQL as well.)"""
    pks = audit._insert_rows([{**row, "outcome": ToolCall.Outcome.STARTED} for row in audit_rows(3)])
    gone = max(pks) + 1_000
    statements: list[tuple[str, bool, Any]] = []
    real_execute, real_many = db_utils.CursorWrapper._execute, db_utils.CursorWrapper._executemany

    def execute(self: Any, sql: str, params: Any, *args: Any) -> Any:
        statements.append((sql.split()[0], self.db.in_atomic_block, params))
        return real_execute(self, sql, params, *args)

    def executemany(self: Any, sql: str, *args: Any) -> Any:
        statements.append(("executemany " + sql.split()[0], self.db.in_atomic_block, None))
        return real_many(self, sql, *args)

    monkeypatch.setattr(db_utils.CursorWrapper, "_execute", execute)
    monkeypatch.setattr(db_utils.CursorWrapper, "_executemany", executemany)
    audit._update_rows(
        [
            (pks[0], {"outcome": "ok", "error_message": "", "duration_ms": 1.5}),
            (pks[1], {"outcome": "error", "error_message": "it's 'quoted' {a, \\\"b\\\"}", "duration_ms": 0}),
            (pks[2], {"outcome": "ok", "error_message": "", "duration_ms": 2.0}),
            (gone, {"outcome": "ok", "error_message": "", "duration_ms": 3.0}),
            (pks[2], {"outcome": "failed", "error_message": "é", "duration_ms": 2.25}),
        ]
    )
    if connection.vendor == "postgresql":
        kind, in_transaction, params = statements[0]
        assert (kind, in_transaction) == ("UPDATE", False)  # the whole group in one statement, no transaction
        assert len(params) == 4 and all(len(column) == 4 for column in params)  # four columns of four rows
    else:
        assert ("executemany UPDATE", True, None) in statements  # inside one transaction
    stored = {pk: (o, m, d) for pk, o, m, d in ToolCall.objects.values_list("pk", "outcome", "error_message", "duration_ms")}
    assert [stored[pk] for pk in pks] == [("ok", "", 1.5), ("error", "it's 'quoted' {a, \\\"b\\\"}", 0.0), ("failed", "é", 2.25)]
    assert f"tool call row {gone} is gone" in caplog.text


def test_a_database_failure_under_a_group_refuses_every_call_of_it_and_runs_none(
    held_writer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer, entered, release = held_writer
    provider = ManagedProvider(registry, ExposureRegistry(), audit=writer)
    down = {"now": False}
    real_execute = db_utils.CursorWrapper._execute

    def execute(self: Any, sql: str, params: Any, *rest: Any) -> Any:
        if down["now"] and ToolCall._meta.db_table in sql:
            raise OperationalError("server closed the connection unexpectedly")
        return real_execute(self, sql, params, *rest)

    monkeypatch.setattr(db_utils.CursorWrapper, "_execute", execute)

    async def scenario() -> list[Any]:
        first = asyncio.ensure_future(provider.call_tool("note", {"text": "first"}, ctx_for(request_id=0)))
        while not entered.is_set():
            await asyncio.sleep(0.01)
        rest = asyncio.ensure_future(call_many(provider, 30))
        while writer.pending() < 31:
            await asyncio.sleep(0.01)
        down["now"] = True  # the database goes away while the group waits
        release.set()
        return [*await asyncio.gather(first, return_exceptions=True), *await rest]

    runs.clear()
    outcomes = async_to_sync(scenario)()
    down["now"] = False
    assert writer.wait_idle(10)
    refused = [o for o in outcomes if isinstance(o, Unavailable)]
    assert len(refused) == 31, outcomes
    assert {o.to_error()["code"] for o in refused} == {UNAVAILABLE}
    assert {o.retry_after for o in refused} == {5}  # the transports answer it 503 with Retry-After
    assert runs == []  # no tool ran
    assert ToolCall.objects.count() == 0  # and no row was half written


def test_a_kept_connection_closed_by_the_server_meanwhile_refuses_no_call(monkeypatch: pytest.MonkeyPatch) -> None:
    """The writer keeps its connection from group to group; if the server closed it meanwhile (a restart,
    an idle timeout), the next group is written on a new connection instead of being refused as an outage."""
    monkeypatch.setattr(audit, "CONNECTION_LINGER", 30.0)  # the connection is surely kept between the batches
    writer = AuditWriter(retry_delays=(0.05,))
    provider = ManagedProvider(registry, ExposureRegistry(), audit=writer)
    closed = {"once": False}
    real_execute = db_utils.CursorWrapper._execute

    def execute(self: Any, sql: str, params: Any, *rest: Any) -> Any:
        if closed["once"] and ToolCall._meta.db_table in sql:
            closed["once"] = False
            raise OperationalError("server closed the connection unexpectedly")
        return real_execute(self, sql, params, *rest)

    monkeypatch.setattr(db_utils.CursorWrapper, "_execute", execute)
    runs.clear()
    assert async_to_sync(call_many)(provider, 1)[0]["content"][0]["text"] == "call-0"  # the writer's connection opens
    assert writer.wait_idle(10)
    closed["once"] = True  # the next statement on the kept connection fails as a closed connection does
    outcomes = async_to_sync(call_many)(provider, 20)
    assert writer.wait_idle(10)
    assert not [o for o in outcomes if isinstance(o, BaseException)], outcomes
    assert closed["once"] is False  # the failure did happen, and was retried
    assert len(runs) == 21
    assert ToolCall.objects.filter(outcome=ToolCall.Outcome.OK).count() == 21


def test_a_failed_group_of_outcomes_delivers_every_result_and_is_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    entered, release = threading.Event(), threading.Event()
    real_update = audit._update

    def held_update(pk: int, fields: dict[str, Any]) -> None:  # the first lone outcome waits: the rest pile up
        if not entered.is_set():
            entered.set()
            assert release.wait(30)
        real_update(pk, fields)

    failures = {"left": 1}
    real_rows = audit._update_rows

    def flaky_rows(items: list[Any]) -> None:
        if failures["left"]:
            failures["left"] -= 1
            raise OperationalError("server closed the connection unexpectedly")
        real_rows(items)

    monkeypatch.setattr(audit, "_update", held_update)
    monkeypatch.setattr(audit, "_update_rows", flaky_rows)
    writer = AuditWriter(retry_delays=(0.05, 0.05))
    provider = ManagedProvider(registry, ExposureRegistry(), audit=writer)

    async def scenario() -> list[Any]:
        # The first call's outcome is written alone and held; the other 19 calls queue behind it, so their
        # outcomes come back together, as one group.
        first = asyncio.ensure_future(provider.call_tool("note", {"text": "call-0"}, ctx_for(request_id=0)))
        while not entered.is_set():
            await asyncio.sleep(0.01)
        rest = [provider.call_tool("note", {"text": f"call-{i}"}, ctx_for(request_id=i)) for i in range(1, 20)]
        others = asyncio.ensure_future(asyncio.gather(*rest))
        while writer.pending() < 20:  # the held outcome and the 19 rows queued behind it
            await asyncio.sleep(0.01)
        release.set()
        return [await first, *await others]

    results = async_to_sync(scenario)()
    assert [r["content"][0]["text"] for r in results] == [f"call-{i}" for i in range(20)]  # all delivered
    assert writer.wait_idle(10)
    assert failures["left"] == 0  # the group of 19 failed once, and each of its outcomes was retried
    assert ToolCall.objects.count() == 20 and not ToolCall.objects.exclude(outcome="ok").exists()


DRAIN_SCRIPT = textwrap.dedent(
    """
    import asyncio, importlib, os, sys, threading
    import django
    settings = importlib.import_module(os.environ["DJANGO_SETTINGS_MODULE"])
    settings.DATABASES["default"]["NAME"] = sys.argv[1]  # the test database
    django.setup()
    from mcp_app import audit

    entered, release = threading.Event(), threading.Event()
    real_insert = audit._insert
    def held_insert(fields, arguments):  # the first row waits for release: the others queue behind it
        entered.set()
        release.wait(30)
        return real_insert(fields, arguments)
    audit._insert = held_insert

    writer = audit.AuditWriter()
    async def begin_all():
        first = asyncio.ensure_future(writer.begin(tool="drained", arguments={"i": -1}))
        while not entered.is_set():
            await asyncio.sleep(0.01)
        await asyncio.gather(first, *(writer.begin(tool="drained", arguments={"i": i}) for i in range(40)))
    threading.Thread(target=asyncio.run, args=(begin_all(),), daemon=True).start()
    while writer.pending() < 41:
        threading.Event().wait(0.01)
    print("exiting with", writer.pending(), "queued", flush=True)
    # The database answers again half a second after the interpreter began to exit (a daemon timer, so
    # that exiting does not wait for it): the writer's atexit drain is what writes the queued rows.
    timer = threading.Timer(0.5, release.set)
    timer.daemon = True
    timer.start()
    """
)


def test_rows_queued_at_exit_are_written_before_the_process_ends(tmp_path: Path) -> None:
    script = tmp_path / "drain.py"
    script.write_text(DRAIN_SCRIPT)
    root = Path(__file__).resolve().parent.parent
    # The settings of this run (SQLite, or PostgreSQL with --ds tests.pg_settings), on its test database.
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": os.environ.get("DJANGO_SETTINGS_MODULE", "tests.settings")}
    env["PYTHONPATH"] = str(root)
    done = subprocess.run(
        [sys.executable, str(script), connection.settings_dict["NAME"]],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "exiting with 41 queued" in done.stdout
    assert ToolCall.objects.filter(tool="drained").count() == 41


@pytest.mark.skipif(connection.vendor == "postgresql", reason="already running on PostgreSQL")
def test_the_statements_of_groups_hold_on_postgresql() -> None:
    """The statements of groups (rows and outcomes) differ on PostgreSQL (arrays, ``unnest``): the tests of
    what they store, again on a PostgreSQL test database."""
    run_on_postgresql(
        "tests/test_audit_group.py",
        "one_statement or one_update or measured_arguments or datetime_shortcut or rows_queued_at_exit",
        database_prefix="test_mcp_app_audit",
    )
