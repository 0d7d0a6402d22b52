"""Worker leases: which worker processes are alive, so that nothing waits on a worker that died.

A legacy (HTTP+SSE) session's answers reach the client only through its one stream, held open by one worker
process. If that process dies without cleaning up (``kill -9``, a crash, a lost host), the stream is gone and
nothing else would know: POSTs on other workers would be accepted and their answers sent into the void.
So every worker holds a lease, a :class:`~mcp_app.models.Worker` row in the database every worker shares:

- Every ``WORKER_HEARTBEAT_INTERVAL`` seconds (5) each worker renews its row (``expires`` = the database's
  now + three intervals), in a thread of its own whose connection is closed after each beat.
- A stream records the worker that holds it in ``Session.worker`` (after that worker's row is written).
- ``POST /sse/messages`` on any worker checks the lease of the session's worker (:func:`is_alive`, cached
  per worker id for :data:`LEASE_CACHE_SECONDS`): a lapsed lease ends the session and answers 404, so a
  POST is never accepted for a stream that cannot receive its answer.
- Each worker's maintenance task also ends, in one UPDATE per batch, the open sessions held by workers whose
  lease lapsed, announces the ends on the bus (every worker drops its cached copy and cancels the sessions'
  running requests; streams are told to close, should their worker only have stalled) and deletes the dead
  workers' rows. No operator needed; a restarted worker has a new id and never inherits them.
- Answers handed to another worker's stream are remembered for a lease's length; if that worker is then
  found dead, each is logged (session, request id) as probably undelivered: nothing accepted vanishes
  without a trace.

A worker reaps only after it has itself renewed its lease without a failure for a whole lease: after a
database outage every worker's lease may have lapsed, and the live ones must first get the chance to renew
theirs. A graceful shutdown deletes the worker's own row.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import secrets
import socket
import threading
import time
from collections import deque
from datetime import timedelta
from typing import Any

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from django.db import IntegrityError, connection
from django.db.models import DateTimeField, ExpressionWrapper
from django.db.models.functions import Now

from .conf import mcp_settings
from .models import Session, Worker
from .runtime import Server, get_server
from .sessions import end_rows

logger = logging.getLogger("mcp_app.workers")

#: Heartbeat intervals a lease lasts: one missed beat (a slow query, a pause) is not death; three are.
LEASE_INTERVALS = 3
#: Seconds a worker trusts what it last learnt about another worker's lease, so that POSTs cost no query.
LEASE_CACHE_SECONDS = 1.0
#: Sessions ended per round of the reaper (one UPDATE); a larger backlog takes a few rounds.
REAP_BATCH = 1000
#: Answers remembered per session while their delivery to another worker's stream is unconfirmed.
_HANDOFFS_PER_SESSION = 100
_LEASE_CACHE_MAX = 1000
# Seconds a graceful shutdown waits for its row's deletion (best effort; a dead row expires anyway).
_SHUTDOWN_WAIT = 2.0

_identity: str | None = None


def _forget_identity() -> None:
    global _identity
    _identity = None


# A forked child is another worker: it draws its own id (checked here rather than by comparing os.getpid()
# on every call, which is a system call, and this is asked several times per request).
os.register_at_fork(after_in_child=_forget_identity)


def worker_id() -> str:
    """This process's worker id: random per process (a new one after a fork), never reused."""
    global _identity
    if _identity is None:
        _identity = secrets.token_hex(8)
    return _identity


def heartbeat_interval() -> float:
    return float(mcp_settings.WORKER_HEARTBEAT_INTERVAL)


def lease_seconds() -> float:
    """How long a worker's lease lasts after its last heartbeat."""
    return LEASE_INTERVALS * heartbeat_interval()


def _from_now(seconds: float) -> ExpressionWrapper:
    """The database's now + ``seconds`` (every host compares lease times on one clock)."""
    return ExpressionWrapper(Now() + timedelta(seconds=seconds), output_field=DateTimeField())


# -- database work (sync) ------------------------------------------------------------------------------------
def _database() -> Any:
    """Which database this thread's connection names (its settings' NAME): the one a lease was written to."""
    return connection.settings_dict.get("NAME")


def _beat(wid: str, lease: float) -> Any:
    """Renew (or create) this worker's lease row; returns the database it is in (see :func:`_database`)."""
    if not Worker.objects.filter(id=wid).update(heartbeat=Now(), expires=_from_now(lease)):
        try:
            Worker.objects.create(
                id=wid, host=socket.gethostname()[:255], pid=os.getpid(), started=Now(), heartbeat=Now(), expires=_from_now(lease)
            )
        except IntegrityError:  # a concurrent beat (a stream opening) created it first
            Worker.objects.filter(id=wid).update(heartbeat=Now(), expires=_from_now(lease))
    return _database()


