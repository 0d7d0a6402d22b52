"""Media types: what a request's ``Accept`` admits and what its ``Content-Type`` declares (RFC 9110)."""

from __future__ import annotations

import functools


def media_types(value: str | None, *, drop_refused: bool = False) -> list[str]:
    """The media types of an Accept or Content-Type header, lower case, without parameters.

    With ``drop_refused``, ranges weighted ``q=0`` ("not acceptable", RFC 9110 12.4.2) are left out.
    """
    if not value:
        return []
    types = []
    for part in value.split(","):
        media, *params = (p.strip() for p in part.split(";"))
        if not media:
            continue
        if drop_refused and any(_is_zero_weight(p) for p in params):
            continue
        types.append(media.lower())
    return types


def _is_zero_weight(param: str) -> bool:
    name, _, value = param.partition("=")
    if name.strip().lower() != "q":
        return False
    try:
        return float(value) == 0
    except ValueError:
        return False


#: Header values up to this long have their verdicts remembered (a bounded LRU each): they were parsed up to
#: three times a request, and a server sees few distinct values. Longer ones, which no real client sends, are
#: judged afresh, so that the caches hold short strings only, whatever headers clients send.
CACHED_VALUE_CHARS = 256


def accepts(accept: str | None, wanted: str) -> bool:
    """Whether an Accept header admits ``wanted``; no Accept header admits anything (RFC 9110)."""
    if accept is not None and len(accept) > CACHED_VALUE_CHARS:
        return _accepts(accept, wanted)
    return _accepts_remembered(accept, wanted)


def declares_json(content_type: str | None) -> bool:
    """Whether a Content-Type header declares ``application/json`` (parameters such as charset allowed)."""
    if content_type is not None and len(content_type) > CACHED_VALUE_CHARS:
        return _declares_json(content_type)
    return _declares_json_remembered(content_type)


def _accepts(accept: str | None, wanted: str) -> bool:
    if accept is None:
        return True
    main = wanted.split("/", 1)[0]
    return any(t in (wanted, "*/*", f"{main}/*") for t in media_types(accept, drop_refused=True))


def _declares_json(content_type: str | None) -> bool:
    return media_types(content_type)[:1] == ["application/json"]


_accepts_remembered = functools.lru_cache(maxsize=256)(_accepts)
_declares_json_remembered = functools.lru_cache(maxsize=256)(_declares_json)
