"""Authentication policy classes, in the style of DRF's: who is calling the MCP endpoints.

Settings name the classes (``MCP_APP["DEFAULT_AUTHENTICATION_CLASSES"]``); each looks at the request and
returns a :class:`Principal`, returns None when the request carries none of its credentials, or raises
:class:`AuthenticationFailed` when it carries bad ones (401, whatever later classes would say).
Without credentials the caller is anonymous when ``ALLOW_ANONYMOUS`` is on, and gets 401 otherwise.

The transports call :func:`authenticate` before any session lookup and put the principal's user in
``scope["user"]``, where the permission classes of tools, prompts and exposures find it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from importlib import import_module
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings
from django.contrib.auth import get_user
from django.db.models import Max
from django.http import HttpRequest, parse_cookie
from django.middleware.csrf import CsrfViewMiddleware
from django.utils import timezone

from .conf import mcp_settings
from .headers import header
from .models import Token

#: The principal key of every caller without credentials (when ALLOW_ANONYMOUS lets them in).
ANONYMOUS = "anonymous"


@dataclass(frozen=True)
class Principal:
    """Who is calling: the Django user (None: anonymous), how they authenticated, and their scopes
    (None: not limited by scopes). ``key`` identifies them for session binding and limits."""

    key: str
    user: Any = None
    kind: str = ANONYMOUS  # anonymous | token | session | oauth
    scopes: frozenset[str] | None = None
    auth: Any = field(default=None, compare=False)

    @property
    def expires(self) -> datetime | None:
        """When the credential behind this principal expires (an aware datetime), None when it does not
        (a token without expiry, a session cookie, anonymous). Sessions opened with it end then."""
        return getattr(self.auth, "expires", None)


class AuthenticationFailed(Exception):
    """Bad credentials: 401 with ``WWW-Authenticate: Bearer error="invalid_token"``."""

    status = 401
    error = "invalid_token"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotAuthenticated(AuthenticationFailed):
    """No credentials where they are required: 401 naming where to get them."""

    error = ""


class InsufficientScope(AuthenticationFailed):
    """Valid credentials without a scope the endpoint needs: 403 with ``error="insufficient_scope"``."""

    status = 403
    error = "insufficient_scope"


class Request:
    """What authentication classes may look at: the ASGI scope's method, headers and cookies."""

    def __init__(self, scope: dict[str, Any]) -> None:
        self.scope = scope
        self.method = scope.get("method", "GET")

    def header(self, name: str) -> str | None:
        return header(self.scope, name.lower().encode("latin-1"))

    @property
    def cookies(self) -> dict[str, str]:
        raw = self.header("cookie")
        return parse_cookie(raw) if raw else {}

    def bearer(self) -> str | None:
        """The token of ``Authorization: Bearer <token>`` (never from the query string)."""
        value = self.header("authorization")
        if not value:
            return None
        kind, _, token = value.partition(" ")
        if kind.lower() != "bearer":
            return None
        return token.strip() or None


class BaseAuthentication:
    """Override :meth:`authenticate`; it runs in Django's database thread."""

    #: True when the class reads nothing but the Authorization header and cookies: then a request with
    #: neither is answered without a trip to the database thread.
    only_authorization_and_cookie = False

    def authenticate(self, request: Request) -> Principal | None:
        """Return a Principal, None when the request has none of this class's credentials, or raise
        :class:`AuthenticationFailed` for bad ones."""
        raise NotImplementedError


# A validated token stays valid for this long in a worker's memory; revoking a token or deactivating
# a user clears every worker's copy at once through the bus, so this only bounds the cost of a miss.
_CACHE_SECONDS = 60.0
_cache: dict[str, tuple[float, Principal]] = {}
# last_used is written at most this often per token (seconds), so a busy client costs no extra writes.
_TOUCH_SECONDS = 60


def _cached(digest: str) -> Principal | None:
    """A token's principal validated in the last ``_CACHE_SECONDS`` and not expired since."""
    cached = _cache.get(digest)
    if cached is None or time.monotonic() - cached[0] >= _CACHE_SECONDS:
        return None
    expires = cached[1].auth.expires
    return cached[1] if expires is None or expires > timezone.now() else None


