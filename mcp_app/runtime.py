"""The process-wide runtime objects: the :class:`Server` (dispatcher, session store, pending client
requests, bus), built lazily from settings and wired together here, and what ends sessions from synchronous
code (the admin, signal receivers, ``manage.py mcp_reap_sessions``), which needs them.

This is the top of the wiring: it may import any layer below it (protocol, sessions, auth, the bus); nothing
below imports it back except the transports and the orchestration callers above them. Transports call
:func:`get_server`; tests call :func:`reset`, and so does this module's own ``setting_changed`` receiver, so
that :mod:`mcp_app.conf` needs to import nothing of the app.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from asgiref.sync import async_to_sync
from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver

from . import __version__
from .auth import forget_credentials
from .bus import RESYNC, Bus
from .conf import RELOAD_SETTINGS, mcp_settings
from .protocol import jsonrpc
from .protocol.context import PendingClientRequests
from .protocol.dispatcher import Dispatcher
from .protocol.pagination import CursorCodec
from .protocol.request_state import RequestStateCodec
from .protocol.subscriptions import register as register_listen
from .sessions import SessionStore, end_rows, idle_session_ids, open_session_ids
from .transports.events import close_listen_streams, close_session_streams
from .transports.listen import ListenSource

T = TypeVar("T")


async def run_each(items: Sequence[T], run: Callable[[T], Awaitable[None]], *, concurrency: int | None = None) -> None:
    """Await ``run(item)`` for every item of one POST: a single item in the caller's task, a batch's with
    at most ``concurrency`` (default ``BATCH_CONCURRENCY``) running at once, each in its own task (so
    that cancelling one request cancels only it).

    Sync handlers run in Django's one database thread, first come first served: were a batch's entries
    all started at once, another client's request would queue behind every one of them. Bounded, it
    waits for a few at most, and the event loop gets a turn between entries as well.
    """
    if len(items) == 1:
        await run(items[0])
        return
    slots = asyncio.Semaphore(max(1, concurrency or mcp_settings.BATCH_CONCURRENCY))

    async def one(item: T) -> None:
        try:
            await run(item)
        finally:
            slots.release()

    # Tasks are started one by one as slots free up, not all at once: tasks started together would all
    # take their first step (and queue their database work) before anything else got a turn.
    started: list[asyncio.Future[None]] = []
    try:
        for item in items:
            await slots.acquire()
            started.append(asyncio.ensure_future(one(item)))
            await asyncio.sleep(0)  # everyone else's turn before this batch's next entry starts
        await asyncio.gather(*started)
    except BaseException:
        for task in started:  # cancelled (the client left) or failed: nothing of the batch outlives it
            task.cancel()
        raise


@dataclass
class Server:
    """What a transport needs: the dispatcher (the whole MCP conversation: requests, notifications, the
    client's answers), sessions, pending client requests (the dispatcher's) and the bus."""

    dispatcher: Dispatcher
    sessions: SessionStore
    pending: PendingClientRequests
    bus: Bus
    #: Handlers that outlive the HTTP request that started them (legacy transport), by session.
    background: dict[str, set[asyncio.Task[Any]]] = field(default_factory=dict)

    def spawn(
        self, session_id: str, work: Coroutine[Any, Any, Any], on_done: Callable[[asyncio.Task[Any]], None] | None = None
    ) -> asyncio.Task[Any]:
        """Run ``work`` beyond the current request; ending the session cancels it."""
        task = asyncio.ensure_future(work)
        self.background.setdefault(session_id, set()).add(task)

        def done(finished: asyncio.Task[Any]) -> None:
            tasks = self.background.get(session_id)
            if tasks is not None:
                tasks.discard(finished)
                if not tasks:
                    self.background.pop(session_id, None)
            if on_done is not None:
                on_done(finished)

        task.add_done_callback(done)
        return task

    def cancel_background(self, session_id: str) -> None:
        for task in self.background.pop(session_id, set()):
            task.cancel()


@dataclass
class BusRelay:
    """The dispatcher's :class:`~mcp_app.protocol.dispatcher.Relay`: what it cannot settle in this process
    goes to every worker on the bus (``_build`` wires the receiving end: the worker where the request runs
    resolves the answer or cancels the request; the others find nothing to do)."""

    bus: Bus

    async def response(self, session_id: str, response: jsonrpc.Response) -> None:
        await self.bus.publish(
            "client.response", session_id=session_id, id=response.id, result=response.result, error=response.error
        )

    async def cancel(self, session_id: str, request_id: str | int) -> None:
        await self.bus.publish("request.cancel", session_id=session_id, request_id=request_id)


def _cursor_key() -> bytes:
    # A key derived from SECRET_KEY for this purpose only, so cursors reveal nothing about it.
    return hashlib.sha256(b"mcp_app.cursor:" + settings.SECRET_KEY.encode()).digest()


def _request_state_key() -> bytes:
    # The requestState of multi round-trip requests (MCP 2026-07-28) is signed with a key of its own, derived
    # from SECRET_KEY with another salt than the cursors': every worker derives the same, since a client's
    # retry may reach any of them.
    return hashlib.sha256(b"mcp_app.request_state:" + settings.SECRET_KEY.encode()).digest()


def _build() -> Server:
    info: dict[str, Any] = {"name": mcp_settings.SERVER_NAME, "version": mcp_settings.SERVER_VERSION or __version__}
    if mcp_settings.SERVER_TITLE:
        info["title"] = mcp_settings.SERVER_TITLE
    bus = Bus()
    pending = PendingClientRequests()
    dispatcher = Dispatcher(
        mcp_settings.PROVIDER,
        server_info=info,
        cursor_codec=CursorCodec(_cursor_key()),
        instructions=mcp_settings.INSTRUCTIONS,
        page_size=mcp_settings.PAGE_SIZE,
        pending=pending,
        client_request_timeout=mcp_settings.CLIENT_REQUEST_TIMEOUT,
        relay=BusRelay(bus),
        request_state=RequestStateCodec(_request_state_key(), mcp_settings.REQUEST_STATE_TTL),
    )
    # subscriptions/listen (2026-07-28): its streams are fed by this process's share of the bus.
    register_listen(dispatcher, ListenSource(bus))
    server = Server(dispatcher=dispatcher, sessions=SessionStore(bus, close_session_streams), pending=pending, bus=bus)
    bus.on(
        "client.response", lambda m: pending.resolve(m["session_id"], jsonrpc.Response(m["id"], m.get("result"), m.get("error")))
    )
    bus.on("request.cancel", lambda m: dispatcher.cancel(m["session_id"], m["request_id"]))
    bus.on("session.ended", lambda m: server.cancel_background(m["session_id"]))
    bus.on("credentials.changed", forget_credentials)
    invalidate = getattr(dispatcher.provider, "invalidate", None)
    if invalidate is not None:  # providers that cache rows drop them when any worker changes one
        bus.on("catalog.changed", invalidate)
    # Back on the bus after an outage of the layer (a Redis restart): whatever was published meanwhile is
    # lost to this worker, so everything it caches from the database is read again.
    bus.on(RESYNC, server.sessions.forget_all)
    bus.on(RESYNC, forget_credentials)
    if invalidate is not None:
        bus.on(RESYNC, invalidate)
    return server


_server: Server | None = None


def get_server() -> Server:
    """The process's server, built on first use from the current settings (the first build also freezes the
    process's long-lived objects: :func:`freeze_long_lived_objects`)."""
    global _server
    if _server is None:
        _server = _build()
        freeze_long_lived_objects()
    return _server


