"""The audit log cannot be dodged or flooded: every tools/call that reaches the tool layer leaves exactly
one row, whatever its arguments hold (any depth, non-finite numbers, NUL characters, megabytes), failures
are never recorded as "ok", and what a row stores is capped."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth.models import Group
from django.core.checks import run_checks
from django.db import DatabaseError, OperationalError, connection
from django.test import override_settings

from mcp_app import Context, ToolError, audit
from mcp_app.audit import REDACTED, AuditWriter, audit_arguments, cap_text, redact
from mcp_app.availability import RETRY_AFTER, UNAVAILABLE, Unavailable
from mcp_app.models import QueryTool, ToolCall
from mcp_app.permissions import AllowAny
from mcp_app.protocol.errors import InvalidParams, McpError
from mcp_app.providers.code import Registry
from mcp_app.providers.exposures.resource import ExposureRegistry, ModelResource
from mcp_app.providers.managed import ManagedProvider
from tests.contexts import ctx_for

pytestmark = pytest.mark.django_db(transaction=True)  # the provider closes connections between calls, as in a server

CAP = 16 * 1024  # AUDIT_MAX_ARGUMENTS_BYTES' default
ERROR_CAP = 2000  # AUDIT_MAX_ERROR_CHARS' default


# -- a provider of our own: tools that fail in every way, and an exposure whose queries raise --------------------
registry = Registry()
events: dict[str, asyncio.Event] = {}


@registry.tool(permission_classes=[AllowAny])
def echo(text: str) -> str:
    """Return the text."""
    return text


@registry.tool(permission_classes=[AllowAny])
def peek() -> dict:
    """The audit rows as the tool sees them while it runs."""
    return {"rows": [list(row) for row in ToolCall.objects.values_list("tool", "outcome")]}


runs: list[str] = []


@registry.tool(permission_classes=[AllowAny])
def count_runs(text: str) -> str:
    """A side effect the test can count."""
    runs.append(text)
    return f"ran {len(runs)}"


@registry.tool(permission_classes=[AllowAny])
def explode() -> str:
    """Raise an unexpected exception."""
    raise RuntimeError("secret detail from inside the tool")


@registry.tool(permission_classes=[AllowAny])
def refuse() -> str:
    """Raise a ToolError."""
    raise ToolError("no, and here is why")


@registry.tool(permission_classes=[AllowAny])
def refuse_at_length(size: int) -> str:
    """Raise a ToolError with a long message."""
    raise ToolError("why " * size)


@registry.tool(permission_classes=[AllowAny])
def protocol_error() -> str:
    """Raise a JSON-RPC error."""
    raise InvalidParams("this tool says the params are wrong")


@registry.tool(permission_classes=[AllowAny])
async def wait_forever(ctx: Context) -> str:
    """Wait until cancelled."""
    events["started"].set()
    await asyncio.Event().wait()
    return "never"


class BrokenGroups(ModelResource):
    def get_queryset(self, user: Any) -> Any:
        if getattr(user, "username", "") == "breaks":
            raise OverflowError("Python int too large to convert to SQLite INTEGER")
        return super().get_queryset(user)


exposures = ExposureRegistry()
exposures.register(BrokenGroups(Group, fields=["name"], permission_classes=[AllowAny]))
provider = ManagedProvider(registry, exposures)


def call(name: str, arguments: dict[str, Any], user: Any = None, through: ManagedProvider = provider) -> dict[str, Any]:
    return async_to_sync(through.call_tool)(name, arguments, ctx_for(user))


def nested(depth: int, leaf: Any, key: str = "a") -> dict[str, Any]:
    """``{"a": {"a": ... leaf}}``, built without recursion."""
    value: Any = leaf
    for _ in range(depth):
        value = {key: value}
    return value


def depth_of(value: Any) -> int:
    depth = 0
    while isinstance(value, dict) and value:
        value = next(iter(value.values()))
        depth += 1
    return depth


def stored_bytes() -> int:
    """Bytes the audit table holds in its two unbounded columns, as the database stores them."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT COALESCE(SUM(LENGTH(CAST(arguments AS TEXT)) + LENGTH(error_message)), 0) FROM {ToolCall._meta.db_table}"
        )
        return int(cursor.fetchone()[0])