# Bumped when a user's groups or permissions change (per user) or when every cached principal is dropped
# (``_epoch``), so that what was derived from a user's permissions elsewhere (a stream's readable
# exposures) knows to derive it again from a fresh copy of the user.
_epoch = 0
_generations: dict[str, int] = {}


def forget_credentials(message: dict[str, Any] | None = None) -> None:
    """Drop this worker's cached principals: those of ``message["user_ids"]`` (a user's groups,
    permissions or flags changed) or, without that key, all of them (a token was revoked, a group's
    permissions changed). The bus calls it on every worker with the event's message; safe from any thread."""
    global _epoch
    user_ids = (message or {}).get("user_ids")
    if user_ids is None:
        _epoch += 1
        _cache.clear()
        return
    wanted = {str(pk) for pk in user_ids}
    for pk in wanted:
        _generations[pk] = _generations.get(pk, 0) + 1
    for digest, (_, principal) in list(_cache.items()):  # a copy: the event loop may add entries meanwhile
        if principal.user is not None and str(principal.user.pk) in wanted:
            _cache.pop(digest, None)


def user_generation(user: Any) -> tuple[int, int]:
    """Changes whenever :func:`forget_credentials` drops ``user``'s cached copies (cheap: no query)."""
    return _epoch, (_generations.get(str(user.pk), 0) if user is not None else 0)


def credential_expiry(principal: Principal) -> datetime | None:
    """When ``principal``'s access ends, read afresh from the database (call it in Django's thread):
    None for never, a moment at or before now when it has ended already (revoked, deleted, expired).

    A bearer token is its own principal, so this is its row's expiry. An OAuth principal is a user and a
    client, whose access goes on while the client holds any unexpired access token for the user (a
    refresh replaced the one that opened the session): this is the latest of their expiries.
    """
    now = timezone.now()
    credential = principal.auth
    if credential is None or principal.expires is None:
        return None
    if principal.kind == "token":
        row = type(credential).objects.select_related("user").filter(pk=credential.pk).first()
        return row.expires if row is not None and row.is_usable() else now
    if principal.kind == "oauth" and hasattr(credential, "application_id"):
        latest = (
            type(credential)
            .objects.filter(user_id=credential.user_id, application_id=credential.application_id, expires__gt=now)
            .aggregate(latest=Max("expires"))["latest"]
        )
        return latest or now
    return principal.expires


class BearerTokenAuthentication(BaseAuthentication):
    """``Authorization: Bearer mcp_…``: a :class:`~mcp_app.models.Token` from the admin or ``mcp_token``."""

    only_authorization_and_cookie = True

    def authenticate(self, request: Request) -> Principal | None:
        key = request.bearer()
        if key is None or not key.startswith(Token.PREFIX):
            return None
        digest = Token.hash(key)
        cached = _cached(digest)
        if cached is not None:
            return cached
        now = time.monotonic()
        token = Token.objects.select_related("user").filter(key_hash=digest).first()
        if token is None or not token.is_usable():
            _cache.pop(digest, None)
            raise AuthenticationFailed("The bearer token is unknown, expired or revoked; create a new one.")
        if token.last_used is None or (timezone.now() - token.last_used).total_seconds() > _TOUCH_SECONDS:
            Token.objects.filter(pk=token.pk).update(last_used=timezone.now())
        principal = Principal(key=token.principal, user=token.user, kind="token", scopes=token.scope_set(), auth=token)
        _cache[digest] = (now, principal)
        return principal


class SessionAuthentication(BaseAuthentication):
    """The Django session cookie, for browser clients on the site's own pages.

    Cookies are sent by browsers on cross-site requests too, so a request authenticated by one must
    carry an Origin header that is allowed (the request's own host or ``ALLOWED_ORIGINS``) and, unless
    it is a GET, pass Django's CSRF check (``X-CSRFToken`` header matching the CSRF cookie).
    """

    only_authorization_and_cookie = True

    def authenticate(self, request: Request) -> Principal | None:
        session_key = request.cookies.get(settings.SESSION_COOKIE_NAME)
        if not session_key:
            return None
        http = HttpRequest()
        http.session = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
        user = get_user(http)
        if not user.is_authenticated:
            return None  # an expired or anonymous session is no credential at all
        if request.header("origin") is None:
            raise AuthenticationFailed("A request authenticated by the session cookie must send an Origin header.")
        if request.method not in ("GET", "HEAD", "OPTIONS"):
            http.method = request.method
            http.COOKIES = request.cookies
            for name, value in request.scope.get("headers", ()):
                http.META["HTTP_" + name.decode("latin-1").upper().replace("-", "_")] = value.decode("latin-1")
            http.META["SERVER_NAME"], http.META["SERVER_PORT"] = "127.0.0.1", "80"
            if request.scope.get("scheme") == "https":
                http.META["wsgi.url_scheme"] = "https"
            refused = CsrfViewMiddleware(lambda r: None).process_view(http, lambda r: None, (), {})
            if refused is not None:
                raise AuthenticationFailed("CSRF check failed: send the X-CSRFToken header with the CSRF cookie's value.")
        return Principal(key=f"user:{user.pk}", user=user, kind="session")


