"""resources/list and a list data tool on an exposure of 1,000,000 rows: first page against a deep page.

    .venv/bin/python -m tests.benchmarks.bench_resources [--rows 1000000] [--postgres] [--repeat 20]

Fills the demo library's Book exposure (SQLite in a temporary file, or with --postgres a scratch
PostgreSQL database ``mcp_app_bench`` on 127.0.0.1, dropped afterwards) and times, through the MCP
dispatcher exactly as a transport calls it, the median of ``--repeat`` calls of:

- resources/list: the first page, the first page of books, and the page after the row at 99.9% of
  the table (the cursor the server would hand out there, signed with the site's key);
- library_book_list ordered by -published (an indexed field): first page and the same deep position;
- for comparison, the OFFSET query a naive paginator would run for that deep page.

Keyset pagination should keep the deep page within 2x of the first; OFFSET grows with the depth.
Not part of the test suite: figures, not pass/fail.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from typing import Any

from .scratch_db import drop_scratch_database


def setup(postgres: bool, workdir: str) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    if postgres:
        import psycopg

        with psycopg.connect("host=127.0.0.1 user=postgres dbname=postgres", autocommit=True) as conn:
            conn.execute("DROP DATABASE IF EXISTS mcp_app_bench")
            conn.execute("CREATE DATABASE mcp_app_bench")
        os.environ["MCP_TEST_POSTGRES_DB"] = "mcp_app_bench"
    else:
        os.environ["MCP_TEST_DB"] = os.path.join(workdir, "bench.sqlite3")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def fill(rows: int) -> None:
    from django.db import connection, transaction

    from mcpsite.library.models import Author, Book

    started = time.perf_counter()
    Author.objects.bulk_create([Author(name=f"Author {i}") for i in range(1000)])
    first_author = Author.objects.order_by("pk").values_list("pk", flat=True)[0]
    table = Book._meta.db_table
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                f"""INSERT INTO {table} (title, isbn, author_id, genre, published, pages)
                SELECT 'Book ' || i, lpad(i::text, 13, '0'), %s + (i %% 1000), 'novel',
                       DATE '1950-01-01' + (i %% 27000), 100 + i %% 800 FROM generate_series(1, %s) AS i""",
                [first_author, rows],
            )
        else:
            chunk = 50_000
            for start in range(1, rows + 1, chunk):
                cursor.executemany(
                    f"INSERT INTO {table} (title, isbn, author_id, genre, published, pages) VALUES (%s, %s, %s, %s, %s, %s)",
                    [
                        (
                            f"Book {i}",
                            f"{i:013d}",
                            first_author + i % 1000,
                            "novel",
                            f"{1950 + (i % 27000) // 366:04d}-{1 + i % 12:02d}-{1 + i % 28:02d}",
                            100 + i % 800,
                        )
                        for i in range(start, min(start + chunk, rows + 1))
                    ],
                )
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {table}")
    print(f"filled {rows:,} books in {time.perf_counter() - started:.1f} s ({connection.vendor})")


def timed(fn: Any, repeat: int) -> float:
    fn()  # warm caches (catalog, permission lookups, statement caches)
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--postgres", action="store_true", help="use PostgreSQL on 127.0.0.1 instead of SQLite")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        setup(args.postgres, workdir)
        try:
            run(args)
        finally:
            if args.postgres:
                drop_scratch_database("mcp_app_bench")


def run(args: argparse.Namespace) -> None:
    from asgiref.sync import async_to_sync

    from mcp_app.protocol import jsonrpc
    from mcp_app.protocol.context import MemorySession, PendingClientRequests, RequestContext
    from mcp_app.providers.exposures.resource import default_exposures
    from mcp_app.runtime import get_server
    from mcpsite.library.models import Book

    fill(args.rows)
    # The demo keeps its books out of resources/list (listed=False); this measures paging a big listed table.
    default_exposures.exposures["library.book"].listed = True
    dispatcher = get_server().dispatcher

    def call(method: str, params: dict[str, Any]) -> dict[str, Any]:
        async def send(message: dict[str, Any]) -> None:
            return None

        ctx = RequestContext(
            session=MemorySession(), request_id=1, meta={}, send=send, pending=PendingClientRequests(), extra={"user": None}
        )
        answer = async_to_sync(dispatcher.handle_request)(jsonrpc.Request(1, method, params), ctx)
        assert "result" in answer, answer
        return answer["result"]

    depth = int(args.rows * 0.999)
    deep_book = Book.objects.order_by("pk").values_list("pk", "published")[depth]
    page_size = dispatcher.page_size
    first = call("resources/list", {})
    # Where the server's own cursor would point after walking ~99.9% of the books.
    deep_cursor = dispatcher.cursors.encode({"k": "resources", "p": {"e": "library.book", "a": deep_book[0]}})
    deep = call("resources/list", {"cursor": deep_cursor})
    books_cursor = dispatcher.cursors.encode({"k": "resources", "p": {"e": "library.book", "a": None}})
    assert len(first["resources"]) == page_size and len(deep["resources"]) == page_size
    assert deep["resources"][0]["uri"] == f"django://library/book/{deep_book[0] + 1}"

    tool_first = {"name": "library_book_list", "arguments": {"order_by": ["-published"], "limit": 100}}
    page = call("tools/call", tool_first)["structuredContent"]
    state = dispatcher.cursors.decode(page["nextCursor"])
    published_at_depth = Book.objects.order_by("-published", "pk").values_list("published", "pk")[depth]
    state["v"] = [published_at_depth[0].isoformat(), published_at_depth[1]]
    tool_deep = {
        "name": "library_book_list",
        "arguments": {"order_by": ["-published"], "limit": 100, "cursor": dispatcher.cursors.encode(state)},
    }
    assert len(call("tools/call", tool_deep)["structuredContent"]["items"]) == 100

    def offset_page() -> None:
        list(Book.objects.order_by("pk")[depth : depth + page_size])

    figures = [
        ("resources/list, first page", timed(lambda: call("resources/list", {}), args.repeat)),
        ("resources/list, first page of books", timed(lambda: call("resources/list", {"cursor": books_cursor}), args.repeat)),
        (
            f"resources/list, page after row {depth:,}",
            timed(lambda: call("resources/list", {"cursor": deep_cursor}), args.repeat),
        ),
        ("library_book_list -published, first page", timed(lambda: call("tools/call", tool_first), args.repeat)),
        (f"library_book_list -published, after row {depth:,}", timed(lambda: call("tools/call", tool_deep), args.repeat)),
        (f"(comparison) OFFSET {depth:,} LIMIT {page_size}, ORM only", timed(offset_page, args.repeat)),
    ]
    print(f"\n{'':52} median of {args.repeat}, {page_size} items a page")
    for label, ms in figures:
        print(f"{label:52} {ms:8.2f} ms")
    print(
        f"\ndeep / first: resources/list {figures[2][1] / figures[0][1]:.2f}x "
        f"(deep / first page of books {figures[2][1] / figures[1][1]:.2f}x), "
        f"library_book_list {figures[4][1] / figures[3][1]:.2f}x"
    )


if __name__ == "__main__":
    main()