def _reap(wid: str) -> tuple[list[tuple[str, str]], list[tuple[str, str, int]]]:
    """End up to :data:`REAP_BATCH` open sessions held by workers without a live lease (rows lapsed or gone),
    and delete the lapsed rows. Returns the sessions ended (id, worker) and the workers found dead."""
    live = Worker.objects.filter(expires__gte=Now()).values("id")
    lost = list(
        Session.objects.filter(ended__isnull=True)
        .exclude(worker="")
        .exclude(worker__in=live)
        .values_list("id", "worker")[:REAP_BATCH]
    )
    if lost:
        end_rows([session_id for session_id, _ in lost])
    dead = list(Worker.objects.filter(expires__lt=Now()).exclude(id=wid).values_list("id", "host", "pid"))
    if dead:
        # Only rows still lapsed: a worker that renewed meanwhile (it had only stalled) keeps its row.
        Worker.objects.filter(id__in=[row[0] for row in dead], expires__lt=Now()).delete()
    return lost, dead


def _lease_alive(wid: str) -> bool:
    return Worker.objects.filter(id=wid, expires__gte=Now()).exists()


def _unregister(wid: str) -> None:
    Worker.objects.filter(id=wid).delete()


def _table_gone() -> bool:
    """True when this thread's database answers and has no lease table (not when it cannot be reached)."""
    try:
        return Worker._meta.db_table not in connection.introspection.table_names()
    except Exception:  # unreachable: a real error, to be reported
        return False


def _own_thread(fn: Any) -> Any:
    """Run ``fn`` in a pool thread, not Django's one thread for sync code (a heartbeat must not queue behind
    requests' ORM work, nor they behind it), and close that thread's connection afterwards."""

    def run(*args: Any) -> Any:
        try:
            return fn(*args)
        finally:
            connection.close()

    return sync_to_async(run, thread_sensitive=False)


