"""The demo's own bookkeeping for its OAuth authorization server."""

from __future__ import annotations

from django.db import models
from oauth2_provider.settings import oauth2_settings


class ClientUse(models.Model):
    """A registered OAuth client has been used: a user approved it (a grant was issued) or it was issued an
    access token. Dynamically registered clients without one are purged after ``DEMO_UNUSED_CLIENT_HOURS``
    (see :func:`mcpsite.demo.oauth.purge_unused_registrations`); grants and tokens come and go (they expire
    and are cleared), so this row is what remembers that a client was ever used."""

    application = models.OneToOneField(
        oauth2_settings.APPLICATION_MODEL, on_delete=models.CASCADE, primary_key=True, related_name="+"
    )
    first_used = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "OAuth client use"

    def __str__(self) -> str:
        return f"client {self.application_id} first used {self.first_used:%Y-%m-%d %H:%M}"
