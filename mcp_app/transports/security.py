"""Checks every MCP endpoint makes before it reads a body or looks up a session.

- Host against ``ALLOWED_HOSTS`` (defends against DNS rebinding: a page on a rebound name reaches
  127.0.0.1 but still sends its own name as Host).
- Origin, when a browser sends one, against the request's own host and ``MCP_APP["ALLOWED_ORIGINS"]``.

An allowed Origin also gets the CORS headers a browser client needs (preflight answers and readable
``Mcp-Session-Id`` / ``WWW-Authenticate``); a refused one gets 403 and none.
"""

from __future__ import annotations

import functools
from urllib.parse import urlsplit

from django.conf import settings
from django.http.request import split_domain_port, validate_host

from ..conf import mcp_settings
from ..headers import header

# Django's own fallback when DEBUG is on and ALLOWED_HOSTS is empty (see HttpRequest.get_host).
_DEBUG_HOSTS = [".localhost", "127.0.0.1", "[::1]"]


def allowed_hosts() -> list[str]:
    hosts = list(settings.ALLOWED_HOSTS)
    if settings.DEBUG and not hosts:
        hosts = _DEBUG_HOSTS
    return hosts


def host_allowed(scope: dict) -> bool:
    host = header(scope, b"host")
    if not host:
        # HTTP/1.1 requires Host; without one there is nothing to check it against.
        return False
    hosts = tuple(allowed_hosts())
    if len(host) > MAX_HOST_CHARS:  # no real host name is this long: judged afresh, never kept in the cache
        return _host_verdict.__wrapped__(host, hosts)
    return _host_verdict(host, hosts)


#: Host headers longer than this (a DNS name is at most 253 characters, plus a port) are not remembered.
MAX_HOST_CHARS = 270


@functools.lru_cache(maxsize=256)
def _host_verdict(host: str, hosts: tuple[str, ...]) -> bool:
    # Remembered per (Host header, ALLOWED_HOSTS): Django's parsing and pattern matching cost more than the
    # rest of a small request's checks, and a server sees few distinct Host values. Bounded, so a client
    # sending many different ones only churns the cache; keyed by the setting's value, so a change applies.
    domain, _port = split_domain_port(host)
    return bool(domain) and validate_host(domain, list(hosts))


def origin_allowed(scope: dict) -> bool:
    """True when there is no Origin (not a browser) or the Origin is the request's host or listed."""
    origin = header(scope, b"origin")
    if origin is None:
        return True
    allowed = mcp_settings.ALLOWED_ORIGINS
    if "*" in allowed or origin in allowed:
        return True
    parts = urlsplit(origin)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return False
    host = header(scope, b"host")
    return host is not None and parts.netloc.lower() == host.lower()


# What browser clients send and must be able to read (MCP's headers, and the OAuth challenge).
_CORS_ALLOW_HEADERS = b"authorization, content-type, accept, mcp-session-id, mcp-protocol-version, last-event-id"
_CORS_EXPOSE_HEADERS = b"mcp-session-id, mcp-protocol-version, www-authenticate, retry-after"
# Browsers may reuse a preflight answer this long (seconds).
_CORS_MAX_AGE = b"600"


def cors_headers(scope: dict) -> list[tuple[bytes, bytes]]:
    """CORS headers for a response to an allowed Origin."""
    origin = header(scope, b"origin") or ""
    return [
        (b"access-control-allow-origin", origin.encode("latin-1")),
        (b"vary", b"Origin"),
        (b"access-control-expose-headers", _CORS_EXPOSE_HEADERS),
    ]


def preflight_headers(scope: dict) -> list[tuple[bytes, bytes]]:
    """The answer to an allowed Origin's ``OPTIONS`` preflight (headers of :func:`cors_headers` come with it)."""
    return [
        (b"access-control-allow-methods", b"GET, POST, DELETE, OPTIONS"),
        (b"access-control-allow-headers", _CORS_ALLOW_HEADERS),
        (b"access-control-max-age", _CORS_MAX_AGE),
    ]
