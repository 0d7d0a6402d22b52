"""Requests whose work is a session's own rows, while the database is down (in process).

``resources/subscribe``, ``resources/unsubscribe`` and ``logging/setLevel`` write the session's rows directly
(:mod:`mcp_app.sessions`). When the database fails under them they answer like every other request during an
outage: ``503 Service Unavailable`` with ``Retry-After`` and JSON-RPC error -32003 saying that nothing was
done, never 200 with an internal error (-32603). A session's activity stamp (``last_seen``) is only
bookkeeping: failing to write it does not fail a request served from the worker's cache.

The outage is made by failing every SQL statement on the session's tables, wherever it runs (Django's
thread for sync code, or any other).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.db import OperationalError
from django.db.backends import utils as db_utils
from django.test import override_settings

from mcp_app.runtime import get_server
from mcp_app.testing import MCPTestClient

pytestmark = pytest.mark.django_db(transaction=True)

VERSION = "2025-11-25"
UNAVAILABLE = -32003  # mcp_app.availability.UNAVAILABLE, spelled out: the wire contract


@pytest.fixture
def outage(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, bool]]:
    """Set ``state["down"]`` to make every statement on the session tables fail as a lost connection does."""
    state = {"down": False}
    real = db_utils.CursorWrapper._execute

    def execute(self: Any, sql: str, params: Any, *rest: Any) -> Any:
        if state["down"] and ("mcp_app_session" in sql or "mcp_app_subscription" in sql):
            raise OperationalError("server closed the connection unexpectedly")
        return real(self, sql, params, *rest)

    monkeypatch.setattr(db_utils.CursorWrapper, "_execute", execute)
    yield state


def post(session_id: str, message: dict[str, Any]) -> tuple[int, dict[str, str], dict[str, Any]]:
    """POST one message to /mcp in process on the given session; (status, headers, JSON body)."""
    response = async_to_sync(MCPTestClient(session_id=session_id, protocol_version=VERSION).send)(message)
    return response.status, response.headers, response.json()


def new_session() -> str:
    """A session created the way initialize creates one, so the worker has it cached (no lookup needed)."""
    record = async_to_sync(get_server().sessions.create)(
        transport="streamable_http", protocol_version=VERSION, principal="anonymous"
    )
    return record.id


@pytest.mark.parametrize(
    ("method", "params", "what"),
    [
        ("resources/subscribe", {"uri": "test://static-text"}, "resources/subscribe"),
        ("resources/unsubscribe", {"uri": "test://static-text"}, "resources/unsubscribe"),
        ("logging/setLevel", {"level": "debug"}, "logging/setLevel"),
    ],
)
def test_session_writes_during_an_outage_are_503_with_retry_after(
    outage: dict[str, bool], method: str, params: dict[str, Any], what: str
) -> None:
    session_id = new_session()
    outage["down"] = True
    status, headers, body = post(session_id, {"jsonrpc": "2.0", "id": 7, "method": method, "params": params})
    assert status == 503, body
    assert int(headers["retry-after"]) >= 1
    assert body["id"] == 7 and body["error"]["code"] == UNAVAILABLE
    assert what in body["error"]["message"] and "nothing was done" in body["error"]["message"]
    assert body["error"]["data"] == {"retryAfter": int(headers["retry-after"])}
    # The database is back: the same request succeeds, on the same session.
    outage["down"] = False
    status, _headers, body = post(session_id, {"jsonrpc": "2.0", "id": 8, "method": method, "params": params})
    assert status == 200 and body == {"jsonrpc": "2.0", "id": 8, "result": {}}


def test_a_failed_set_level_leaves_the_level_unchanged(outage: dict[str, bool]) -> None:
    session_id = new_session()
    assert post(session_id, {"jsonrpc": "2.0", "id": 1, "method": "logging/setLevel", "params": {"level": "error"}})[0] == 200
    outage["down"] = True
    assert post(session_id, {"jsonrpc": "2.0", "id": 2, "method": "logging/setLevel", "params": {"level": "debug"}})[0] == 503
    record = async_to_sync(get_server().sessions.get)(session_id)
    assert record is not None and record.log_level == "error"  # what the client was told was not done, is not


@override_settings(
    MCP_APP={
        "SESSION_TOUCH_INTERVAL": 0,
        "ALLOW_ANONYMOUS": True,
        "DEFAULT_PERMISSION_CLASSES": ["mcp_app.permissions.AllowAny"],
        "TOOL_CALL_RATE": None,
        "REQUEST_RATE": None,
    }
)
def test_a_session_touch_that_fails_does_not_fail_a_cached_request(outage: dict[str, bool]) -> None:
    session_id = new_session()
    outage["down"] = True  # every request now wants to write last_seen (interval 0), and cannot
    status, _headers, body = post(session_id, {"jsonrpc": "2.0", "id": 3, "method": "ping"})
    assert status == 200 and body == {"jsonrpc": "2.0", "id": 3, "result": {}}
