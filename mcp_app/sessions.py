"""Session state shared by every worker: ORM rows with a per-process cache in front.

A message on a known session costs a dict lookup: the cache entry is dropped on every worker through
:mod:`mcp_app.bus` when any worker ends or changes the session, so the cache never serves an ended
session for longer than the bus takes to deliver (milliseconds), and entries expire after
``SESSION_CACHE_TIMEOUT`` seconds anyway. ``last_seen`` is written at most every
``SESSION_TOUCH_INTERVAL`` seconds.

Sessions end without anyone asking in two ways: a credential at ``MAX_SESSIONS_PER_PRINCIPAL`` that opens
another ends its least recently used one (:meth:`SessionStore.create`), and every worker ends the sessions
idle for ``SESSION_IDLE_TIMEOUT`` every ``SESSION_REAP_INTERVAL`` seconds (:meth:`SessionStore.reap_idle`,
a task on the server's event loop: no cron job needed).

This module sits below the transports: closing a session's open streams is the transports' business, so the
store is handed the function that does it (:class:`SessionStore` ``close_streams``; :mod:`mcp_app.runtime`
wires it). Ending sessions from synchronous code (the admin, signal receivers, ``mcp_reap_sessions``) needs
the process's store, so those functions live in :mod:`mcp_app.runtime`.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from channels.db import database_sync_to_async
from django.db import connections, router, transaction
from django.utils import timezone

from .auth import credential_expiry
from .availability import OUTAGE_ERRORS, database_unavailable, is_outage
from .bus import Bus
from .conf import mcp_settings
from .groupcommit import GroupWriter, Pending, committed, on_live_connection
from .models import Session, Subscription
from .protocol.errors import InvalidParams

logger = logging.getLogger("mcp_app")

# 32 random bytes, URL-safe base64: 43 visible ASCII characters, 256 bits of entropy.
_ID_BYTES = 32
# What we accept from clients before touching the cache or DB: visible ASCII (0x21-0x7E), bounded.
SESSION_ID_RE = re.compile(r"^[\x21-\x7e]{1,128}$")
# Enough for many thousands of concurrent sessions per worker; least recently used entries go first.
_CACHE_MAX_ENTRIES = 10_000
# Seconds before trying again to end a session whose credential expired while the database was unreachable.
_EXPIRY_RETRY_SECONDS = 5
# Idle sessions ended per query by the reaper: bounds one statement; a larger backlog takes a few rounds.
_REAP_BATCH = 1000


def new_session_id() -> str:
    return secrets.token_urlsafe(_ID_BYTES)


@dataclass
class SessionRecord:
    """A session as the protocol layer sees it (implements ``SessionState``)."""

    id: str
    transport: str
    protocol_version: str
    client_info: dict[str, Any] = field(default_factory=dict)
    client_capabilities: dict[str, Any] = field(default_factory=dict)
    log_level: str | None = None
    #: The channel of the session's event stream (legacy transport: the one stream that carries answers).
    stream_channel: str = ""
    #: The worker holding that stream (mcp_app.workers): its lease says whether the stream can still be reached.
    worker: str = ""
    #: Who opened it (see mcp_app.auth.Principal.key); only they may use it.
    principal: str = ""
    touched: float = field(default_factory=time.monotonic)
    #: Wall-clock time of the last message (for SESSION_IDLE_TIMEOUT; the row's last_seen, roughly).
    last_active: float = field(default_factory=time.time)
    store: SessionStore | None = field(default=None, repr=False, compare=False)

    async def set_log_level(self, level: str) -> None:
        """Persist logging/setLevel; :class:`~mcp_app.availability.Unavailable` while the database is down."""
        assert self.store is not None
        try:
            await self.store.update(self, log_level=level)
        except OUTAGE_ERRORS as exc:
            raise database_unavailable("logging/setLevel") from exc
        self.log_level = level

    async def subscribe(self, uri: str) -> None:
        """Record resources/subscribe; :class:`~mcp_app.availability.Unavailable` while the database is down."""
        assert self.store is not None
        try:
            await self.store.subscribe(self.id, uri)
        except OUTAGE_ERRORS as exc:
            raise database_unavailable("resources/subscribe") from exc

    async def unsubscribe(self, uri: str) -> None:
        """Record resources/unsubscribe; :class:`~mcp_app.availability.Unavailable` while the database is down."""
        assert self.store is not None
        try:
            await self.store.unsubscribe(self.id, uri)
        except OUTAGE_ERRORS as exc:
            raise database_unavailable("resources/unsubscribe") from exc

    async def record_initialize(
        self, protocol_version: str, client_info: dict[str, Any], client_capabilities: dict[str, Any]
    ) -> None:
        """Record what ``initialize`` negotiated on a session that exists before it (the legacy transport's,
        created when its stream opens); :class:`~mcp_app.availability.Unavailable` while the database is down."""
        assert self.store is not None
        try:
            await self.store.initialize(
                self, protocol_version=protocol_version, client_info=client_info, client_capabilities=client_capabilities
            )
        except OUTAGE_ERRORS as exc:
            raise database_unavailable("initialize") from exc


def _db(fn: Any) -> Any:
    """Run ORM work in Django's thread with the connection hygiene of a request (CONN_MAX_AGE honoured)."""
    return database_sync_to_async(fn)