@pytest.fixture(autouse=True)
def fresh_catalog() -> None:
    # The flush between tests removes rows a cached catalog would still hold.
    provider.invalidate()
    provider._synced = False


@pytest.fixture
def breaker(django_user_model: Any) -> Any:
    return django_user_model.objects.create_user("breaks")


# -- redaction at any depth ---------------------------------------------------------------------------------------
def test_redact_handles_any_depth_without_recursion() -> None:
    value = nested(100_000, {"password": "hunter2", "kept": 1})
    out = redact(value, ["password"])
    inner = out
    for _ in range(100_000):
        inner = inner["a"]
    assert inner == {"password": REDACTED, "kept": 1}
    assert value is not out and value["a"] is not out["a"]  # a copy: the tool's arguments are left alone


def test_redact_matches_keys_case_insensitively_in_lists_too() -> None:
    assert redact({"auth": [{"API_KEY": "k", "n": [1, {"Token": "t"}]}], "x": "y"}, ["api_key", "token"]) == {
        "auth": [{"API_KEY": REDACTED, "n": [1, {"Token": REDACTED}]}],
        "x": "y",
    }


def test_deep_arguments_are_audited_with_a_marker_where_nesting_was_cut() -> None:
    result = call("echo", {"text": nested(700, {"token": "t"})})
    assert result["isError"] is True
    row = ToolCall.objects.get()
    assert (row.tool, row.outcome) == ("echo", "tool_error")
    assert depth_of(row.arguments) < 100
    assert "nested more than" in json.dumps(row.arguments)
    assert len(json.dumps(row.arguments)) < CAP


# -- values JSON columns refuse -------------------------------------------------------------------------------------
def test_non_finite_numbers_nul_and_lone_surrogates_are_stored_readably() -> None:
    # The admin's try-it page and code callers do not go through the strict wire parser.
    call("echo", {"text": "a\x00b", "n": [float("inf"), float("-inf"), float("nan"), 1.5], "s": "x\ud800y", "k\x00ey": 1})
    row = ToolCall.objects.get()
    assert row.arguments == {
        "text": "a\\u0000b",
        "n": ["[non-finite number: inf]", "[non-finite number: -inf]", "[non-finite number: nan]", 1.5],
        "s": "x\\ud800y",
        "k\\u0000ey": 1,
    }
    stored = audit_arguments({"v": float("inf")})
    json.dumps(stored, allow_nan=False)  # what PostgreSQL's jsonb would accept


# -- failures are never "ok" ----------------------------------------------------------------------------------------
def test_an_exception_in_a_data_tool_is_audited_as_failed(breaker: Any, caplog: pytest.LogCaptureFixture) -> None:
    assert call("auth_group_list", {})["structuredContent"] is not None  # works for other users
    with pytest.raises(OverflowError):
        call("auth_group_list", {"limit": 5}, user=breaker)
    ok, failed = ToolCall.objects.order_by("created", "id")
    assert ok.outcome == "ok"
    assert (failed.tool, failed.outcome, failed.user) == ("auth_group_list", "failed", breaker)
    assert "OverflowError" in failed.error_message and "SQLite INTEGER" not in failed.error_message


def test_an_exception_in_a_code_tool_is_a_tool_error_not_ok() -> None:
    result = call("explode", {})
    assert result["isError"] is True and "secret detail" not in result["content"][0]["text"]
    row = ToolCall.objects.get()
    assert row.outcome == "tool_error" and "secret detail" not in row.error_message


def test_a_cancelled_call_is_audited_as_failed() -> None:
    async def scenario() -> None:
        events["started"] = asyncio.Event()
        ctx = ctx_for()
        task = asyncio.ensure_future(provider.call_tool("wait_forever", {}, ctx))
        await events["started"].wait()
        ctx.cancel()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    async_to_sync(scenario)()
    row = ToolCall.objects.get()
    assert (row.tool, row.outcome, row.arguments) == ("wait_forever", "failed", {})
    assert "cancelled" in row.error_message


