"""OAuth 2.1 access tokens from django-oauth-toolkit (``pip install mcp_app[oauth]``).

mcp_app is the resource server: it publishes protected resource metadata (RFC 9728, see
:mod:`mcp_app.transports.metadata`) naming the authorization servers in
``MCP_APP["OAUTH_AUTHORIZATION_SERVERS"]``, and this authentication class accepts the access tokens
django-oauth-toolkit issues, when they are

- unexpired and not revoked, and belong to an active user;
- issued for this server (RFC 8707): the token's ``resource`` names ``RESOURCE_URL``, or without it the
  request's scheme and host name with the port the connection arrived on, + ``PATH`` (see
  :func:`resource_identifier`). Scheme, host and port must all match. A token
  for another resource, or, with ``OAUTH_REQUIRE_AUDIENCE`` on (the default), one without a resource, is
  refused;
- carrying the scopes in ``REQUIRED_SCOPES`` (403 ``insufficient_scope`` otherwise).

Add ``"mcp_app.contrib.oauth.OAuth2Authentication"`` to ``DEFAULT_AUTHENTICATION_CLASSES``. The demo
(mcpsite) shows the authorization server side: django-oauth-toolkit with dynamic client registration,
PKCE and RFC 8414 metadata.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any
from urllib.parse import urlsplit

from django.db import transaction
from django.db.models.signals import post_delete
from django.http.request import split_domain_port
from django.utils import timezone

from ..auth import AuthenticationFailed, BaseAuthentication, Principal, Request, origin
from ..conf import mcp_settings
from ..headers import header
from ..models import Token
from ..runtime import end_sessions_of

logger = logging.getLogger("mcp_app.oauth")

_DEFAULT_PORTS = {"http": 80, "https": 443}
# Said once per process: behind a proxy that changes the port, every request would repeat it.
_port_warning_logged = False


def _server_port(scope: dict[str, Any]) -> int | None:
    """The port this connection arrived on (the ASGI ``server`` field); None when unknown (a Unix socket)."""
    server = scope.get("server")
    if server and len(server) > 1 and isinstance(server[1], int):
        return server[1]
    return None


def resource_identifier(scope: dict[str, Any]) -> str:
    """This server's resource identifier: the audience OAuth access tokens must name (RFC 8707), and the
    ``resource`` of the protected resource metadata (RFC 9728).

    ``RESOURCE_URL`` when it is set (the way to run behind a proxy). Otherwise the request's scheme and host
    name plus ``PATH``, with the port the connection really arrived on, not the one the Host header names:
    ALLOWED_HOSTS ignores ports, so trusting the Host's port would let a caller make a token issued for
    another server on another port of the same host acceptable here. When the listening port is unknown (a
    Unix socket, always behind a proxy) the scheme's default port is assumed.
    """
    if mcp_settings.RESOURCE_URL:
        return mcp_settings.RESOURCE_URL
    scheme = scope.get("scheme", "http")
    host = header(scope, b"host") or "localhost"
    domain, claimed = split_domain_port(host)
    if not domain:  # not a valid host; the Host check refuses such requests before they get here
        return origin(scope) + mcp_settings.PATH
    default = _DEFAULT_PORTS.get(scheme)
    port = _server_port(scope) or default
    if claimed and claimed.isdigit() and int(claimed) != port:
        global _port_warning_logged
        if not _port_warning_logged:
            _port_warning_logged = True
            logger.warning(
                "A request's Host names port %s but arrived on port %s; OAuth audiences use port %s. "
                "Behind a proxy, set MCP_APP['RESOURCE_URL'] to the public URL of the endpoint.",
                claimed,
                port,
                port,
            )
    # split_domain_port lower-cases the name and keeps an IPv6 literal's brackets.
    netloc = domain if port == default else f"{domain}:{port}"
    return f"{scheme}://{netloc}{mcp_settings.PATH}"


def _normalized(url: str) -> tuple[str, str, int | None, str, str] | None:
    parts = urlsplit(url.strip())
    try:
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if not scheme or not parts.hostname:
        return None
    return scheme, parts.hostname.lower(), port or _DEFAULT_PORTS.get(scheme), parts.path.rstrip("/"), parts.query


def same_resource(a: str, b: str) -> bool:
    """True when two resource URLs name the same resource: equal scheme, host, port (an omitted port is the
    scheme's default), path (a trailing "/" aside) and query. Malformed URLs match nothing."""
    first, second = _normalized(a), _normalized(b)
    return first is not None and first == second


class OAuth2Authentication(BaseAuthentication):
    """``Authorization: Bearer <access token>`` issued by django-oauth-toolkit for this server."""

    only_authorization_and_cookie = True

    def authenticate(self, request: Request) -> Principal | None:
        # imported here: django-oauth-toolkit is an optional dependency (the "oauth" extra), and this module is
        # imported without it (the protected resource metadata uses resource_identifier).
        from oauth2_provider.models import AccessToken

        key = request.bearer()
        if key is None or key.startswith(Token.PREFIX):
            return None  # no bearer token, or one of ours (BearerTokenAuthentication's)
        checksum = hashlib.sha256(key.encode()).hexdigest()
        token = AccessToken.objects.select_related("user", "application").filter(token_checksum=checksum).first()
        if token is None or token.is_expired():
            raise AuthenticationFailed("The access token is unknown or expired; obtain a new one.")
        if token.user is None or not token.user.is_active:
            raise AuthenticationFailed("The access token does not act for an active user.")
        audiences = [a for a in (token.resource or []) if isinstance(a, str)]
        ours = resource_identifier(request.scope)
        if audiences:
            # The full origin counts (scheme, host and port): a token for another port of this host is another
            # server's token.
            if not any(same_resource(a, ours) for a in audiences):
                raise AuthenticationFailed(f"The access token was issued for another resource; request one for {ours}.")
        elif mcp_settings.OAUTH_REQUIRE_AUDIENCE:
            raise AuthenticationFailed(f"The access token names no resource; request one with resource={ours} (RFC 8707).")
        return Principal(
            key=f"oauth:{token.user_id}:{token.application_id}",
            user=token.user,
            kind="oauth",
            scopes=frozenset(token.scope.split()),
            auth=token,
        )


def _access_token_deleted(sender: type, instance: object, **kwargs: object) -> None:
    """A revoked (deleted) access token ends the sessions of its user and client, unless the client still
    holds another valid token for the user (a refresh replaced it: the sessions go on)."""
    # imported here: django-oauth-toolkit is optional (see OAuth2Authentication.authenticate).
    from oauth2_provider.models import AccessToken

    user_id, application_id = getattr(instance, "user_id", None), getattr(instance, "application_id", None)
    if user_id is None:
        return

    def end() -> None:
        others = AccessToken.objects.filter(user_id=user_id, application_id=application_id, expires__gt=timezone.now())
        if not others.exists():
            end_sessions_of(principal=f"oauth:{user_id}:{application_id}")

    transaction.on_commit(end)


def connect_signals() -> None:
    """Called from mcp_app's AppConfig.ready() when django-oauth-toolkit is installed."""
    # imported here: django-oauth-toolkit is optional (see OAuth2Authentication.authenticate).
    from oauth2_provider.models import AccessToken

    post_delete.connect(_access_token_deleted, sender=AccessToken, dispatch_uid="mcp_app.oauth.access_token_deleted")