#: Ends every open stream of a session, on every worker (the transports' delivery provides it).
CloseStreams = Callable[[str], Awaitable[None]]


class SessionStore:
    """Create, find, change and end sessions.

    ``bus`` tells every worker about ends and changes; ``close_streams(session_id)`` closes a session's open
    streams on every worker once it has ended (the store never imports the transports that hold them);
    ``writer`` writes new rows and ``last_seen`` touches in groups (the process's :data:`default_writer`).
    """

    def __init__(self, bus: Bus, close_streams: CloseStreams, *, writer: GroupWriter | None = None) -> None:
        self._bus = bus
        #: Writes new rows and activity touches in groups, off Django's thread for sync code.
        self.writer = writer or default_writer
        self._close_streams = close_streams
        self._cache: OrderedDict[str, tuple[SessionRecord, float]] = OrderedDict()
        #: One timer per session opened here with a credential that expires (see watch_expiry).
        self._expiry_timers: dict[str, asyncio.TimerHandle] = {}
        #: The idle-session reaper of each event loop that serves sessions (see ensure_reaper).
        self._reapers: dict[int, asyncio.Task[None]] = {}
        bus.on("session.invalidate", self._on_invalidate)
        bus.on("session.ended", self._on_ended)

    def _on_invalidate(self, message: dict[str, Any]) -> None:
        self.forget(message.get("session_id", ""))

    def _on_ended(self, message: dict[str, Any]) -> None:
        timer = self._expiry_timers.pop(message.get("session_id", ""), None)
        if timer is not None:
            timer.cancel()

    # -- credential expiry ------------------------------------------------------------------------------
    def watch_expiry(self, session_id: str, principal: Any) -> None:
        """End ``session_id`` when ``principal``'s credential expires (call it from the event loop that
        serves the session: at initialize, and when a stream opens on it).

        One timer per session in this worker, no polling: at the expiry the session ends (row, caches,
        running requests, open streams on every worker) unless the credential was renewed meanwhile (an
        OAuth refresh: the timer moves to the new expiry). Nothing to do for credentials without one.
        """
        expires = getattr(principal, "expires", None)
        if expires is None:
            return
        current = self._expiry_timers.get(session_id)
        if current is not None and not current.cancelled():
            return  # already watched here (the same principal: sessions are bound to it)
        self._schedule_expiry(session_id, principal, expires)

    def unwatch_expiry(self, session_id: str) -> None:
        """Stop watching ``session_id``'s credential (a session that was never stored after all)."""
        timer = self._expiry_timers.pop(session_id, None)
        if timer is not None:
            timer.cancel()

    def _schedule_expiry(self, session_id: str, principal: Any, expires: Any) -> None:
        loop = asyncio.get_running_loop()
        delay = max(0.0, (expires - timezone.now()).total_seconds())
        self._expiry_timers[session_id] = loop.call_later(
            delay, lambda: loop.create_task(self._expire(session_id, principal), name="mcp_app-session-expiry")
        )

    async def _expire(self, session_id: str, principal: Any) -> None:
        try:
            until = await _db(credential_expiry)(principal)
            if until is not None and until > timezone.now():
                self._schedule_expiry(session_id, principal, until)  # renewed (an OAuth refresh): watch the new one
                return
            self._expiry_timers.pop(session_id, None)
            await self.end(session_id)
            await self._close_streams(session_id)
        except Exception as exc:  # the database or layer is down: requests with the credential still get 401
            logger.warning(
                "could not end session %s at its credential's expiry (%s: %s); retrying in %ss",
                session_id,
                type(exc).__name__,
                exc,
                _EXPIRY_RETRY_SECONDS,
            )
            self._schedule_expiry(session_id, principal, timezone.now() + timedelta(seconds=_EXPIRY_RETRY_SECONDS))

    def forget(self, session_id: str) -> None:
        """Drop this worker's cached copy (safe from any thread); the next get() reads the database."""
        self._cache.pop(session_id, None)

    def forget_all(self, message: Any = None) -> None:
        """Drop every cached session (this worker may have missed ends and changes: see mcp_app.bus.RESYNC)."""
        self._cache.clear()

    def _remember(self, record: SessionRecord) -> None:
        self._cache[record.id] = (record, time.monotonic())
        self._cache.move_to_end(record.id)
        while len(self._cache) > _CACHE_MAX_ENTRIES:
            self._cache.popitem(last=False)

    async def create(
        self,
        *,
        transport: str,
        protocol_version: str,
        client_info: dict[str, Any] | None = None,
        client_capabilities: dict[str, Any] | None = None,
        stream_channel: str = "",
        worker: str = "",
        user: Any = None,
        principal: str = "",
        cap_sharers: Any = None,
        session_id: str | None = None,
    ) -> SessionRecord:
        """Store a new session and return it once its row is committed (so that any worker finds it). The
        legacy transport creates it when its stream opens, before ``initialize`` negotiates the version (it
        starts as 2024-11-05), with the stream's channel and worker already known and the id it chose
        (``session_id``; a fresh random one by default).

        Rows are written by the store's group writer (:mod:`mcp_app.groupcommit`), not on Django's thread for
        sync code: sessions created at once share one transaction (one multi-row INSERT when no cap applies).
        Raises the database's error when it is down (the transport answers 503; no row is left behind).

        With ``cap_sharers`` (a ``Q`` on Session: the sessions that share the opener's cap, from
        :func:`mcp_app.limits.session_owner_filter`), the cap of ``MAX_SESSIONS_PER_PRINCIPAL`` holds:
        when they would exceed it, the least recently used ones (oldest ``last_seen``) end, on every
        worker, streams closed; their next request gets 404. The new
        row is inserted first and the surplus ended after, so concurrent creations never leave more than
        the cap open: whichever runs last sees every row and ends all but the cap.
        """
        await self._bus.ensure_listening()
        self.ensure_reaper()
        client_info = client_info or {}
        fields = {
            "id": session_id or new_session_id(),
            "transport": transport,
            "protocol_version": protocol_version,
            "client_name": str(client_info.get("name", ""))[:200],
            "client_version": str(client_info.get("version", ""))[:100],
            "client_info": client_info,
            "client_capabilities": client_capabilities or {},
            "stream_channel": stream_channel,
            "worker": worker,
            "user": user if getattr(user, "is_authenticated", False) else None,
            "principal": principal,
        }
        write = self.writer.submit(_create_rows, (fields, cap_sharers))
        # committed(): a caller cancelled meanwhile (its client left) still learns of the row from the future.
        row, evicted = await committed(write)
        for ended_id in evicted:
            logger.info(
                "MCP session %s ended: its credential opened a new session beyond "
                "MAX_SESSIONS_PER_PRINCIPAL (%s), and it was the least recently used",
                ended_id,
                mcp_settings.MAX_SESSIONS_PER_PRINCIPAL,
            )
            await self.close_everywhere(ended_id)
        record = self._record(row)
        self._remember(record)
        return record

    # -- idle sessions ----------------------------------------------------------------------------------
    def ensure_reaper(self) -> None:
        """Start this event loop's idle-session reaper if it is not running (cheap when it is).

        Called where sessions are served (create, get), so it runs on the server's long-lived loop, one
        per worker process. Off when ``SESSION_IDLE_TIMEOUT`` or ``SESSION_REAP_INTERVAL`` is None.
        """
        if not mcp_settings.SESSION_IDLE_TIMEOUT or not mcp_settings.SESSION_REAP_INTERVAL:
            return
        loop = asyncio.get_running_loop()
        current = self._reapers.get(id(loop))
        if current is not None and not current.done():
            return
        self._reapers[id(loop)] = loop.create_task(self._reap_forever(), name="mcp_app-session-reaper")

    async def _reap_forever(self) -> None:
        while True:
            await asyncio.sleep(mcp_settings.SESSION_REAP_INTERVAL)
            try:
                await self.reap_idle()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database is down: the next round tries again
                logger.warning(
                    "could not end idle MCP sessions (%s: %s); retrying in %ss",
                    type(exc).__name__,
                    exc,
                    mcp_settings.SESSION_REAP_INTERVAL,
                )

    async def reap_idle(self) -> int:
        """End the sessions without a message for ``SESSION_IDLE_TIMEOUT`` seconds (rows ended in one UPDATE
        per batch), and announce each end on the bus, so every worker drops it and closes its streams.
        Returns how many ended. Every worker runs it; ending is idempotent, so overlapping rounds are harmless.
        """
        total = 0
        while True:
            ids = await _db(_end_idle_rows)()
            for session_id in ids:
                await self.close_everywhere(session_id)
            total += len(ids)
            if len(ids) < _REAP_BATCH:
                break
        if total:
            logger.info("ended %s MCP session(s) idle for over %ss", total, mcp_settings.SESSION_IDLE_TIMEOUT)
        return total

    def _record(self, row: Any) -> SessionRecord:
        return SessionRecord(
            id=row.id,
            transport=row.transport,
            protocol_version=row.protocol_version,
            client_info=row.client_info or {},
            client_capabilities=row.client_capabilities or {},
            log_level=row.log_level or None,
            stream_channel=row.stream_channel,
            worker=row.worker,
            principal=row.principal,
            store=self,
            last_active=row.last_seen.timestamp(),
        )

    async def get(self, session_id: str) -> SessionRecord | None:
        """The live session with this id, or None when it is unknown, malformed or ended."""
        if not SESSION_ID_RE.match(session_id):
            return None
        self.ensure_reaper()
        cached = self._cache.get(session_id)
        now = time.monotonic()
        if cached is not None and now - cached[1] < mcp_settings.SESSION_CACHE_TIMEOUT:
            record = cached[0]
        else:
            await self._bus.ensure_listening()
            row = await _db(lambda: Session.objects.filter(id=session_id, ended__isnull=True).first())()
            if row is None:
                self._cache.pop(session_id, None)
                return None
            record = self._record(row)
            self._remember(record)
        idle = mcp_settings.SESSION_IDLE_TIMEOUT
        wall = time.time()
        if idle and wall - record.last_active > idle:
            await self.end(session_id)  # idle too long: reaped on its next request
            return None
        record.last_active = wall
        if now - record.touched > mcp_settings.SESSION_TOUCH_INTERVAL:
            self.touch(record, now)
        return record

    def touch(self, record: SessionRecord, now: float | None = None) -> None:
        """Record the session's activity (``last_seen``) without waiting: touches queued together are written
        in one UPDATE by the store's group writer, in order with the rows created after them (eviction reads
        ``last_seen``). Only bookkeeping (idle reaping, eviction order): when the write fails (the database is
        down) a warning is logged and the session's next message tries again; the request is never failed."""
        previous, record.touched = record.touched, time.monotonic() if now is None else now
        write = self.writer.submit(_touch_rows, record.id)

        def landed(done: Any) -> None:
            exc = None if done.cancelled() else done.exception()
            if exc is None:
                return
            record.touched = previous  # the next message writes it again
            logger.warning("could not record activity of MCP session %s (%s: %s); will retry", record.id, type(exc).__name__, exc)

        write.add_done_callback(landed)

    @staticmethod
    async def _write(session_id: str, **fields: Any) -> int:
        return await _db(lambda: Session.objects.filter(id=session_id).update(**fields))()

    async def update(self, record: SessionRecord, **fields: Any) -> None:
        """Persist changed fields (already set on ``record``) and make every worker reload the session."""
        await self._write(record.id, last_seen=timezone.now(), **fields)
        self._remember(record)
        await self._bus.publish("session.invalidate", session_id=record.id)

    async def initialize(
        self, record: SessionRecord, *, protocol_version: str, client_info: dict[str, Any], client_capabilities: dict[str, Any]
    ) -> None:
        """Record what ``initialize`` negotiated on a session created before it (legacy transport)."""
        record.protocol_version = protocol_version
        record.client_info = client_info
        record.client_capabilities = client_capabilities
        await self.update(
            record,
            protocol_version=protocol_version,
            client_info=client_info,
            client_capabilities=client_capabilities,
            client_name=str(client_info.get("name", ""))[:200],
            client_version=str(client_info.get("version", ""))[:100],
        )

    async def subscribe(self, session_id: str, uri: str) -> None:
        """Record a resources/subscribe (idempotent); a session holds at most MAX_SUBSCRIPTIONS."""

        def add() -> None:
            if Subscription.objects.filter(session_id=session_id, uri=uri).exists():
                return
            if Subscription.objects.filter(session_id=session_id).count() >= mcp_settings.MAX_SUBSCRIPTIONS:
                raise InvalidParams(
                    f"resources/subscribe: a session may hold {mcp_settings.MAX_SUBSCRIPTIONS} "
                    "subscriptions; unsubscribe from some first."
                )
            Subscription.objects.get_or_create(session_id=session_id, uri=uri)

        if len(uri) > 1000:
            raise InvalidParams("resources/subscribe: URIs are limited to 1000 characters.")
        await _db(add)()

    async def unsubscribe(self, session_id: str, uri: str) -> None:
        await _db(lambda: Subscription.objects.filter(session_id=session_id, uri=uri).delete())()

    async def end(self, session_id: str) -> bool:
        """End a session; False when it was unknown or already ended. Every worker is told at once
        (``session.ended``): cached copies are dropped and its running requests cancelled."""
        if not SESSION_ID_RE.match(session_id):
            return False
        # Through the group writer: streams closing together (a burst of clients leaving) end their sessions in
        # a few transactions, not one round trip each on Django's thread for sync code.
        ended = await committed(self.writer.submit(_end_group, session_id))
        await self.announce_ended(session_id)
        return bool(ended)

    async def announce_ended(self, session_id: str) -> None:
        """Tell every worker (this one at once) that a session ended: drop cached copies, cancel its requests."""
        self._cache.pop(session_id, None)
        await self._bus.publish("session.invalidate", session_id=session_id)
        await self._bus.publish("session.ended", session_id=session_id)

    async def close_everywhere(self, session_id: str) -> None:
        """For a session already ended in the database: :meth:`announce_ended`, then close its open streams
        on every worker (their clients see the stream end; the next request gets 404)."""
        await self.announce_ended(session_id)
        await self._close_streams(session_id)


