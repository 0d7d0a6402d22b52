"""What a client gets while the database is down: one typed error, :class:`Unavailable`.

Code anywhere on a request's path raises it (or lets Django's ``OperationalError`` / ``InterfaceError``
through, which :func:`is_outage` recognises), and it becomes the same answer everywhere:

- before a response has started (authentication, session lookups, ``initialize``, a single JSON answer),
  the consumer (:mod:`mcp_app.transports.consumer`) answers ``503 Service Unavailable`` with ``Retry-After``
  and a JSON-RPC error body;
- inside a request the dispatcher turns it into a JSON-RPC error like any :class:`McpError`: on an event
  stream or the legacy transport, whose status was already sent, that error is the whole answer.

Its code is :data:`UNAVAILABLE` (-32003, in JSON-RPC's implementation-defined range), and its ``data``
carries ``retryAfter``, so that a client can tell "try again" from a failure.
"""

from __future__ import annotations

from django.db import InterfaceError, OperationalError

from .protocol.errors import McpError

#: JSON-RPC error code of a request refused because a service it needs (the database) is down.
UNAVAILABLE = -32003
#: Seconds a client is told to wait before retrying (``Retry-After``). A database restart or fail-over
#: takes seconds; clients that retry sooner only add load while it comes back.
RETRY_AFTER = 5

#: Django's errors for a database that cannot be reached or whose connection broke. IntegrityError,
#: DataError and ProgrammingError are left out: they are bugs or bad data, not outages.
OUTAGE_ERRORS: tuple[type[BaseException], ...] = (OperationalError, InterfaceError)


class Unavailable(McpError):
    """A request refused because a service it needs is down; nothing was done, and a retry may succeed.

    ``message`` is shown to the client: it must say what was (not) done and to retry. ``retry_after``
    (seconds) becomes the ``Retry-After`` header and ``data.retryAfter``.
    """

    code = UNAVAILABLE

    def __init__(self, message: str, *, retry_after: int = RETRY_AFTER) -> None:
        super().__init__(message, data={"retryAfter": retry_after})
        self.retry_after = retry_after


def is_outage(exc: BaseException) -> bool:
    """Whether ``exc`` means the database is unreachable (or the request was refused for that reason)."""
    return isinstance(exc, (Unavailable, *OUTAGE_ERRORS))


def database_unavailable(what: str = "This request") -> Unavailable:
    """The :class:`Unavailable` for a request that needed the database while it was down.

    ``what`` names what was refused (e.g. "The call to tool 'x'"); the message adds that nothing was done.
    """
    return Unavailable(
        f"Service Unavailable: {what} was not carried out because the database is unavailable; "
        f"nothing was done. Retry in {RETRY_AFTER} s."
    )
