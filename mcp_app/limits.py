"""Limits per caller: request and tools/call rates, open sessions, open streams.

- Rates are counted in fixed windows in Django's cache (``RATE_LIMIT_CACHE``): with a shared cache
  (Redis) a limit holds across workers and hosts, with the default local-memory cache per worker. Over
  a limit a POST gets 429 with ``Retry-After`` (the seconds until the window ends: a retry then is
  counted afresh). ``REQUEST_RATE`` counts every request that costs work, each entry of a batch on its
  own; ``TOOL_CALL_RATE`` counts tools/call on top of it. Counting is atomic: the cache's synchronous
  ``add`` + ``incr`` (a lock in LocMemCache, ``INCR`` in Redis and memcached), never Django's async
  ``aincr``, which is a get followed by a set and lets concurrent requests all through
  (:data:`ATOMIC_CACHE_BACKENDS`; the system check ``mcp_app.W006`` warns about other backends).
- Open sessions are capped per credential when a session starts (initialize, or GET /sse): at the cap
  the credential's least recently used session ends (:meth:`mcp_app.sessions.SessionStore.create`), so
  clients that never DELETE are never locked out. :func:`session_owner_filter` says whose sessions share it.
- Open GET streams are counted per worker.

Who shares an allowance (:func:`limit_key`): credentials a user obtains alone, a signed-in browser and
the OAuth clients they register and approve themselves, share one allowance per user, so a user who
registers three clients does not get three. A bearer token from the admin is its own allowance: someone
who may issue tokens granted it. Anonymous callers are one principal for session binding; their
requests are limited by client address, and their sessions and streams only by the idle timeout.
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from collections.abc import Iterable
from typing import Any

from asgiref.sync import sync_to_async
from django.core.cache import caches
from django.db.models import Q

from .availability import RETRY_AFTER, Unavailable
from .conf import mcp_settings

logger = logging.getLogger("mcp_app")

#: Requests that are never counted: ping does no work, and initialize is bounded by the session cap.
FREE_METHODS = frozenset({"ping", "initialize"})

#: Principal kinds (see :class:`mcp_app.auth.Principal`) whose limits are per user, not per credential.
PER_USER_KINDS = frozenset({"session", "oauth"})

#: Cache backends whose synchronous ``incr`` is atomic (a lock, or the server's own increment), so that
#: concurrent requests are each counted. DatabaseCache and FileBasedCache read and write back (two
#: requests can both see 5 and both write 6), and DummyCache counts nothing.
ATOMIC_CACHE_BACKENDS = frozenset(
    {
        "django.core.cache.backends.locmem.LocMemCache",
        "django.core.cache.backends.redis.RedisCache",
        "django.core.cache.backends.memcached.PyMemcacheCache",
        "django.core.cache.backends.memcached.PyLibMCCache",
        "django_redis.cache.RedisCache",
    }
)
# Attempts to count when the window's key vanishes between add and incr (expired or culled meanwhile).
_COUNT_ATTEMPTS = 3


class Limited(Exception):
    """Over a limit: the transport answers 429, with ``Retry-After: retry_after`` when waiting that long is
    enough for a retry to succeed (a rate's window ending), and without it (``None``) when only the
    caller can free the place (closing one of its streams)."""

    def __init__(self, message: str, retry_after: int | None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


def limit_key(principal: Any, scope: dict[str, Any]) -> str:
    """The key whose allowance a caller spends: ``user:<pk>`` for a signed-in browser and every OAuth
    client of one user, the principal's own key for a bearer token, the client address for anonymous
    callers. Session binding is not affected: a session still belongs to the principal that opened it."""
    if principal.user is None:
        client = scope.get("client") or ("unknown", 0)
        return f"anonymous:{client[0]}"
    if principal.kind in PER_USER_KINDS:
        return f"user:{principal.user.pk}"
    return principal.key


def _count(cache_alias: str, key: str, count: int, timeout: int) -> int:
    """Add ``count`` to ``key`` atomically (creating it for ``timeout`` seconds); returns the new total.

    Synchronous on purpose: the cache's own ``add`` and ``incr`` are atomic in the backends of
    :data:`ATOMIC_CACHE_BACKENDS`, while their async variants are not (see the module docstring).
    """
    cache = caches[cache_alias]
    for _ in range(_COUNT_ATTEMPTS):
        cache.add(key, 0, timeout=timeout)
        try:
            return int(cache.incr(key, count))
        except ValueError:  # expired or culled between add and incr: add it again, never overwrite a count
            continue
    # Only a cache that keeps nothing (DummyCache) gets here: mcp_app.W006 warns about it at start-up.
    logger.error("MCP_APP['RATE_LIMIT_CACHE'] (%r) keeps no counts, so rates are not limited", cache_alias)
    return count


# Not Django's one thread for sync code (thread_sensitive=False): counting must not queue behind the ORM
# work of every other request, and the cache is thread-safe.
_count_async = sync_to_async(_count, thread_sensitive=False)


async def _spend(bucket: str, rate: tuple[int, float] | None, key: str, count: int, what: str, setting: str) -> None:
    """Add ``count`` to the key's count in the current window of ``rate``; raise :class:`Limited` past it.

    Every caller's count is added atomically, so that N concurrent requests against a limit of L let at
    most L through. Raises :class:`~mcp_app.availability.Unavailable` (503) when the cache cannot be reached.
    """
    if not rate or count <= 0:
        return
    allowed, seconds = rate
    now = time.time()
    window_key = f"mcp_app:{bucket}:{key}:{int(now // seconds)}"
    try:
        used = await _count_async(mcp_settings.RATE_LIMIT_CACHE, window_key, count, math.ceil(seconds) + 1)
    except Exception as exc:  # the cache's server (Redis, memcached) is unreachable
        logger.warning("cannot count %s for %s: the rate-limit cache failed (%s: %s)", what, key, type(exc).__name__, exc)
        raise Unavailable(
            "Service Unavailable: the request was not carried out because the rate-limit cache "
            f"(MCP_APP['RATE_LIMIT_CACHE']) is unreachable; nothing was done. Retry in {RETRY_AFTER} s."
        ) from exc
    if used > allowed:
        # The seconds until this window ends: the next one starts from zero, so a retry then is counted afresh.
        retry = max(1, math.ceil(seconds - now % seconds))
        raise Limited(
            f"Too many {what}: at most {allowed} every {seconds:g} s (MCP_APP['{setting}']); retry in {retry} s.", retry
        )


async def count_requests(principal: Any, scope: dict[str, Any], methods: Iterable[str]) -> None:
    """Charge the caller for the requests of one POST (their methods; a batch's entries one by one).

    Every method but :data:`FREE_METHODS` counts against ``REQUEST_RATE``, and tools/call also against
    ``TOOL_CALL_RATE``. Raises :class:`Limited` when either budget is spent: the whole POST is refused, and
    what it asked for still counts (a caller cannot probe the budget for free).
    """
    methods = list(methods)
    key = limit_key(principal, scope)
    costly = sum(1 for m in methods if m not in FREE_METHODS)
    await _spend("requests", mcp_settings.REQUEST_RATE, key, costly, "requests", "REQUEST_RATE")
    calls = sum(1 for m in methods if m == "tools/call")
    await _spend("calls", mcp_settings.TOOL_CALL_RATE, key, calls, "tool calls", "TOOL_CALL_RATE")


def session_owner_filter(principal: Any) -> Q | None:
    """The sessions that share ``principal``'s cap of ``MAX_SESSIONS_PER_PRINCIPAL`` (a filter on
    :class:`~mcp_app.models.Session`), or None when its sessions are not capped (no cap, or anonymous
    callers, who are one principal for everyone and are bounded by the idle timeout instead).

    Per :func:`limit_key`: a user's browser and OAuth clients together, a bearer token alone.
    """
    if not mcp_settings.MAX_SESSIONS_PER_PRINCIPAL or principal is None or principal.user is None:
        return None
    if principal.kind in PER_USER_KINDS:
        pk = principal.user.pk
        # The principal keys of auth.SessionAuthentication and contrib.oauth.OAuth2Authentication.
        return Q(principal=f"user:{pk}") | Q(principal__startswith=f"oauth:{pk}:")
    return Q(principal=principal.key)


#: Open GET streams in this worker, by limit key.
_streams: Counter[str] = Counter()


def open_stream(key: str) -> None:
    """Count a stream open; raise :class:`Limited` when the key has ``MAX_STREAMS_PER_PRINCIPAL``."""
    cap = mcp_settings.MAX_STREAMS_PER_PRINCIPAL
    if cap and _streams[key] >= cap:
        # No Retry-After: a place frees only when one of the caller's own streams closes, not after a delay.
        raise Limited(
            f"Too many open streams ({cap}, MCP_APP['MAX_STREAMS_PER_PRINCIPAL']) for these credentials "
            "on this server; close one of them first.",
            None,
        )
    _streams[key] += 1


def close_stream(key: str) -> None:
    _streams[key] -= 1
    if _streams[key] <= 0:
        del _streams[key]
