"""Database models: MCP sessions (more come with the admin issues)."""

from __future__ import annotations

from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class Session(models.Model):
    """One MCP session: created by ``initialize``, ended by DELETE, the admin, or the client going away.

    Any worker can serve a session's next message; the row is the source of truth and
    :mod:`mcp_app.sessions` caches it so the common message costs no query.
    """

    class Transport(models.TextChoices):
        STREAMABLE_HTTP = "streamable_http", _("Streamable HTTP")
        SSE = "sse", _("HTTP+SSE (legacy)")
        STDIO = "stdio", _("stdio")

    id = models.CharField(primary_key=True, max_length=64, editable=False)
    transport = models.CharField(max_length=20, choices=Transport.choices, default=Transport.STREAMABLE_HTTP)
    protocol_version = models.CharField(max_length=16)
    client_name = models.CharField(max_length=200, blank=True)
    client_version = models.CharField(max_length=100, blank=True)
    client_info = models.JSONField(default=dict, blank=True)
    client_capabilities = models.JSONField(default=dict, blank=True)
    log_level = models.CharField(max_length=16, blank=True, default="")
    subscriptions = models.JSONField(default=list, blank=True)
    # Channel-layer name of the stream that carries the session's answers (legacy HTTP+SSE transport).
    stream_channel = models.CharField(max_length=200, blank=True, default="", editable=False)
    created = models.DateTimeField(default=timezone.now, db_index=True)
    last_seen = models.DateTimeField(default=timezone.now)
    ended = models.DateTimeField(null=True, blank=True, db_index=True)

    class Meta:
        ordering = ["-created"]
        verbose_name = _("MCP session")
        verbose_name_plural = _("MCP sessions")

    def __str__(self) -> str:
        client = self.client_name or "unknown client"
        return f"{client} ({self.id[:8]}…)"

    @property
    def is_active(self) -> bool:
        return self.ended is None
