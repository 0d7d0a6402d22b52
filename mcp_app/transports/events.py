"""Server-to-client delivery through the Channels channel layer.

Every open event stream has its own channel and joins its session's group, so any worker can reach it:

- :func:`send_to_stream` targets one stream's channel and raises :class:`DeliveryError` when the layer
  is full or unreachable (the caller answers 503: never a silent drop);
- :func:`send_to_session` broadcasts to every stream of a session (notifications);
- :func:`broadcast` reaches every open stream of every session (list_changed), and
  :func:`broadcast_coalesced` does so at most once per window per stream (data changes), and only to the
  streams whose caller may read the exposures concerned;
- :func:`close_session_streams` ends them (session ended).
"""

from __future__ import annotations

import logging
from typing import Any

from channels.layers import get_channel_layer

logger = logging.getLogger("mcp_app.transports")


class DeliveryError(Exception):
    """A message could not be handed to the channel layer."""


#: The group every open stream joins: notifications for everyone (list_changed).
ALL_STREAMS = "mcp_app.streams"


def session_group(session_id: str) -> str:
    """The channel-layer group of a session's event streams (ids are URL-safe base64: valid group names)."""
    return f"mcp_app.session.{session_id}"


async def send_to_stream(channel: str, message: dict[str, Any]) -> None:
    """Queue one JSON-RPC message for the stream reading ``channel``, on whichever worker holds it."""
    layer = get_channel_layer()
    if layer is None:
        raise DeliveryError("no channel layer is configured (CHANNEL_LAYERS['default'])")
    try:
        await layer.send(channel, {"type": "mcp.message", "message": message})
    except Exception as exc:  # ChannelFull, or the layer's backend (Redis) is unreachable
        raise DeliveryError(f"{type(exc).__name__}: {exc}") from exc


async def send_to_session(session_id: str, message: dict[str, Any]) -> None:
    """Broadcast a server-initiated message to every open stream of a session (best effort)."""
    layer = get_channel_layer()
    if layer is not None:
        await layer.group_send(session_group(session_id), {"type": "mcp.message", "message": message})


async def close_session_streams(session_id: str) -> None:
    """Make every open stream of the session end its response."""
    layer = get_channel_layer()
    if layer is not None:
        await layer.group_send(session_group(session_id), {"type": "mcp.close"})


async def broadcast(message: dict[str, Any]) -> None:
    """Send a message to every open stream of every session, on every worker."""
    layer = get_channel_layer()
    if layer is not None:
        await layer.group_send(ALL_STREAMS, {"type": "mcp.message", "message": message})


async def broadcast_coalesced(message: dict[str, Any], exposures: list[str] | None = None) -> None:
    """Like :func:`broadcast`, but each stream sends at most one such message (by method) per
    ``LIST_CHANGED_COALESCE_SECONDS``, plus one at the end of the window if more arrived in it.

    With ``exposures`` (the keys of the model exposures whose rows changed), only the streams whose
    caller may read at least one of them send it (:class:`mcp_app.notifications.StreamAudience`)."""
    layer = get_channel_layer()
    if layer is not None:
        event: dict[str, Any] = {"type": "mcp.coalesced", "message": message}
        if exposures is not None:
            event["exposures"] = list(exposures)
        await layer.group_send(ALL_STREAMS, event)
