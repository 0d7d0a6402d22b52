"""The MCP dashboard of the admin: calls over time, per tool counts, error rates, latency percentiles, active
sessions by transport and client, and the recent failures, over a chosen window.

Every figure is an aggregate query (``GROUP BY``, ``COUNT``, an ``ORDER BY ... OFFSET`` per percentile): the
work in Python is bounded by the number of buckets, tools and clients shown, never by the number of calls, so
the page costs the same handful of queries on an audit log of ten rows or ten million. The same queries run on
SQLite and PostgreSQL (no percentile aggregate, which SQLite lacks). Three indexes of ToolCall serve them
(:data:`WINDOW_INDEX`, :data:`TOOL_INDEX`, :data:`DURATION_INDEX`), so that they read index entries rather than
the audit rows and sort little; on SQLite, whose planner cannot tell how much of the log a window holds, the
queries name them (:func:`index_for`).

Charts are SVG rendered here on the server: nothing to load, readable without JavaScript, and each bar carries
a ``<title>`` with its exact figures.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import pairwise
from typing import Any

from django.db import connection
from django.db.models import Avg, Count, Max, Q, QuerySet
from django.db.models.functions import Now
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.http import urlencode
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import gettext_lazy as _

from .conf import mcp_settings
from .models import Session, ToolCall, Worker

#: Outcomes a client saw as an error: the tool's own isError, a protocol failure, a refusal.
ERROR_OUTCOMES = (ToolCall.Outcome.TOOL_ERROR, ToolCall.Outcome.FAILED, ToolCall.Outcome.REFUSED)
#: Outcomes whose duration is the tool's running time (a refusal or a call still running has none).
TIMED_OUTCOMES = (ToolCall.Outcome.OK, ToolCall.Outcome.TOOL_ERROR, ToolCall.Outcome.FAILED)
PERCENTILES = (50, 95, 99)
#: How many rows of the per-tool table and the client table are shown.
TOP = 15
#: How many of the latest failures are listed (the audit log, filtered, has them all).
FAILURES = 10


@dataclass(frozen=True)
class Window:
    """A time window of the dashboard: its length and the width of one bar of the chart."""

    key: str
    label: str
    length: timedelta
    bucket: timedelta

    def buckets(self, now: datetime) -> list[datetime]:
        """The start of every bucket from ``now - length`` to ``now``, in the current time zone, oldest first."""
        end = self._floor(timezone.localtime(now))
        count = int(self.length / self.bucket) + 1  # the window's first, partly covered bucket too
        return [end - self.bucket * i for i in range(count - 1, -1, -1)]

    def _floor(self, moment: datetime) -> datetime:
        if self.bucket >= timedelta(days=1):
            return moment.replace(hour=0, minute=0, second=0, microsecond=0)
        if self.bucket >= timedelta(hours=1):
            return moment.replace(minute=0, second=0, microsecond=0)
        return moment.replace(second=0, microsecond=0)


WINDOWS: dict[str, Window] = {
    w.key: w
    for w in (
        Window("hour", "Last hour", timedelta(hours=1), timedelta(minutes=1)),
        Window("day", "Last 24 hours", timedelta(days=1), timedelta(hours=1)),
        Window("week", "Last 7 days", timedelta(days=7), timedelta(days=1)),
    )
}
DEFAULT_WINDOW = "day"


def bucket_counts(edges: list[datetime]) -> list[tuple[int, int, float | None]]:
    """Calls, errors and the average duration of the timed calls from each of ``edges`` to the next (the last
    range includes its end): one ``SELECT`` per bar, joined with ``UNION ALL`` in one query.

    Each part is a range of ``created`` that the index ``mcp_toolcall_window`` answers alone, in order: nothing
    is computed per row and nothing sorted, where grouping by a bar number computed from ``created`` made the
    database compute it for every call of the window and sort them all by it (a week of 200,000 calls on SQLite:
    210 ms that way, 37 ms this way). The ranges are the bars' local-time starts, so days across a daylight
    saving change are what the chart says. Plain SQL, the same on every backend."""
    ops = connection.ops
    table, q = ToolCall._meta.db_table, ops.quote_name
    created, outcome, duration = (q(ToolCall._meta.get_field(name).column) for name in ("created", "outcome", "duration_ms"))
    errors, timed = ", ".join(["%s"] * len(ERROR_OUTCOMES)), ", ".join(["%s"] * len(TIMED_OUTCOMES))
    parts, params = [], []
    for i, (start, end) in enumerate(pairwise(edges)):
        last = i == len(edges) - 2
        parts.append(
            f"SELECT {i}, COUNT(*), SUM(CASE WHEN {outcome} IN ({errors}) THEN 1 ELSE 0 END), "
            f"AVG(CASE WHEN {outcome} IN ({timed}) THEN {duration} END) "
            f"FROM {q(table)} WHERE {created} >= %s AND {created} {'<=' if last else '<'} %s"
        )
        params += [*ERROR_OUTCOMES, *TIMED_OUTCOMES, ops.adapt_datetimefield_value(start), ops.adapt_datetimefield_value(end)]
    with connection.cursor() as cursor:
        cursor.execute(" UNION ALL ".join(parts), params)
        rows = {row[0]: row for row in cursor.fetchall()}
    return [(rows[i][1], rows[i][2] or 0, None if rows[i][3] is None else float(rows[i][3])) for i in range(len(edges) - 1)]


class UnknownWindow(ValueError):
    """The ``window`` asked for is none of :data:`WINDOWS`; the message names the valid ones."""


def get_window(key: str | None) -> Window:
    """The window named ``key`` (None or empty: the default); :class:`UnknownWindow` for any other value."""
    if not key:
        return WINDOWS[DEFAULT_WINDOW]
    try:
        return WINDOWS[key]
    except KeyError:
        raise UnknownWindow(f"Unknown window {key[:40]!r}: choose one of {', '.join(WINDOWS)}.") from None


@dataclass
class Bucket:
    start: datetime
    calls: int = 0
    errors: int = 0
    avg_ms: float | None = None


@dataclass
class Dashboard:
    """Everything the dashboard page shows for one window."""

    window: Window
    since: datetime
    calls: int
    errors: int
    outcomes: dict[str, int]
    percentiles: dict[int, float | None]
    buckets: list[Bucket]
    tools: list[dict[str, Any]]
    transports: list[dict[str, Any]]
    active_sessions: list[dict[str, Any]]
    active_total: int
    workers_alive: int = 0
    workers_lapsed: int = 0
    failures: list[ToolCall] = field(default_factory=list)

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.calls if self.calls else None

    @property
    def without_outcome(self) -> int:
        """Calls still ``started``: running, or their worker stopped before recording an outcome."""
        return self.outcomes.get(ToolCall.Outcome.STARTED, 0)

    @property
    def error_percent(self) -> float | None:
        return None if self.error_rate is None else 100 * self.error_rate


#: The indexes of ToolCall's Meta that the dashboard's window queries read.
WINDOW_INDEX = "mcp_toolcall_window"  # created, outcome, via, duration_ms: a window's rows, in date order
TOOL_INDEX = "mcp_toolcall_tool_window"  # tool, created, ...: grouped by tool
DURATION_INDEX = "mcp_toolcall_duration"  # duration_ms, outcome, created: in duration order
#: On SQLite, the per-tool table and the percentiles walk :data:`TOOL_INDEX` and :data:`DURATION_INDEX` when the
#: window holds at least this share of the log: walking an index entry costs about a tenth of sorting a row,
#: and the walk may cross the whole index.
WALK_SHARE = 1 / 4


def index_for(query: str, window_share: float) -> str | None:
    """The index (``INDEXED BY``) that the window query ``query`` names on this database, or None to let the
    planner choose. ``query`` is "tools" (the per-tool table), "percentiles", or "window" (any other read of the
    window: the counts by outcome and transport, the latest failures); ``window_share`` is the share of the log
    the window holds (see :func:`window_share`).

    SQLite's planner has no statistics unless someone ran ``ANALYZE``, and even then (without the optional
    STAT4) it guesses that a range of dates holds a sixtieth of the rows: it would read a percentile's window
    through the index of ``outcome`` (a lookup and a sort of every timed call in the log, for a window of an
    hour), and sort a week's 200,000 calls by tool and by duration even when the week is the whole log. So on
    SQLite the dashboard names the index: the window's range of :data:`WINDOW_INDEX`, or, when the window is
    :data:`WALK_SHARE` of the log or more, the index that has the rows in the order wanted. PostgreSQL's
    statistics tell it how much of the log a window holds, and it chooses by itself."""
    if connection.vendor != "sqlite":
        return None
    walk = query != "window" and window_share >= WALK_SHARE
    return {"tools": TOOL_INDEX, "percentiles": DURATION_INDEX}[query] if walk else WINDOW_INDEX


def window_share(window_calls: int) -> float:
    """The share of the audit log that ``window_calls`` calls are, at least (0 when not SQLite: unused there)."""
    if connection.vendor != "sqlite" or not window_calls:
        return 0.0
    return window_calls / max(1, _rows_at_most())


def _rows_at_most() -> int:
    """An upper bound of the audit log's rows, read from the two ends of its primary key (ids only grow)."""
    table, pk = connection.ops.quote_name(ToolCall._meta.db_table), connection.ops.quote_name(ToolCall._meta.pk.column)
    with connection.cursor() as cursor:
        # Two SELECTs, so that each is the one-row lookup SQLite makes of a lone MIN() or MAX().
        cursor.execute(f"SELECT MAX({pk}) FROM {table} UNION ALL SELECT MIN({pk}) FROM {table}")
        high, low = (row[0] for row in cursor.fetchall())
    return 0 if high is None else high - low + 1


