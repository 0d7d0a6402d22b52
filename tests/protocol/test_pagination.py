"""Cursors: opaque, signed, bound to their list."""

from __future__ import annotations

import base64
import json

import pytest

from mcp_app.protocol.errors import INVALID_PARAMS, InvalidParams
from mcp_app.protocol.pagination import CursorCodec

codec = CursorCodec(b"k" * 32)


def test_pages_cover_the_list_once() -> None:
    items = list(range(25))
    seen, cursor = [], None
    for _ in range(10):
        page, cursor = codec.paginate(items, cursor, 10, kind="tools")
        seen += page
        if cursor is None:
            break
    assert seen == items


@pytest.mark.parametrize("cursor", ["", "abc", "a.b.c", 5, None.__class__.__name__, "x" * 5000])
def test_garbage_cursors_are_invalid_params(cursor: object) -> None:
    with pytest.raises(InvalidParams) as info:
        codec.decode(cursor)
    assert info.value.code == INVALID_PARAMS
    assert "Invalid cursor" in info.value.message


def test_tampered_and_forged_cursors_are_refused() -> None:
    _, cursor = codec.paginate(list(range(30)), None, 10, kind="tools")
    assert cursor is not None
    payload, mac = cursor.split(".")
    forged = base64.urlsafe_b64encode(json.dumps({"k": "tools", "o": 20}).encode()).rstrip(b"=").decode()
    for bad in (f"{forged}.{mac}", f"{payload}.{mac[:-2]}AA", cursor + "x"):
        with pytest.raises(InvalidParams):
            codec.decode(bad)
    with pytest.raises(InvalidParams):
        CursorCodec(b"other-key").decode(cursor)


def test_cursor_of_another_list_is_refused() -> None:
    _, cursor = codec.paginate(list(range(30)), None, 10, kind="tools")
    with pytest.raises(InvalidParams) as info:
        codec.paginate(list(range(30)), cursor, 10, kind="prompts")
    assert "does not belong to prompts" in info.value.message
