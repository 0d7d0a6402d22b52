"""Limits per caller: request and tools/call rates, open sessions, open streams.

- Rates are counted in fixed windows in Django's cache (``RATE_LIMIT_CACHE``): with a shared cache
  (Redis) a limit holds across workers and hosts, with the default local-memory cache per worker. Over
  a limit a POST gets 429 with ``Retry-After``. ``REQUEST_RATE`` counts every request that costs work,
  each entry of a batch on its own; ``TOOL_CALL_RATE`` counts tools/call on top of it.
- Open sessions are counted in the database when a session starts (initialize, or GET /sse).
- Open GET streams are counted per worker.

Who shares an allowance (:func:`limit_key`): credentials a user obtains alone, a signed-in browser and
the OAuth clients they register and approve themselves, share one allowance per user, so a user who
registers three clients does not get three. A bearer token from the admin is its own allowance: someone
who may issue tokens granted it. Anonymous callers are one principal for session binding; their
requests are limited by client address, and their sessions and streams only by the idle timeout.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Iterable
from typing import Any

from .conf import mcp_settings

#: Requests that are never counted: ping does no work, and initialize is bounded by the session cap.
FREE_METHODS = frozenset({"ping", "initialize"})

#: Principal kinds (see :class:`mcp_app.auth.Principal`) whose limits are per user, not per credential.
PER_USER_KINDS = frozenset({"session", "oauth"})


class Limited(Exception):
    """Over a limit: the transport answers 429 with ``Retry-After: retry_after``."""

    def __init__(self, message: str, retry_after: int) -> None:
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


async def _spend(bucket: str, rate: tuple[int, float] | None, key: str, count: int, what: str, setting: str) -> None:
    """Add ``count`` to the key's count in the current window of ``rate``; raise :class:`Limited` past it."""
    if not rate or count <= 0:
        return
    allowed, seconds = rate
    from django.core.cache import caches

    cache = caches[mcp_settings.RATE_LIMIT_CACHE]
    now = time.time()
    window_key = f"mcp_app:{bucket}:{key}:{int(now // seconds)}"
    await cache.aadd(window_key, 0, timeout=int(seconds) + 1)
    try:
        used = await cache.aincr(window_key, count)
    except ValueError:  # evicted between add and incr: start the window again
        await cache.aset(window_key, count, timeout=int(seconds) + 1)
        used = count
    if used > allowed:
        retry = max(1, math.ceil(seconds - now % seconds))
        raise Limited(f"Too many {what}: at most {allowed} every {seconds:g} s (MCP_APP['{setting}']); "
                      f"retry in {retry} s.", retry)


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


async def check_sessions(principal: Any) -> None:
    """Refuse a new session when the caller already has ``MAX_SESSIONS_PER_PRINCIPAL`` open.

    Counted per :func:`limit_key`: a user's browser and OAuth clients together, a bearer token alone.
    """
    cap = mcp_settings.MAX_SESSIONS_PER_PRINCIPAL
    if not cap or principal.user is None:
        return  # anonymous sessions are bounded by the idle timeout, not by a shared count
    from django.db.models import Q

    from .models import Session

    if principal.kind in PER_USER_KINDS:
        pk = principal.user.pk
        # The principal keys of auth.SessionAuthentication and contrib.oauth.OAuth2Authentication.
        mine = Q(principal=f"user:{pk}") | Q(principal__startswith=f"oauth:{pk}:")
    else:
        mine = Q(principal=principal.key)
    open_sessions = await Session.objects.filter(mine, ended__isnull=True).acount()
    if open_sessions >= cap:
        raise Limited(f"Too many open sessions ({cap}, MCP_APP['MAX_SESSIONS_PER_PRINCIPAL']) for this user or "
                      "token; end some (DELETE) first.", 60)


#: Open GET streams in this worker, by limit key.
_streams: Counter[str] = Counter()


def open_stream(key: str) -> None:
    """Count a stream open; raise :class:`Limited` when the key has ``MAX_STREAMS_PER_PRINCIPAL``."""
    cap = mcp_settings.MAX_STREAMS_PER_PRINCIPAL
    if cap and _streams[key] >= cap:
        raise Limited(f"Too many open streams ({cap}) for these credentials; close one first.", 5)
    _streams[key] += 1


def close_stream(key: str) -> None:
    _streams[key] -= 1
    if _streams[key] <= 0:
        del _streams[key]
