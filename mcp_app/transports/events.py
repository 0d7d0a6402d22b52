"""Server-to-client delivery through the Channels channel layer.

A legacy stream's answers reach it from any worker through the bus channel of the worker holding it (its
session's ``stream_channel``, with the session id: :data:`STREAM_KIND`); everything addressed to more than one
stream goes to each worker process once, on the bus, and the process hands it to its own streams
(:mod:`mcp_app.transports.fanout`):

- :func:`send_to_stream` targets one stream's channel and raises :class:`DeliveryError` when the layer
  is full or unreachable (after retrying for a few seconds: the caller answers 503, never a silent drop);
- :func:`send_to_session` reaches every open stream of a session (notifications);
- :func:`broadcast` reaches every open stream of every session (list_changed), and
  :func:`broadcast_coalesced` does so only to the streams whose caller may read the exposures concerned;
  both send a list_changed at most once per ``LIST_CHANGED_COALESCE_SECONDS`` from each process, plus one at
  the end of the window when more came in it (the latest state is never lost, a burst is never a flood);
- :func:`close_session_streams` ends them (session ended);
- :func:`resources_updated` reaches the ``subscriptions/listen`` streams subscribed to the URIs, and
  :func:`close_listen_streams` ends a caller's listen streams (they have no session).

Delivery acknowledgements (legacy streams): a message for one stream may carry a reply address (the sending
process's bus channel, :meth:`mcp_app.bus.Bus.reply_channel`) and an ack id; the stream's reader confirms it
(:func:`acknowledge`) once the message is in the stream's buffer, and the sender's future
(:meth:`Acks.expect`) resolves when the confirmation reaches its bus listener. :func:`probe_stream` asks a
stream for a confirmation without sending it anything to write. One listener per process, no channel per POST.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import threading
import time
import weakref
from typing import Any

from channels.layers import get_channel_layer
from django.conf import settings

from ..bus import GROUP as BUS_GROUP
from ..layerops import layer_op
from ..protocol.messages import is_list_changed
from . import fanout

logger = logging.getLogger("mcp_app.transports")


class DeliveryError(Exception):
    """A message could not be handed to the channel layer."""


#: The bus kind of a message for one stream of a worker (sent to that worker's bus channel, never to the group).
STREAM_KIND = "stream.message"


def _addressed(event: dict[str, Any], session: str | None) -> dict[str, Any]:
    # A stream without a channel of its own (session given): the worker's bus listener hands the event to it.
    return event if session is None else {"type": "mcp.bus", "kind": STREAM_KIND, "session": session, "event": event}


async def send_to_stream(
    channel: str, message: dict[str, Any], *, ack: tuple[str, str] | None = None, session: str | None = None
) -> None:
    """Queue one JSON-RPC message for the stream reading ``channel``, on whichever worker holds it; with
    ``session``, ``channel`` is the bus channel of the worker holding that session's stream (legacy SSE
    streams have no channel of their own: see :func:`mcp_app.transports.streams.StreamConsumer.join_stream_channel`).

    With ``ack`` (reply channel, ack id), the stream's reader confirms to that channel once the message is in
    the stream's buffer (see :class:`Acks`). A full channel (its worker is behind) or a connection error is
    retried for a few seconds (:func:`~mcp_app.layerops.layer_op`) before :class:`DeliveryError`
    is raised."""
    event: dict[str, Any] = {"type": "mcp.message", "message": message}
    if ack is not None:
        event["ack_to"], event["ack"] = ack
    await _send_one(channel, _addressed(event, session))


async def probe_stream(channel: str, ack: tuple[str, str], *, session: str | None = None) -> None:
    """Ask the stream reading ``channel`` (``session``: as for :func:`send_to_stream`) to confirm it is reading
    (nothing is written to its client): the confirmation also covers every message queued for it before the
    probe (a channel is first in, first out). Raises :class:`DeliveryError` like :func:`send_to_stream`."""
    await _send_one(channel, _addressed({"type": "mcp.probe", "ack_to": ack[0], "ack": ack[1]}, session))


async def _send_one(channel: str, event: dict[str, Any]) -> None:
    layer = get_channel_layer()
    if layer is None:
        raise DeliveryError("no channel layer is configured (CHANNEL_LAYERS['default'])")
    try:
        await layer_op(layer.send, channel, event)
    except Exception as exc:  # ChannelFull, or the layer's backend (Redis) is unreachable
        raise DeliveryError(f"{type(exc).__name__}: {exc}") from exc


#: The bus kind of a delivery acknowledgement (sent to one process's bus channel, never to the group).
ACK_KIND = "stream.ack"
# Acknowledgements being sent by this process's stream readers (kept referenced until they finish).
_acking: set[asyncio.Task[None]] = set()


def acknowledge(event: dict[str, Any], *, taken: bool = True) -> None:
    """Confirm to its sender that ``event`` (an event a stream's reader took from its channel) is in the
    stream's buffer, when it asks for it (``ack_to``/``ack``); ``taken=False``: the stream refused it (it is
    closing: its session ended, or its client stopped reading), so the sender can say so at once. Fire and
    forget: the reader never waits for the layer; a confirmation that cannot be sent leaves the sender to time
    out and check the worker's lease."""
    reply, ack_id = event.get("ack_to"), event.get("ack")
    if not isinstance(reply, str) or not isinstance(ack_id, str):
        return
    layer = get_channel_layer()
    if layer is None:
        return
    task = asyncio.ensure_future(
        layer_op(layer.send, reply, {"type": "mcp.bus", "kind": ACK_KIND, "ack": ack_id, "taken": taken})
    )
    _acking.add(task)
    task.add_done_callback(_acked)