def end_rows(ids: list[str]) -> int:
    """Mark sessions ended in the database and drop their subscriptions; returns how many were open."""
    Subscription.objects.filter(session_id__in=ids).delete()
    return Session.objects.filter(id__in=ids, ended__isnull=True).update(ended=timezone.now())


def open_session_ids(*, principal: str | None = None, user_id: Any = None) -> list[str]:
    """The open sessions of a principal (by its key) or, without one, of every principal of a user."""
    sessions = Session.objects.filter(ended__isnull=True)
    sessions = sessions.filter(principal=principal) if principal is not None else sessions.filter(user_id=user_id)
    return list(sessions.values_list("id", flat=True))


def _idle_cutoff() -> Any:
    """Sessions whose ``last_seen`` is older are idle past ``SESSION_IDLE_TIMEOUT``. ``last_seen`` lags a
    session's last message by up to ``SESSION_TOUCH_INTERVAL``, so that much more is allowed."""
    return timezone.now() - timedelta(seconds=mcp_settings.SESSION_IDLE_TIMEOUT + mcp_settings.SESSION_TOUCH_INTERVAL)


def idle_session_ids(limit: int | None = None) -> list[str]:
    """The open sessions without a message for ``SESSION_IDLE_TIMEOUT`` seconds (at most ``limit`` of them);
    none when the timeout is off."""
    if not mcp_settings.SESSION_IDLE_TIMEOUT:
        return []
    ids = Session.objects.filter(ended__isnull=True, last_seen__lt=_idle_cutoff()).values_list("id", flat=True)
    return list(ids if limit is None else ids[:limit])


