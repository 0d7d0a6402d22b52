"""Group commit: one thread that writes what many callers queue, a group at a time.

Writes on the hot path (audit rows, session rows, ``last_seen`` touches) must neither run one by one on
Django's single thread for synchronous code, which every request's ORM work shares, nor each pay a commit of
its own. A :class:`GroupWriter` owns one daemon thread (and so one database connection): callers
:meth:`~GroupWriter.submit` an item with the function that writes items of its kind, and get a
:class:`concurrent.futures.Future`. The thread takes whatever queued while it wrote the previous group, kind by
kind (the writer's ``order`` first, then in the order kinds were first submitted), at most
:attr:`~GroupWriter.cap` items of a kind at once, and hands them to their write function, which writes them
together (one transaction, multi-row statements) and resolves each item's future. Nothing waits to fill a
group: a lone item is written at once, a burst in a few groups.

The contract a write function keeps: every future of its group is resolved (a result, or the exception that
refused it); should it raise or leave one unresolved, the writer fails those with the exception (or a
``RuntimeError``), so that no caller is left waiting and nothing queued is dropped silently.

The connection is reused from group to group while work keeps coming (reconnecting per group would cost more
than the group's write: on SQLite a connection's close may checkpoint the log), replaced as soon as it breaks
(an outage), and closed after :data:`IDLE_CLOSE_SECONDS` without work, so that an idle process holds no
connection. With PostgreSQL's connection pool (``OPTIONS={"pool": True}``) closing returns it to the pool.
:meth:`GroupWriter.wait_idle` lets a graceful shutdown (or a test) wait until everything queued is written.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import weakref
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from django.db import connections

from .availability import is_outage

logger = logging.getLogger("mcp_app")

#: At most this many items of a kind go in one group (one statement's worth); more wait for the next group.
GROUP_CAP = 500
#: Seconds without work after which the writer closes its database connection (reopened on the next group):
#: under load groups follow each other within milliseconds; idle, the process holds no connection that a
#: server could time out or a test database's drop could meet.
IDLE_CLOSE_SECONDS = 0.25

T = TypeVar("T")
R = TypeVar("R")


@dataclass
class Pending(Generic[T]):
    """A queued item and the future its write function resolves once the item's group is committed."""

    item: T
    done: Future[Any]


#: Writes a group of items of one kind and resolves each one's future (see the module's docstring).
WriteGroup = Callable[[list[Pending[Any]]], None]