def query_tool_provider() -> ManagedProvider:
    QueryTool.objects.create(name="count_groups", exposure="auth.group", operation="count")
    return ManagedProvider(Registry(), exposures)


@pytest.mark.parametrize(
    ("name", "arguments", "outcome", "raises"),
    [
        ("echo", {"text": "hi"}, "ok", None),
        ("echo", {"text": 5}, "tool_error", None),
        ("refuse", {}, "tool_error", None),
        ("explode", {}, "tool_error", None),
        ("protocol_error", {}, "failed", InvalidParams),
        ("no_such_tool", {"password": "p"}, "refused", InvalidParams),
        ("auth_group_list", {}, "ok", None),
        ("auth_group_list", {"nope": 1}, "failed", InvalidParams),
        ("auth_group_get", {"pk": 123456}, "tool_error", None),
        ("count_groups", {}, "ok", None),
    ],
)
def test_every_call_that_reaches_the_tool_layer_leaves_exactly_one_row(
    name: str, arguments: dict[str, Any], outcome: str, raises: type | None
) -> None:
    through = query_tool_provider() if name == "count_groups" else provider
    if raises is None:
        call(name, arguments, through=through)
    else:
        with pytest.raises(raises):
            call(name, arguments, through=through)
    row = ToolCall.objects.get()
    assert (row.tool, row.outcome) == (name, outcome)
    assert (row.error_message == "") == (outcome == "ok")


# -- the row is written ahead; a tool never runs unrecorded, and a result is never withheld -------------------------
def test_the_row_is_written_before_the_tool_runs() -> None:
    assert call("peek", {})["structuredContent"] == {"rows": [["peek", "started"]]}
    row = ToolCall.objects.get()
    assert (row.tool, row.outcome, row.error_message) == ("peek", "ok", "")


