"""A request context for calling a provider or the dispatcher directly, without a transport."""

from __future__ import annotations

from typing import Any

from mcp_app.protocol.context import MemorySession, PendingClientRequests, RequestContext


async def _discard(message: dict[str, Any]) -> None:
    return None  # these tests look at results only, not at what a handler sends meanwhile


def ctx_for(user: Any = None, *, request_id: int = 1, session: Any = None) -> RequestContext:
    """A context for ``user`` (None: anonymous) in an in-memory session (or ``session``), as a test client."""
    return RequestContext(
        session=session or MemorySession(),
        request_id=request_id,
        meta={},
        send=_discard,
        pending=PendingClientRequests(),
        extra={"user": user, "via": "test"},
    )
