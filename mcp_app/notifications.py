"""Saves and deletes of exposed models -> MCP notifications, on every worker.

- A saved or deleted object sends ``notifications/resources/updated`` to the sessions subscribed to its
  URI (:class:`~mcp_app.models.Subscription` rows), through each session's channel-layer group.
- A created or deleted object sends ``notifications/resources/list_changed`` to every open stream,
  coalesced: once per transaction here, and at most once per ``LIST_CHANGED_COALESCE_SECONDS`` per stream
  there (:class:`mcp_app.transports.http.Coalescer`), so a bulk change is one or two notifications.

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

from .protocol import jsonrpc

logger = logging.getLogger("mcp_app")

RESOURCE_UPDATED = "notifications/resources/updated"
RESOURCES_CHANGED = "notifications/resources/list_changed"


def _exposures_of(model: type) -> list[Any]:
    from .conf import mcp_settings
    from .managed import ManagedProvider

    provider = mcp_settings.PROVIDER
    if not isinstance(provider, ManagedProvider):
        return []
    if model._meta.app_label == "mcp_app":
        return []  # our own bookkeeping rows (sessions, audit) are never exposed; skip the catalog entirely
    if provider._catalog is None and not _tables_ready():
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


def _send_list_changed() -> None:
    from .transports.events import broadcast_coalesced

    try:
        async_to_sync(broadcast_coalesced)(jsonrpc.notification(RESOURCES_CHANGED))
    except Exception as exc:
        logger.warning("could not send %s (%s: %s)", RESOURCES_CHANGED, type(exc).__name__, exc)


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
        _once_per_transaction("list_changed", using, _send_list_changed)


@receiver(post_save)
def _saved(sender: type, instance: Any, created: bool = False, using: str = DEFAULT_DB_ALIAS, **kwargs: Any) -> None:
    object_changed(instance, membership_changed=created, using=using)


@receiver(post_delete)
def _deleted(sender: type, instance: Any, using: str = DEFAULT_DB_ALIAS, **kwargs: Any) -> None:
    object_changed(instance, membership_changed=True, using=using)
