"""The MCP dashboard's queries (mcp_app.dashboard.build) on an audit log of 200,000 calls, per window.

    .venv/bin/python -m tests.benchmarks.bench_dashboard [--rows 200000] [--days 7] [--postgres] [--repeat 5]
        [--db FILE] [--plans]

Fills mcp_app's ToolCall table (SQLite in a temporary file, or ``--db FILE`` kept and reused when it already
holds the rows; with --postgres a scratch PostgreSQL database ``mcp_app_bench_dashboard`` on 127.0.0.1, dropped
afterwards) with ``--rows`` calls spread evenly over the last ``--days`` days: 40 tools with long names, one
call in ten an error with a long message, arguments of a realistic size. Then prints, for each window, the
median time of ``--repeat`` calls of ``build()`` and of each of its queries, then of the whole page (the admin
view through Django's test client); ``--plans`` prints each query's plan (EXPLAIN QUERY PLAN on SQLite, EXPLAIN
on PostgreSQL), to see which indexes they use. The database is as filled: ANALYZE run on it (VACUUM ANALYZE on
PostgreSQL); drop SQLite's ``sqlite_stat1`` to see a database nobody analysed, Django's default.

Not part of the test suite: figures, not pass/fail.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from datetime import timedelta

from .scratch_db import drop_scratch_database

PG_NAME = "mcp_app_bench_dashboard"
OUTCOMES = ["ok"] * 8 + ["tool_error", "failed"]


def setup(postgres: bool, db_file: str) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    if postgres:
        import psycopg

        with psycopg.connect("host=127.0.0.1 user=postgres dbname=postgres", autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {PG_NAME}")
            conn.execute(f"CREATE DATABASE {PG_NAME}")
        os.environ["MCP_TEST_POSTGRES_DB"] = PG_NAME
    else:
        os.environ["MCP_TEST_DB"] = db_file
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def fill(rows: int, days: int) -> None:
    from django.db import connection
    from django.utils import timezone

    from mcp_app.models import ToolCall

    if ToolCall.objects.count() >= rows:
        print(f"reusing {ToolCall.objects.count():,} rows")
        return
    ToolCall.objects.all().delete()
    started = time.perf_counter()
    now = timezone.now()
    step = timedelta(days=days) / rows
    batch = []
    for i in range(rows):
        outcome = OUTCOMES[i % len(OUTCOMES)]
        batch.append(
            ToolCall(
                created=now - step * i,
                tool=f"library_catalogue_search_books_by_author_and_year_{i % 40}",
                outcome=outcome,
                error_message="" if outcome == "ok" else f"ValidationError: the argument 'year' must be {i} " * 3,
                arguments={"author": f"Author {i % 1000}", "year": 1900 + i % 120, "text": "x" * 80},
                duration_ms=(i * 7919) % 2000 / 10,
                via="streamable_http" if i % 3 else "sse",
            )
        )
        if len(batch) == 5000:
            ToolCall.objects.bulk_create(batch)
            batch = []
    ToolCall.objects.bulk_create(batch)
    with connection.cursor() as cursor:
        # Statistics, as a live database has them (autovacuum on PostgreSQL, where VACUUM also marks the pages
        # all-visible, which index-only scans need).
        cursor.execute("VACUUM ANALYZE" if connection.vendor == "postgresql" else "ANALYZE")
    print(f"filled {rows:,} calls over {days} day(s) in {time.perf_counter() - started:.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--postgres", action="store_true", help="use PostgreSQL on 127.0.0.1 instead of SQLite")
    parser.add_argument("--db", help="SQLite file to keep (and reuse when it already holds the rows)")
    parser.add_argument("--plans", action="store_true", help="print each query's plan")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        setup(args.postgres, args.db or os.path.join(workdir, "bench.sqlite3"))
        try:
            run(args)
        finally:
            if args.postgres:
                drop_scratch_database(PG_NAME)


def run(args: argparse.Namespace) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from mcp_app.dashboard import WINDOWS, build

    fill(args.rows, args.days)
    print(f"{connection.vendor}, {args.rows:,} calls over {args.days} day(s), median of {args.repeat}")
    for key, window in WINDOWS.items():
        build(window)  # warm the caches
        totals, per_query = [], []
        for _ in range(args.repeat):
            started = time.perf_counter()
            with CaptureQueriesContext(connection) as captured:
                build(window)
            totals.append(time.perf_counter() - started)
            per_query.append([float(q["time"]) for q in captured.captured_queries])
        print(f"  {key:5} build(): {statistics.median(totals) * 1000:8.1f} ms")
        for i, query in enumerate(captured.captured_queries):
            ms = statistics.median(times[i] for times in per_query) * 1000
            print(f"        {ms:8.1f} ms  {query['sql'][:110]}")
            if args.plans:
                explain = "EXPLAIN QUERY PLAN " if connection.vendor == "sqlite" else "EXPLAIN "
                with connection.cursor() as cursor:
                    cursor.execute(explain + query["sql"])
                    for row in cursor.fetchall():
                        print("                   ", row[-1])
    page(args.repeat)


def page(repeat: int) -> None:
    """The whole page, as the admin serves it (the view, its template and charts), per window."""
    from django.contrib.auth.models import User
    from django.test import Client

    from mcp_app.dashboard import WINDOWS

    admin = User.objects.filter(username="bench-admin").first() or User.objects.create_superuser("bench-admin", "", "x")
    client = Client()
    client.force_login(admin)
    for key in WINDOWS:
        url = f"/admin/mcp_app/toolcall/dashboard/?window={key}"
        assert client.get(url).status_code == 200
        times = []
        for _ in range(repeat):
            started = time.perf_counter()
            client.get(url)
            times.append(time.perf_counter() - started)
        print(f"  {key:5} page:    {statistics.median(times) * 1000:8.1f} ms")


if __name__ == "__main__":
    main()
