"""The demo's authorization server (django-oauth-toolkit), made safe to leave open to anonymous registration.

MCP clients register themselves (RFC 7591) before anyone signs in, so dynamic client registration stays
open to anyone. What keeps that from being abused:

- **Rate limit per client address.** ``DEMO_REGISTRATION_RATE`` (registrations, seconds), default 10 per
  hour, counted in fixed windows in Django's cache (``DEMO_REGISTRATION_CACHE``, default ``"default"``) with
  the cache's atomic ``add``/``incr``. Every attempt counts, valid or not. Over the limit: 429 with a JSON
  error and ``Retry-After``. The address is ``REMOTE_ADDR``; behind a proxy, have the ASGI server take it
  from the proxy's headers (``daphne --proxy-headers``), or every client shares one allowance.
- **A consent page that says where the code goes.** The authorization page shows the host of the redirect
  URI prominently (and the whole URI), and says when the client registered itself, so its name is only its
  own claim.
- **Unused registrations are purged.** A dynamically registered client that was never used (no user
  approved it and no token was issued to it, ever: :class:`~mcpsite.demo.models.ClientUse`) is deleted once
  it is older than ``DEMO_UNUSED_CLIENT_HOURS`` (default 24): after each successful registration, and by
  ``manage.py purge_unused_clients``. Clients created in the admin are never purged.
"""

from __future__ import annotations

import math
import time
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.cache import caches
from django.db.models import Exists, OuterRef
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from oauth2_provider import views as oauth_views
from oauth2_provider.models import (
    get_access_token_model,
    get_application_model,
    get_grant_model,
    get_id_token_model,
    get_refresh_token_model,
)
from oauth2_provider.settings import oauth2_settings

from .models import ClientUse

DEFAULT_REGISTRATION_RATE = (10, 3600)
DEFAULT_UNUSED_CLIENT_HOURS = 24
_LOOPBACK = {"localhost", "127.0.0.1", "::1"}


def registration_rate() -> tuple[int, int] | None:
    """``DEMO_REGISTRATION_RATE``: (registrations, seconds) per client address; None: unlimited."""
    return getattr(settings, "DEMO_REGISTRATION_RATE", DEFAULT_REGISTRATION_RATE)


def unused_client_age() -> timedelta:
    """How old an unused dynamic registration gets before it is purged (``DEMO_UNUSED_CLIENT_HOURS``)."""
    return timedelta(hours=getattr(settings, "DEMO_UNUSED_CLIENT_HOURS", DEFAULT_UNUSED_CLIENT_HOURS))


def count_registration(address: str) -> int | None:
    """Count one registration attempt from ``address``. Return the seconds to wait when the window's
    allowance is spent (the attempt must then be refused), or None when it may go ahead."""
    rate = registration_rate()
    if not rate:
        return None
    allowed, seconds = rate
    cache = caches[getattr(settings, "DEMO_REGISTRATION_CACHE", "default")]
    now = time.time()
    key = f"mcpsite:registrations:{address}:{int(now // seconds)}"
    # add + incr are atomic in every cache that counts across processes (Redis, Memcached) and, per process,
    # in the local-memory cache: concurrent attempts can't both read the same count.
    cache.add(key, 0, timeout=seconds + 1)
    try:
        used = cache.incr(key)
    except ValueError:  # evicted between add and incr: this attempt starts the window again
        cache.set(key, 1, timeout=seconds + 1)
        used = 1
    if used > allowed:
        return max(1, math.ceil(seconds - now % seconds))
    return None


def unused_registrations(older_than: timedelta | None = None) -> Any:
    """Dynamically registered clients created more than ``older_than`` ago (default
    ``DEMO_UNUSED_CLIENT_HOURS``) that were never used: no :class:`ClientUse` row, and, for clients used
    before that row was kept, no grant, refresh token, ID token or access token other than the
    registration's own management token."""
    Application = get_application_model()
    cutoff = timezone.now() - (older_than if older_than is not None else unused_client_age())
    own = {"application": OuterRef("pk")}
    issued = get_access_token_model().objects.filter(**own).exclude(scope=oauth2_settings.DCR_REGISTRATION_SCOPE)
    return (
        Application.objects.filter(registration_source=Application.RegistrationSource.DCR, created__lt=cutoff)
        .exclude(pk__in=ClientUse.objects.values("application_id"))
        .exclude(Exists(get_grant_model().objects.filter(**own)))
        .exclude(Exists(issued))
        .exclude(Exists(get_refresh_token_model().objects.filter(**own)))
        .exclude(Exists(get_id_token_model().objects.filter(**own)))
    )


