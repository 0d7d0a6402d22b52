"""Opaque, tamper-evident list cursors.

A cursor is ``base64url(json) + "." + hmac``; the HMAC key comes from the site (derived from
SECRET_KEY), so a client can neither forge a cursor nor edit the position inside one.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Sequence
from typing import Any, TypeVar

from .errors import InvalidParams

T = TypeVar("T")

# Long enough to resist forgery, short enough to keep cursors readable in logs.
_MAC_BYTES = 16


class CursorCodec:
    """Encode and verify cursors carrying a small JSON state."""

    def __init__(self, key: bytes) -> None:
        if not key:
            raise ValueError("a cursor key is required")
        self._key = key

    def _mac(self, payload: bytes) -> str:
        digest = hmac.new(self._key, payload, hashlib.sha256).digest()[:_MAC_BYTES]
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def encode(self, state: dict[str, Any]) -> str:
        payload = base64.urlsafe_b64encode(json.dumps(state, separators=(",", ":")).encode()).rstrip(b"=")
        return f"{payload.decode()}.{self._mac(payload)}"

    def decode(self, cursor: object) -> dict[str, Any]:
        """Return the state inside ``cursor``; raise -32602 for anything we did not issue."""
        if not isinstance(cursor, str) or cursor.count(".") != 1 or len(cursor) > 4096:
            raise InvalidParams("Invalid cursor: pass back the nextCursor value exactly as received.")
        payload, mac = cursor.split(".")
        if not hmac.compare_digest(mac, self._mac(payload.encode())):
            raise InvalidParams("Invalid cursor: pass back the nextCursor value exactly as received.")
        try:
            state = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        except ValueError:
            raise InvalidParams("Invalid cursor: pass back the nextCursor value exactly as received.") from None
        if not isinstance(state, dict):
            raise InvalidParams("Invalid cursor: pass back the nextCursor value exactly as received.")
        return state

    def paginate(self, items: Sequence[T], cursor: object, page_size: int, *, kind: str) -> tuple[list[T], str | None]:
        """Slice a fully materialised list; the cursor is bound to ``kind`` so lists cannot swap cursors."""
        offset = 0
        if cursor is not None:
            state = self.decode(cursor)
            if state.get("k") != kind or not isinstance(state.get("o"), int) or state["o"] < 0:
                raise InvalidParams(f"Invalid cursor: this cursor does not belong to {kind}.")
            offset = state["o"]
        page = list(items[offset : offset + page_size])
        next_cursor = None
        if offset + page_size < len(items):
            next_cursor = self.encode({"k": kind, "o": offset + page_size})
        return page, next_cursor
