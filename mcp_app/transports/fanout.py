"""The open event streams of this process, and how messages for many streams reach them.

Messages for more than one stream (list_changed for everyone, a session's notifications, "close this
session's streams") cross the channel layer **once per worker process**, not once per stream: they travel on
the bus (:mod:`mcp_app.bus`, one group member per process, ``kind`` :data:`KIND`), and each process hands
them to its own streams through the registry here. Opening or closing a stream therefore costs no channel
layer operation at all: a burst of thousands of clients leaving cannot exhaust the layer's connection pool,
no dead member can accumulate in a group, and a broadcast costs one message per worker whatever the number
of streams.

Every stream has a :class:`LocalStream`: a bounded buffer of the events waiting to be written to its client.
Its bound (``STREAM_BUFFER_BYTES``) is what a client that does not read may cost: past it the stream is
closed (:attr:`LocalStream.overflowed`). list_changed notifications waiting in a buffer are merged, never
queued twice: one that is still waiting will be written after every change it stands for, so the client ends
up with the latest state.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any

from ..protocol import jsonrpc
from ..protocol.messages import is_list_changed
from ..protocol.subscriptions import resource_updated

logger = logging.getLogger("mcp_app.transports")

#: The bus event kind that carries stream events to every worker.
KIND = "streams.event"
#: A stream event naming updated resource URIs (``uris``), for the listen streams subscribed to them, and the
#: sessions subscribed to each (``sessions``: {uri: [session id, ...]}), for those sessions' open streams.
UPDATED = "mcp.updated"
#: The most session ids one :data:`UPDATED` event names (about 40 bytes each): more subscribers are split over
#: several events, so that no single channel-layer message grows without bound.
MAX_SESSIONS_PER_EVENT = 5000


def updated_events(uris: list[str], sessions: dict[str, list[str]]) -> list[dict[str, Any]]:
    """The :data:`UPDATED` events that tell every worker of changed ``uris``: one, unless ``sessions`` names
    more than :data:`MAX_SESSIONS_PER_EVENT` subscribed sessions (then the first names the URIs for the listen
    streams, and each names its share of the sessions)."""
    pairs = [(uri, session_id) for uri, ids in sessions.items() for session_id in ids]
    events: list[dict[str, Any]] = []
    for at in range(0, max(len(pairs), 1), MAX_SESSIONS_PER_EVENT):
        part: dict[str, list[str]] = {}
        for uri, session_id in pairs[at : at + MAX_SESSIONS_PER_EVENT]:
            part.setdefault(uri, []).append(session_id)
        events.append({"type": UPDATED, "uris": [], "sessions": part})
    events[0]["uris"] = list(uris)
    return events


def encode_message(message: dict[str, Any]) -> bytes:
    """``message`` encoded as a stream writes it; its length is what it counts against a stream's
    ``STREAM_BUFFER_BYTES``."""
    return jsonrpc.encode(message)


def merge_exposures(first: list[str] | None, second: list[str] | None) -> list[str] | None:
    """The exposures of two merged list_changed events: None (about no exposure in particular: for every
    stream) wins; otherwise the union, so the merged event reaches a stream when either would have."""
    if first is None or second is None:
        return None
    return sorted(set(first) | set(second))


def _resolve(waiter: asyncio.Future[None] | None) -> None:
    if waiter is not None and not waiter.done():
        waiter.set_result(None)


class LocalStream:
    """The events waiting for one open stream of this process (see the module's docstring).

    ``put`` never blocks and never drops silently: past ``limit`` bytes (with more than one event waiting, so
    that a single large answer always gets through) the stream is marked overflowed and its writer closes it.
    """

    def __init__(self, session_id: str, limit: int) -> None:
        """``limit``: the most bytes (of encoded messages) that may wait; 0 or None: no bound."""
        self.session_id = session_id
        self.limit = limit or 0
        self.pending_bytes = 0
        #: Why the stream must end without writing what waits (None: it may go on).
        self.overflowed: str | None = None
        #: Set when the stream must end (its session was closed).
        self.closed = False
        #: Ids of the answers and requests refused once the stream was closing (the first 50).
        self.refused_ids: list[Any] = []
        #: Set when it ended because its channel failed, not because its client stopped reading.
        self.broken = False
        #: Called once when the stream overflows or fails (its writer may be stuck in a send that waits).
        self.on_overflow: Callable[[], Any] | None = None
        # Each event with its message's encoded size and, where it was encoded here, the bytes themselves:
        # the writer reuses them instead of encoding the message a second time.
        self._events: deque[tuple[dict[str, Any], int, bytes | None]] = deque()
        # The writer's pending wait (a bare future, made only while it waits): lighter than an asyncio.Event
        # (and wait_for's task) for every idle stream.
        self._waiter: asyncio.Future[None] | None = None

    def _wake(self) -> None:
        _resolve(self._waiter)

    def _overflow(self, reason: str) -> None:
        if self.overflowed is not None:
            return
        self.overflowed = reason
        self._wake()
        if self.on_overflow is not None:
            self.on_overflow()

    def __len__(self) -> int:
        return len(self._events)

    def put(self, event: dict[str, Any], size: int | None = None, encoded: bytes | None = None) -> None:
        """Queue a channel-layer style event: ``mcp.message`` / ``mcp.coalesced`` (with ``message``) or
        ``mcp.close``. ``size``: the message's encoded length, when the caller knows it (one event for many
        streams is encoded once); ``encoded``: the message's encoding itself, when the caller has it."""
        kind = event.get("type")
        if kind == "mcp.close":
            self.closed = True
            self._wake()
            return
        message = event.get("message")
        if kind not in ("mcp.message", "mcp.coalesced") or not isinstance(message, dict):
            return
        if self.overflowed is not None:
            # Closing: nothing more is kept for it (the bound holds); what is refused is logged with the rest.
            if "id" in message and len(self.refused_ids) < 50:
                self.refused_ids.append(message["id"])
            return
        if is_list_changed(message):
            for waiting, _, _ in self._events:
                if is_list_changed(waiting.get("message")) and waiting["message"].get("method") == message.get("method"):
                    # Still unwritten: it goes out after this change too. Merged, so it reaches the stream
                    # when either would have (the audience check runs when it is written).
                    if waiting.get("type") == "mcp.coalesced" or kind == "mcp.coalesced":
                        waiting["exposures"] = merge_exposures(waiting.get("exposures"), event.get("exposures"))
                        waiting["type"] = "mcp.coalesced" if waiting["exposures"] is not None else "mcp.message"
                    return
            event = dict(event)  # merged into later: never change the sender's (shared) copy
        if encoded is not None:
            size = len(encoded)
        elif size is None:  # deliver() gives the encoding when one event goes to many streams: encoded once
            encoded = encode_message(message)
            size = len(encoded)
        self._events.append((event, size, encoded))
        self.pending_bytes += size
        self._wake()
        if self.limit and self.pending_bytes > self.limit and len(self._events) > 1:
            self._overflow(
                f"the client is not reading its stream: {len(self._events)} events "
                f"({self.pending_bytes} bytes) wait to be written, over STREAM_BUFFER_BYTES ({self.limit})"
            )

    def fail(self, reason: str) -> None:
        """End the stream without writing what waits: the channel it reads from is gone (the client is not to
        blame: its response is ended cleanly so that it reconnects)."""
        self.broken = True
        self._overflow(reason)

    def pop(self) -> dict[str, Any] | None:
        """The oldest waiting event, or None."""
        return self.pop_encoded()[0]

    def pop_encoded(self) -> tuple[dict[str, Any] | None, bytes | None]:
        """The oldest waiting event (or None) and its message's encoding (``jsonrpc.encode``), where it is
        known (else None): the writer need not encode the message again."""
        if not self._events:
            return None, None
        event, size, encoded = self._events.popleft()
        self.pending_bytes -= size
        return event, encoded

    def waiting_ids(self) -> list[Any]:
        """The ids of the answers and requests still waiting (for the log when they cannot be delivered)."""
        return [
            event["message"]["id"]
            for event, _, _ in self._events
            if isinstance(event.get("message"), dict) and "id" in event["message"]
        ] + self.refused_ids

    async def wait(self, timeout: float | None) -> None:
        """Until an event waits, the stream must end, or ``timeout`` seconds pass."""
        if self._events or self.closed or self.overflowed is not None:
            return
        loop = asyncio.get_running_loop()
        waiter = self._waiter = loop.create_future()
        timer = loop.call_later(timeout, _resolve, waiter) if timeout is not None else None
        try:
            await waiter
        finally:
            self._waiter = None
            if timer is not None:
                timer.cancel()


