"""Model signals -> what every worker must hear, once the transaction commits.

- A saved or deleted object of an exposed model sends ``notifications/resources/updated`` to the sessions
  subscribed to its URI (:class:`~mcp_app.models.Subscription` rows), and to the ``subscriptions/listen``
  streams that name it: one bus event per transaction for all of them, whatever the number of subscribers
  (it names the subscribed sessions; each worker delivers to the streams it holds).
- A created or deleted object of an exposed model sends ``notifications/resources/list_changed`` to the open
  streams whose caller may read the object's exposure (:class:`StreamAudience`), coalesced: once per
  transaction here, and at most once per ``LIST_CHANGED_COALESCE_SECONDS`` per stream there
  (:class:`mcp_app.transports.streams.Coalescer`), so a bulk change is one or two notifications.
- A saved or deleted tool, prompt, model exposure or query tool row (in the admin or in code), or a change to
  who may use one, changes what tools/list, prompts/list and resources/list answer: every worker drops its
  cached rows and every open stream gets the ``list_changed`` notifications concerned.
- Withdrawn access (a token revoked, expired or deleted; a user deactivated) ends the sessions opened with it
  and closes their streams at once, on every worker, and ends the caller's ``subscriptions/listen`` streams.
- Changed permissions (a user's groups, permissions or flags; a group's permissions) make every worker drop
  its cached copies of the users concerned, so that their very next request sees the new permissions.

One de-duplication for all of it: each kind of message is queued once per transaction
(:func:`_once_per_transaction`), gathering what the transaction's changes add up to, and sent when it
commits (a rolled-back change tells nobody; outside a transaction it is sent at once). This holds from
whichever process saved: a web worker, the admin, a management command or a shell. Across processes this
needs a shared channel layer (channels_redis). A notification is advisory: failing to send one never fails
the save.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable, Iterable
from typing import Any

from django.apps import apps as django_apps
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.db import DEFAULT_DB_ALIAS, connection, connections, transaction
from django.db.models.signals import m2m_changed, post_delete, post_save
from django.dispatch import receiver

# Re-exported: StreamAudience lived here, and the streams and tests import it from here.
from .audience import StreamAudience as StreamAudience
from .auth import forget_credentials
from .conf import mcp_settings
from .layerops import call_from_sync
from .models import ModelExposure, Prompt, PromptArgument, PromptMessage, QueryTool, Session, Subscription, Token, Tool
from .protocol import jsonrpc
from .providers.managed import ManagedProvider
from .runtime import end_sessions_of, get_server

# The channel-layer sends are looked up on the module when sent (events.broadcast, not a name bound here), so
# that tests can replace them. They run through layerops.call_from_sync: one event loop per process for the
# sends of synchronous code, so that a WSGI worker or a command does not open a Redis connection per save.
from .transports import events

logger = logging.getLogger("mcp_app")

RESOURCE_UPDATED = "notifications/resources/updated"
RESOURCES_CHANGED = "notifications/resources/list_changed"
TOOLS_CHANGED = "notifications/tools/list_changed"
PROMPTS_CHANGED = "notifications/prompts/list_changed"


# -- once per transaction, on commit ----------------------------------------------------------------------------
class _Pending:
    """One transaction's queued message of one kind: the items its changes added (in order, each once),
    handed to ``send`` when it commits."""

    def __init__(self, key: str, send: Callable[[list[Any]], None]) -> None:
        self.key = key
        self.items: dict[Hashable, None] = {}  # an ordered set
        self._send = send

    def __call__(self) -> None:
        self._send(list(self.items))


def _once_per_transaction(
    key: str, items: Iterable[Hashable], send: Callable[[list[Any]], None], using: str = DEFAULT_DB_ALIAS
) -> None:
    """Add ``items`` to this transaction's queued ``key`` message, or queue one with ``transaction.on_commit``:
    whatever a transaction changes is sent once, after it commits. Django drops the queued callbacks of a
    rolled-back transaction, so no stale entry can hold back later ones; outside a transaction the message is
    sent at once."""
    db = connections[using]
    if db.in_atomic_block:
        for _, fn, *_ in db.run_on_commit:
            if isinstance(fn, _Pending) and fn.key == key:
                fn.items.update(dict.fromkeys(items))
                return
    pending = _Pending(key, send)
    pending.items.update(dict.fromkeys(items))
    transaction.on_commit(pending, using=using)


# -- exposed models' rows: resources/updated and resources/list_changed -------------------------------------
def _exposures_of(model: type) -> list[Any]:
    provider = mcp_settings.PROVIDER
    if not isinstance(provider, ManagedProvider):
        return []
    if model._meta.app_label == "mcp_app":
        return []  # our own bookkeeping rows (sessions, audit) are never exposed; skip the catalog entirely
    if model._meta.apps is not django_apps:
        # A model of another registry: the migration recorder's rows and the historical models of data
        # migrations. Never exposed, and loading the catalog while migrations run would query columns that
        # later migrations have not added yet.
        return []
    if provider.cached_catalog is None and not _tables_ready():
        # Before mcp_app's tables exist (migrate): only code exposures, and no query that would fail and,
        # on PostgreSQL, abort the migration's transaction.
        return [e for e in provider.exposures.exposures.values() if e.model is model]
    return provider.catalog_sync().exposures_of(model)


_ready = False


def _tables_ready() -> bool:
    global _ready
    if not _ready:
        names = set(connection.introspection.table_names())
        _ready = all(m._meta.db_table in names for m in (ModelExposure, QueryTool, Tool))
    return _ready


# Values per IN list when reading subscribers: a transaction may change thousands of rows, and SQLite refuses
# more than 999 parameters per statement before 3.32.
_IN_CHUNK = 500


def _chunks(values: list[str]) -> list[list[str]]:
    return [values[at : at + _IN_CHUNK] for at in range(0, len(values), _IN_CHUNK)]


def subscribers_of(uris: list[str]) -> dict[str, list[str]]:
    """The open sessions subscribed to each of ``uris`` (handshake era: ``Subscription`` rows, created only for
    URIs the session's caller could read, and deleted when its access is withdrawn).

    Two indexed lookups rather than a join: the subscriptions by URI, then which of their sessions are still
    open, by primary key. A join's plan depends on the tables' statistics, and with stale ones (a burst of
    new subscribers before autovacuum's ANALYZE) PostgreSQL picked a nested loop that took 40 ms for a
    thousand subscribers instead of one."""
    rows: list[tuple[str, str]] = []
    for part in _chunks(list(uris)):
        rows.extend(Subscription.objects.filter(uri__in=part).order_by().values_list("uri", "session_id"))
    sessions = sorted({session_id for _, session_id in rows})
    open_ids: set[str] = set()
    for part in _chunks(sessions):
        open_ids.update(Session.objects.filter(id__in=part, ended__isnull=True).order_by().values_list("id", flat=True))
    found: dict[str, list[str]] = {}
    for uri, session_id in rows:
        if session_id in open_ids:
            found.setdefault(uri, []).append(session_id)
    return found


def _send_updated(uris: list[str]) -> None:
    """``resources/updated`` for a transaction's changed objects, fanned out per worker, not per subscriber:
    one query for the sessions subscribed to them, then one bus event (a few for very many subscribers) to
    every worker, naming the URIs (each worker matches them against its listen streams'
    ``resourceSubscriptions``, 2026-07-28) and the subscribed sessions per URI (each worker hands the
    notification to the open streams of those sessions it holds)."""
    try:
        sessions = subscribers_of(uris)
    except Exception as exc:  # advisory: never fail the save for it; the listen streams are still told
        logger.warning("could not read the subscribers of %s (%s: %s)", ", ".join(uris[:5]), type(exc).__name__, exc)
        sessions = {}
    try:
        call_from_sync(events.resources_updated, uris, sessions)
    except Exception as exc:  # advisory: never fail the save for it
        logger.warning("could not send %s for %s (%s: %s)", RESOURCE_UPDATED, ", ".join(uris[:5]), type(exc).__name__, exc)


def _send_rows_list_changed(exposure_keys: list[str]) -> None:
    """One list_changed for the exposures of every model whose rows a transaction created or deleted, to
    the streams that may read at least one of them."""
    try:
        call_from_sync(events.broadcast_coalesced, jsonrpc.notification(RESOURCES_CHANGED), sorted(exposure_keys))
    except Exception as exc:
        logger.warning("could not send %s (%s: %s)", RESOURCES_CHANGED, type(exc).__name__, exc)


def object_changed(instance: Any, *, membership_changed: bool, using: str = DEFAULT_DB_ALIAS) -> None:
    """Queue the notifications for a saved or deleted object of an exposed model."""
    exposures = _exposures_of(type(instance))
    uris = []
    for exposure in exposures:
        try:
            uris.append(exposure.uri_for(instance))
        except Exception:  # noqa: BLE001 - an object without its lookup value has no URI to announce
            continue
    if uris:
        _once_per_transaction("resources.updated", uris, _send_updated, using)
    listed = [e.key for e in exposures if e.listed]  # the rows of listed=False exposures are not in resources/list
    if listed and membership_changed:
        _once_per_transaction("resources.list_changed", listed, _send_rows_list_changed, using)


@receiver(post_save)
def _saved(sender: type, instance: Any, created: bool = False, using: str = DEFAULT_DB_ALIAS, **kwargs: Any) -> None:
    object_changed(instance, membership_changed=created, using=using)


@receiver(post_delete)
def _deleted(sender: type, instance: Any, using: str = DEFAULT_DB_ALIAS, **kwargs: Any) -> None:
    object_changed(instance, membership_changed=True, using=using)


# -- mcp_app's own rows: the catalog of tools, prompts and exposures ----------------------------------------
# These rows live in the default database, where mcp_app's transactions run.
def _send_catalog_changed(methods: list[str]) -> None:
    """Drop every worker's cached rows (this one's at once, the others' through the bus), then send the
    list_changed notifications to every open stream."""
    server = get_server()
    invalidate = getattr(server.dispatcher.provider, "invalidate", None)
    if invalidate is not None:
        invalidate()
    try:
        call_from_sync(server.bus.publish, "catalog.changed")
        for method in methods:
            call_from_sync(events.broadcast, jsonrpc.notification(method))
    except Exception as exc:  # a notification is advisory: never fail the admin's save for it
        logger.warning("could not send %s (%s: %s)", ", ".join(methods), type(exc).__name__, exc)


def catalog_changed(*methods: str) -> None:
    """Once the current transaction commits: drop every worker's cached rows and send these list_changed
    notifications to every open stream (see :func:`_send_catalog_changed`)."""
    _once_per_transaction("catalog.changed", methods, _send_catalog_changed)


@receiver([post_save, post_delete], sender=Tool)
def tool_changed(**kwargs: Any) -> None:
    catalog_changed(TOOLS_CHANGED)


@receiver([post_save, post_delete], sender=Prompt)
@receiver([post_save, post_delete], sender=PromptArgument)
@receiver([post_save, post_delete], sender=PromptMessage)
def prompt_changed(**kwargs: Any) -> None:
    catalog_changed(PROMPTS_CHANGED)


@receiver(m2m_changed, sender=Tool.required_permissions.through)
@receiver(m2m_changed, sender=Tool.allowed_groups.through)
def tool_access_changed(action: str, **kwargs: Any) -> None:
    if action.startswith("post_"):
        catalog_changed(TOOLS_CHANGED)


@receiver(m2m_changed, sender=Prompt.required_permissions.through)
@receiver(m2m_changed, sender=Prompt.allowed_groups.through)
def prompt_access_changed(action: str, **kwargs: Any) -> None:
    if action.startswith("post_"):
        catalog_changed(PROMPTS_CHANGED)


@receiver([post_save, post_delete], sender=ModelExposure)
def exposure_changed(**kwargs: Any) -> None:
    catalog_changed(RESOURCES_CHANGED, TOOLS_CHANGED)  # its objects and templates, and its data tools


@receiver([post_save, post_delete], sender=QueryTool)
def query_tool_changed(**kwargs: Any) -> None:
    catalog_changed(TOOLS_CHANGED)


# -- withdrawn access: end the sessions and close the streams at once -----------------------------------------
def _end_sessions(lookups: list[tuple[str, Any]]) -> None:
    for field, value in lookups:
        try:
            end_sessions_of(**{field: value})
        except Exception as exc:  # the save stands; the sessions still end at their next request (401)
            logger.warning("could not end the sessions of %s (%s: %s)", {field: value}, type(exc).__name__, exc)


def _withdraw(field: str, value: Any) -> None:
    """Once the current transaction commits: end the sessions of a principal (``field`` "principal") or of
    every principal of a user ("user_id")."""
    _once_per_transaction("access.withdrawn", [(field, value)], _end_sessions)


@receiver(post_save, sender=Token)
def token_saved(instance: Token, created: bool = False, **kwargs: Any) -> None:
    if not created and not instance.is_usable():
        _withdraw("principal", instance.principal)


@receiver(post_delete, sender=Token)
def token_deleted(instance: Token, **kwargs: Any) -> None:
    _withdraw("principal", instance.principal)


@receiver(post_save)
def user_saved(sender: type, instance: Any, created: bool = False, **kwargs: Any) -> None:
    if sender is get_user_model() and not created and not instance.is_active:
        _withdraw("user_id", instance.pk)


# -- changed permissions: every worker drops its cached copy of the user -------------------------------------
# A worker keeps a validated token's principal, and with it the user and the permissions Django caches on
# the user object, for up to a minute; a stream keeps the exposures its user may read. When a user's
# groups, permissions or flags (superuser, staff) change, these go at once, on every worker, so that the
# very next request sees the new permissions.
_EVERY_USER = object()  # the item that stands for every user (a group's permissions changed)


def _send_forget(user_ids: list[Any]) -> None:
    message = {} if _EVERY_USER in user_ids else {"user_ids": [str(pk) for pk in user_ids]}
    forget_credentials(message)
    try:
        call_from_sync(get_server().bus.publish, "credentials.changed", **message)
    except Exception as exc:  # the other workers' copies still expire within a minute
        logger.warning("could not tell the other workers that permissions changed (%s: %s)", type(exc).__name__, exc)


def forget_users(user_ids: list[Any] | None) -> None:
    """Once the current transaction commits: drop every worker's cached principals of these users (None:
    of every user), this worker's at once and the others' through the bus."""
    _once_per_transaction("credentials.changed", [_EVERY_USER] if user_ids is None else user_ids, _send_forget)


@receiver(post_save)
def user_changed(sender: type, instance: Any, created: bool = False, update_fields: Any = None, **kwargs: Any) -> None:
    if sender is get_user_model() and not created and set(update_fields or ["*"]) - {"last_login"}:
        forget_users([instance.pk])  # not for a sign-in's last_login: it changes nothing a permission reads


@receiver(m2m_changed)
def user_permissions_changed(
    sender: type, instance: Any, action: str, reverse: bool, model: type, pk_set: set[Any] | None, **kwargs: Any
) -> None:
    """User.groups and User.user_permissions from either side, and Group.permissions."""
    if not action.startswith("post_"):
        return
    user_model = get_user_model()
    user_links = [getattr(user_model, name).through for name in ("groups", "user_permissions") if hasattr(user_model, name)]
    if sender in user_links:
        # Forward (user.groups.add(...)): the instance is the user. Reverse (group.user_set.remove(...)):
        # the users are pk_set, or unknown after a clear(): then every user.
        forget_users([instance.pk] if not reverse else (list(pk_set) if pk_set else None))
    elif sender is Group.permissions.through:
        forget_users(None)  # every member of the group, or of every group holding the permission


@receiver(post_delete)
def group_or_permission_deleted(sender: type, **kwargs: Any) -> None:
    if sender in (Group, Permission):
        forget_users(None)  # its links went with it, without m2m signals
