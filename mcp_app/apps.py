"""App configuration: registers system checks and autodiscovers ``<app>.mcp`` modules."""

from __future__ import annotations

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class McpAppConfig(AppConfig):
    name = "mcp_app"
    verbose_name = _("Model Context Protocol")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        from . import checks, notifications, signals  # noqa: F401  (registers the checks and the signal receivers)

        # imported here: the providers import the models, which need the app registry ready.
        from .providers import hooks  # noqa: F401  (registers the validation the models' clean() runs)
        from .providers.code import autodiscover

        autodiscover()
        post_migrate.connect(_sync_rows, sender=self)
        from django.apps import apps

        if apps.is_installed("oauth2_provider"):
            from .contrib.oauth import connect_signals

            connect_signals()  # revoked OAuth access tokens end their sessions


def _sync_rows(**kwargs: object) -> None:
    """After migrate: a row for every code-registered tool and prompt, so admins see them at once."""
    from .conf import mcp_settings
    from .providers.managed import ManagedProvider  # imported here: it imports the models (see ready())

    provider = mcp_settings.PROVIDER
    if isinstance(provider, ManagedProvider):
        provider.sync()