class ListenStream(LocalStream):
    """The events waiting for one ``subscriptions/listen`` stream of this process (MCP 2026-07-28).

    It belongs to no session: it receives what is sent to every stream (list_changed), the
    ``resources/updated`` of its own URIs (:data:`UPDATED` events, matched here, in each process: the saving
    process sends one event per transaction whatever the number of subscribers), and the close of its
    caller's streams (access withdrawn: ``mcp.close`` naming the principal or the user).
    """

    def __init__(self, limit: int, *, uris: frozenset[str], principal: str | None, user_id: str | None) -> None:
        super().__init__("", limit)
        self.uris = uris
        self.principal = principal
        self.user_id = user_id

    def concerns(self, who: dict[str, Any]) -> bool:
        """Whether a close naming ``who`` (``principal`` or ``user``) is for this stream's caller."""
        principal, user = who.get("principal"), who.get("user")
        return (principal is not None and principal == self.principal) or (user is not None and str(user) == self.user_id)


# Open streams of this process by session id. Streams live on the server's event loop, and so do the bus
# listener and every caller of register/deliver: no lock needed.
_streams: dict[str, set[LocalStream]] = {}
_wired: weakref.WeakSet[Any] = weakref.WeakSet()
# Open listen streams of this process (they have no session).
_listeners: set[ListenStream] = set()


