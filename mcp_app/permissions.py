"""Permission policy classes, in the style of DRF's: who may see and use a tool, prompt or model exposure.

A policy class is instantiated per check and answers :meth:`BasePermission.has_permission` for the
caller (a Django user or None when anonymous) and the target (here: a
:class:`~mcp_app.providers.exposures.resource.ModelResource`). Exposures default to :class:`DjangoModelViewPermission`:
the model's Django ``view`` permission, as the admin enforces it. Give an exposure
``permission_classes=[...]`` to change that; every listed class must allow.

Row-level rules belong to the exposure's queryset hook (``ModelResource.get_queryset(user)``), so a
caller never sees, counts or pages past a row it may not read.
"""

from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async

from .conf import mcp_settings


class BasePermission:
    """Override :meth:`has_permission`; it runs in a thread where the ORM may be used."""

    #: Shown to a caller refused by this class (never details of the data behind it).
    message = "You do not have permission to read this."
    #: Whether has_permission may query the database (then it runs in Django's database thread).
    needs_db = True

    @classmethod
    def needs_db_for(cls, user: Any) -> bool:
        """Whether checking ``user`` may query the database (default: :attr:`needs_db`)."""
        return cls.needs_db

    def has_permission(self, user: Any, target: Any) -> bool:
        """Return True when ``user`` (None: anonymous) may use ``target`` at all."""
        raise NotImplementedError


class AllowAny(BasePermission):
    """Everyone the endpoint lets in, anonymous callers included (for data that is public on the site)."""

    needs_db = False

    def has_permission(self, user: Any, target: Any) -> bool:
        return True


class IsAuthenticated(BasePermission):
    """Any signed-in, active user."""

    needs_db = False

    def has_permission(self, user: Any, target: Any) -> bool:
        return user is not None and bool(getattr(user, "is_authenticated", False)) and bool(getattr(user, "is_active", True))


class DjangoModelViewPermission(BasePermission):
    """The ``<app_label>.view_<model_name>`` permission of the target's model (superusers pass)."""

    @classmethod
    def needs_db_for(cls, user: Any) -> bool:
        # Anonymous and inactive callers are refused, and superusers allowed, without a query; other users'
        # permissions are loaded once per user object (Django's ModelBackend caches them on it).
        if not IsAuthenticated().has_permission(user, None) or user.is_superuser:
            return False
        return not hasattr(user, "_perm_cache")

    def has_permission(self, user: Any, target: Any) -> bool:
        if not IsAuthenticated().has_permission(user, target):
            return False
        opts = target.model._meta
        return bool(user.has_perm(f"{opts.app_label}.view_{opts.model_name}"))


def allows(permission_classes: list[type[BasePermission]], user: Any, target: Any) -> bool:
    """Whether every class allows ``user`` to use ``target``."""
    return all(cls().has_permission(user, target) for cls in permission_classes)


async def aallows(permission_classes: list[type[BasePermission]], user: Any, target: Any) -> bool:
    """:func:`allows` from async code: in the event loop when no class needs the database."""
    if not any(cls.needs_db_for(user) if hasattr(cls, "needs_db_for") else True for cls in permission_classes):
        return allows(permission_classes, user, target)
    return await database_sync_to_async(allows)(permission_classes, user, target)


def default_classes(classes: list[type[BasePermission]] | None) -> list[type[BasePermission]]:
    """``classes``, or the site's ``DEFAULT_PERMISSION_CLASSES`` when None."""
    if classes is not None:
        return classes
    return list(mcp_settings.DEFAULT_PERMISSION_CLASSES)
