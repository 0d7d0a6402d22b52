"""Which model exposures the caller of an event stream may read (:class:`StreamAudience`): a list_changed
about rows of exposures goes out on a stream (a handshake-era GET stream, a ``subscriptions/listen`` stream)
only when its caller may read at least one of them.

Its own module, below :mod:`mcp_app.notifications` and :mod:`mcp_app.runtime`, so that both the transports'
streams and the runtime's listen source can use it without importing what sends notifications.
"""

from __future__ import annotations

import logging
from typing import Any

from channels.db import database_sync_to_async
from django.contrib.auth import get_user_model

from .auth import user_generation
from .conf import mcp_settings
from .permissions import aallows
from .providers.managed import ManagedProvider

logger = logging.getLogger("mcp_app")


class StreamAudience:
    """Which model exposures the caller of one event stream may read: a list_changed about rows of
    exposures (an ``mcp.coalesced`` event naming them) goes out on the stream only when the caller may
    read at least one of them, so that nobody learns when rows they cannot see come and go.

    The set is worked out on the first such event (the exposures' permission classes, as
    resources/list applies them) and kept until the catalog of exposures is reloaded (a row changed on
    any worker, or its age) or the user's groups or permissions change (then the user is read afresh):
    no query per notification per stream.
    """

    def __init__(self, user: Any) -> None:
        """``user``: the stream's caller (None: anonymous)."""
        self._user = user if user is not None and getattr(user, "is_authenticated", False) else None
        self._generation = user_generation(self._user)  # changes after this make the user be read again
        self._catalog: Any = None
        self._readable: frozenset[str] = frozenset()

    async def admits(self, event: dict[str, Any]) -> bool:
        """Whether the stream may send ``event``'s message: yes unless it names exposures, none of which
        the caller may read. When that cannot be worked out (the database is down), no: it is advisory."""
        keys = event.get("exposures")
        if keys is None:
            return True
        try:
            readable = await self.readable()
        except Exception as exc:
            logger.warning("could not check who may read %s (%s: %s); not sent", keys, type(exc).__name__, exc)
            return False
        return not readable.isdisjoint(keys)

    async def readable(self) -> frozenset[str]:
        """The keys of the exposures the caller may read now."""
        provider = mcp_settings.PROVIDER
        if not isinstance(provider, ManagedProvider):
            return frozenset()
        catalog = await provider.catalog()
        generation = user_generation(self._user)
        if catalog is self._catalog and generation == self._generation:
            return self._readable
        if generation != self._generation and self._user is not None:
            self._user = await database_sync_to_async(_fresh_user)(self._user.pk)  # its permissions changed
        self._generation = generation
        self._readable = frozenset(
            [
                key
                for key, exposure in catalog.exposures.items()
                if await aallows(exposure.permission_classes, self._user, exposure)
            ]
        )
        self._catalog = catalog
        return self._readable


def _fresh_user(pk: Any) -> Any:
    """The user as stored now (permissions not yet loaded), None when gone or inactive."""
    return get_user_model()._default_manager.filter(pk=pk, is_active=True).first()
