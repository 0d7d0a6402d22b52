"""Saves and deletes of exposed models -> MCP notifications, on every worker.

- A saved or deleted object sends ``notifications/resources/updated`` to the sessions subscribed to its
  URI (:class:`~mcp_app.models.Subscription` rows), through each session's channel-layer group.
- A created or deleted object sends ``notifications/resources/list_changed`` to the open streams whose
  caller may read the object's exposure (:class:`StreamAudience`), coalesced: once per transaction here,
  and at most once per ``LIST_CHANGED_COALESCE_SECONDS`` per stream there
  (:class:`mcp_app.transports.http.Coalescer`), so a bulk change is one or two notifications.

Everything is sent once the transaction commits (a rolled-back save notifies nobody), from whichever
process saved: a web worker, the admin, a management command or a shell. Across processes this needs a
shared channel layer (channels_redis). A notification is advisory: failing to send one never fails the save.
"""

from __future__ import annotations

import logging
from typing import Any

from asgiref.sync import async_to_sync
from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from .auth import user_generation
from .protocol import jsonrpc

logger = logging.getLogger("mcp_app")

RESOURCE_UPDATED = "notifications/resources/updated"
RESOURCES_CHANGED = "notifications/resources/list_changed"


def _exposures_of(model: type) -> list[Any]:
    from .conf import mcp_settings
    from .providers.managed import ManagedProvider

    provider = mcp_settings.PROVIDER
    if not isinstance(provider, ManagedProvider):
        return []
    if model._meta.app_label == "mcp_app":
        return []  # our own bookkeeping rows (sessions, audit) are never exposed; skip the catalog entirely
    if provider.cached_catalog is None and not _tables_ready():
        # Before mcp_app's tables exist (migrate): only code exposures, and no query that would fail and,
        # on PostgreSQL, abort the migration's transaction.
        return [e for e in provider.exposures.exposures.values() if e.model is model]
    return provider.catalog_sync().exposures_of(model)


_ready = False


def _tables_ready() -> bool:
    global _ready
    if not _ready:
        from django.db import connection

        from .models import ModelExposure, QueryTool, Tool

        names = set(connection.introspection.table_names())
        _ready = all(m._meta.db_table in names for m in (ModelExposure, QueryTool, Tool))
    return _ready


def _once_per_transaction(key: str, using: str, callback: Any) -> None:
    """``transaction.on_commit(callback)`` unless one with the same key is already waiting in this
    transaction (Django drops waiting callbacks on rollback, so no stale key can block later ones)."""
    connection = connections[using]
    if connection.in_atomic_block and any(getattr(fn, "mcp_key", None) == key for _, fn, *_ in connection.run_on_commit):
        return
    callback.mcp_key = key
    transaction.on_commit(callback, using=using)


def _send_updated(uri: str) -> None:
    from .models import Subscription
    from .transports.events import send_to_session

    try:
        sessions = set(Subscription.objects.filter(uri=uri, session__ended__isnull=True).values_list("session_id", flat=True))
        for session_id in sessions:
            async_to_sync(send_to_session)(session_id, jsonrpc.notification(RESOURCE_UPDATED, {"uri": uri}))
    except Exception as exc:  # advisory: never fail the save for it
        logger.warning("could not send %s for %s (%s: %s)", RESOURCE_UPDATED, uri, type(exc).__name__, exc)


class _ListChanged:
    """The on-commit callback of one transaction's list_changed: the exposures of every model whose rows
    were created or deleted in it, sent once, to the streams that may read at least one of them."""

    mcp_key = "list_changed"

    def __init__(self) -> None:
        self.exposures: set[str] = set()

    def __call__(self) -> None:
        from .transports.events import broadcast_coalesced

        try:
            async_to_sync(broadcast_coalesced)(jsonrpc.notification(RESOURCES_CHANGED), sorted(self.exposures))
        except Exception as exc:
            logger.warning("could not send %s (%s: %s)", RESOURCES_CHANGED, type(exc).__name__, exc)


