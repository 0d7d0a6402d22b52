"""``/mcp`` in the modern era (MCP 2026-07-28) against a live daphne: statuses, no session, the ladder as HTTP
sees it, the GET/DELETE rule, SSE without event ids, cancellation by closing the stream, the audit row.

The handshake era on the same endpoint is tests/transports/test_streamable_http.py (unchanged).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.live import LiveServer
from tests.wire import assert_valid

V = "2026-07-28"
META = {
    "io.modelcontextprotocol/protocolVersion": V,
    "io.modelcontextprotocol/clientCapabilities": {},
    "io.modelcontextprotocol/clientInfo": {"name": "modern-test", "version": "1"},
}
NAME_PARAM = {"tools/call": "name", "prompts/get": "name", "resources/read": "uri"}


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=15) as c:
        yield c


@pytest.fixture
def url(daphne_server: LiveServer) -> str:
    return daphne_server.mcp_url


def body(method: str, params: dict[str, Any] | None = None, id: int | str | None = 1, meta: Any = None) -> dict[str, Any]:
    message: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "params": {**(params or {}), "_meta": meta or META}}
    if id is not None:
        message["id"] = id
    return message


def headers_for(message: dict[str, Any]) -> dict[str, str]:
    """The headers a correct modern client sends with ``message``."""
    found = {
        "Content-Type": "application/json",
        "Accept": "application/json, text/event-stream",
        "MCP-Protocol-Version": V,
        "Mcp-Method": message["method"],
    }
    param = NAME_PARAM.get(message["method"])
    if param and param in message.get("params", {}):
        found["Mcp-Name"] = message["params"][param]
    return found


def send(client: httpx.Client, url: str, message: Any, headers: dict[str, str] | None = None, **kw: Any) -> httpx.Response:
    base = headers_for(message) if isinstance(message, dict) and "method" in message else headers_for(body("tools/list"))
    return client.post(url, content=json.dumps(message).encode(), headers={**base, **(headers or {})}, **kw)


def error_of(response: httpx.Response, status: int, code: int, request_id: Any = 1) -> dict[str, Any]:
    assert response.status_code == status, response.text
    answer = response.json()
    if request_id is None:
        assert "id" not in answer, answer  # never "id": null in this era
    else:
        assert answer["id"] == request_id, answer
    assert answer["error"]["code"] == code, answer
    return answer["error"]


def test_discover_and_no_session(client: httpx.Client, url: str) -> None:
    response = send(client, url, body("server/discover"))
    assert response.status_code == 200, response.text
    assert "mcp-session-id" not in response.headers
    result = response.json()["result"]
    assert_valid(result, "DiscoverResult", V)
    assert result["supportedVersions"][0] == V and "2025-11-25" in result["supportedVersions"]
    assert result["_meta"]["io.modelcontextprotocol/serverInfo"]["name"]


def test_a_session_id_is_ignored(client: httpx.Client, url: str) -> None:
    response = send(client, url, body("tools/list"), {"Mcp-Session-Id": "no-such-session"})
    assert response.status_code == 200, response.text
    assert "mcp-session-id" not in response.headers
    assert response.json()["result"]["resultType"] == "complete"


def test_handshake_era_is_unchanged_beside_it(client: httpx.Client, url: str) -> None:
    # No version header and no modern _meta: initialize opens a session as before.
    init = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "x", "version": "1"}},
    }
    response = client.post(url, json=init, headers={"Accept": "application/json, text/event-stream"})
    assert response.status_code == 200 and response.headers["mcp-session-id"]
    # server/discover without a session: the handshake era's 400 (auto clients read it as "legacy").
    legacy = client.post(
        url,
        json={"jsonrpc": "2.0", "id": 2, "method": "server/discover"},
        headers={"Accept": "application/json, text/event-stream"},
    )
    assert legacy.status_code == 400


@pytest.mark.parametrize(
    "method", ["initialize", "ping", "logging/setLevel", "resources/subscribe", "resources/unsubscribe", "nope/nope"]
)
def test_removed_and_unknown_methods_are_404(client: httpx.Client, url: str, method: str) -> None:
    error_of(send(client, url, body(method, {"uri": "test://static-text"}, id=104)), 404, -32601, 104)


def test_ladder_over_http(client: httpx.Client, url: str) -> None:
    no_meta = {"jsonrpc": "2.0", "id": 101, "method": "tools/list", "params": {}}
    error_of(send(client, url, no_meta), 400, -32602, 101)
    mismatch = body("tools/list", id=102, meta={**META, "io.modelcontextprotocol/protocolVersion": "v999.0.0"})
    error_of(send(client, url, mismatch), 400, -32020, 102)
    unsupported = error_of(send(client, url, mismatch, {"MCP-Protocol-Version": "v999.0.0"}), 400, -32022, 102)
    assert unsupported["data"] == {"supported": unsupported["data"]["supported"], "requested": "v999.0.0"}
    assert V in unsupported["data"]["supported"]
    error_of(send(client, url, body("tools/list", id=103), {"Mcp-Method": "prompts/list"}), 400, -32020, 103)
    call = body("tools/call", {"name": "test_simple_text", "arguments": {}}, id=105)
    error_of(send(client, url, call, {"Mcp-Name": "other"}), 400, -32020, 105)
    # (Whitespace around values is tested in tests/protocol/test_envelope.py: httpx refuses to send it.)
    ok = send(client, url, call, {"Mcp-Name": "=?base64?dGVzdF9zaW1wbGVfdGV4dA==?="})
    assert ok.status_code == 200 and ok.json()["result"]["content"][0]["text"].startswith("This is"), ok.text


def test_forgotten_version_header_gets_a_modern_error(client: httpx.Client, url: str) -> None:
    # No MCP-Protocol-Version and no session id, but the modern _meta: -32020 with the id, not the legacy 400.
    message = body("tools/list", id=7)
    error_of(
        client.post(url, json=message, headers={"Accept": "application/json, text/event-stream", "Mcp-Method": "tools/list"}),
        400,
        -32020,
        7,
    )


def test_refusals_before_the_body_omit_the_id(client: httpx.Client, url: str) -> None:
    unparsable = client.post(url, content=b"{not json", headers=headers_for(body("tools/list")))
    error_of(unparsable, 400, -32700, None)
    batch = client.post(url, json=[body("tools/list")], headers=headers_for(body("tools/list")))
    error_of(batch, 400, -32600, None)
    not_acceptable = client.post(
        url, json=body("tools/list"), headers={**headers_for(body("tools/list")), "Accept": "application/json"}
    )
    assert not_acceptable.status_code == 406 and "id" not in not_acceptable.json()


def test_notifications_get_202(client: httpx.Client, url: str) -> None:
    for method in ("notifications/initialized", "notifications/cancelled", "notifications/roots/list_changed"):
        response = send(client, url, body(method, {"requestId": 1}, id=None))
        assert response.status_code == 202 and response.content == b""


def test_responses_from_the_client_are_refused(client: httpx.Client, url: str) -> None:
    error_of(send(client, url, {"jsonrpc": "2.0", "id": 9, "result": {}}), 400, -32600, 9)


@pytest.mark.parametrize("method", ["GET", "DELETE"])
def test_get_and_delete_are_405(client: httpx.Client, url: str, method: str) -> None:
    response = client.request(
        method, url, headers={"MCP-Protocol-Version": V, "Accept": "text/event-stream"}, timeout=httpx.Timeout(15, read=3)
    )
    assert response.status_code == 405 and response.headers["allow"] == "POST"
    assert "id" not in response.json()


def test_resource_not_found_is_invalid_params(client: httpx.Client, url: str) -> None:
    error = error_of(send(client, url, body("resources/read", {"uri": "test://nope"}, id=3)), 200, -32602, 3)
    assert error["data"] == {"uri": "test://nope"}


def test_missing_capability_is_400(client: httpx.Client, url: str) -> None:
    error = error_of(
        send(client, url, body("tools/call", {"name": "test_missing_capability", "arguments": {}}, id=4)), 400, -32021, 4
    )
    assert error["data"]["requiredCapabilities"] == {"sampling": {}}


def sse_messages(response: httpx.Response) -> tuple[list[dict[str, Any]], list[str]]:
    """The JSON-RPC messages of an SSE answer and its non-data field lines (ids, retry)."""
    messages, fields = [], []
    for line in response.text.splitlines():
        if line.startswith("data:") and line[5:].strip():
            messages.append(json.loads(line[5:]))
        elif line.startswith(("id:", "retry:")):
            fields.append(line)
    return messages, fields


def test_progress_upgrades_to_sse_without_event_ids(client: httpx.Client, url: str) -> None:
    message = body(
        "tools/call", {"name": "test_tool_with_progress", "arguments": {}}, id=11, meta={**META, "progressToken": "p1"}
    )
    response = send(client, url, message, {"Last-Event-ID": "p1:1"})
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
    messages, fields = sse_messages(response)
    assert fields == []  # no event ids, no priming event, no retry: modern streams are not resumable
    assert [m.get("method") for m in messages[:-1]] == ["notifications/progress"] * (len(messages) - 1)
    assert messages[-1]["id"] == 11 and messages[-1]["result"]["resultType"] == "complete"


def test_logs_only_with_a_log_level(client: httpx.Client, url: str) -> None:
    call = body("tools/call", {"name": "test_logging_tool", "arguments": {}}, id=12)
    quiet = send(client, url, call)
    assert quiet.headers["content-type"].startswith("application/json"), quiet.text  # nothing sent before the result
    loud = send(
        client,
        url,
        body(
            "tools/call",
            {"name": "test_logging_tool", "arguments": {}},
            id=13,
            meta={**META, "io.modelcontextprotocol/logLevel": "debug"},
        ),
    )
    messages, _ = sse_messages(loud)
    assert any(m.get("method") == "notifications/message" for m in messages)


def test_closing_the_stream_cancels_the_request(client: httpx.Client, url: str) -> None:
    label = f"modern-{time.monotonic_ns()}"
    message = body("tools/call", {"name": "wait_until_cancelled", "arguments": {"label": label}}, id=14)
    with pytest.raises(httpx.ReadTimeout):
        send(client, url, message, timeout=httpx.Timeout(15, read=1))
    for _ in range(50):
        read = send(client, url, body("resources/read", {"uri": "test://cancelled"}, id=15))
        if label in read.json()["result"]["contents"][0]["text"]:
            return
        time.sleep(0.1)
    pytest.fail("the tool was not cancelled when its client closed the connection")


def test_audit_row_without_a_session(client: httpx.Client, url: str, daphne_server: LiveServer) -> None:
    marker = f"audit-{time.monotonic_ns()}"
    call = body(
        "tools/call", {"name": "json_schema_2020_12_tool", "arguments": {"name": marker, "email": "a@example.com"}}, id="audit"
    )
    assert send(client, url, call).status_code == 200
    database = Path(daphne_server.log_path).parent / "db.sqlite3"
    with sqlite3.connect(database) as db:
        rows = db.execute(
            "SELECT session_id, outcome, via FROM mcp_app_toolcall WHERE arguments LIKE ?", (f"%{marker}%",)
        ).fetchall()
    assert rows == [(None, "ok", "streamable_http")]
