"""What a transport may ask about a message without knowing MCP's method names.

A transport turns HTTP into messages and messages into HTTP; where HTTP needs to know something about a
message (Streamable HTTP: does this POST open a session, and so need no ``Mcp-Session-Id``? may a stream
merge this notification into a later one?), it asks here. Method names stay in the protocol layer:
nothing in :mod:`mcp_app.transports` compares them. Django-free, like the rest of :mod:`mcp_app.protocol`.
"""

from __future__ import annotations

from typing import Any

from . import jsonrpc

#: The request that opens a session (answered by :class:`~mcp_app.protocol.dispatcher.Dispatcher`).
INITIALIZE = "initialize"
#: What every ``list_changed`` notification's method ends with (tools, resources, prompts, roots).
_LIST_CHANGED_SUFFIX = "/list_changed"


def opens_session(item: Any) -> bool:
    """Whether a decoded JSON value (one entry of a POST's body, not yet validated) asks to open a session.

    True for anything that names ``initialize`` as its method, well formed or not, so that a transport
    routes it to :func:`opening_request`, which says what is wrong with it.
    """
    return isinstance(item, dict) and item.get("method") == INITIALIZE


def opening_request(item: Any) -> jsonrpc.Request:
    """The session-opening request in ``item`` (one for which :func:`opens_session` holds).

    Raises :class:`~mcp_app.protocol.jsonrpc.InvalidMessage` (-32600) when it is not a well-formed
    JSON-RPC request, an ``initialize`` sent as a notification included (it must be answered).
    """
    message = jsonrpc.parse_message(item)
    if not isinstance(message, jsonrpc.Request):
        raise jsonrpc.InvalidMessage("Invalid Request: initialize is a request and needs an id.")
    return message


def is_list_changed(message: Any) -> bool:
    """A ``notifications/*/list_changed``: content-free, so any later one stands for every earlier one
    (streams may coalesce them)."""
    return isinstance(message, dict) and "id" not in message and str(message.get("method", "")).endswith(_LIST_CHANGED_SUFFIX)


def is_answer(message: dict[str, Any]) -> bool:
    """An outgoing JSON-RPC response (a result or an error for a request): it has an id and no method."""
    return "id" in message and "method" not in message


def is_server_request(message: dict[str, Any]) -> bool:
    """An outgoing request to the client (sampling, elicitation, roots): it has a method and an id, and
    the client can only answer it on a later POST."""
    return "method" in message and "id" in message