def _queue_list_changed(exposure_keys: list[str], using: str) -> None:
    """Add the exposures to this transaction's waiting list_changed, or queue one (see _once_per_transaction)."""
    connection = connections[using]
    if connection.in_atomic_block:
        for _, fn, *_ in connection.run_on_commit:
            if isinstance(fn, _ListChanged):
                fn.exposures.update(exposure_keys)
                return
    callback = _ListChanged()
    callback.exposures.update(exposure_keys)
    transaction.on_commit(callback, using=using)


def object_changed(instance: Any, *, membership_changed: bool, using: str = DEFAULT_DB_ALIAS) -> None:
    """Queue the notifications for a saved or deleted object of an exposed model."""
    exposures = _exposures_of(type(instance))
    for exposure in exposures:
        try:
            uri = exposure.uri_for(instance)
        except Exception:  # noqa: BLE001 - an object without its lookup value has no URI to announce
            continue
        _once_per_transaction(f"updated:{uri}", using, lambda uri=uri: _send_updated(uri))
    if exposures and membership_changed:
        _queue_list_changed([e.key for e in exposures], using)


class StreamAudience:
    """Which model exposures the caller of one event stream may read: a list_changed about rows of
    exposures (an ``mcp.coalesced`` event naming them) goes out on the stream only when the caller may
    read at least one of them, so that nobody learns when rows they cannot see come and go.

    The set is worked out on the first such event (the exposures' permission classes, as
    resources/list applies them) and kept until the catalog of exposures is reloaded (a row changed on
    any worker, or its age) or the user's groups or permissions change (then the user is read afresh):
    no query per notification per stream.
    """

    def __init__(self, user: Any) -> None:
        """``user``: the stream's caller (None: anonymous)."""
        self._user = user if user is not None and getattr(user, "is_authenticated", False) else None
        self._generation = user_generation(self._user)  # changes after this make the user be read again
        self._catalog: Any = None
        self._readable: frozenset[str] = frozenset()

    async def admits(self, event: dict[str, Any]) -> bool:
        """Whether the stream may send ``event``'s message: yes unless it names exposures, none of which
        the caller may read. When that cannot be worked out (the database is down), no: it is advisory."""
        keys = event.get("exposures")
        if keys is None:
            return True
        try:
            readable = await self.readable()
        except Exception as exc:
            logger.warning("could not check who may read %s (%s: %s); not sent", keys, type(exc).__name__, exc)
            return False
        return not readable.isdisjoint(keys)

    async def readable(self) -> frozenset[str]:
        """The keys of the exposures the caller may read now."""
        from channels.db import database_sync_to_async

        from .conf import mcp_settings
        from .permissions import aallows
        from .providers.managed import ManagedProvider

        provider = mcp_settings.PROVIDER
        if not isinstance(provider, ManagedProvider):
            return frozenset()
        catalog = await provider.catalog()
        generation = user_generation(self._user)
        if catalog is self._catalog and generation == self._generation:
            return self._readable
        if generation != self._generation and self._user is not None:
            self._user = await database_sync_to_async(_fresh_user)(self._user.pk)  # its permissions changed
        self._generation = generation
        self._readable = frozenset(
            [
                key
                for key, exposure in catalog.exposures.items()
                if await aallows(exposure.permission_classes, self._user, exposure)
            ]
        )
        self._catalog = catalog
        return self._readable


def _fresh_user(pk: Any) -> Any:
    """The user as stored now (permissions not yet loaded), None when gone or inactive."""
    from django.contrib.auth import get_user_model

    return get_user_model()._default_manager.filter(pk=pk, is_active=True).first()


@receiver(post_save)
def _saved(sender: type, instance: Any, created: bool = False, using: str = DEFAULT_DB_ALIAS, **kwargs: Any) -> None:
    object_changed(instance, membership_changed=created, using=using)


@receiver(post_delete)
def _deleted(sender: type, instance: Any, using: str = DEFAULT_DB_ALIAS, **kwargs: Any) -> None:
    object_changed(instance, membership_changed=True, using=using)