def _acked(task: asyncio.Task[None]) -> None:
    _acking.discard(task)
    if not task.cancelled() and task.exception() is not None:
        logger.warning(
            "could not acknowledge a delivery to its sender (%s: %s)", type(task.exception()).__name__, task.exception()
        )


class Acks:
    """The delivery confirmations this process awaits, by ack id (resolved by its bus listener)."""

    def __init__(self) -> None:
        self._waiting: dict[str, tuple[asyncio.AbstractEventLoop, asyncio.Future[bool]]] = {}
        self._buses: weakref.WeakSet[Any] = weakref.WeakSet()

    def attach(self, bus: Any) -> None:
        """Resolve confirmations that reach ``bus``'s listener (idempotent, per bus)."""
        if bus not in self._buses:
            self._buses.add(bus)
            bus.on(ACK_KIND, self._resolve)

    def expect(self) -> tuple[str, asyncio.Future[bool]]:
        """A new ack id and the future its confirmation resolves (True: in the stream's buffer; False: the stream
        refused it, it is closing); call :meth:`forget` when done with it."""
        ack_id = secrets.token_hex(8)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bool] = loop.create_future()
        self._waiting[ack_id] = (loop, future)
        return ack_id, future

    def forget(self, ack_id: str) -> None:
        self._waiting.pop(ack_id, None)

    def pending(self) -> int:
        return len(self._waiting)

    def _resolve(self, message: dict[str, Any]) -> None:
        entry = self._waiting.pop(str(message.get("ack")), None)
        if entry is None:  # late (its POST gave up) or not ours
            return
        loop, future = entry
        taken = message.get("taken") is not False

        def done() -> None:
            if not future.done():
                future.set_result(taken)

        if loop is asyncio.get_running_loop():
            done()
        else:
            loop.call_soon_threadsafe(done)


acks = Acks()


async def _to_workers(event: dict[str, Any]) -> None:
    """One event for many streams: one bus message per worker process (this one's streams at once when
    there is no layer); raises the layer's error when it cannot be handed over."""
    layer = get_channel_layer()
    if layer is None:
        fanout.deliver(event)
        return
    await layer_op(layer.group_send, BUS_GROUP, {"type": "mcp.bus", "kind": fanout.KIND, "event": event})


async def send_to_session(session_id: str, message: dict[str, Any]) -> None:
    """Send a server-initiated message to every open stream of a session, on every worker."""
    await _to_workers({"type": "mcp.message", "session": session_id, "message": message})


async def close_session_streams(session_id: str) -> None:
    """Make every open stream of the session end its response, on every worker."""
    await _to_workers({"type": "mcp.close", "session": session_id})


async def resources_updated(uris: list[str], sessions: dict[str, list[str]] | None = None) -> None:
    """Tell every worker that these resources changed: one bus message for all of their streams (a few for
    very many subscribers), never one per subscriber. Each worker matches ``uris`` against its listen streams'
    ``resourceSubscriptions`` and hands ``resources/updated`` for a URI to its open streams of the sessions
    ``sessions`` names for it (the handshake era's subscribed sessions, looked up once by the sender)."""
    if not uris:
        return
    for part in fanout.updated_events(list(uris), sessions or {}):
        await _to_workers(part)