class _Mailbox:
    """What the writer's thread hands to one event loop: callbacks queued from any thread and run on the loop
    in the order they came, behind one wake-up of the loop for as many as arrive before it runs.

    A group's futures are resolved one right after the other; waking the loop for each (``call_soon_threadsafe``
    writes to its self-pipe, and the writer gives up the GIL for that system call) cost as much of the writer's
    time as its INSERT. Here only the first of a burst wakes the loop, and the rest ride along.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._items: deque[tuple[Callable[[Any], None], Any]] = deque()
        self._lock = threading.Lock()
        self._woken = False

    def post(self, callback: Callable[[Any], None], argument: Any) -> None:
        """Run ``callback(argument)`` on the loop soon (from any thread); dropped when the loop is closed."""
        with self._lock:
            self._items.append((callback, argument))
            if self._woken:  # a wake-up is on its way and will find this one too
                return
            self._woken = True
        try:
            self.loop.call_soon_threadsafe(self._run)
        except RuntimeError:  # the loop closed meanwhile: nobody waits for these any more
            with self._lock:
                self._items.clear()
                self._woken = False

    def _run(self) -> None:
        with self._lock:
            items = list(self._items)
            self._items.clear()
            self._woken = False
        for callback, argument in items:
            try:
                callback(argument)
            except Exception:  # one waiter's failure must not leave the others waiting
                logger.exception("group writer: a hand-over to the event loop failed")


#: One mailbox per event loop that awaits writes (weak: a closed, dropped loop takes its mailbox with it).
_mailboxes: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Mailbox] = weakref.WeakKeyDictionary()
_mailboxes_lock = threading.Lock()


def _mailbox(loop: asyncio.AbstractEventLoop) -> _Mailbox:
    box = _mailboxes.get(loop)
    if box is None:
        with _mailboxes_lock:
            box = _mailboxes.get(loop)
            if box is None:
                box = _mailboxes[loop] = _Mailbox(loop)
    return box


def committed(done: Future[T]) -> asyncio.Future[T]:
    """An event-loop future with ``done``'s outcome (a :meth:`GroupWriter.submit` future), to await.

    Cancelling it (a caller cancelled while its item is written) never cancels ``done``: the item is still
    written, and its owner can follow ``done`` itself. One future and one hand-over through the loop's
    :class:`_Mailbox` (one wake-up of the loop per burst of resolved writes), where
    ``asyncio.shield(asyncio.wrap_future(done))`` made two futures and a task's worth of callbacks per write.
    """
    loop = asyncio.get_running_loop()
    waiter: asyncio.Future[T] = loop.create_future()
    box = _mailbox(loop)

    def settle(finished: Future[T]) -> None:
        if waiter.done():  # the caller was cancelled meanwhile
            return
        if finished.cancelled():
            waiter.cancel()
        elif finished.exception() is not None:
            waiter.set_exception(finished.exception())  # type: ignore[arg-type]
        else:
            waiter.set_result(finished.result())

    done.add_done_callback(lambda finished: box.post(settle, finished))
    return waiter


def recycle_connections() -> None:
    """Replace this thread's connections that broke (an outage, a restart, a failure mid-transaction); keep
    the healthy ones open. The writer runs it around each group; a write function may run it after a failure it
    handles itself, before trying again."""
    for conn in connections.all(initialized_only=True):
        if conn.connection is None:
            continue
        if conn.in_atomic_block or conn.get_autocommit() != conn.settings_dict["AUTOCOMMIT"]:
            conn.close()  # left mid-transaction by a failure: never reuse it
        elif conn.errors_occurred:
            if conn.is_usable():
                conn.errors_occurred = False
            else:
                conn.close()


def on_live_connection(alias: str, write: Callable[[], R]) -> R:
    """``write()`` (all or nothing: one transaction); if it meets an outage on a connection kept from an
    earlier group, once more on a new connection. A kept connection may have been closed by the server
    meanwhile (a restart, an idle timeout): that is not the database being down now, and must not refuse the
    group. Any other failure, or one on a fresh connection, is raised."""
    conn = connections[alias]
    kept = conn.connection is not None
    try:
        return write()
    except Exception as exc:
        if not (kept and is_outage(exc)):
            raise
        conn.close()
        return write()


def _close_connections() -> None:
    for conn in connections.all(initialized_only=True):
        try:
            conn.close()
        except Exception as exc:  # closing a dead connection may fail: the next group opens a new one anyway
            logger.debug("group writer: could not close a connection (%s: %s)", type(exc).__name__, exc)


class GroupWriter:
    """One writer thread (named ``name``) writing queued items in groups; see the module's docstring.

    ``groups`` counts the groups written (or tried) per write function's ``__name__``: how well writes are
    batched (tests, benchmarks).
    """

    def __init__(
        self, name: str, *, order: tuple[WriteGroup, ...] = (), cap: int = GROUP_CAP, idle_close: float = IDLE_CLOSE_SECONDS
    ) -> None:
        """``order``: write functions whose groups go first, in this order, when several kinds are queued (an
        item submitted before another is never written after it if its kind comes first); other kinds follow
        in the order they were first submitted."""
        self.name = name
        self.cap = cap
        self.idle_close = idle_close
        self.groups: dict[str, int] = {}
        # One queue per write function, in the order they were first used (dicts keep it).
        self._queues: dict[WriteGroup, deque[Pending[Any]]] = {write: deque() for write in order}
        self._queued = 0
        self._busy = 0  # items taken and being written
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def submit(self, write: WriteGroup, item: Any) -> Future[Any]:
        """Queue ``item`` for ``write``; the future resolves once its group is committed (or refused)."""
        done: Future[Any] = Future()
        with self._cond:
            self._queues.setdefault(write, deque()).append(Pending(item, done))
            self._queued += 1
            if self._thread is None or not self._thread.is_alive():
                # A daemon thread, so that a hung database cannot hold the process up at exit; owners drain
                # the queue first (wait_idle from an atexit hook).
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()
            self._cond.notify()
        return done

    def pending(self) -> int:
        """Items queued or being written."""
        with self._cond:
            return self._queued + self._busy

    def wait_idle(self, timeout: float) -> bool:
        """Wait until everything queued is written (or has failed); False when ``timeout`` s pass first."""
        with self._cond:
            return self._cond.wait_for(lambda: not (self._queued or self._busy), timeout)

    def _take(self) -> list[tuple[WriteGroup, list[Pending[Any]]]]:
        """Up to ``cap`` items of each kind with something queued (the lock is held)."""
        taken = []
        for write, queue in self._queues.items():
            group: list[Pending[Any]] = []
            while queue and len(group) < self.cap:
                pending = queue.popleft()
                self._queued -= 1
                if pending.done.set_running_or_notify_cancel():  # a cancelled future is nobody's to resolve
                    group.append(pending)
            if group:
                taken.append((write, group))
        return taken

    def _run(self) -> None:
        while True:
            with self._cond:
                idle = not self._cond.wait_for(lambda: self._queued, self.idle_close)
            if idle:  # no work for idle_close seconds: give the connection back until there is some
                _close_connections()
            with self._cond:
                self._cond.wait_for(lambda: self._queued)
                groups = self._take()
                self._busy = sum(len(group) for _, group in groups)
            try:
                for write, group in groups:
                    self._write(write, group)
            finally:
                with self._cond:
                    self._busy = 0
                    self._cond.notify_all()

    def _write(self, write: WriteGroup, group: list[Pending[Any]]) -> None:
        name = getattr(write, "__name__", repr(write))
        self.groups[name] = self.groups.get(name, 0) + 1
        failure: BaseException | None = None
        try:
            recycle_connections()
            write(group)
        except Exception as exc:
            # Not a refused write (those resolve their futures): a bug, or a connection that would not even
            # open. Whoever waits is told, never left waiting, and this thread goes on.
            logger.error("%s: writing a group failed", self.name, exc_info=exc)
            failure = exc
        finally:
            try:
                recycle_connections()
            except Exception as exc:
                logger.warning("%s: could not check its connection (%s: %s)", self.name, type(exc).__name__, exc)
                _close_connections()
        for pending in group:
            if not pending.done.done():
                pending.done.set_exception(failure or RuntimeError(f"{self.name}: {name} left an item unresolved"))
