"""App configuration: registers system checks and autodiscovers ``<app>.mcp`` modules."""

from __future__ import annotations

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class McpAppConfig(AppConfig):
    name = "mcp_app"
    verbose_name = _("Model Context Protocol")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers the checks)
        from .registry import autodiscover

        autodiscover()
