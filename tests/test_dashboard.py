"""The MCP dashboard of the admin (mcp_app.dashboard): its figures from the audit log and the session rows,
its windows, its permission, and that its cost does not grow with the audit log. Runs on SQLite and, with
``--ds tests.pg_settings``, on PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission, User
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from mcp_app import dashboard
from mcp_app.dashboard import WINDOWS, build, calls_chart, get_window, latency_chart
from mcp_app.models import Session, ToolCall, Worker

pytestmark = pytest.mark.django_db

URL = "/admin/mcp_app/toolcall/dashboard/"


def make_calls(now, *, user=None) -> None:
    """Six calls in the last hour (3 errors), one two days ago."""
    rows = [
        ("alpha", "ok", 10, 1),
        ("alpha", "ok", 20, 2),
        ("alpha", "ok", 30, 3),
        ("alpha", "tool_error", 40, 4),
        ("beta", "failed", 100, 5),
        ("beta", "refused", 0, 6),
        ("gamma", "ok", 5, 60 * 48),
    ]
    ToolCall.objects.bulk_create(
        ToolCall(tool=tool, outcome=outcome, duration_ms=ms, created=now - timedelta(minutes=ago), via="http", user=user)
        for tool, outcome, ms, ago in rows
    )


def make_sessions() -> None:
    now = timezone.now()
    Session.objects.create(id="s1", client_name="Claude", transport="streamable_http", protocol_version="2025-11-25")
    Session.objects.create(id="s2", client_name="Claude", transport="streamable_http", protocol_version="2025-11-25")
    Session.objects.create(id="s3", client_name="curl", transport="sse", protocol_version="2024-11-05")
    Session.objects.create(id="s4", client_name="gone", transport="sse", protocol_version="2024-11-05", ended=now)


def test_figures_of_a_window() -> None:
    now = timezone.now()
    make_calls(now)
    make_sessions()
    day = build(get_window("day"), now=now)
    assert (day.calls, day.errors) == (6, 3)
    assert day.error_rate == 0.5
    assert day.outcomes == {"ok": 3, "tool_error": 1, "failed": 1, "refused": 1}
    # Nearest rank over the timed calls (10, 20, 30, 40, 100 ms): refusals have no running time.
    assert day.percentiles == {50: 30, 95: 100, 99: 100}
    assert [(t["tool"], t["calls"], t["errors"]) for t in day.tools] == [("alpha", 4, 1), ("beta", 2, 2)]
    assert day.tools[0]["avg_ms"] == pytest.approx(25) and day.tools[0]["max_ms"] == 40
    assert [(t["via"], t["calls"]) for t in day.transports] == [("http", 6)]
    assert [(s["transport"], s["client_name"], s["n"]) for s in day.active_sessions] == [
        ("streamable_http", "Claude", 2),
        ("sse", "curl", 1),
    ]
    assert day.active_total == 3
    assert [(c.tool, c.outcome) for c in day.failures] == [("alpha", "tool_error"), ("beta", "failed"), ("beta", "refused")]
    assert sum(b.calls for b in day.buckets) == 6 and sum(b.errors for b in day.buckets) == 3
    assert len(day.buckets) == 25  # hours, the partly covered first one included

    week = build(get_window("week"), now=now)
    assert week.calls == 7 and [t["tool"] for t in week.tools] == ["alpha", "beta", "gamma"]
    assert sum(b.calls for b in week.buckets) == 7
    hour = build(get_window("hour"), now=now)
    assert hour.calls == 6 and len(hour.buckets) == 61


def test_calls_land_in_their_own_bucket() -> None:
    now = timezone.now().replace(minute=30, second=0, microsecond=0)
    ToolCall.objects.create(tool="t", outcome="ok", duration_ms=8, created=now - timedelta(hours=3, minutes=10))
    ToolCall.objects.create(tool="t", outcome="failed", duration_ms=2, created=now - timedelta(hours=3, minutes=20))
    ToolCall.objects.create(tool="t", outcome="ok", duration_ms=1, created=now)
    day = build(get_window("day"), now=now)
    by_start = {timezone.localtime(b.start).hour: b for b in day.buckets if b.calls}
    assert set(by_start) == {timezone.localtime(now).hour, timezone.localtime(now - timedelta(hours=3)).hour}
    three_ago = by_start[timezone.localtime(now - timedelta(hours=3)).hour]
    assert (three_ago.calls, three_ago.errors, three_ago.avg_ms) == (2, 1, pytest.approx(5))
    assert day.buckets[-1].calls == 1  # the newest bucket is last
    # The latency line has a point per bucket with timed calls, and breaks across the empty hours between.
    line = str(latency_chart(day))
    assert line.count("<circle") == 2 and line.count("<polyline") == 2
    assert "5.0 ms on average" in line and "1.0 ms on average" in line
    bars = str(calls_chart(day))
    assert "2 call(s), 1 error(s), 5.0 ms on average" in bars


def test_bucket_edges_to_the_second() -> None:
    now = timezone.localtime(timezone.now()).replace(hour=12, minute=0, second=30, microsecond=0)
    for ago in (timedelta(seconds=30), timedelta(seconds=31), timedelta(seconds=105), timedelta(seconds=106)):
        ToolCall.objects.create(tool="t", outcome="ok", duration_ms=1, created=now - ago)
    hour = build(get_window("hour"), now=now)
    calls = {timezone.localtime(b.start).strftime("%H:%M"): b.calls for b in hour.buckets if b.calls}
    # 12:00:00 is in the 12:00 bar, 11:59:59 in 11:59's; 11:58:45 in 11:58's, 11:58:44 too.
    assert calls == {"12:00": 1, "11:59": 1, "11:58": 2}
    midnight = now.replace(hour=0, minute=0, second=0)
    ToolCall.objects.create(tool="t", outcome="ok", duration_ms=1, created=midnight)
    ToolCall.objects.create(tool="t", outcome="ok", duration_ms=1, created=midnight - timedelta(microseconds=1))
    week = build(get_window("week"), now=now)
    days = {timezone.localtime(b.start).date(): b.calls for b in week.buckets if b.calls}
    assert days == {now.date(): 5, (now - timedelta(days=1)).date(): 1}


def test_health_figures_workers_and_calls_without_outcome(admin_client) -> None:
    now = timezone.now()
    for i, expires in enumerate([now + timedelta(minutes=1), now + timedelta(minutes=1), now - timedelta(minutes=1)]):
        Worker.objects.create(id=f"w{i}", host="h", pid=i, expires=expires)
    ToolCall.objects.create(tool="slow", outcome="started", created=now - timedelta(minutes=2))
    data = build(get_window("hour"))
    assert (data.workers_alive, data.workers_lapsed, data.without_outcome) == (2, 1, 1)
    assert data.calls == 1 and data.errors == 0
    html = admin_client.get(URL).content.decode()
    assert 'id="mcp-workers">2<' in html and 'id="mcp-workers-lapsed">1<' in html and 'id="mcp-started">1<' in html
    assert 'data-url="/mcp/health"' in html  # the page asks the health endpoint from the browser


def test_an_empty_log_has_no_percentiles_and_no_rate() -> None:
    empty = build(get_window("hour"))
    assert empty.calls == 0 and empty.error_rate is None
    assert empty.percentiles == {50: None, 95: None, 99: None}
    assert "0 call(s)" in calls_chart(empty)


def test_the_cost_does_not_grow_with_the_log() -> None:
    now = timezone.now()

    def queries() -> list[str]:
        with CaptureQueriesContext(connection) as captured:
            build(get_window("day"), now=now)
        return [q["sql"] for q in captured.captured_queries]

    make_calls(now)
    few = queries()
    ToolCall.objects.bulk_create(
        ToolCall(tool=f"tool{i % 40}", outcome="ok" if i % 7 else "failed", duration_ms=i, created=now - timedelta(seconds=i))
        for i in range(2000)
    )
    many = queries()
    assert len(few) == len(many) <= 12


def test_the_page_shows_the_figures_and_links_failures_to_their_audit_rows(admin_client, admin_user) -> None:
    make_calls(timezone.now(), user=admin_user)
    make_sessions()
    page = admin_client.get(URL + "?window=hour")
    assert page.status_code == 200
    html = page.content.decode()
    assert "<svg" in html and 'id="mcp-calls">6<' in html and 'id="mcp-errors">3<' in html and 'id="mcp-error-rate">50%<' in html
    assert 'id="mcp-p95">100.0' in html
    failed = ToolCall.objects.get(outcome="failed")
    assert f'href="/admin/mcp_app/toolcall/{failed.pk}/change/"' in html
    assert "/admin/mcp_app/toolcall/?tool=alpha" in html
    assert "/admin/mcp_app/session/?state=active" in html
    assert "Claude" in html and "gamma" not in html  # gamma's call is older than the hour
    assert "gamma" in admin_client.get(URL + "?window=week").content.decode()
    for key in WINDOWS:
        assert f'href="?window={key}"' in html or key == "hour"


def test_an_unknown_window_is_a_400_naming_the_valid_ones(admin_client) -> None:
    answer = admin_client.get(URL + "?window=fortnight")
    assert answer.status_code == 400
    assert answer.content.decode() == "Unknown window 'fortnight': choose one of hour, day, week."


def test_only_staff_who_may_view_the_audit_log(client) -> None:
    user = User.objects.create_user("ops", password="pw", is_staff=True)
    client.force_login(user)
    assert client.get(URL).status_code == 403
    user.user_permissions.add(Permission.objects.get(codename="view_toolcall"))
    page = client.get(URL)
    assert page.status_code == 200
    assert b"/admin/mcp_app/session/" not in page.content  # no link to a list they may not see
    outsider = User.objects.create_user("outsider", password="pw")
    client.force_login(outsider)
    answer = client.get(URL)
    assert answer.status_code == 302 and "/admin/login/" in answer["Location"]


def test_the_app_index_and_the_audit_log_link_to_the_dashboard(admin_client) -> None:
    assert URL.encode() in admin_client.get("/admin/mcp_app/").content
    assert URL.encode() in admin_client.get("/admin/mcp_app/toolcall/").content


def make_log(now, count: int = 400) -> list[ToolCall]:
    """``count`` calls over the last three days: several tools and transports, every outcome, durations with
    ties."""
    outcomes = ["ok", "ok", "ok", "tool_error", "failed", "refused", "started", "needs_input"]
    return ToolCall.objects.bulk_create(
        ToolCall(
            tool=f"tool_{i % 7}",
            outcome=outcomes[i % len(outcomes)],
            duration_ms=(i * 37) % 101 / 2,
            via=("streamable_http", "sse", "stdio")[i % 3],
            created=now - timedelta(minutes=11 * i + 1),
        )
        for i in range(count)
    )


def expected(rows: list[ToolCall], since, now) -> dict:
    """The figures of a window, computed in Python from the rows: what build() must find, however it reads them."""
    inside = [r for r in rows if since <= r.created <= now]
    timed = sorted(r.duration_ms for r in inside if r.outcome in ("ok", "tool_error", "failed"))
    errors = [r for r in inside if r.outcome in ("tool_error", "failed", "refused")]
    per_tool: dict[str, list[ToolCall]] = {}
    for r in inside:
        per_tool.setdefault(r.tool, []).append(r)
    return {
        "calls": len(inside),
        "errors": len(errors),
        "percentiles": {p: timed[max(0, -(-p * len(timed) // 100) - 1)] for p in (50, 95, 99)},
        "tools": sorted(
            ((t, len(rs), sum(r.outcome in ("tool_error", "failed", "refused") for r in rs)) for t, rs in per_tool.items()),
            key=lambda x: (-x[1], x[0]),
        ),
        "max_ms": {
            t: max((r.duration_ms for r in rs if r.outcome in ("ok", "tool_error", "failed")), default=None)
            for t, rs in per_tool.items()
        },
    }


@pytest.mark.parametrize("share", [0.0, 1e9], ids=["through-the-indexes", "sorted"])
def test_the_figures_are_the_same_read_through_the_indexes_or_sorted(share, monkeypatch) -> None:
    """On SQLite the per-tool table and the percentiles name their index when the window is a large share of the
    log (WALK_SHARE), else the database sorts: both give the figures computed from the rows in Python."""
    monkeypatch.setattr(dashboard, "WALK_SHARE", share)
    now = timezone.now()
    rows = make_log(now)
    for key in ("hour", "day", "week"):
        data = build(get_window(key), now=now)
        want = expected(rows, now - WINDOWS[key].length, now)
        assert (data.calls, data.errors) == (want["calls"], want["errors"]), key
        assert data.percentiles == want["percentiles"], key
        assert [(t["tool"], t["calls"], t["errors"]) for t in data.tools] == want["tools"], key
        assert {t["tool"]: t["max_ms"] for t in data.tools} == want["max_ms"], key
        assert sum(b.calls for b in data.buckets) == want["calls"] and sum(b.errors for b in data.buckets) == want["errors"]


def query_name(sql: str) -> str:
    if "UNION ALL" in sql:
        return "bars"
    for column, name in (("duration_ms", "percentile"), ("tool", "tools"), ("outcome", "outcomes")):
        if sql.startswith(f'SELECT "mcp_app_toolcall"."{column}"'):
            return name
    return "failure rows" if '"id" IN (' in sql else "failures"


def plans(now, window: str) -> dict[str, str]:
    """The plan of each audit-log query build() runs (EXPLAIN QUERY PLAN on SQLite, EXPLAIN on PostgreSQL), by a
    short name of the query."""
    with CaptureQueriesContext(connection) as captured:
        build(get_window(window), now=now)
    found = {}
    for query in captured.captured_queries:
        sql = query["sql"]
        if "mcp_app_toolcall" not in sql or "MAX(" in sql and "UNION ALL SELECT MIN(" in sql:
            continue
        name = query_name(sql)
        with connection.cursor() as cursor:
            cursor.execute(("EXPLAIN QUERY PLAN " if connection.vendor == "sqlite" else "EXPLAIN ") + sql)
            found[name] = "\n".join(str(row[-1]) for row in cursor.fetchall())
    return found


def test_the_window_queries_read_the_dashboard_indexes() -> None:
    now = timezone.now()
    make_log(now)
    week, hour = plans(now, "week"), plans(now, "hour")
    assert {"bars", "percentile", "tools", "outcomes", "failures"} <= set(week)
    if connection.vendor != "sqlite":  # PostgreSQL plans by its statistics: nothing is named for it
        assert all(dashboard.index_for(query, 1.0) is None for query in ("window", "tools", "percentiles"))
        return
    # The bars: each a range of the covering index, nothing sorted, no function of created per row.
    assert week["bars"].count("USING COVERING INDEX mcp_toolcall_window (created>? AND created<?)") == 8
    assert "TEMP B-TREE" not in week["bars"]
    assert "mcp_toolcall_window" in week["outcomes"] and "mcp_toolcall_window" in hour["outcomes"]
    # A week is the whole log here: the percentiles read the durations in order, the tools come grouped.
    assert week["percentile"] == "SCAN mcp_app_toolcall USING COVERING INDEX mcp_toolcall_duration"
    assert "USING COVERING INDEX mcp_toolcall_tool_window" in week["tools"] and "GROUP BY" not in week["tools"]
    # The latest failures: the window newest first, ten rows read, nothing sorted.
    assert "mcp_toolcall_window (created>? AND created<?)" in hour["failures"] and "TEMP B-TREE" not in hour["failures"]
    # An hour is a small share of it: a range of the window index, sorted (a walk would cross the whole log).
    assert "mcp_toolcall_window (created>? AND created<?)" in hour["percentile"]
