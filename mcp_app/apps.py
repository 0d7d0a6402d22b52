"""App configuration: registers the system checks and the signal receivers, and autodiscovers ``<app>.mcp``
modules."""

from __future__ import annotations

from typing import Any

from django.apps import AppConfig, apps
from django.db.models.signals import post_migrate
from django.utils.translation import gettext_lazy as _

from .conf import mcp_settings


class McpAppConfig(AppConfig):
    name = "mcp_app"
    verbose_name = _("Model Context Protocol")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # imported here, not at the top: Django imports this module before the models, and these modules
        # import the models (the app registry must be ready). Importing them registers the checks, the signal
        # receivers and the validation the models' clean() runs.
        from . import checks, notifications  # noqa: F401
        from .providers import hooks  # noqa: F401
        from .providers.code import autodiscover

        autodiscover()
        post_migrate.connect(_sync_rows, sender=self)
        if apps.is_installed("oauth2_provider"):
            # imported here: django-oauth-toolkit is optional, and its models need the app registry ready.
            from .contrib.oauth import connect_signals

            connect_signals()  # revoked OAuth access tokens end their sessions


def _sync_rows(**kwargs: Any) -> None:
    """After migrate: a row for every tool and prompt clients can see, so admins see them at once. Skipped
    after a migrate to an earlier state (``migrate mcp_app 0012``): the rows' newer columns are not there."""
    # imported here: it imports the models (see ready()).
    from .providers.managed import ManagedProvider

    provider = mcp_settings.PROVIDER
    if isinstance(provider, ManagedProvider) and _columns_current(kwargs.get("apps")):
        provider.sync()


def _columns_current(state: Any) -> bool:
    """Whether the migrated state (post_migrate's ``apps``) has every field of the rows sync writes."""
    if state is None:
        return True
    for label in ("mcp_app.Tool", "mcp_app.Prompt", "mcp_app.ModelExposure", "mcp_app.QueryTool"):
        try:
            migrated = state.get_model(label)
        except LookupError:
            return False
        current = apps.get_model(label)
        if {f.name for f in current._meta.concrete_fields} - {f.name for f in migrated._meta.concrete_fields}:
            return False
    return True