def _classes() -> list[BaseAuthentication]:
    return [cls() for cls in mcp_settings.DEFAULT_AUTHENTICATION_CLASSES]  # imported once, by mcp_settings


def _accept(principal: Principal) -> Principal:
    """The checks every principal passes, whichever class found it (no database access)."""
    if principal.user is not None and not principal.user.is_active:
        raise AuthenticationFailed("This account is inactive.")
    required = set(mcp_settings.REQUIRED_SCOPES)
    if principal.scopes is not None and not required <= principal.scopes:
        raise InsufficientScope(f"The credentials lack the scope(s) {' '.join(sorted(required - principal.scopes))}.")
    return principal


def _without_credentials(request: Request) -> Principal:
    if request.bearer() is not None:
        raise AuthenticationFailed("The bearer token is not one this server issued or accepts.")
    if mcp_settings.ALLOW_ANONYMOUS:
        return Principal(key=ANONYMOUS)
    raise NotAuthenticated("Authentication required: send Authorization: Bearer <token>.")


def authenticate_sync(scope: dict[str, Any]) -> Principal:
    """The caller of this request; raises AuthenticationFailed (and subclasses) when refused."""
    request = Request(scope)
    for backend in _classes():
        principal = backend.authenticate(request)
        if principal is not None:
            return _accept(principal)
    return _without_credentials(request)


async def authenticate(scope: dict[str, Any]) -> Principal:
    """:func:`authenticate_sync` without leaving the event loop in the common cases: a bearer token
    validated recently (cached), or a request with no credentials when every class reads only the
    Authorization header and cookies."""
    request = Request(scope)
    key = request.bearer()
    classes = mcp_settings.DEFAULT_AUTHENTICATION_CLASSES
    if key is not None and key.startswith(Token.PREFIX) and classes[:1] == [BearerTokenAuthentication]:
        cached = _cached(Token.hash(key))
        if cached is not None:
            return _accept(cached)
    elif (
        key is None
        and request.header("cookie") is None
        and all(getattr(cls, "only_authorization_and_cookie", False) for cls in classes)
    ):
        return _without_credentials(request)
    return await database_sync_to_async(authenticate_sync)(scope)


def www_authenticate(scope: dict[str, Any], failure: AuthenticationFailed) -> str:
    """The ``WWW-Authenticate`` challenge for a refused request (RFC 6750, RFC 9728)."""
    parts = ['Bearer realm="mcp"']
    metadata = resource_metadata_url(scope)
    if metadata:
        parts.append(f'resource_metadata="{metadata}"')
    if failure.error:
        parts.append(f'error="{failure.error}"')
        parts.append('error_description="{}"'.format(failure.message.replace('"', "'")))
    if mcp_settings.REQUIRED_SCOPES:
        parts.append('scope="{}"'.format(" ".join(mcp_settings.REQUIRED_SCOPES)))
    return ", ".join(parts)


def origin(scope: dict[str, Any]) -> str:
    """The site's origin as the client sees it (scheme and Host of the request)."""
    host = header(scope, b"host") or "localhost"
    return f"{scope.get('scheme', 'http')}://{host}"


def resource_metadata_url(scope: dict[str, Any]) -> str | None:
    """Where the protected resource metadata is served; None when no authorization server is set."""
    if not mcp_settings.OAUTH_AUTHORIZATION_SERVERS:
        return None
    return origin(scope) + "/.well-known/oauth-protected-resource" + mcp_settings.PATH
