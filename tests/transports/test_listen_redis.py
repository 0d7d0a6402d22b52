"""``subscriptions/listen`` across worker processes: two daphne workers sharing PostgreSQL and a Redis channel
layer, and the official SDK's ``Client`` (mcp 2.3.0) pinned to 2026-07-28 listening on one of them.

A tool-list change made through the other worker (a tool that saves its row) and a model object saved in a
third process (``manage.py shell``, as the admin or a cron job would) reach the listen stream: one bus event
per change, matched against each worker's own streams. A resource the stream did not subscribe to is never
announced on it.
"""

from __future__ import annotations

import anyio
from mcp import Client
from mcp.shared.subscriptions import ResourceUpdated, ToolsListChanged

from tests.live import shell
from tests.transports.cluster import SETTINGS, Workers, workers_fixture  # noqa: F401 - the fixture

MODERN = "2026-07-28"
NEW_BOOK = (
    "from datetime import date; from mcpsite.library.models import Author, Book; "
    "a = Author.objects.create(name='Ada Costa'); "
    "b = Book.objects.create(title='{title}', isbn='{isbn}', author=a, genre='novel', "
    "published=date(2001, 5, 4), pages=321); print(b.pk)"
)


def new_book(workers: Workers, title: str, isbn: str) -> int:
    return int(shell(SETTINGS, workers.env, NEW_BOOK.format(title=title, isbn=isbn)))


def save_book(workers: Workers, pk: int, pages: int) -> None:
    code = f"from mcpsite.library.models import Book; b = Book.objects.get(pk={pk}); b.pages = {pages}; b.save(); print('ok')"
    shell(SETTINGS, workers.env, code)


async def test_changes_on_one_worker_reach_a_listen_stream_on_the_other(workers: Workers) -> None:
    first, second = workers.start(), workers.start()
    watched = new_book(workers, "The Silent River", "9780001000011")
    other = new_book(workers, "The Loud Sea", "9780001000012")
    uri, other_uri = f"django://library/book/{watched}", f"django://library/book/{other}"
    events: list[object] = []
    async with (
        Client(second.mcp_url, mode=MODERN, read_timeout_seconds=20) as listener,
        Client(first.mcp_url, mode=MODERN, read_timeout_seconds=20) as changer,
    ):
        assert listener.protocol_version == MODERN
        async with listener.listen(tools_list_changed=True, resource_subscriptions=[uri, "django://library/book/0"]) as sub:
            # The unknown object is left out of what the server honours.
            assert sub.honored.tools_list_changed and sub.honored.resource_subscriptions == [uri]

            async def collect() -> None:
                async for event in sub:
                    events.append(event)

            async with anyio.create_task_group() as group:
                group.start_soon(collect)
                await changer.call_tool("test_trigger_tool_change", {})  # served by the first worker
                with anyio.fail_after(5):
                    while ToolsListChanged() not in events:
                        await anyio.sleep(0.05)
                await anyio.to_thread.run_sync(save_book, workers, other, 400)  # not subscribed
                await anyio.to_thread.run_sync(save_book, workers, watched, 322)
                with anyio.fail_after(5):
                    while ResourceUpdated(uri) not in events:
                        await anyio.sleep(0.05)
                await anyio.sleep(0.5)  # time for anything that should not come
                group.cancel_scope.cancel()
    assert ResourceUpdated(other_uri) not in events
    assert set(events) == {ToolsListChanged(), ResourceUpdated(uri)}
    for server in (first, second):
        server.assert_no_traceback()