def _end_idle_rows() -> list[str]:
    """End (in the database) up to ``_REAP_BATCH`` sessions idle past ``SESSION_IDLE_TIMEOUT``; their ids."""
    ids = idle_session_ids(_REAP_BATCH)
    if ids:
        end_rows(ids)
    return ids


# -- group commit: new rows and activity touches ------------------------------------------------------------------
def _evict_surplus(row_id: str, mine: Any, cap: int, later: list[str]) -> list[str]:
    """End the sessions past ``cap`` among those sharing ``row_id``'s cap (``mine``), the new row first, then the
    most recently used; rows of the same group created after it (``later``) do not count yet, as if each row
    had been written alone, in order."""
    surplus = list(
        Session.objects.filter(mine, ended__isnull=True)
        .exclude(id=row_id)
        .exclude(id__in=later)
        .order_by("-last_seen", "-created", "id")
        .values_list("id", flat=True)[cap - 1 :]
    )
    if surplus:
        end_rows(surplus)
    return surplus


def _create_rows(group: list[Pending[Any]]) -> None:
    """Insert a group of new sessions in one transaction (one multi-row INSERT where the backend can), then
    enforce ``MAX_SESSIONS_PER_PRINCIPAL`` for each, in order. Each future gets ``(row, evicted ids)``. A
    database outage refuses the whole group; any other failure is retried row by row, so that only the row a
    column refuses is refused."""
    cap = mcp_settings.MAX_SESSIONS_PER_PRINCIPAL
    alias = router.db_for_write(Session)
    rows = [Session(**pending.item[0]) for pending in group]

    def write() -> list[list[str]]:
        with transaction.atomic(using=alias):
            if len(rows) > 1 and connections[alias].features.has_bulk_insert:
                Session.objects.bulk_create(rows)
            else:
                for row in rows:
                    row.save(force_insert=True)
            ids = [row.id for row in rows]
            return [
                _evict_surplus(row.id, pending.item[1], cap, ids[index + 1 :]) if cap and pending.item[1] is not None else []
                for index, (row, pending) in enumerate(zip(rows, group, strict=True))
            ]

    try:
        evicted = on_live_connection(alias, write)
    except Exception as exc:
        if is_outage(exc) or len(group) == 1:
            for pending in group:  # none of them was written
                pending.done.set_exception(exc)
            return
        for pending in group:  # perhaps one row's value: write them one by one, so that only it is refused
            try:
                with transaction.atomic(using=alias):
                    row = Session(**pending.item[0])
                    row.save(force_insert=True)
                    mine = pending.item[1]
                    ended = _evict_surplus(row.id, mine, cap, []) if cap and mine is not None else []
            except Exception as one:
                pending.done.set_exception(one)
            else:
                pending.done.set_result((row, ended))  # committed
        return
    for pending, row, ended in zip(group, rows, evicted, strict=True):
        pending.done.set_result((row, ended))