# -- the per-process maintenance task ------------------------------------------------------------------------
class Maintenance:
    """One worker's heartbeat and reaper, plus what it knows of the other workers' leases."""

    def __init__(self) -> None:
        self._tasks: dict[int, asyncio.Task[None]] = {}
        #: monotonic time of this worker's last successful heartbeat.
        self.last_beat: float | None = None
        #: The database the lease was last written to (its settings' NAME).
        self.lease_database: Any = None
        #: monotonic time since which every heartbeat succeeded (None after a failure).
        self.healthy_since: float | None = None
        self._leases: dict[str, tuple[bool, float]] = {}
        #: Answers handed to streams on other workers: session id -> (monotonic time, worker, request id).
        self._handoffs: dict[str, deque[tuple[float, str, Any]]] = {}
        self._bus_of: int | None = None
        self._registering: asyncio.Future[None] | None = None
        self._exit_hook = False

    # lifecycle
    def ensure_running(self) -> None:
        """Start this event loop's maintenance task if it is not running (cheap when it is). Call it from the
        server's long-lived loop (the transports do, on every request)."""
        loop = asyncio.get_running_loop()
        current = self._tasks.get(id(loop))
        if current is not None and not current.done():
            return
        self._listen_on(get_server())
        self._tasks[id(loop)] = loop.create_task(self._run(), name="mcp_app-worker-maintenance")
        if not self._exit_hook:
            self._exit_hook = True
            atexit.register(self.unregister)

    def _listen_on(self, server: Server) -> None:
        if self._bus_of != id(server.bus):  # once per built server (tests rebuild it)
            self._bus_of = id(server.bus)
            server.bus.on("worker.lost", self._on_lost)

    async def _run(self) -> None:
        while True:
            started = time.monotonic()
            try:
                await self.beat()
                if self.healthy_since is not None and time.monotonic() - self.healthy_since >= lease_seconds():
                    await self.reap()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database is down: the lease lapses unless a later beat succeeds
                self.healthy_since = None
                logger.warning(
                    "mcp_app worker %s: heartbeat failed (%s: %s); retrying",
                    worker_id(),
                    type(exc).__name__,
                    str(exc).strip()[:300],
                )
            self._prune_handoffs()
            await asyncio.sleep(max(0.05, heartbeat_interval() - (time.monotonic() - started)))

    async def beat(self) -> None:
        """Renew this worker's lease now."""
        try:
            database = await _own_thread(_beat)(worker_id(), lease_seconds())
        except Exception:
            self.healthy_since = None
            raise
        now = time.monotonic()
        self.last_beat = now
        self.lease_database = database
        if self.healthy_since is None:
            self.healthy_since = now

    async def ensure_registered(self) -> None:
        """Make sure this worker's lease row exists and is fresh, before a session names this worker (a POST
        on another worker must never find the row missing). Costs a write only when no beat happened within
        the last interval."""
        if self.last_beat is not None and time.monotonic() - self.last_beat < heartbeat_interval():
            return
        if self._registering is None or self._registering.done():
            self._registering = asyncio.ensure_future(self.beat())
        await asyncio.shield(self._registering)

    def unregister(self) -> None:
        """Delete this worker's row (graceful shutdown; best effort, bounded in time): its sessions are then
        known to be gone at once rather than when the lease lapses."""
        if self.last_beat is None:
            return
        wid = worker_id()
        lease_database = self.lease_database

        def delete() -> None:
            try:
                if _database() != lease_database:
                    # The settings name another database than the lease's: a test run's database, destroyed
                    # with the row in it by now. Nothing to delete, and connecting would create an empty
                    # SQLite file.
                    return
                _unregister(wid)
            except Exception as exc:
                if _table_gone():
                    # The same database, without the lease table any more (migrations unapplied, a test
                    # database flushed away): the row went with it.
                    logger.debug("mcp_app worker %s: its lease table is gone at shutdown (%s)", wid, exc)
                else:
                    logger.warning(
                        "mcp_app worker %s: could not delete its lease at shutdown (%s: %s)", wid, type(exc).__name__, exc
                    )
            finally:
                connection.close()

        thread = threading.Thread(target=delete, name="mcp_app-worker-unregister", daemon=True)
        thread.start()
        thread.join(_SHUTDOWN_WAIT)

    # leases
    async def is_alive(self, wid: str, *, fresh: bool = False) -> bool:
        """Whether worker ``wid`` holds a live lease (this worker always does). Cached per worker for
        :data:`LEASE_CACHE_SECONDS` unless ``fresh`` (read from the database now: a stream that did not confirm
        a delivery); raises the database's error when it is down (the caller answers 503)."""
        if wid == worker_id():
            return True
        now = time.monotonic()
        cached = self._leases.get(wid)
        if not fresh and cached is not None and now - cached[1] < LEASE_CACHE_SECONDS:
            return cached[0]
        alive = await database_sync_to_async(_lease_alive)(wid)
        if len(self._leases) >= _LEASE_CACHE_MAX:
            self._leases.clear()
        self._leases[wid] = (alive, now)
        return alive

    async def reap(self) -> int:
        """End the sessions of workers whose lease lapsed (one round per batch); returns how many."""
        total = 0
        while True:
            lost, dead = await _own_thread(_reap)(worker_id())
            for wid, host, pid in dead:
                self._leases[wid] = (False, time.monotonic())
                logger.warning("mcp_app worker %s (%s, pid %s) stopped renewing its lease: taken for dead", wid, host, pid)
            if lost:
                await self.announce_lost(dict(lost))
                total += len(lost)
            if len(lost) < REAP_BATCH:
                return total

    async def announce_lost(self, sessions: dict[str, str]) -> None:
        """Tell every worker that these sessions (id -> the dead worker that held the stream) ended: cached
        copies dropped, running requests cancelled, answers handed to that worker logged, streams closed."""
        server = get_server()
        logger.warning(
            "ended %s MCP session(s) whose streams were held by dead worker(s) %s; their clients must reconnect (GET /sse)",
            len(sessions),
            ", ".join(sorted(set(sessions.values()))),
        )
        for session_id in sessions:
            # Streams closed too, in case their worker only stalled and still holds them.
            await server.sessions.close_everywhere(session_id)
        await server.bus.publish("worker.lost", sessions=sessions)

    async def end_lost_session(self, session_id: str, wid: str) -> None:
        """End one session whose stream's worker ``wid`` was found dead (a POST noticed before the reaper)."""
        await database_sync_to_async(end_rows)([session_id])
        self._leases[wid] = (False, time.monotonic())
        await self.announce_lost({session_id: wid})

    # answers handed to other workers' streams
    def record_handoff(self, session_id: str, wid: str, request_id: Any) -> None:
        """Remember that the answer to ``request_id`` was handed to the stream on worker ``wid``."""
        if wid == worker_id():
            return
        entries = self._handoffs.get(session_id)
        if entries is None:
            entries = self._handoffs[session_id] = deque(maxlen=_HANDOFFS_PER_SESSION)
        entries.append((time.monotonic(), wid, request_id))

    def _on_lost(self, message: dict[str, Any]) -> None:
        sessions = message.get("sessions")
        if not isinstance(sessions, dict):
            return
        for session_id in sessions:
            for _, worker, request_id in self._handoffs.pop(session_id, ()):
                logger.error(
                    "MCP answer to request %r of session %s was handed to the stream on worker %s, which died "
                    "before its lease was renewed: it was probably not delivered",
                    request_id,
                    session_id,
                    worker,
                )

    def _prune_handoffs(self) -> None:
        # A handoff older than a lease was followed by a renewal of that worker's lease, or the worker would have
        # been found dead by now: the stream was alive to take it.
        horizon = time.monotonic() - lease_seconds() - heartbeat_interval()
        for session_id in list(self._handoffs):
            entries = self._handoffs[session_id]
            while entries and entries[0][0] < horizon:
                entries.popleft()
            if not entries:
                del self._handoffs[session_id]


maintenance = Maintenance()
