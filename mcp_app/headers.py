"""Reading a request's headers from its ASGI scope.

Below every layer that looks at a request (the transports' Host and Origin checks, authentication, the
OAuth resource identifier), so that none of them imports another for it. Django-free.
"""

from __future__ import annotations

from typing import Any


def header(scope: dict[str, Any], name: bytes) -> str | None:
    """The first value of a request header (``name`` in lower case), decoded as Latin-1; None when absent."""
    for key, value in scope.get("headers", ()):
        if key == name:
            return value.decode("latin-1")
    return None