def register(stream: LocalStream) -> None:
    _streams.setdefault(stream.session_id, set()).add(stream)


def unregister(stream: LocalStream) -> None:
    streams = _streams.get(stream.session_id)
    if streams is not None:
        streams.discard(stream)
        if not streams:
            del _streams[stream.session_id]


def register_listener(stream: ListenStream) -> None:
    _listeners.add(stream)


def unregister_listener(stream: ListenStream) -> None:
    _listeners.discard(stream)


def listener_count() -> int:
    """How many listen streams are open in this process."""
    return len(_listeners)


def deliver(event: dict[str, Any]) -> None:
    """Hand an event to this process's streams: those of ``event["session"]``; the listen streams of the URIs
    of an :data:`UPDATED` event, or of the caller named by a close's ``listeners``; otherwise every stream."""
    session_id = event.get("session")
    if session_id is not None:
        for stream in list(_streams.get(session_id, ())):
            stream.put(event)
        return
    if event.get("type") == UPDATED:
        uris = [uri for uri in event.get("uris") or () if isinstance(uri, str)]
        order = {uri: at for at, uri in enumerate(uris)}
        changed = set(order)
        made: dict[str, tuple[dict[str, Any], bytes]] = {}
        for listener in list(_listeners):
            # Two sets intersect by walking the smaller, then the matches go in the event's order: a transaction
            # may change thousands of rows and a worker hold a thousand listen streams, each of up to a thousand
            # URIs, so never a walk of every URI per stream.
            for uri in sorted(listener.uris & changed, key=order.__getitem__):
                update, encoded = _updated(uri, made)
                listener.put(update, encoded=encoded)
        sessions = event.get("sessions")
        for uri, ids in sessions.items() if isinstance(sessions, dict) else ():
            if not isinstance(uri, str) or not isinstance(ids, list):
                continue
            for session_id in ids:
                for stream in list(_streams.get(session_id, ())) if isinstance(session_id, str) else ():
                    update, encoded = _updated(uri, made)
                    stream.put(update, encoded=encoded)
        return
    who = event.get("listeners")
    if isinstance(who, dict):
        for listener in list(_listeners):
            if listener.concerns(who):
                listener.put(event)
        return
    targets: list[LocalStream] = [s for streams in _streams.values() for s in streams]
    targets.extend(_listeners)
    message = event.get("message")
    encoded = encode_message(message) if targets and isinstance(message, dict) else None
    for stream in targets:
        stream.put(event, encoded=encoded)


def _updated(uri: str, made: dict[str, tuple[dict[str, Any], bytes]]) -> tuple[dict[str, Any], bytes]:
    """The ``resources/updated`` event for ``uri`` and its message's encoding, made once per delivery and
    shared by every stream it reaches (LocalStream.put keeps it as it is: only list_changed events are merged,
    on copies)."""
    found = made.get(uri)
    if found is None:
        event = {"type": "mcp.message", "message": resource_updated(uri)}
        found = made[uri] = (event, encode_message(event["message"]))
    return found


def _on_bus(message: dict[str, Any]) -> None:
    event = message.get("event")
    if isinstance(event, dict):
        deliver(event)


def _on_session_ended(message: dict[str, Any]) -> None:
    # However a session ended (DELETE, its credential, an operator, its legacy stream), its streams end here.
    session_id = message.get("session_id")
    if isinstance(session_id, str):
        deliver({"type": "mcp.close", "session": session_id})


def attach(bus: Any) -> None:
    """Deliver the bus's stream events to this process's streams (idempotent, per bus)."""
    if bus in _wired:
        return
    _wired.add(bus)
    bus.on(KIND, _on_bus)
    bus.on("session.ended", _on_session_ended)
