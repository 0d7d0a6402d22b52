"""Resumable Streamable HTTP event streams: numbered SSE events, kept where every worker can read them.

Every event of a resumable stream (Streamable HTTP, protocol 2025-03-26 and later: a POST's answer
upgraded to SSE, or the session's GET stream) carries an id ``<stream>:<seq>``. The stream part is
random, unique within the session, and says which kind of stream it is (``p…`` for a POST's, ``g…`` for
a GET stream); ``seq`` counts the stream's events from 0. Before an event goes to the wire it is stored
(:class:`~mcp_app.models.StreamEvent`, in the database: the one thing every worker of a deployment
shares), so that a client whose connection dropped sends ``GET`` with ``Last-Event-ID`` to any worker
and gets exactly the events of *that* stream after that id (never another stream's), then the rest as
they are stored, until the request's answer.

Kept: at most ``STREAM_EVENT_MAX_PER_STREAM`` events per stream (the oldest are deleted as new ones
come) and none older than ``STREAM_EVENT_RETENTION_SECONDS`` (a resume never sees an older one; rows
are deleted at most once a minute per worker). Ending a session deletes nothing at once, but its rows
go with the session row and age out like the others. A plain JSON answer stores nothing.

Reads and writes run on one thread of this module's own (its own database connection, in order),
not on Django's single thread for synchronous code that every request's ORM work shares, and the events
of all of a worker's streams are written in batches (:class:`_GroupCommit`): a broadcast to a worker's
thousand GET streams is one statement (a ``COPY`` on PostgreSQL, each shared message encoded once), and the
streams past their cap are trimmed in one more.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from channels.db import DatabaseSyncToAsync
from django.db import connection
from django.db.models import Q
from django.utils import timezone

from ..conf import mcp_settings
from ..models import StreamEvent
from ..protocol import versions

logger = logging.getLogger("mcp_app.transports")

POST_STREAM = "p"
GET_STREAM = "g"
_EVENT_ID = re.compile(r"^([pg][A-Za-z0-9_-]{1,31}):(\d{1,9})$")
# How often a worker deletes events past their age, at most (seconds).
AGE_PRUNE_INTERVAL = 60.0

_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mcp_app-streams")
_last_age_prune = 0.0
# In-process wake-ups for resumed streams waiting on a stream written by this worker; other workers'
# writes are found by polling (see :func:`wait_for_events`).
_waiters: dict[tuple[str, str], asyncio.Event] = {}


def resumable(version: str) -> bool:
    """Whether a Streamable HTTP session of ``version`` gets numbered, stored, resumable events (the
    transport's resumability exists since 2025-03-26)."""
    return versions.at_least(version, versions.V2025_03_26)


def primes(version: str) -> bool:
    """Whether streams start with a priming event (an id and empty data) and the server may close a
    stream before its answer, for the client to resume (polling, SEP-1699): 2025-11-25 and later.
    Earlier clients would try to parse the empty data as a message."""
    return versions.at_least(version, versions.V2025_11_25)


def new_stream_id(kind: str) -> str:
    """A fresh stream id of ``kind`` (:data:`POST_STREAM` or :data:`GET_STREAM`); random, so that ids
    are unique within a session without coordination between workers."""
    return kind + secrets.token_urlsafe(9)


def event_id(stream: str, seq: int) -> str:
    return f"{stream}:{seq}"


def parse_event_id(value: str) -> tuple[str, int] | None:
    """``(stream, seq)`` of an id this server issued, or None when ``value`` is not one."""
    match = _EVENT_ID.match(value.strip())
    return (match.group(1), int(match.group(2))) if match else None


def _in_thread(fn: Any) -> Any:
    # thread_sensitive=False is safe: these functions only touch the ORM in autocommit, and
    # DatabaseSyncToAsync closes the thread's connection per CONN_MAX_AGE and when an error broke it.
    return DatabaseSyncToAsync(fn, thread_sensitive=False, executor=_executor)


def _cutoff() -> Any:
    return timezone.now() - timedelta(seconds=mcp_settings.STREAM_EVENT_RETENTION_SECONDS)


Row = tuple[str, str, int, dict[str, Any] | None, bool]
#: The most streams one statement trims to their cap (a condition each).
TRIM_CHUNK = 200


def _insert(rows: list[Row]) -> None:
    """Store a batch of events in one statement, then keep every stream it touched within its cap (one more
    statement, whatever the number of streams)."""
    global _last_age_prune
    created = timezone.now()  # one clock read per batch: its rows are stored together
    if connection.vendor == "postgresql":
        _copy(rows, created)
    else:
        StreamEvent.objects.bulk_create(
            [
                StreamEvent(session_id=session_id, stream=stream, seq=seq, message=message, final=final, created=created)
                for session_id, stream, seq, message, final in rows
            ]
        )
    cap = mcp_settings.STREAM_EVENT_MAX_PER_STREAM
    if cap is not None:
        newest: dict[tuple[str, str], int] = {}
        for session_id, stream, seq, _, _ in rows:
            if seq >= cap:
                newest[(session_id, stream)] = max(seq, newest.get((session_id, stream), -1))
        trims = list(newest.items())
        for at in range(0, len(trims), TRIM_CHUNK):
            # One statement for many streams (a broadcast reaches every long-lived GET stream at once, each past
            # its cap): short ranges on the unique (session, stream, seq) index, OR-ed.
            condition = Q()
            for (session_id, stream), seq in trims[at : at + TRIM_CHUNK]:
                condition |= Q(session_id=session_id, stream=stream, seq__lte=seq - cap)
            _delete(StreamEvent.objects.filter(condition))
    now = time.monotonic()
    if now - _last_age_prune >= AGE_PRUNE_INTERVAL:
        _last_age_prune = now
        _delete(StreamEvent.objects.filter(created__lt=_cutoff()))


def _delete(rows: Any) -> None:
    """Delete ``rows`` in one statement. QuerySet.delete() would first SELECT them (a receiver of post_delete is
    connected for every model, mcp_app.notifications's) and delete them by id in batches; stored events have no
    dependents and concern no receiver."""
    rows._raw_delete(rows.db)


def _copy(rows: list[Row], created: Any) -> None:
    """PostgreSQL: the rows in one ``COPY`` (formatted by psycopg's C code; an INSERT's parameters are quoted
    one by one in Python, which cost more than the statement itself for a broadcast to hundreds of streams).
    A message shared by many rows (a broadcast) is encoded once. Atomic like an INSERT: a row whose session is
    gone fails the whole statement (the caller then stores the rows one by one)."""
    meta = StreamEvent._meta
    columns = [meta.get_field(name).column for name in ("session", "stream", "seq", "message", "final", "created")]
    encoder = meta.get_field("message").encoder
    quote = connection.ops.quote_name
    statement = f"COPY {quote(meta.db_table)} ({', '.join(quote(c) for c in columns)}) FROM STDIN"
    texts: dict[int, str] = {}
    with connection.cursor() as cursor, cursor.cursor.copy(statement) as copy:
        for session_id, stream, seq, message, final in rows:
            text = None
            if message is not None:
                text = texts.get(id(message))  # the rows hold the messages: ids stay unique while this runs
                if text is None:
                    text = texts[id(message)] = json.dumps(message, cls=encoder)
            copy.write_row((session_id, stream, seq, text, final, created))


class _GroupCommit:
    """Appends from every stream of this worker, written in batches: while one INSERT runs, the events that
    arrive queue up and go in the next one (no added delay when idle, one statement per batch under load:
    a broadcast to thousands of GET streams costs a few INSERTs, not thousands)."""

    def __init__(self) -> None:
        self._queue: list[tuple[Row, asyncio.Future[None]]] = []
        self._flushing: asyncio.Task[None] | None = None

    async def add(self, row: Row) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append((row, future))
        if self._flushing is None or self._flushing.done():
            self._flushing = asyncio.ensure_future(self._flush())
        # Awaited bare (no shield, no callback: two objects fewer per event of a broadcast): a cancelled caller
        # cancels only its own future; its row stays in the batch, which never awaits the futures, and a
        # cancelled future is skipped when the batch resolves them (so no exception is left unretrieved).
        await future

    async def _flush(self) -> None:
        while self._queue:
            batch, self._queue = self._queue[:BATCH_MAX], self._queue[BATCH_MAX:]
            try:
                await _in_thread(_insert)([row for row, _ in batch])
            except Exception as exc:
                if len(batch) == 1:
                    if not batch[0][1].done():
                        batch[0][1].set_exception(exc)
                    continue
                # One bad row (its session deleted meanwhile) must not cost the others: one by one.
                self._queue = [(row, future) for row, future in batch] + self._queue
                await self._one_by_one(len(batch))
            else:
                for _, future in batch:
                    if not future.done():
                        future.set_result(None)

    async def _one_by_one(self, count: int) -> None:
        batch, self._queue = self._queue[:count], self._queue[count:]
        for row, future in batch:
            try:
                await _in_thread(_insert)([row])
            except Exception as exc:
                if not future.done():
                    future.set_exception(exc)
            else:
                if not future.done():
                    future.set_result(None)


# The most events in one statement: a broadcast to a worker's thousand or two GET streams is one COPY (a few
# hundred kB), not several in a row, each waited for by the streams behind it.
BATCH_MAX = 2000
_commits: dict[asyncio.AbstractEventLoop, _GroupCommit] = {}


def _group_commit() -> _GroupCommit:
    loop = asyncio.get_running_loop()
    commit = _commits.get(loop)
    if commit is None:
        _commits.clear()  # one event loop per process in a server; tests may start new ones
        commit = _commits[loop] = _GroupCommit()
    return commit


@dataclass(frozen=True)
class Replay:
    """What a resume finds: the stream's events after the client's id, and whether the stream ended."""

    events: list[tuple[int, dict[str, Any] | None, bool]]

    @property
    def ended(self) -> bool:
        return any(final for _, _, final in self.events)


class ResumeRefused(Exception):
    """A ``Last-Event-ID`` that cannot be resumed; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _fetch_after(session_id: str, stream: str, seq: int, *, check: bool) -> Replay:
    rows = StreamEvent.objects.filter(session_id=session_id, stream=stream, created__gte=_cutoff())
    if check:
        first = rows.order_by("seq").values_list("seq", flat=True).first()
        last = rows.order_by("-seq").values_list("seq", flat=True).first()
        if first is None:
            raise ResumeRefused(404, "no such stream")
        if seq > last:
            raise ResumeRefused(400, "ahead of the stream")
        if first > seq + 1:
            raise ResumeRefused(404, "expired")
    found = rows.filter(seq__gt=seq).order_by("seq").values_list("seq", "message", "final")
    return Replay([(s, m, f) for s, m, f in found[:500]])


async def replay_after(session_id: str, stream: str, seq: int) -> Replay:
    """The events of ``stream`` after ``seq`` (at most 500 at a time; call again from the last one).

    Raises :class:`ResumeRefused` when the session keeps no such stream (unknown, another session's,
    or expired: 404), when events right after ``seq`` are no longer kept (404), or when ``seq`` is
    ahead of the stream (400).
    """
    return await _in_thread(_fetch_after)(session_id, stream, seq, check=True)


async def events_after(session_id: str, stream: str, seq: int) -> Replay:
    """Like :func:`replay_after` without the checks: for a stream already being resumed."""
    return await _in_thread(_fetch_after)(session_id, stream, seq, check=False)


async def last_seq(session_id: str, stream: str) -> int:
    """The highest stored seq of ``stream`` (-1 when none): where a resumed GET stream goes on counting."""

    def fetch() -> int:
        value = (
            StreamEvent.objects.filter(session_id=session_id, stream=stream)
            .order_by("-seq")
            .values_list("seq", flat=True)
            .first()
        )
        return -1 if value is None else value

    return await _in_thread(fetch)()


async def wait_for_events(session_id: str, stream: str, timeout: float) -> None:
    """Wait until this worker stores an event of the stream, or ``timeout`` seconds (the caller then
    polls the store: the stream may be written by another worker)."""
    key = (session_id, stream)
    waiter = _waiters.setdefault(key, asyncio.Event())
    try:
        await asyncio.wait_for(waiter.wait(), timeout)
    except TimeoutError:
        pass
    finally:
        if _waiters.get(key) is waiter and not waiter.is_set():
            _waiters.pop(key, None)
        elif waiter.is_set():
            _waiters.pop(key, None)


class EventWriter:
    """Numbers one stream's events and stores each before it is written to the wire.

    One writer per stream at a time (the consumer that serves it, or the detached request that goes on
    after the client left), so numbering needs no coordination.
    """

    def __init__(self, session_id: str, stream: str, next_seq: int = 0) -> None:
        self.session_id = session_id
        self.stream = stream
        self.next_seq = next_seq
        self.ended = False

    async def append(self, message: dict[str, Any] | None, *, final: bool = False) -> str | None:
        """Store the next event; return its id, or None when it could not be stored (logged: the event
        still goes to the wire, without an id, so a resume never claims to pick up after it)."""
        seq = self.next_seq
        self.next_seq += 1
        if final:
            self.ended = True
        try:
            await _group_commit().add((self.session_id, self.stream, seq, message, final))
        except Exception as exc:  # the database is unavailable: deliver anyway, without resumability
            logger.warning(
                "could not keep event %s of session %s for resumption (%s: %s)",
                event_id(self.stream, seq),
                self.session_id,
                type(exc).__name__,
                str(exc).strip()[:300],
            )
            return None
        waiter = _waiters.get((self.session_id, self.stream))
        if waiter is not None:
            waiter.set()
        return event_id(self.stream, seq)