def purge_unused_registrations(older_than: timedelta | None = None) -> int:
    """Delete :func:`unused_registrations` (their registration tokens go with them); return how many."""
    Application = get_application_model()
    _total, deleted = unused_registrations(older_than).delete()
    return deleted.get(Application._meta.label, 0)


def record_use(sender: type, instance: Any, created: bool = False, **kwargs: Any) -> None:
    """``post_save`` of grants and access tokens: the client has been used (a registration token, issued to
    every dynamically registered client, does not count)."""
    if not created or not getattr(instance, "application_id", None):
        return
    if sender is get_access_token_model() and instance.scope == oauth2_settings.DCR_REGISTRATION_SCOPE:
        return
    ClientUse.objects.get_or_create(application_id=instance.application_id)


def connect_signals() -> None:
    """Called from the demo's AppConfig.ready()."""
    from django.db.models.signals import post_save

    # Lazy references ("app_label.Model"): connected once the toolkit's models load, and harmless when the
    # toolkit is left out of INSTALLED_APPS.
    for model in (oauth2_settings.GRANT_MODEL, oauth2_settings.ACCESS_TOKEN_MODEL):
        post_save.connect(record_use, sender=model, dispatch_uid=f"mcpsite.demo.record_use.{model}")


class RegistrationView(oauth_views.DynamicClientRegistrationView):
    """RFC 7591 registration, open to anyone, at most ``DEMO_REGISTRATION_RATE`` per client address."""

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        wait = count_registration(request.META.get("REMOTE_ADDR") or "unknown")
        if wait is not None:
            allowed, seconds = registration_rate() or DEFAULT_REGISTRATION_RATE
            response = JsonResponse(
                {
                    "error": "too_many_requests",
                    "error_description": f"Too many client registrations from this address: at most {allowed} every "
                    f"{seconds} s. Retry in {wait} s, or reuse the client_id you registered.",
                },
                status=429,
            )
            response["Retry-After"] = str(wait)
            return response
        response = super().post(request, *args, **kwargs)
        if response.status_code == 201:
            # Opportunistic: whoever registers pays for clearing out the stale ones (one query), so the table
            # stays bounded even where nobody runs the management command.
            purge_unused_registrations()
        return response


class AuthorizationView(oauth_views.AuthorizationView):
    """The consent page, with what the user needs to judge the request: where the code will be sent, and
    whether the client's name is only its own claim."""

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        application = context.get("application")
        redirect_uri = context.get("redirect_uri")
        form = context.get("form")
        if not redirect_uri and form is not None and "redirect_uri" in form.fields:
            redirect_uri = form["redirect_uri"].value()  # a re-rendered POST
        context.update(redirect_consent(redirect_uri or ""))
        context["self_registered"] = (
            application is not None and application.registration_source == get_application_model().RegistrationSource.DCR
        )
        return context


def redirect_consent(redirect_uri: str) -> dict[str, Any]:
    """What the consent page shows of a redirect URI: its host (with a port other than the default) and
    whether it is this computer (a native app's loopback redirect)."""
    parts = urlsplit(redirect_uri)
    try:
        port = parts.port
    except ValueError:
        port = None
    host = parts.hostname or ""
    shown = f"[{host}]" if ":" in host else host
    if port and port != {"http": 80, "https": 443}.get(parts.scheme):
        shown = f"{shown}:{port}"
    return {"redirect_uri": redirect_uri, "redirect_host": shown, "redirect_is_local": host in _LOOPBACK}


def openid_connect_not_offered(request: HttpRequest, *args: Any, **kwargs: Any) -> JsonResponse:
    """The OpenID Connect endpoints (discovery, JWKS, userinfo, logout): a JSON 404.

    The demo is an OAuth 2.1 authorization server only (OIDC is off: no signing key to manage, and MCP needs
    none of it), and its RFC 8414 metadata advertises no OIDC endpoint. django-oauth-toolkit still routes
    them and, with DEBUG on, answers ImproperlyConfigured (a 500) where a client probing for OIDC discovery
    (the MCP SDK's fallback) must simply learn that there is none.
    """
    return JsonResponse(
        {
            "error": "not_found",
            "error_description": "This server does not offer OpenID Connect; see /.well-known/oauth-authorization-server/o.",
        },
        status=404,
    )
