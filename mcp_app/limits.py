"""Per-principal limits: tools/call rate, open sessions, open streams.

- The tools/call rate is counted in fixed windows in Django's cache (``RATE_LIMIT_CACHE``): with a
  shared cache (Redis) the limit holds across workers and hosts, with the default local-memory cache
  per worker. Over the limit a POST gets 429 with ``Retry-After``.
- Open sessions are counted in the database when a session starts (initialize, or GET /sse).
- Open GET streams are counted per worker.

Anonymous callers are one principal for session binding; their tool calls are limited by client
address, and their sessions and streams only by the idle timeout.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from typing import Any

from .conf import mcp_settings


class Limited(Exception):
    """Over a limit: the transport answers 429 with ``Retry-After: retry_after``."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


def limit_key(principal: Any, scope: dict[str, Any]) -> str:
    if principal.user is None:
        client = scope.get("client") or ("unknown", 0)
        return f"anonymous:{client[0]}"
    return principal.key


async def count_tool_calls(principal: Any, scope: dict[str, Any], calls: int) -> None:
    """Count ``calls`` tools/call requests; raise :class:`Limited` when the window's budget is spent."""
    rate = mcp_settings.TOOL_CALL_RATE
    if not rate or calls <= 0:
        return
    allowed, seconds = rate
    from django.core.cache import caches

    cache = caches[mcp_settings.RATE_LIMIT_CACHE]
    now = time.time()
    key = f"mcp_app:calls:{limit_key(principal, scope)}:{int(now // seconds)}"
    await cache.aadd(key, 0, timeout=seconds + 1)
    try:
        used = await cache.aincr(key, calls)
    except ValueError:  # evicted between add and incr: start the window again
        await cache.aset(key, calls, timeout=seconds + 1)
        used = calls
    if used > allowed:
        retry = max(1, math.ceil(seconds - now % seconds))
        raise Limited(f"Too many tool calls: at most {allowed} every {seconds} s; retry in {retry} s.", retry)


async def check_sessions(principal: Any) -> None:
    """Refuse a new session when the principal already has ``MAX_SESSIONS_PER_PRINCIPAL`` open."""
    cap = mcp_settings.MAX_SESSIONS_PER_PRINCIPAL
    if not cap or principal.user is None:
        return  # anonymous sessions are bounded by the idle timeout, not by a shared count
    from .models import Session

    open_sessions = await Session.objects.filter(principal=principal.key, ended__isnull=True).acount()
    if open_sessions >= cap:
        raise Limited(f"Too many open sessions ({cap}) for these credentials; end some (DELETE) first.", 60)


#: Open GET streams in this worker, by principal.
_streams: Counter[str] = Counter()


def open_stream(key: str) -> None:
    """Count a stream open; raise :class:`Limited` when the principal has ``MAX_STREAMS_PER_PRINCIPAL``."""
    cap = mcp_settings.MAX_STREAMS_PER_PRINCIPAL
    if cap and _streams[key] >= cap:
        raise Limited(f"Too many open streams ({cap}) for these credentials; close one first.", 5)
    _streams[key] += 1


def close_stream(key: str) -> None:
    _streams[key] -= 1
    if _streams[key] <= 0:
        del _streams[key]