async def close_listen_streams(*, principal: str | None = None, user_id: Any = None) -> None:
    """End the listen streams of a principal (its key) or of every principal of a user, on every worker
    (access withdrawn); each ends gracefully, with its final result."""
    who: dict[str, Any] = {}
    if principal is not None:
        who["principal"] = principal
    if user_id is not None:
        who["user"] = str(user_id)
    if who:
        await _to_workers({"type": "mcp.close", "listeners": who})


async def broadcast(message: dict[str, Any]) -> None:
    """Send a message to every open stream of every session, on every worker (list_changed: coalesced)."""
    event = {"type": "mcp.message", "message": message}
    if is_list_changed(message) and not _outbox.admit(event):
        return  # held: sent at the end of the window, with every change held with it
    await _to_workers(event)


async def broadcast_coalesced(message: dict[str, Any], exposures: list[str] | None = None) -> None:
    """Like :func:`broadcast`, but each stream sends at most one such message (by method) per
    ``LIST_CHANGED_COALESCE_SECONDS``, plus one at the end of the window if more arrived in it.

    With ``exposures`` (the keys of the model exposures whose rows changed), only the streams whose
    caller may read at least one of them send it (:class:`mcp_app.notifications.StreamAudience`)."""
    event: dict[str, Any] = {"type": "mcp.coalesced", "message": message}
    if exposures is not None:
        event["exposures"] = list(exposures)
    if not _outbox.admit(event):
        return
    await _to_workers(event)


class _Outbox:
    """This process's list_changed broadcasts, coalesced before they reach the layer: the first of a method
    goes at once; later ones within ``LIST_CHANGED_COALESCE_SECONDS`` are merged (exposures: union) into one
    sent when the window ends, from a timer thread. A burst of 40,000 changes is then two or three layer
    messages per window instead of 40,000 that would fill every worker's channel (and crowd out answers).
    Thread-safe: senders are the event loop and Django's sync threads alike."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sent: dict[str, float] = {}
        self._held: dict[str, dict[str, Any]] = {}

    def admit(self, event: dict[str, Any]) -> bool:
        """True: send ``event`` now. False: it was merged into one that the timer sends."""
        window = _coalesce_window()
        if window <= 0:
            return True
        method = str(event["message"].get("method"))
        now = time.monotonic()
        with self._lock:
            held = self._held.get(method)
            if held is not None:
                exposures = fanout.merge_exposures(held.get("exposures"), event.get("exposures"))
                held["type"] = "mcp.coalesced" if exposures is not None else "mcp.message"
                if exposures is None:
                    held.pop("exposures", None)
                else:
                    held["exposures"] = exposures
                return False
            last = self._sent.get(method)
            if last is None or now - last >= window:
                self._sent[method] = now
                return True
            self._held[method] = dict(event)
            # Non-daemon: a short-lived process (a shell, a management command) sends it before exiting.
            timer = threading.Timer(last + window - now, self._flush, args=(method,))
            timer.name = "mcp_app-list-changed"
            timer.daemon = False  # said, not inherited: the sender may be a daemon thread (layerops.call_from_sync)
            timer.start()
            return False

    def _flush(self, method: str) -> None:
        with self._lock:
            event = self._held.pop(method, None)
            self._sent[method] = time.monotonic()
        if event is None:
            return
        try:
            # A loop of this thread's own: async_to_sync would submit to an executor, which Python refuses
            # once a short-lived process (a shell) has begun exiting, the very moment this timer fires.
            asyncio.run(_to_workers(event))
        except Exception as exc:  # advisory, like the notification it stands for
            logger.warning("could not send %s (%s: %s)", method, type(exc).__name__, exc)


_outbox = _Outbox()


def _coalesce_window() -> float:
    """``MCP_APP["LIST_CHANGED_COALESCE_SECONDS"]``, read from Django's settings directly: importing
    mcp_app.conf here would close an import cycle (conf -> server -> sessions -> events). The default is
    conf.DEFAULTS'."""
    value = (getattr(settings, "MCP_APP", None) or {}).get("LIST_CHANGED_COALESCE_SECONDS", 0.5)
    return float(value or 0)