_frozen = False


def freeze_long_lived_objects() -> bool:
    """Once per process, unless ``MCP_APP["GC_FREEZE"]`` is False: collect, then ``gc.freeze()`` every object
    alive (Django, the apps, the URLconf, the built server); True when it froze them now.

    Why: a full collection walks every tracked object, and with the site loaded that is some 130,000 objects
    that live as long as the process. Under load, request objects in flight survive the young generations
    and fill the old one, so a full collection came every few thousand calls and paused every request for
    70-90 ms (the p99 of a loaded server), and collecting took a sixth of the CPU of a small call. Frozen
    objects are skipped by every collection; they are still freed by reference counting when released, and
    only a reference cycle among them that becomes garbage later is kept (start-up objects rarely do).
    """
    global _frozen
    if _frozen or not mcp_settings.GC_FREEZE:
        return False
    _frozen = True
    gc.collect()  # what is garbage now is freed, not frozen
    gc.freeze()
    return True


def reset() -> None:
    """Forget the built server (settings changed); the next get_server() builds a new one."""
    global _server
    _server = None


@receiver(setting_changed)
def _reset_on_setting_changed(*, setting: str, **kwargs: Any) -> None:
    # override_settings() in tests, or a reload: the next get_server() builds from the new values (the
    # settings the server is built from: directly, through mcp_settings, the cursor key and the caches).
    if setting in RELOAD_SETTINGS:
        reset()


# -- ending sessions from synchronous code ---------------------------------------------------------------------
def end_sessions_now(ids: list[str]) -> None:
    """End sessions everywhere, from synchronous code (the admin, signals): rows marked ended, caches
    dropped and running requests cancelled on every worker, open streams closed; their next request
    gets 404. The rows are written in the caller's own connection (and transaction)."""
    ids = list(ids)
    if not ids:
        return
    end_rows(ids)
    store = get_server().sessions

    async def announce() -> None:
        for session_id in ids:
            await store.close_everywhere(session_id)

    async_to_sync(announce)()


def reap_idle_sessions() -> int:
    """End the sessions without a message for ``SESSION_IDLE_TIMEOUT`` seconds; returns how many.

    For ``manage.py mcp_reap_sessions``; the workers do the same by themselves
    (:meth:`~mcp_app.sessions.SessionStore.reap_idle`).
    """
    ids = idle_session_ids()
    end_sessions_now(ids)
    return len(ids)


def end_sessions_of(*, principal: str | None = None, user_id: Any = None) -> int:
    """End the open sessions of a principal or of every principal of a user (access was withdrawn);
    returns how many. Every worker also forgets the credentials it had validated, and ends the caller's
    ``subscriptions/listen`` streams (they have no session; each gets its final result)."""
    ids = open_session_ids(principal=principal, user_id=user_id)
    async_to_sync(get_server().bus.publish)("credentials.changed")
    end_sessions_now(ids)
    async_to_sync(close_listen_streams)(principal=principal, user_id=user_id)
    return len(ids)