def test_a_row_that_cannot_be_written_runs_nothing_and_says_retry(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def database_down(rows: Any) -> None:
        raise OperationalError('connection to server at "127.0.0.1", port 5432 failed: Connection refused')

    monkeypatch.setattr(audit, "_insert_rows", database_down)
    runs.clear()
    with caplog.at_level(logging.WARNING, logger="mcp_app"), pytest.raises(Unavailable) as info:
        call("count_runs", {"text": "zebra-value"})
    assert runs == []  # the tool did not run
    error = info.value.to_error()
    assert error["code"] == UNAVAILABLE == -32003 and error["data"] == {"retryAfter": RETRY_AFTER}
    assert "count_runs" in error["message"] and "nothing was done" in error["message"]
    assert "retry" in error["message"].lower() and "5432" not in error["message"]
    logged = [r.getMessage() for r in caplog.records if "audit" in r.getMessage()]
    assert logged and "count_runs" in logged[0] and "not run" in logged[0]
    assert "zebra-value" not in caplog.text  # arguments may hold personal data: the log names the call only
    monkeypatch.undo()
    assert call("count_runs", {"text": "again"})["content"][0]["text"] == "ran 1"  # the retry runs it, once
    assert list(ToolCall.objects.values_list("outcome", flat=True)) == ["ok"]


def test_any_failure_to_write_the_row_refuses_the_call(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(audit, "_insert_rows", lambda rows: (_ for _ in ()).throw(DatabaseError("disk I/O")))
    runs.clear()
    with pytest.raises(Unavailable):
        call("count_runs", {"text": "x"})
    assert runs == []


def test_an_outcome_that_cannot_be_recorded_still_delivers_the_result_and_is_retried(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Three failures: the first try on the writer's kept connection and once more on a new one, then the first
    # background retry; the second retry records it.
    failures = {"left": 3}
    real_update = audit._update
    monkeypatch.setattr(audit, "CONNECTION_LINGER", 30.0)  # the row's connection is surely kept for the outcome

    def flaky_update(pk: int, fields: dict[str, Any]) -> None:
        if failures["left"]:
            failures["left"] -= 1
            raise OperationalError("server closed the connection unexpectedly")
        real_update(pk, fields)

    monkeypatch.setattr(audit, "_update", flaky_update)
    writer = AuditWriter(retry_delays=(0.05, 0.05, 0.05))
    through = ManagedProvider(registry, exposures, audit=writer)
    ctx = ctx_for()
    ctx.request_id = "req-7"
    with caplog.at_level(logging.INFO, logger="mcp_app"):
        result = async_to_sync(through.call_tool)("echo", {"text": "zebra-value"}, ctx)
        assert result["content"][0]["text"] == "zebra-value"  # delivered although the outcome was not recorded
        assert writer.wait_idle(10)
    row = ToolCall.objects.get()
    assert (row.tool, row.outcome) == ("echo", "ok") and failures["left"] == 0
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "audit" in r.getMessage()]
    assert warned and "'echo'" in warned[0] and "'req-7'" in warned[0] and "retrying" in warned[0]
    assert any("recorded the outcome (ok)" in r.getMessage() and "retry 2" in r.getMessage() for r in caplog.records)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert "zebra-value" not in caplog.text


def test_an_outcome_never_recorded_is_logged_as_an_error(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    attempts: list[str] = []

    def broken_update(pk: int, fields: dict[str, Any]) -> None:
        attempts.append(fields["outcome"])
        raise OperationalError("the database system is shutting down")

    monkeypatch.setattr(audit, "_update", broken_update)
    monkeypatch.setattr(audit, "CONNECTION_LINGER", 30.0)  # the row's connection is surely kept for the outcome
    writer = AuditWriter(retry_delays=(0.02, 0.02, 0.02))
    through = ManagedProvider(registry, exposures, audit=writer)
    with caplog.at_level(logging.WARNING, logger="mcp_app"):
        assert async_to_sync(through.call_tool)("refuse", {}, ctx_for())["isError"] is True
        assert writer.wait_idle(10)
    # The first try on the writer's kept connection, once more on a new one (a kept connection may just have
    # been closed by the server), then the three background retries, then no more.
    assert attempts == ["tool_error"] * 5
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "gave up" in errors[0] and "'refuse'" in errors[0] and "'started'" in errors[0]
    assert ToolCall.objects.get().outcome == "started"  # left visible as such in the admin


def test_a_failed_outcome_update_keeps_a_protocol_error_as_it_was(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(audit, "_update", lambda pk, fields: (_ for _ in ()).throw(DatabaseError("locked")))
    writer = AuditWriter(retry_delays=(0.01,))
    with pytest.raises(McpError) as info:
        async_to_sync(ManagedProvider(registry, exposures, audit=writer).call_tool)("no_such_tool", {}, ctx_for())
    assert info.value.code == -32602  # the client still learns what it did wrong; the log has the audit failure
    assert writer.wait_idle(10)


def test_started_rows_are_found_by_the_admins_outcome_filter(admin_client: Any) -> None:
    ToolCall.objects.create(tool="left_running", outcome=ToolCall.Outcome.STARTED)
    ToolCall.objects.create(tool="finished_fine", outcome=ToolCall.Outcome.OK)
    page = admin_client.get("/admin/mcp_app/toolcall/", {"outcome__exact": "started"})
    assert page.status_code == 200
    assert [row.tool for row in page.context["cl"].result_list] == ["left_running"]
    assert "no outcome yet" in page.content.decode()  # the filter offers the choice, named for what it means


# -- caps -----------------------------------------------------------------------------------------------------------
def test_ten_calls_with_4_mib_arguments_store_at_most_ten_caps() -> None:
    before = stored_bytes()
    big = {"blob": "x" * (4 * 1024 * 1024), "token": "t"}
    long_name = "n" * 10_000
    for _ in range(10):
        with pytest.raises(InvalidParams) as info:
            call(long_name, big)
        assert len(info.value.message) < 200  # the caller's text is echoed briefly
    grown = stored_bytes() - before
    assert ToolCall.objects.count() == 10
    assert grown <= 10 * (CAP + ERROR_CAP), grown
    row = ToolCall.objects.first()
    assert row.arguments["_truncated"] is True
    assert row.arguments["original_bytes"] > 4 * 1024 * 1024
    assert row.arguments["preview"].startswith('{"blob": "xxx')
    assert len(json.dumps(row.arguments, ensure_ascii=False).encode()) <= CAP
    assert row.tool == long_name[:128]


def test_long_error_messages_are_capped_with_a_marker() -> None:
    call("refuse_at_length", {"size": 100_000})
    row = ToolCall.objects.get()
    assert row.outcome == "tool_error" and row.error_message.startswith("why why")
    assert len(row.error_message) <= ERROR_CAP and row.error_message.endswith("[truncated: 400000 characters in all]")


def test_a_1_mib_argument_stores_one_cap(capsys: pytest.CaptureFixture[str]) -> None:
    before = stored_bytes()
    call("echo", {"text": "é" * (512 * 1024)})  # 1 MiB of UTF-8
    size = stored_bytes() - before
    assert size <= CAP + 100
    with capsys.disabled():
        print(f"\naudit row size for a 1 MiB argument: {size} bytes (arguments + error message)")


def test_truncation_is_valid_json_and_redacts_first() -> None:
    stored = audit_arguments({"password": "p" * 100_000, "text": '"quoted"\n' * 5_000}, max_bytes=1024)
    text = json.dumps(stored, ensure_ascii=False)
    assert len(text.encode()) <= 1024 and stored["_truncated"] is True
    assert "ppppp" not in text and REDACTED in stored["preview"]
    assert audit_arguments({"a": 1}, max_bytes=1024) == {"a": 1}


def test_cap_text_says_what_was_cut() -> None:
    assert cap_text("short", 2000) == "short"
    capped = cap_text("e" * 5000, 2000)
    assert len(capped) <= 2000 and capped.endswith("[truncated: 5000 characters in all]")


@override_settings(MCP_APP={"AUDIT_MAX_ARGUMENTS_BYTES": 1024, "AUDIT_MAX_ERROR_CHARS": 100})
def test_caps_follow_the_settings() -> None:
    call("echo", {"text": "y" * 5000})
    call("refuse_at_length", {"size": 500})
    echoed, refused = ToolCall.objects.order_by("created", "id")
    assert echoed.arguments["_truncated"] is True and len(json.dumps(echoed.arguments)) <= 1024
    assert refused.arguments == {"size": 500}
    assert len(refused.error_message) == 100 and refused.error_message.endswith("2000 characters in all]")


@pytest.mark.parametrize("value", [0, -1, "16k", None])
def test_invalid_caps_are_reported_by_the_checks(value: Any) -> None:
    with override_settings(MCP_APP={"AUDIT_MAX_ARGUMENTS_BYTES": value, "AUDIT_MAX_ERROR_CHARS": value}):
        ids = [m.id for m in run_checks() if "AUDIT_MAX" in m.msg]
    assert ids == ["mcp_app.E003", "mcp_app.E003"]


@pytest.mark.parametrize(
    ("arguments", "shortcut"),
    [
        ({"text": "hello", "n": 3, "ok": True, "none": None, "x": 2.5}, True),
        ({}, True),
        ({"api_token": "s3cret", "text": "hi"}, False),
        ({"Password": "p"}, False),
        ({"text": "a\x00b"}, False),
        ({"text": "caf\u00e9 \ud800"}, False),
        ({"x": float("nan"), "y": float("-inf")}, False),
        ({"nested": {"password": "p"}}, False),
        ({1: "int key"}, False),
        ({"k\x00": "v"}, False),
        ({f"k{i}": i for i in range(40)}, False),
        (["a", {"token": "t"}], False),
        ("plain", False),
    ],
)
def test_audit_arguments_stores_the_same_with_or_without_its_shortcut(arguments: Any, shortcut: bool) -> None:
    """A flat dict of plain values skips the walk; what is stored is what the walk stores, whatever comes."""
    patterns = ["password", "token", "secret"]
    walked = audit._copy(arguments, patterns, audit.AUDIT_MAX_DEPTH, clean=True)
    assert (audit._flat_copy(arguments, patterns) is not None) is shortcut
    stored = audit.audit_arguments(arguments, patterns=patterns, max_bytes=10_000)
    assert stored == walked
    if isinstance(arguments, dict):
        assert stored is not arguments  # a copy: the caller's dict is never the row's
