"""Model signals -> ``notifications/*/list_changed`` on every open stream of every session, on every worker.

Saving or deleting a tool, prompt, model exposure or query tool row (in the admin or in code) changes what tools/list and
prompts/list answer; the notification goes out once the transaction commits, through the channel
layer group that every open stream joins.
"""

from __future__ import annotations

import logging
from typing import Any

from asgiref.sync import async_to_sync
from django.db import transaction
from django.db.models.signals import m2m_changed, post_delete, post_save
from django.dispatch import receiver

from .models import ModelExposure, Prompt, PromptArgument, PromptMessage, QueryTool, Token, Tool
from .protocol import jsonrpc
from .transports.events import broadcast

logger = logging.getLogger("mcp_app")

TOOLS_CHANGED = "notifications/tools/list_changed"
PROMPTS_CHANGED = "notifications/prompts/list_changed"
RESOURCES_CHANGED = "notifications/resources/list_changed"


def notify_all(*methods: str) -> None:
    """Once the current transaction commits: drop every worker's cached rows (this one's at once, the
    others' through the bus), then send list_changed notifications to every open stream."""

    def send() -> None:
        from .runtime import get_server

        server = get_server()
        invalidate = getattr(server.dispatcher.provider, "invalidate", None)
        if invalidate is not None:
            invalidate()
        try:
            async_to_sync(server.bus.publish)("catalog.changed")
            for method in methods:
                async_to_sync(broadcast)(jsonrpc.notification(method))
        except Exception as exc:  # a notification is advisory: never fail the admin's save for it
            logger.warning("could not send %s (%s: %s)", ", ".join(methods), type(exc).__name__, exc)

    transaction.on_commit(send)


@receiver([post_save, post_delete], sender=Tool)
def tool_changed(**kwargs: Any) -> None:
    notify_all(TOOLS_CHANGED)


@receiver([post_save, post_delete], sender=Prompt)
@receiver([post_save, post_delete], sender=PromptArgument)
@receiver([post_save, post_delete], sender=PromptMessage)
def prompt_changed(**kwargs: Any) -> None:
    notify_all(PROMPTS_CHANGED)


@receiver(m2m_changed, sender=Tool.required_permissions.through)
@receiver(m2m_changed, sender=Tool.allowed_groups.through)
def tool_access_changed(action: str, **kwargs: Any) -> None:
    if action.startswith("post_"):
        notify_all(TOOLS_CHANGED)


@receiver(m2m_changed, sender=Prompt.required_permissions.through)
@receiver(m2m_changed, sender=Prompt.allowed_groups.through)
def prompt_access_changed(action: str, **kwargs: Any) -> None:
    if action.startswith("post_"):
        notify_all(PROMPTS_CHANGED)


@receiver([post_save, post_delete], sender=ModelExposure)
def exposure_changed(**kwargs: Any) -> None:
    notify_all(RESOURCES_CHANGED, TOOLS_CHANGED)  # its objects and templates, and its data tools


@receiver([post_save, post_delete], sender=QueryTool)
def query_tool_changed(**kwargs: Any) -> None:
    notify_all(TOOLS_CHANGED)


# -- withdrawn access: end the sessions and close the streams at once -----------------------------------------
def _withdraw(**lookup: Any) -> None:
    from .runtime import end_sessions_of

    def end() -> None:
        try:
            end_sessions_of(**lookup)
        except Exception as exc:  # the save stands; the sessions still end at their next request (401)
            logger.warning("could not end the sessions of %s (%s: %s)", lookup, type(exc).__name__, exc)

    transaction.on_commit(end)


@receiver(post_save, sender=Token)
def token_saved(instance: Token, created: bool = False, **kwargs: Any) -> None:
    if not created and not instance.is_usable():
        _withdraw(principal=instance.principal)


@receiver(post_delete, sender=Token)
def token_deleted(instance: Token, **kwargs: Any) -> None:
    _withdraw(principal=instance.principal)


@receiver(post_save)
def user_saved(sender: type, instance: Any, created: bool = False, **kwargs: Any) -> None:
    from django.contrib.auth import get_user_model

    if sender is get_user_model() and not created and not instance.is_active:
        _withdraw(user_id=instance.pk)


# -- changed permissions: every worker drops its cached copy of the user -------------------------------------
# A worker keeps a validated token's principal, and with it the user and the permissions Django caches on
# the user object, for up to a minute; a stream keeps the exposures its user may read. When a user's
# groups, permissions or flags (superuser, staff) change, these go at once, on every worker, so that the
# very next request sees the new permissions.
def forget_users(user_ids: list[Any] | None) -> None:
    """Once the current transaction commits: drop every worker's cached principals of these users (None:
    of every user), this worker's at once and the others' through the bus."""

    def send() -> None:
        from .auth import forget_credentials
        from .runtime import get_server

        message = {} if user_ids is None else {"user_ids": [str(pk) for pk in user_ids]}
        forget_credentials(message)
        try:
            async_to_sync(get_server().bus.publish)("credentials.changed", **message)
        except Exception as exc:  # the other workers' copies still expire within a minute
            logger.warning("could not tell the other workers that permissions changed (%s: %s)", type(exc).__name__, exc)

    transaction.on_commit(send)


@receiver(post_save)
def user_changed(sender: type, instance: Any, created: bool = False, update_fields: Any = None, **kwargs: Any) -> None:
    from django.contrib.auth import get_user_model

    if sender is get_user_model() and not created and set(update_fields or ["*"]) - {"last_login"}:
        forget_users([instance.pk])  # not for a sign-in's last_login: it changes nothing a permission reads


@receiver(m2m_changed)
def user_permissions_changed(
    sender: type, instance: Any, action: str, reverse: bool, model: type, pk_set: set[Any] | None, **kwargs: Any
) -> None:
    """User.groups and User.user_permissions from either side, and Group.permissions."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

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
    from django.contrib.auth.models import Group, Permission

    if sender in (Group, Permission):
        forget_users(None)  # its links went with it, without m2m signals
