"""resources/updated fans out per worker, not per subscriber.

The saving process looks up the sessions subscribed to a transaction's changed URIs once and sends one bus
event naming them (:func:`mcp_app.transports.fanout.updated_events`); each worker hands the notification to
the open streams of those sessions that it holds (:func:`mcp_app.transports.fanout.deliver`). Kept: once per
transaction and only after commit, only sessions with a subscription row (rows exist only for URIs the
caller could read), never ended sessions. Live: two daphne workers sharing PostgreSQL and Redis, a save in a
third process reaching each subscribed GET stream on either worker exactly once (whichever worker took the
subscription), and no unsubscribed one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from datetime import date
from typing import Any

import httpx
import pytest
from asgiref.sync import async_to_sync
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from mcp_app import notifications
from mcp_app.models import Subscription
from mcp_app.protocol.subscriptions import resource_updated
from mcp_app.runtime import get_server
from mcp_app.transports import fanout
from mcpsite.library.models import Author, Book
from tests.live import HEADERS, LATEST, initialize_message, shell
from tests.transports.cluster import SETTINGS, Workers, workers_fixture  # noqa: F401 - the fixture

CREATE_BOOK = (
    "from datetime import date; from mcpsite.library.models import Author, Book; "
    "a = Author.objects.create(name='Ada Costa'); "
    "b = Book.objects.create(title='The Silent River', isbn='9780001000001', author=a, genre='novel', "
    "published=date(2001, 5, 4), pages=321); print(b.pk)"
)

# The session store works in its own database thread, as in a server: its rows must be committed to be seen.
pytestmark = pytest.mark.django_db(transaction=True)


def new_session() -> str:
    return async_to_sync(get_server().sessions.create)(transport="streamable_http", protocol_version="2025-11-25").id


@pytest.fixture
def book() -> Book:
    author = Author.objects.create(name="Ada Costa")
    return Book.objects.create(
        title="The Silent River", isbn="9780001000001", author=author, genre="novel", published=date(2001, 5, 4), pages=1
    )


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """What the process hands the channel layer for every worker (each call is one group_send)."""
    events: list[dict[str, Any]] = []

    async def to_workers(event: dict[str, Any]) -> None:
        events.append(event)

    monkeypatch.setattr("mcp_app.transports.events._to_workers", to_workers)
    return events


def test_a_save_sends_one_event_for_every_subscriber(book: Book, sent: list[dict[str, Any]]) -> None:
    uri = f"django://library/book/{book.pk}"
    subscribed = [new_session() for _ in range(40)]
    for session_id in subscribed:
        Subscription.objects.create(session_id=session_id, uri=uri)
    elsewhere = new_session()
    Subscription.objects.create(session_id=elsewhere, uri="django://library/book/999999")
    ended = new_session()
    Subscription.objects.create(session_id=ended, uri=uri)
    async_to_sync(get_server().sessions.end)(ended)
    Subscription.objects.create(session_id=ended, uri=uri)  # a row left behind: its session is over all the same
    sent.clear()
    with transaction.atomic():
        book.pages += 1
        book.save()
        book.save()
        assert sent == []  # nothing before the commit
    updated = [event for event in sent if event.get("type") == fanout.UPDATED]
    assert len(updated) == 1 and len(sent) == 1, sent  # one message for 40 subscribers, not 40
    assert updated[0]["uris"] == [uri]
    assert sorted(updated[0]["sessions"][uri]) == sorted(subscribed)
    assert set(updated[0]["sessions"]) == {uri}
    try:
        with transaction.atomic():
            book.save()
            raise RuntimeError
    except RuntimeError:
        pass
    assert len(sent) == 1  # rolled back: nobody is told


def test_subscribers_are_read_without_a_join(book: Book) -> None:
    """Indexed lookups whose plan does not depend on the tables' statistics (a join of subscriptions and
    sessions ran as a nested loop on fresh PostgreSQL tables: 40 ms for a thousand subscribers)."""
    uri = f"django://library/book/{book.pk}"
    sessions = [new_session() for _ in range(3)]
    for session_id in sessions:
        Subscription.objects.create(session_id=session_id, uri=uri)
    with CaptureQueriesContext(connection) as queries:
        found = notifications.subscribers_of([uri, "django://library/book/999999"])
    assert sorted(found[uri]) == sorted(sessions) and set(found) == {uri}
    assert len(queries) == 2 and not [q for q in queries if "JOIN" in q["sql"].upper()], queries.captured_queries


def test_a_worker_delivers_to_its_streams_of_the_named_sessions() -> None:
    uri, other = "django://library/book/1", "django://library/book/2"
    first, second = fanout.LocalStream("s-1", 0), fanout.LocalStream("s-1", 0)  # two streams of one session
    unnamed = fanout.LocalStream("s-2", 0)
    of_other = fanout.LocalStream("s-3", 0)
    listener = fanout.ListenStream(0, uris=frozenset({uri}), principal=None, user_id=None)
    streams = [first, second, unnamed, of_other]
    for stream in streams:
        fanout.register(stream)
    fanout.register_listener(listener)
    try:
        (event,) = fanout.updated_events([uri, other], {uri: ["s-1", "s-9"], other: ["s-3"]})
        fanout.deliver(event)
    finally:
        for stream in streams:
            fanout.unregister(stream)
        fanout.unregister_listener(listener)
    for stream in (first, second):
        assert stream.pop() == {"type": "mcp.message", "message": resource_updated(uri)} and stream.pop() is None
    assert of_other.pop()["message"] == resource_updated(other) and of_other.pop() is None
    assert unnamed.pop() is None
    assert listener.pop()["message"] == resource_updated(uri) and listener.pop() is None


def test_a_listen_stream_gets_its_uris_of_a_big_change_in_the_events_order() -> None:
    changed = [f"a://{n}" for n in range(5000, 0, -1)]  # a bulk transaction: thousands of rows
    listener = fanout.ListenStream(0, uris=frozenset({"a://7", "a://4000", "b://1"}), principal=None, user_id=None)
    fanout.register_listener(listener)
    try:
        fanout.deliver(fanout.updated_events(changed, {})[0])
    finally:
        fanout.unregister_listener(listener)
    got = []
    while (event := listener.pop()) is not None:
        got.append(event["message"]["params"]["uri"])
    assert got == ["a://4000", "a://7"]


def test_very_many_subscribers_are_split_over_bounded_events() -> None:
    sessions = {"a://1": [f"s{i}" for i in range(7000)], "a://2": [f"t{i}" for i in range(4000)]}
    events = fanout.updated_events(["a://1", "a://2"], sessions)
    assert len(events) == 3
    assert events[0]["uris"] == ["a://1", "a://2"] and all(e["uris"] == [] for e in events[1:])  # listen streams: once
    assert all(sum(map(len, e["sessions"].values())) <= fanout.MAX_SESSIONS_PER_EVENT for e in events)
    named = [(uri, s) for e in events for uri, ids in e["sessions"].items() for s in ids]
    assert sorted(named) == sorted((uri, s) for uri, ids in sessions.items() for s in ids)  # each exactly once
    assert fanout.updated_events(["a://1"], {}) == [{"type": fanout.UPDATED, "uris": ["a://1"], "sessions": {}}]


# -- live: two workers, PostgreSQL, Redis ------------------------------------------------------------------------
async def read_updates(response: httpx.Response, into: list[str]) -> None:
    """Collect the URIs of the resources/updated a GET stream carries."""
    async for line in response.aiter_lines():
        if line.startswith("data:") and line[5:].strip():
            message = json.loads(line[5:])
            if message.get("method") == "notifications/resources/updated":
                into.append(message["params"]["uri"])


async def test_one_save_reaches_the_subscribed_streams_on_both_workers_once(workers: Workers) -> None:
    first, second = workers.start(), workers.start()
    pk = int(shell(SETTINGS, workers.env, CREATE_BOOK))
    uri = f"django://library/book/{pk}"
    async with httpx.AsyncClient(timeout=20) as http, contextlib.AsyncExitStack() as streams:
        received: list[list[str]] = []
        readers = []
        # (worker of its POSTs, worker of its GET stream, subscribed?): sessions whose stream is on the other
        # worker than their subscription, and on each worker a session that did not subscribe.
        plan = [(first, first, True), (second, second, True), (first, second, True), (second, first, True)]
        plan += [(first, first, False), (second, second, False)]
        for posts, stream, subscribe in plan:
            answer = await http.post(posts.mcp_url, json=initialize_message(LATEST), headers=HEADERS)
            headers = {**HEADERS, "mcp-session-id": answer.headers["mcp-session-id"], "mcp-protocol-version": LATEST}
            await http.post(posts.mcp_url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=headers)
            if subscribe:
                request = {"jsonrpc": "2.0", "id": 2, "method": "resources/subscribe", "params": {"uri": uri}}
                assert '"result"' in (await http.post(posts.mcp_url, json=request, headers=headers)).text
            response = await streams.enter_async_context(
                http.stream("GET", stream.mcp_url, headers={**headers, "accept": "text/event-stream"})
            )
            assert response.status_code == 200
            received.append([])
            readers.append(asyncio.ensure_future(read_updates(response, received[-1])))
        try:
            code = f"from django.db import transaction\nfrom mcpsite.library.models import Book\nb = Book.objects.get(pk={pk})\n"
            code += "with transaction.atomic():\n    b.pages = 5; b.save(); b.pages = 6; b.save()\nprint('ok')"
            await asyncio.to_thread(shell, SETTINGS, workers.env, code)
            async with asyncio.timeout(10):
                while any(not got for got, (_, _, subscribed) in zip(received, plan, strict=True) if subscribed):
                    await asyncio.sleep(0.05)
            await asyncio.sleep(1)  # anything more (a second copy, or to an unsubscribed stream) would be here by now
        finally:
            for reader in readers:
                reader.cancel()
    assert received == [[uri] if subscribed else [] for _, _, subscribed in plan]


def test_one_event_for_many_streams_is_encoded_once(monkeypatch: pytest.MonkeyPatch) -> None:
    streams = [fanout.LocalStream(f"s-{n}", 0) for n in range(50)]
    listeners = [fanout.ListenStream(0, uris=frozenset({"a://1"}), principal=None, user_id=None) for _ in range(50)]
    encoded: list[Any] = []
    real = fanout.encode_message
    monkeypatch.setattr(fanout, "encode_message", lambda message: encoded.append(message) or real(message))
    for stream in streams:
        fanout.register(stream)
    for listener in listeners:
        fanout.register_listener(listener)
    try:
        fanout.deliver(fanout.updated_events(["a://1"], {"a://1": [f"s-{n}" for n in range(50)]})[0])
        fanout.deliver({"type": "mcp.message", "message": {"jsonrpc": "2.0", "method": "notifications/message"}})
    finally:
        for stream in streams:
            fanout.unregister(stream)
        for listener in listeners:
            fanout.unregister_listener(listener)
    assert len(encoded) == 2  # one resources/updated for 100 streams, one broadcast for 100 streams
    size = len(real(resource_updated("a://1")))
    assert all(s.pending_bytes == size + len(real(encoded[1])) for s in [*streams, *listeners])
    for stream in [*streams, *listeners]:  # each is written from the one encoding, not encoded again
        event, data = stream.pop_encoded()
        assert event["message"] == resource_updated("a://1") and data == real(resource_updated("a://1"))