def _touch_rows(group: list[Pending[Any]]) -> None:
    """Write ``last_seen`` (now) of a group of sessions in one UPDATE."""
    ids = {pending.item for pending in group}
    try:
        on_live_connection(
            router.db_for_write(Session), lambda: Session.objects.filter(id__in=ids).update(last_seen=timezone.now())
        )
    except Exception as exc:
        for pending in group:
            pending.done.set_exception(exc)
        return
    for pending in group:
        pending.done.set_result(None)


def _end_group(group: list[Pending[Any]]) -> None:
    """End a group of sessions in one transaction (:func:`end_rows`); each future gets whether its session was
    open (the first of several ends of one session does)."""
    ids = list(dict.fromkeys(pending.item for pending in group))
    alias = router.db_for_write(Session)

    def write() -> set[str]:
        with transaction.atomic(using=alias):
            still_open = set(Session.objects.filter(id__in=ids, ended__isnull=True).values_list("id", flat=True))
            end_rows(ids)
            return still_open

    try:
        still_open = on_live_connection(alias, write)
    except Exception as exc:
        for pending in group:
            pending.done.set_exception(exc)
        return
    for pending in group:
        pending.done.set_result(pending.item in still_open)
        still_open.discard(pending.item)


#: The group writer of the process's session stores: one thread, one connection. Within a round, touches go
#: before new rows (eviction reads last_seen) and new rows before ends (a session ended as soon as created).
default_writer = GroupWriter("mcp_app-sessions", order=(_touch_rows, _create_rows, _end_group))
