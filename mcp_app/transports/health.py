"""``GET MCP_APP["HEALTH_PATH"]`` (``/mcp/health``): whether this worker can serve, for load balancers.

200 ``{"status": "ok"}`` when the database answers a trivial query and the channel layer carries a message
round trip on a private channel, each within :data:`PROBE_TIMEOUT` seconds; otherwise 503
``{"status": "unavailable"}`` with ``Retry-After``. The body says nothing else (no versions, no error text,
no host names): the endpoint is unauthenticated, so what failed goes to the log only.

Cheap by design: no credentials, no session, no audit row, no rate budget (``REQUEST_RATE``), nothing
written. Probes run one at a time per worker and their result is reused for :data:`RESULT_TTL` seconds,
so a load balancer polling every worker often (or anyone flooding the path) costs at most one query and
one layer round trip per worker per interval. Host and Origin are checked as on every MCP endpoint.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from channels.layers import get_channel_layer
from django.db import DEFAULT_DB_ALIAS, connections

from .consumer import HTTPError, MCPConsumer

logger = logging.getLogger("mcp_app.transports")

#: Seconds each probe (database, channel layer) may take before the worker counts as unavailable. Both are
#: milliseconds when healthy; load balancers typically time a check out after 5 s, so answer before that.
PROBE_TIMEOUT = 2.0
#: Seconds a probe's result is reused: one probe per worker per second whatever the polling rate.
RESULT_TTL = 1.0
#: What 503 answers carry as Retry-After (seconds): the next probe is not worth sooner.
RETRY_AFTER = 5

_OK = {"status": "ok"}
_UNAVAILABLE = {"status": "unavailable"}

# The database probe runs in a thread of its own, off the event loop and apart from the thread pool that
# serves the ORM for requests: a database that hangs then blocks one thread, not the requests' pool, and a
# query still running (a hung database) is joined by the next probes, not queued behind, so nothing piles up.
_database_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mcp-health")
_database_query: list[Future[None]] = []  # the latest query submitted (at most one)


def _query_database() -> None:
    """``SELECT 1`` on the default database (in :data:`_database_executor`'s thread). A failure closes the
    connection, so that the next probe reconnects instead of reusing a broken one."""
    connection = connections[DEFAULT_DB_ALIAS]
    try:
        connection.close_if_unusable_or_obsolete()
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception:
        try:
            connection.close()
        except Exception as exc:  # closing a dead connection may fail too; the next probe reconnects anyway
            logger.debug("health: closing the database connection failed: %s", exc)
        raise


async def _database_reachable() -> None:
    if not _database_query or _database_query[0].done():
        _database_query[:] = [_database_executor.submit(_query_database)]
    # Shielded: a timeout gives up waiting, it does not cancel the query later probes will join.
    await asyncio.shield(asyncio.wrap_future(_database_query[0]))


async def _layer_reachable() -> None:
    """Send a message to a new private channel of this worker's layer and receive it back."""
    layer = get_channel_layer()
    if layer is None:  # no channel layer configured: nothing to reach (system checks report that setup)
        return
    channel = await layer.new_channel("mcp-health")
    await layer.send(channel, {"type": "mcp.health"})
    await layer.receive(channel)


async def _probe() -> bool:
    """Both probes at once, each bounded by :data:`PROBE_TIMEOUT`; True when both succeeded."""

    async def bounded(name: str, probe: Any) -> bool:
        try:
            await asyncio.wait_for(probe(), PROBE_TIMEOUT)
        except TimeoutError:
            logger.warning("health: the %s did not answer within %s s", name, PROBE_TIMEOUT)
            return False
        except Exception as exc:
            logger.warning("health: the %s is unreachable (%s: %s)", name, type(exc).__name__, str(exc).strip()[:300])
            return False
        return True

    results = await asyncio.gather(bounded("database", _database_reachable), bounded("channel layer", _layer_reachable))
    return all(results)


class _Prober:
    """One probe in flight per event loop, its result kept for :data:`RESULT_TTL` seconds."""

    def __init__(self) -> None:
        self._task: asyncio.Task[bool] | None = None
        self._result = False
        self._at = float("-inf")

    async def healthy(self) -> bool:
        if time.monotonic() - self._at < RESULT_TTL:
            return self._result
        if self._task is None or self._task.done() or self._task.get_loop() is not asyncio.get_running_loop():
            self._task = asyncio.ensure_future(self._run())
        # Shielded: a client that leaves mid-probe must not cancel the probe the other callers are waiting for.
        return await asyncio.shield(self._task)

    async def _run(self) -> bool:
        result = await _probe()
        self._result, self._at = result, time.monotonic()
        return result


_prober = _Prober()


class HealthConsumer(MCPConsumer):
    """The health endpoint; Host and Origin checks are the base class's."""

    async def authenticate(self) -> None:
        """Nobody: load balancers carry no credentials, and the answer reveals nothing."""

    async def handle(self, body: bytes) -> None:
        if self.scope.get("method") not in ("GET", "HEAD"):
            raise HTTPError(405, "Method not allowed; GET the health status.", headers=[(b"allow", b"GET, HEAD")])
        no_store = [(b"cache-control", b"no-store")]
        if await _prober.healthy():
            await self.json(200, _OK, no_store)
        else:
            await self.json(503, _UNAVAILABLE, [*no_store, (b"retry-after", str(RETRY_AFTER).encode())])