def _rows(queryset: QuerySet, index: str | None) -> list[dict[str, Any]]:
    """The rows of ``queryset`` (a ``values()`` one) as dicts; read through ``index`` if one is named (SQLite)."""
    if index is None:
        return list(queryset)
    sql, params = queryset.query.sql_with_params()
    table = connection.ops.quote_name(ToolCall._meta.db_table)
    sql = sql.replace(f"FROM {table}", f"FROM {table} INDEXED BY {connection.ops.quote_name(index)}", 1)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        names = [column[0] for column in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def percentiles(durations: QuerySet, count: int, *, index: str | None = None) -> dict[int, float | None]:
    """Nearest-rank percentiles of ``durations`` (a queryset of ``duration_ms`` values, ``count`` long):
    one ``ORDER BY duration_ms LIMIT 1 OFFSET k`` query each, so that Python reads one value; read through
    ``index`` if one is named (see :func:`index_for`)."""
    found: dict[int, float | None] = {}
    ordered = durations.order_by("duration_ms").values("duration_ms")
    for p in PERCENTILES:
        rank = max(0, math.ceil(p / 100 * count) - 1)
        rows = _rows(ordered[rank : rank + 1], index) if count else []
        found[p] = rows[0]["duration_ms"] if rows else None
    return found


def latest_failures(failed: QuerySet) -> list[ToolCall]:
    """The :data:`FAILURES` latest calls of ``failed``, with their users. On SQLite, their ids first, read from
    the window's range of :data:`WINDOW_INDEX` newest first (without statistics, SQLite's planner would look up
    every error of the log through the index of ``outcome`` and sort them all), then those rows."""
    latest = failed.order_by("-created")
    index = index_for("window", 0.0)
    if index is None:
        return list(latest.select_related("user")[:FAILURES])
    ids = [row["id"] for row in _rows(latest.values("id")[:FAILURES], index)]
    rows = ToolCall.objects.filter(pk__in=ids).select_related("user").in_bulk()
    return [rows[pk] for pk in ids if pk in rows]


def build(window: Window, *, now: datetime | None = None) -> Dashboard:
    """The dashboard of the calls made within ``window`` before ``now``, and the sessions active now."""
    now = now or timezone.now()
    since = now - window.length
    calls = ToolCall.objects.filter(created__gte=since, created__lte=now)
    is_error = Q(outcome__in=ERROR_OUTCOMES)

    # One pass for the outcome counts and the calls by transport alike.
    outcomes: dict[str, int] = {}
    by_via: dict[str, dict[str, Any]] = {}
    groups = _rows(calls.order_by().values("outcome", "via").annotate(n=Count("id")), index_for("window", 0.0))
    for outcome, via, n in ((row["outcome"], row["via"], row["n"]) for row in groups):
        outcomes[outcome] = outcomes.get(outcome, 0) + n
        row = by_via.setdefault(via, {"via": via, "calls": 0, "errors": 0})
        row["calls"] += n
        row["errors"] += n if outcome in ERROR_OUTCOMES else 0
    total = sum(outcomes.values())
    errors = sum(n for outcome, n in outcomes.items() if outcome in ERROR_OUTCOMES)
    timed = calls.filter(outcome__in=TIMED_OUTCOMES)
    timed_n = sum(n for outcome, n in outcomes.items() if outcome in TIMED_OUTCOMES)
    share = window_share(total)

    # The bars: from the window's start to the second bar's start, ..., from the last bar's start to now.
    starts = window.buckets(now)
    buckets = [
        Bucket(start, calls_n, errors_n, avg_ms)
        for start, (calls_n, errors_n, avg_ms) in zip(starts, bucket_counts([since, *starts[1:], now]), strict=True)
    ]

    tools = _rows(
        calls.order_by()
        .values("tool")
        .annotate(
            calls=Count("id"),
            errors=Count("id", filter=is_error),
            avg_ms=Avg("duration_ms", filter=Q(outcome__in=TIMED_OUTCOMES)),
            max_ms=Max("duration_ms", filter=Q(outcome__in=TIMED_OUTCOMES)),
        )
        .order_by("-calls", "tool")[:TOP],
        index_for("tools", share),
    )
    for row in tools:
        row["error_rate"] = row["errors"] / row["calls"]
    transports = sorted(by_via.values(), key=lambda row: (-row["calls"], row["via"]))

    active = Session.objects.filter(ended__isnull=True)
    active_sessions = list(
        active.order_by()
        .values("transport", "client_name")
        .annotate(n=Count("id"))
        .order_by("-n", "transport", "client_name")[:TOP]
    )
    labels = dict(Session.Transport.choices)
    for row in active_sessions:
        row["transport_label"] = labels.get(row["transport"], row["transport"])
    return Dashboard(
        window=window,
        since=since,
        calls=total,
        errors=errors,
        outcomes=outcomes,
        percentiles=percentiles(timed, timed_n, index=index_for("percentiles", share)),
        buckets=buckets,
        tools=tools,
        transports=transports,
        active_sessions=active_sessions,
        active_total=active.count(),
        # Leases on the database's clock, as the workers keep them (mcp_app.workers): a lapsed one is a worker
        # that died or lost the database, whose sessions the others are ending.
        **Worker.objects.aggregate(
            workers_alive=Count("id", filter=Q(expires__gt=Now())), workers_lapsed=Count("id", filter=Q(expires__lte=Now()))
        ),
        failures=latest_failures(calls.filter(is_error)),
    )


# -- SVG -------------------------------------------------------------------------------------------------------
CHART_WIDTH = 960
CHART_HEIGHT = 180
LATENCY_HEIGHT = 120
_LEFT, _RIGHT, _BOTTOM, _TOP = 48, 6, 22, 10  # room for the axis labels
_PLOT_W = CHART_WIDTH - _LEFT - _RIGHT


def _nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 5 x 10^n at or above ``value``: round figures on the axis."""
    if value <= 0:
        return 1
    power = 10 ** math.floor(math.log10(value))
    return next(step * power for step in (1, 2, 5, 10) if step * power >= value)


def _label(start: datetime, window: Window) -> str:
    local = timezone.localtime(start)
    return f"{local:%a %d}" if window.bucket >= timedelta(days=1) else f"{local:%H:%M}"


def _frame(dashboard: Dashboard, *, height: int, top: float, unit: str, label: str, body: SafeString) -> SafeString:
    """An SVG chart over the dashboard's buckets: the axes (0 and ``top`` on the left, about six times below),
    then ``body``; ``label`` is what a screen reader says of it."""
    buckets = dashboard.buckets
    bottom = height - _BOTTOM
    step = _PLOT_W / max(1, len(buckets))
    every = max(1, math.ceil(len(buckets) / 6))
    ticks = format_html_join(
        "",
        '<text x="{}" y="{}" font-size="11" text-anchor="middle" fill="#666">{}</text>',
        (
            (f"{_LEFT + (i + 0.5) * step:.1f}", height - 6, _label(b.start, dashboard.window))
            for i, b in enumerate(buckets)
            if i % every == 0
        ),
    )
    axis = format_html(
        '<line x1="{l}" y1="{b}" x2="{r}" y2="{b}" stroke="#999"/><line x1="{l}" y1="{t}" x2="{r}" y2="{t}" stroke="#eee"/>'
        '<text x="{lx}" y="{ty}" font-size="11" text-anchor="end" fill="#666">{top}</text>'
        '<text x="{lx}" y="{b}" font-size="11" text-anchor="end" fill="#666">0</text>',
        l=_LEFT,
        r=CHART_WIDTH - _RIGHT,
        b=bottom,
        t=_TOP,
        lx=_LEFT - 6,
        ty=_TOP + 4,
        top=f"{top:g}{unit}",
    )
    return format_html(
        '<svg class="mcp-chart" role="img" aria-label="{}" viewBox="0 0 {} {}" xmlns="http://www.w3.org/2000/svg">{}{}{}</svg>',
        label,
        CHART_WIDTH,
        height,
        axis,
        body,
        ticks,
    )


def calls_chart(dashboard: Dashboard) -> SafeString:
    """Bars of calls per bucket, the errors in red at the foot of each bar; a ``<title>`` per bar."""
    buckets = dashboard.buckets
    top = _nice_ceiling(max((b.calls for b in buckets), default=0))
    plot_h = CHART_HEIGHT - _BOTTOM - _TOP
    step = _PLOT_W / max(1, len(buckets))
    width = f"{max(0.5, step - (1 if step > 3 else 0)):.1f}"
    parts = []
    for i, b in enumerate(buckets):
        x = f"{_LEFT + i * step:.1f}"
        h, eh = plot_h * b.calls / top, plot_h * b.errors / top
        tip = f"{_label(b.start, dashboard.window)}: {b.calls} call(s), {b.errors} error(s)"
        if b.avg_ms is not None:
            tip += f", {b.avg_ms:.1f} ms on average"
        parts.append(
            format_html(
                # The transparent rectangle spans the whole height, so that the tooltip shows over empty bars too.
                '<g><title>{tip}</title><rect x="{x}" y="{y}" width="{w}" height="{h}" fill="#79aec8"/>'
                '<rect x="{x}" y="{ey}" width="{w}" height="{eh}" fill="#ba2121"/>'
                '<rect x="{x}" y="{top}" width="{w}" height="{full}" fill="transparent"/></g>',
                tip=tip,
                x=x,
                w=width,
                y=f"{_TOP + plot_h - h:.1f}",
                h=f"{h:.1f}",
                ey=f"{_TOP + plot_h - eh:.1f}",
                eh=f"{eh:.1f}",
                top=_TOP,
                full=plot_h,
            )
        )
    label = f"Calls over {dashboard.window.label.lower()}: {dashboard.calls} call(s), {dashboard.errors} error(s)"
    body = mark_safe("".join(parts))  # each part was built by format_html
    return _frame(dashboard, height=CHART_HEIGHT, top=top, unit="", label=label, body=body)


def latency_chart(dashboard: Dashboard) -> SafeString:
    """The average duration of the timed calls per bucket, as a line broken where a bucket had none."""
    buckets = dashboard.buckets
    top = _nice_ceiling(max((b.avg_ms for b in buckets if b.avg_ms is not None), default=0))
    plot_h = LATENCY_HEIGHT - _BOTTOM - _TOP
    step = _PLOT_W / max(1, len(buckets))
    lines: list[list[str]] = [[]]
    dots = []
    for i, b in enumerate(buckets):
        if b.avg_ms is None:
            lines.append([])
            continue
        x, y = f"{_LEFT + (i + 0.5) * step:.1f}", f"{_TOP + plot_h - plot_h * b.avg_ms / top:.1f}"
        lines[-1].append(f"{x},{y}")
        dots.append((x, y, f"{_label(b.start, dashboard.window)}: {b.avg_ms:.1f} ms on average"))
    body = format_html(
        "{}{}",
        format_html_join(
            "",
            '<polyline points="{}" fill="none" stroke="#417690" stroke-width="1.5"/>',
            ((" ".join(points),) for points in lines if points),
        ),
        format_html_join("", '<circle cx="{}" cy="{}" r="2.5" fill="#417690"><title>{}</title></circle>', dots),
    )
    label = f"Average latency over {dashboard.window.label.lower()}"
    return _frame(dashboard, height=LATENCY_HEIGHT, top=top, unit=" ms", label=label, body=body)


def share_bar(value: int, total: int, *, color: str = "#79aec8", width: int = 120) -> SafeString:
    """A small horizontal bar: ``value`` as a share of ``total``, for the table rows."""
    w = width * value / total if total else 0
    return format_html(
        '<svg class="mcp-bar" width="{}" height="10" viewBox="0 0 {} 10" xmlns="http://www.w3.org/2000/svg">'
        '<rect width="{}" height="10" fill="#eee"/><rect width="{}" height="10" fill="{}"/></svg>',
        width,
        width,
        width,
        f"{w:.1f}",
        color,
    )


# -- the page --------------------------------------------------------------------------------------------------
def dashboard_view(model_admin: Any, request: HttpRequest) -> HttpResponse:
    """The dashboard page for ``?window=hour|day|week`` (default: day); 400 naming the valid windows for any
    other. ``model_admin`` is the audit log's admin; the caller has checked the permission to view it."""
    try:
        window = get_window(request.GET.get("window"))
    except UnknownWindow as exc:
        return HttpResponseBadRequest(str(exc), content_type="text/plain; charset=utf-8")
    data = build(window)
    tool_max = max((row["calls"] for row in data.tools), default=0)
    for row in data.tools:
        row["bar"] = share_bar(row["calls"], tool_max, width=70)
        row["changelist"] = reverse("admin:mcp_app_toolcall_changelist") + "?" + urlencode({"tool": row["tool"]})
    for row in data.active_sessions:
        row["bar"] = share_bar(row["n"], data.active_total)
    context = {
        **model_admin.admin_site.each_context(request),
        "opts": ToolCall._meta,
        "title": _("MCP dashboard"),
        "dashboard": data,
        "chart": calls_chart(data),
        "latency_chart": latency_chart(data),
        "windows": list(WINDOWS.values()),
        "percentiles": [(p, data.percentiles[p]) for p in PERCENTILES],
        "error_outcomes": ",".join(ERROR_OUTCOMES),
        "audit_url": reverse("admin:mcp_app_toolcall_changelist"),
        "sessions_url": reverse("admin:mcp_app_session_changelist"),
        "workers_url": reverse("admin:mcp_app_worker_changelist"),
        "health_url": mcp_settings.HEALTH_PATH,
    }
    return TemplateResponse(request, "admin/mcp_app/dashboard.html", context)
