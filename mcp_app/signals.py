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
        from .server import get_server

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
    from .sessions import end_sessions_of

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
