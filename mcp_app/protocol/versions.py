"""Protocol versions this server speaks, and what each one allows.

Versions are ISO dates, so plain string comparison orders them.
"""

from __future__ import annotations

import enum

V2024_11_05 = "2024-11-05"
V2025_03_26 = "2025-03-26"
V2025_06_18 = "2025-06-18"
V2025_11_25 = "2025-11-25"

V2026_07_28 = "2026-07-28"

#: The handshake era: ``initialize`` opens a session whose version it negotiates.
SUPPORTED_VERSIONS: tuple[str, ...] = (V2024_11_05, V2025_03_26, V2025_06_18, V2025_11_25)
HANDSHAKE_VERSIONS = SUPPORTED_VERSIONS
#: The handshake era's newest version (what ``initialize`` answers a version it does not know with).
LATEST_VERSION = V2025_11_25
#: The modern era (2026-07-28 on): every request carries its version in ``_meta``; no session.
MODERN_VERSIONS: tuple[str, ...] = (V2026_07_28,)
#: Every version this endpoint serves, newest first (``server/discover``'s ``supportedVersions``, and
#: ``data.supported`` of an UnsupportedProtocolVersion error: the suite checks the second is within the first).
ALL_VERSIONS: tuple[str, ...] = tuple(sorted(HANDSHAKE_VERSIONS + MODERN_VERSIONS, reverse=True))


class Era(enum.Enum):
    """How a request is served: in a session opened by ``initialize``, or self-contained (2026-07-28 on)."""

    HANDSHAKE = "handshake"
    MODERN = "modern"


def is_supported(version: str) -> bool:
    """Whether ``version`` is a handshake-era version (the ones ``initialize`` can negotiate)."""
    return version in SUPPORTED_VERSIONS


def is_handshake(version: str) -> bool:
    """Same as :func:`is_supported`, named for the era rule (an ``MCP-Protocol-Version`` header naming one
    of these keeps the request in the handshake era)."""
    return version in HANDSHAKE_VERSIONS


def is_modern(version: str) -> bool:
    """Whether ``version`` is a modern version this server serves."""
    return version in MODERN_VERSIONS


def negotiate(requested: object) -> str:
    """The version to answer ``initialize`` with: the client's if we speak it, else our latest."""
    if isinstance(requested, str) and requested in SUPPORTED_VERSIONS:
        return requested
    return LATEST_VERSION


def allows_batches(version: str) -> bool:
    """JSON-RPC batches exist only in 2025-03-26: added there, removed again in 2025-06-18."""
    return version == V2025_03_26


def at_least(version: str, minimum: str) -> bool:
    return version >= minimum


# Fields that later versions added to objects we send; older clients get them stripped.
_ADDED_FIELDS: dict[str, tuple[tuple[str, str], ...]] = {
    # kind -> ((field, version that added it), ...)
    "tool": (
        ("annotations", V2025_03_26),
        ("title", V2025_06_18),
        ("outputSchema", V2025_06_18),
        ("_meta", V2025_06_18),
        ("icons", V2025_11_25),
        ("execution", V2025_11_25),
    ),
    "prompt": (("title", V2025_06_18), ("_meta", V2025_06_18), ("icons", V2025_11_25)),
    "resource": (("title", V2025_06_18), ("_meta", V2025_06_18), ("icons", V2025_11_25), ("size", V2025_03_26)),
    "tool_result": (("structuredContent", V2025_06_18),),
    "implementation": (("title", V2025_06_18), ("icons", V2025_11_25), ("description", V2025_11_25), ("websiteUrl", V2025_11_25)),
}
# Content block types and the version that introduced them.
_CONTENT_TYPES = {
    "text": V2024_11_05,
    "image": V2024_11_05,
    "resource": V2024_11_05,
    "audio": V2025_03_26,
    "resource_link": V2025_06_18,
}


# Fields that a later version removed from objects we send; clients of that version on get them stripped.
_REMOVED_FIELDS: dict[str, tuple[tuple[str, str], ...]] = {
    # kind -> ((field, version that removed it), ...): tasks moved to an extension at 2026-07-28.
    "tool": (("execution", V2026_07_28),),
}


def adapt(kind: str, obj: dict, version: str) -> dict:
    """Return ``obj`` without the fields ``version`` does not know (a copy only when needed): fields added
    after it, and fields removed at or before it."""
    drop = [name for name, added in _ADDED_FIELDS[kind] if name in obj and version < added]
    drop += [name for name, removed in _REMOVED_FIELDS.get(kind, ()) if name in obj and version >= removed]
    if not drop:
        return obj
    return {k: v for k, v in obj.items() if k not in drop}


def content_allowed(block: dict, version: str) -> bool:
    """Whether a content block's type exists in ``version``."""
    return version >= _CONTENT_TYPES.get(block.get("type", ""), V2024_11_05)
