"""``subscriptions/listen`` (MCP 2026-07-28, *Basic › Patterns › Subscriptions*): one long-lived response
stream per request, carrying only the change notifications its filter opted in to.

The modern era has no GET stream and no ``resources/subscribe``: a client that wants ``list_changed`` or
``resources/updated`` sends ``subscriptions/listen`` with a :class:`SubscriptionFilter` and reads the
response stream. This module is the protocol side of it, Django-free:

- :meth:`SubscriptionFilter.parse` validates ``params.notifications`` (-32602 for anything malformed);
- :class:`ListenHandler` is the method's handler: it works out the subset the server honours (capabilities it
  declares; resource URIs the caller may read), sends ``notifications/subscriptions/acknowledged`` first,
  then forwards what a :class:`NotificationSource` yields that the filter admits, each tagged with
  ``_meta["io.modelcontextprotocol/subscriptionId"]`` (the listen request's id), until the client closes the
  stream (that cancels the request: nothing more is sent) or the source ends it (credential revoked, buffer
  overflow, shutdown): then the request is answered with the graceful final result
  (*Subscriptions › Graceful Closure*);
- :func:`register` adds the handler to a dispatcher's modern method table.

The handler sends through ``ctx.send_notification`` like any request that emits notifications, so the transport upgrades
the answer to an SSE stream as it does for progress, without knowing which method it serves. Where the
notifications come from (the worker processes' fan-out over the channel layer) is the source's business:
:class:`mcp_app.transports.listen.ListenSource` in this app.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from . import jsonrpc, versions
from .context import RequestContext
from .errors import InvalidParams, McpError

LISTEN = "subscriptions/listen"
ACKNOWLEDGED = "notifications/subscriptions/acknowledged"
RESOURCE_UPDATED = "notifications/resources/updated"
TOOLS_CHANGED = "notifications/tools/list_changed"
PROMPTS_CHANGED = "notifications/prompts/list_changed"
RESOURCES_CHANGED = "notifications/resources/list_changed"
#: The ``_meta`` key naming the subscription a notification (or the final result) belongs to.
SUBSCRIPTION_ID = "io.modelcontextprotocol/subscriptionId"
#: The most resource URIs one listen request may name: each is checked against the caller's access when the
#: stream opens, and matched against every update while it is open.
MAX_RESOURCE_SUBSCRIPTIONS = 1000

# Filter field -> the list_changed notification it opts in to, and the capability that must declare it.
_LIST_FLAGS: dict[str, tuple[str, str]] = {
    "toolsListChanged": (TOOLS_CHANGED, "tools"),
    "promptsListChanged": (PROMPTS_CHANGED, "prompts"),
    "resourcesListChanged": (RESOURCES_CHANGED, "resources"),
}


@dataclass(frozen=True)
class SubscriptionFilter:
    """What one listen stream opted in to: the ``list_changed`` methods and the resource URIs."""

    list_changed: frozenset[str] = frozenset()
    resource_uris: frozenset[str] = frozenset()
    #: The URIs in the order the client named them (the acknowledgement lists them so).
    uri_order: tuple[str, ...] = ()

    @classmethod
    def parse(cls, params: dict[str, Any]) -> SubscriptionFilter:
        """``params.notifications`` of a listen request; raise :class:`InvalidParams` when it is missing, not
        an object, a flag is not a boolean, or ``resourceSubscriptions`` is not a list of non-empty strings
        (at most :data:`MAX_RESOURCE_SUBSCRIPTIONS`). Unknown members are ignored (a later revision's types)."""
        notifications = params.get("notifications")
        if not isinstance(notifications, dict):
            raise InvalidParams('subscriptions/listen needs params.notifications, an object such as {"toolsListChanged": true}.')
        methods = set()
        for name, (method, _) in _LIST_FLAGS.items():
            value = notifications.get(name)
            if value is None:
                continue
            if not isinstance(value, bool):
                raise InvalidParams(f"subscriptions/listen: notifications.{name} must be a boolean.")
            if value:
                methods.add(method)
        uris = notifications.get("resourceSubscriptions")
        if uris is None:
            uris = []
        if not isinstance(uris, list) or not all(isinstance(u, str) and u for u in uris):
            raise InvalidParams("subscriptions/listen: notifications.resourceSubscriptions must be a list of resource URIs.")
        if len(uris) > MAX_RESOURCE_SUBSCRIPTIONS:
            raise InvalidParams(
                f"subscriptions/listen: at most {MAX_RESOURCE_SUBSCRIPTIONS} resourceSubscriptions per stream "
                f"({len(uris)} sent); open another listen stream for the rest."
            )
        order = tuple(dict.fromkeys(uris))
        return cls(frozenset(methods), frozenset(order), order)

    def honoured(self, capabilities: dict[str, Any], readable: Callable[[str], bool] | None = None) -> SubscriptionFilter:
        """The subset the server agrees to: list_changed only where ``capabilities`` declare ``listChanged``,
        resource URIs only with ``resources.subscribe`` and, given ``readable``, only those it admits."""
        methods = frozenset(
            method
            for method, capability in _LIST_FLAGS.values()
            if method in self.list_changed and (capabilities.get(capability) or {}).get("listChanged")
        )
        order: tuple[str, ...] = ()
        if (capabilities.get("resources") or {}).get("subscribe"):
            order = tuple(uri for uri in self.uri_order if readable is None or readable(uri))
        return SubscriptionFilter(methods, frozenset(order), order)

    def to_wire(self) -> dict[str, Any]:
        """As a ``SubscriptionFilter`` object: only the types it holds (what the acknowledgement reports)."""
        wire: dict[str, Any] = {name: True for name, (method, _) in _LIST_FLAGS.items() if method in self.list_changed}
        if self.uri_order:
            wire["resourceSubscriptions"] = list(self.uri_order)
        return wire

    @property
    def empty(self) -> bool:
        return not self.list_changed and not self.resource_uris

    def admits(self, message: Any) -> bool:
        """Whether ``message`` may go on a stream with this filter: a notification of an opted-in
        ``list_changed`` type, or ``resources/updated`` for one of the URIs. Nothing else, ever (requests,
        answers, progress and log messages belong to their own request's stream)."""
        if not isinstance(message, dict) or "id" in message:
            return False
        method = message.get("method")
        if method in self.list_changed:
            return True
        if method == RESOURCE_UPDATED:
            params = message.get("params")
            return isinstance(params, dict) and params.get("uri") in self.resource_uris
        return False


def tag(message: dict[str, Any], subscription_id: str | int) -> dict[str, Any]:
    """A copy of the notification ``message`` carrying ``_meta[SUBSCRIPTION_ID]`` (the sender's copy, shared
    by every stream of the process, is left untouched).

    Only the levels it changes are copied (the message, its params, their ``_meta``); the rest is shared with
    the sender's copy, which nobody changes: a deep copy per stream was most of what tagging cost a worker
    fanning one update out to a thousand listen streams."""
    params = message.get("params")
    params = dict(params) if isinstance(params, dict) else {}
    meta = params.get("_meta")
    params["_meta"] = {**(meta if isinstance(meta, dict) else {}), SUBSCRIPTION_ID: subscription_id}
    return {**message, "params": params}


def acknowledgement(honoured: SubscriptionFilter, subscription_id: str | int) -> dict[str, Any]:
    """``notifications/subscriptions/acknowledged``: the first message of every listen stream."""
    return jsonrpc.notification(ACKNOWLEDGED, {"notifications": honoured.to_wire(), "_meta": {SUBSCRIPTION_ID: subscription_id}})


def final_result(subscription_id: str | int) -> dict[str, Any]:
    """The ``SubscriptionsListenResult`` that closes a stream the server ends gracefully."""
    return {"resultType": "complete", "_meta": {SUBSCRIPTION_ID: subscription_id}}


def resource_updated(uri: str) -> dict[str, Any]:
    """``notifications/resources/updated`` for ``uri`` (for senders that must not spell method names)."""
    return jsonrpc.notification(RESOURCE_UPDATED, {"uri": uri})


class Listening(Protocol):
    """One listen stream's notifications, as a :class:`NotificationSource` hands them out: an async iterator
    of untagged JSON-RPC notifications that ends when the stream must end, and ``aclose()`` to release it."""

    def __aiter__(self) -> AsyncIterator[dict[str, Any]]: ...

    async def __anext__(self) -> dict[str, Any]: ...

    async def aclose(self) -> None: ...


class NotificationSource(Protocol):
    """Where a listen stream's notifications come from.

    ``listen`` returns once collecting has started (before the first item is asked for: nothing sent after the
    acknowledgement may be missed): a :class:`Listening` that yields the notifications that may
    concern a stream with ``subscription``, until the stream must end: the iterator ending ends the stream
    gracefully (the client gets the final result). The handler always calls ``aclose()`` (the client closing
    the stream cancels the request, and that must release whatever the source holds). It may yield more than
    the filter admits: the handler filters again.
    """

    async def listen(self, subscription: SubscriptionFilter, ctx: RequestContext) -> Listening: ...


#: Whether the caller of ``ctx`` may read a resource URI (for the acknowledged subset).
UriCheck = Callable[[str, RequestContext], Awaitable[None]]


class ListenHandler:
    """The ``subscriptions/listen`` handler (a dispatcher method handler: ``await handler(params, ctx)``).

    ``capabilities`` are the server's (what it declares in ``server/discover``); ``check_uri`` raises an
    :class:`~mcp_app.protocol.errors.McpError` for a URI the caller may not read (unknown or hidden alike:
    both are left out of the acknowledged subset, so that it tells a caller nothing about what it cannot
    see; updates for them are never sent).
    """

    def __init__(self, source: NotificationSource, capabilities: dict[str, Any], check_uri: UriCheck | None = None) -> None:
        self.source = source
        self.capabilities = capabilities
        self.check_uri = check_uri

    async def honour(self, requested: SubscriptionFilter, ctx: RequestContext) -> SubscriptionFilter:
        """The subset of ``requested`` this server honours for the caller of ``ctx``."""
        readable: set[str] = set()
        if self.check_uri is None:
            readable = set(requested.uri_order)
        else:
            for uri in requested.uri_order:
                try:
                    await self.check_uri(uri, ctx)
                except McpError:
                    continue
                readable.add(uri)
        return requested.honoured(self.capabilities, readable.__contains__)

    async def __call__(self, params: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
        subscription_id = ctx.request_id
        if subscription_id is None:  # a request always has one; a notification never reaches a handler
            raise InvalidParams("subscriptions/listen is a request: it needs an id.")
        honoured = await self.honour(SubscriptionFilter.parse(params), ctx)
        # Collecting starts before the acknowledgement goes out, so that a change the client makes as soon as
        # it reads the acknowledgement is delivered; nothing is written before the acknowledgement.
        listening = await self.source.listen(honoured, ctx)
        try:
            await _send(ctx, acknowledgement(honoured, subscription_id))
            async for message in listening:
                if honoured.admits(message):
                    await _send(ctx, tag(message, subscription_id))
        finally:
            await listening.aclose()
        return final_result(subscription_id)


async def _send(ctx: RequestContext, message: dict[str, Any]) -> None:
    """Send a notification on the listen request's own stream (the transport upgrades it to SSE)."""
    await ctx.send_notification(message["method"], message.get("params"))


def register(dispatcher: Any, source: NotificationSource) -> ListenHandler:
    """Serve ``subscriptions/listen`` in ``dispatcher``'s modern method table (``modern_methods``), with
    notifications from ``source``, honouring what the dispatcher declares in ``server/discover``; resource
    URIs are checked with the provider's ``check_subscription`` (as ``resources/subscribe`` checks them)."""
    capabilities = dispatcher.capabilities(versions.MODERN_VERSIONS[-1])
    handler = ListenHandler(source, capabilities, dispatcher.provider.check_subscription)
    dispatcher.modern_methods[LISTEN] = handler
    return handler
