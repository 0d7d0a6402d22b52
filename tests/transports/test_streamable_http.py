"""Wire tests of the Streamable HTTP endpoint (``/mcp``) against a real daphne process.

Every test talks HTTP to the session-scoped ``daphne_server`` with httpx, the way a client would:

- the happy path: initialize (session ids, version negotiation, schema-valid results), notifications,
  plain JSON answers, SSE answers when a tool emits progress or log messages, 2025-03-26 batches;
- every way a request can be wrong: body (parse errors, JSON Python reads but that is not JSON or not
  Unicode, non-JSON-RPC values, size limits), headers
  (Content-Type, Accept, MCP-Protocol-Version, Mcp-Session-Id, Host, Origin), HTTP method, session
  state (missing, unknown, ended, garbage ids), a second GET stream, bad method names and tool calls.

Each error is checked for its HTTP status *and* its JSON-RPC error code, for a readable message with no
traceback in it, and is followed by a good request, to show the server is still serving. (The
``daphne_server`` fixture also fails at teardown if the server logged a traceback during the run.)
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.live import LiveServer
from tests.wire import assert_valid

LATEST = "2025-11-25"
BATCH_VERSION = "2025-03-26"
MAX_BODY_SIZE = 4 * 1024 * 1024

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
SESSION_NOT_FOUND = -32001

# What every well-behaved client sends on a POST.
POST_HEADERS = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
CLIENT_INFO = {"name": "test_streamable_http", "version": "1.0"}


# -- fixtures and helpers ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=15) as c:
        yield c


@pytest.fixture
def url(daphne_server: LiveServer) -> str:
    return daphne_server.mcp_url


def rpc(method: str, params: dict[str, Any] | None = None, id: int | str | None = 1) -> dict[str, Any]:
    """A JSON-RPC request, or a notification when ``id`` is None."""
    message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
    if id is not None:
        message["id"] = id
    if params is not None:
        message["params"] = params
    return message


def initialize_params(version: str = LATEST) -> dict[str, Any]:
    return {"protocolVersion": version, "capabilities": {}, "clientInfo": CLIENT_INFO}


def post(client: httpx.Client, url: str, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    """POST ``body`` as JSON (or raw, when it is bytes) with the standard headers plus ``headers``."""
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.post(url, content=content, headers={**POST_HEADERS, **(headers or {})})


def open_session(client: httpx.Client, url: str, version: str = LATEST) -> dict[str, str]:
    """Initialize a session (and send notifications/initialized); return the headers its requests carry."""
    response = post(client, url, rpc("initialize", initialize_params(version)))
    assert response.status_code == 200, response.text
    negotiated = response.json()["result"]["protocolVersion"]
    headers = {"Mcp-Session-Id": response.headers["mcp-session-id"], "MCP-Protocol-Version": negotiated}
    initialized = post(client, url, rpc("notifications/initialized", id=None), headers)
    assert initialized.status_code == 202, initialized.text
    return headers


def refused_get(client: httpx.Client, url: str, headers: dict[str, Any]) -> httpx.Response:
    """A GET expected to be refused: a short read timeout makes a wrongly opened stream fail fast."""
    return client.get(url, headers=headers, timeout=httpx.Timeout(15, read=3))


def assert_readable(text: str) -> None:
    """A message meant for a person: non-empty, printable, and no leaked traceback."""
    assert isinstance(text, str) and text.strip(), f"empty message: {text!r}"
    assert text.isprintable(), f"unprintable message: {text!r}"
    assert "Traceback" not in text and 'File "' not in text, text


def assert_error(response: httpx.Response, status: int, code: int, request_id: int | str | None = None) -> str:
    """Check an HTTP error answer whose body is one JSON-RPC error; return the error message."""
    assert response.status_code == status, f"expected {status}, got {response.status_code}: {response.text}"
    assert "Traceback" not in response.text and 'File "' not in response.text, response.text
    assert response.headers.get("content-type", "").startswith("application/json"), response.headers
    body = response.json()
    assert isinstance(body, dict), body
    assert body.get("jsonrpc") == "2.0", body
    assert body.get("id", None) == request_id, body
    assert "result" not in body, body
    assert body["error"]["code"] == code, body
    assert_readable(body["error"]["message"])
    # JSON-RPC 2.0: "id" is always present, null when the request's id could not be read.
    assert_valid(body, "JSONRPCErrorResponse", LATEST)
    return body["error"]["message"]


def assert_serving(client: httpx.Client, url: str) -> None:
    """The server still answers a good request: a fresh initialize, then ping on that session."""
    headers = open_session(client, url)
    response = post(client, url, rpc("ping", id="still-serving"), headers)
    assert response.status_code == 200, response.text
    assert response.json() == {"jsonrpc": "2.0", "id": "still-serving", "result": {}}


def sse_messages(text: str) -> list[dict[str, Any]]:
    """The JSON-RPC messages of an SSE body, in order (``data:`` lines of each event, joined); events with
    empty data (priming events: an id to resume from, no message) carry none."""
    messages = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        data = [line[5:].removeprefix(" ") if line.startswith("data:") else None for line in block.split("\n")]
        data = [d for d in data if d is not None]
        if data and "\n".join(data):
            messages.append(json.loads("\n".join(data)))
    return messages


def tool_text(result: dict[str, Any]) -> str:
    return "".join(block["text"] for block in result["content"] if block["type"] == "text")


# -- initialize and notifications -------------------------------------------------------------------------
def test_initialize_returns_json_and_a_visible_ascii_session_id(client, url):
    ids = set()
    for _ in range(3):
        response = post(client, url, rpc("initialize", initialize_params()))
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("application/json")
        session_id = response.headers["mcp-session-id"]
        assert session_id and all(0x21 <= ord(c) <= 0x7E for c in session_id), session_id
        ids.add(session_id)
        body = response.json()
        assert body["id"] == 1 and body["result"]["protocolVersion"] == LATEST
        assert_valid(body, "JSONRPCResultResponse", LATEST)
        assert_valid(body["result"], "InitializeResult", LATEST)
    assert len(ids) == 3, "every initialize must start a new session"


@pytest.mark.parametrize(
    ("requested", "negotiated", "schema"),
    [
        ("2024-11-05", "2024-11-05", "2024-11-05"),
        ("2025-03-26", "2025-03-26", "2025-03-26"),
        ("2025-06-18", "2025-06-18", "2025-06-18"),
        ("2025-11-25", "2025-11-25", "2025-11-25"),
        ("1999-01-01", LATEST, LATEST),
        ("not-a-version", LATEST, LATEST),
    ],
)
def test_initialize_negotiates_the_protocol_version(client, url, requested, negotiated, schema):
    response = post(client, url, rpc("initialize", initialize_params(requested), id="init"))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["id"] == "init"
    assert body["result"]["protocolVersion"] == negotiated
    assert_valid(body["result"], "InitializeResult", schema)
    assert_valid(body, "JSONRPCResponse", schema)


@pytest.mark.parametrize(
    ("message", "code", "request_id"),
    [
        (rpc("initialize", {"capabilities": {}, "clientInfo": CLIENT_INFO}, id=3), INVALID_PARAMS, 3),
        (rpc("initialize", {**initialize_params(), "capabilities": "all"}, id=4), INVALID_PARAMS, 4),
        (rpc("initialize", initialize_params(), id=None), INVALID_REQUEST, None),
    ],
    ids=["no-protocolVersion", "capabilities-not-object", "initialize-as-notification"],
)
def test_bad_initialize_is_rejected(client, url, message, code, request_id):
    response = post(client, url, message)
    assert_error(response, 400, code, request_id)
    assert "mcp-session-id" not in response.headers
    assert_serving(client, url)


def test_initialized_notification_gets_202_with_empty_body(client, url):
    headers = open_session(client, url)
    response = post(client, url, rpc("notifications/initialized", id=None), headers)
    assert response.status_code == 202
    assert response.content == b""
    # An unknown notification is ignored, as JSON-RPC asks, and is accepted the same way.
    response = post(client, url, rpc("notifications/whatever", {"x": 1}, id=None), headers)
    assert response.status_code == 202
    assert response.content == b""


@pytest.mark.parametrize(
    "message",
    [
        {"jsonrpc": "2.0", "id": "no-such-request", "result": {}},
        {"jsonrpc": "2.0", "id": 12345, "error": {"code": -1, "message": "refused"}},
        rpc("notifications/cancelled", {"requestId": "no-such-request"}, id=None),
    ],
    ids=["client-result", "client-error", "cancel-unknown-request"],
)
def test_messages_needing_no_answer_get_202(client, url, message):
    headers = open_session(client, url)
    response = post(client, url, message, headers)
    assert response.status_code == 202
    assert response.content == b""
    assert post(client, url, rpc("ping"), headers).status_code == 200


def test_ping_answers_json(client, url):
    headers = open_session(client, url)
    response = post(client, url, rpc("ping", id=42), headers)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == {"jsonrpc": "2.0", "id": 42, "result": {}}
    assert_valid(response.json(), "JSONRPCResultResponse", LATEST)


# -- bodies -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "body",
    [
        b'{"jsonrpc": "2.0", "id": 1, "method": "ping"',
        b"{not json}",
        b"\xff\xfe\x00{}",
        b'{"jsonrpc": "2.0", "id": 1, "method": "p\xe9ng"}',
        b"",
        b"   \n",
        b"[" * 100_000 + b"]" * 100_000,
    ],
    ids=["truncated", "not-json", "invalid-utf8", "latin1-in-string", "empty", "whitespace", "nested-too-deeply"],
)
def test_unparseable_body_is_400_parse_error(client, url, body):
    headers = open_session(client, url)
    assert_error(post(client, url, body, headers), 400, PARSE_ERROR)
    # Parse errors come before the session lookup: no session header gives the same answer.
    assert_error(post(client, url, body), 400, PARSE_ERROR)
    assert_serving(client, url)


@pytest.mark.parametrize(
    ("body", "request_id"),
    [
        ({"foo": 1}, None),
        ({"jsonrpc": "1.0", "id": 5, "method": "ping"}, 5),
        ({"id": 6, "method": "ping"}, 6),
        ({"jsonrpc": "2.0", "id": 7, "method": 12}, 7),
        ({"jsonrpc": "2.0", "id": 8, "method": "ping", "params": [1, 2]}, 8),
        ({"jsonrpc": "2.0", "id": None, "method": "ping"}, None),
        ({"jsonrpc": "2.0", "id": 1.5, "method": "ping"}, None),
        ({"jsonrpc": "2.0", "id": True, "method": "ping"}, None),
        (1, None),
        ("ping", None),
        (None, None),
    ],
    ids=[
        "no-jsonrpc-fields",
        "jsonrpc-1.0",
        "no-jsonrpc",
        "method-not-string",
        "params-array",
        "null-id",
        "fractional-id",
        "boolean-id",
        "number",
        "string",
        "null",
    ],
)
def test_non_jsonrpc_body_is_400_invalid_request(client, url, body, request_id):
    headers = open_session(client, url)
    assert_error(post(client, url, body, headers), 400, INVALID_REQUEST, request_id)
    assert_serving(client, url)


def test_body_over_the_limit_with_content_length_is_413(client, url):
    headers = open_session(client, url)
    body = b'{"jsonrpc":"2.0","id":1,"method":"ping","params":{"pad":"' + b"x" * MAX_BODY_SIZE + b'"}}'
    response = post(client, url, body, headers)
    assert_error(response, 413, INVALID_REQUEST)
    assert_serving(client, url)


def test_chunked_body_over_the_limit_is_413(client, url):
    headers = open_session(client, url)
    chunk = b"x" * 65536

    def body() -> Iterator[bytes]:
        yield b'{"jsonrpc":"2.0","id":1,"method":"ping","params":{"pad":"'
        for _ in range(MAX_BODY_SIZE // len(chunk) + 1):
            yield chunk
        yield b'"}}'

    response = client.post(url, content=body(), headers={**POST_HEADERS, **headers})
    assert response.request.headers.get("transfer-encoding") == "chunked"
    assert "content-length" not in response.request.headers
    assert_error(response, 413, INVALID_REQUEST)
    assert_serving(client, url)


def test_large_body_under_the_limit_is_served(client, url):
    headers = open_session(client, url)
    text = "abc " * (256 * 1024)
    response = post(client, url, rpc("tools/call", {"name": "uppercase_text", "arguments": {"text": text}}), headers)
    assert response.status_code == 200
    assert tool_text(response.json()["result"]) == text.upper()


# -- JSON that parses in Python but must be refused before anything acts on it ---------------------------
def post_quick(client: httpx.Client, url: str, body: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
    """POST with a short read timeout: a response the server starts but never finishes fails fast."""
    try:
        return client.post(url, content=body, headers={**POST_HEADERS, **(headers or {})}, timeout=httpx.Timeout(10, read=2))
    except httpx.ReadTimeout:
        pytest.fail("the server started a response and never finished it (the client hangs)")


INIT_PREFIX = b'{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},'


@pytest.mark.parametrize(
    ("body", "needs_session"),
    [
        (b'{"jsonrpc":"2.0","id":1,"method":"ping","params":{"x":NaN}}', True),
        (b'{"jsonrpc":"2.0","id":1,"method":"ping","params":{"x":-Infinity}}', True),
        (INIT_PREFIX + b'"clientInfo":{"name":"c","version":NaN}}}', False),
    ],
    ids=["nan", "infinity", "nan-in-initialize"],
)
def test_non_standard_json_constants_are_parse_errors(client, url, body, needs_session):
    # NaN and Infinity are not JSON (RFC 8259), though Python's json module reads them.
    headers = open_session(client, url) if needs_session else {}
    assert_error(post_quick(client, url, body, headers), 400, PARSE_ERROR)
    assert_serving(client, url)


@pytest.mark.parametrize(
    "body",
    [
        b'{"jsonrpc":"2.0","id":1,"method":"ping","params":{"n":' + b"9" * 5000 + b"}}",
        b'{"jsonrpc":"2.0","id":' + b"9" * 5000 + b',"method":"ping"}',
    ],
    ids=["in-params", "as-id"],
)
def test_integer_too_long_to_read_is_a_parse_error(client, url, body):
    # Python refuses to read integers of more than 4300 digits (int_max_str_digits).
    headers = open_session(client, url)
    assert_error(post_quick(client, url, body, headers), 400, PARSE_ERROR)
    assert_serving(client, url)


@pytest.mark.parametrize(
    ("body", "needs_session"),
    [
        (b'{"jsonrpc":"2.0","id":1,"method":"no/such/\\ud800"}', True),
        (b'{"jsonrpc":"2.0","id":"\\udfff","method":"ping"}', True),
        (
            b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"uppercase_text","arguments":{"text":"a\\ud800"}}}',
            True,
        ),
        (INIT_PREFIX + b'"clientInfo":{"name":"\\ud800","version":"1"}}}', False),
    ],
    ids=["in-method", "in-id", "in-tool-argument", "in-initialize"],
)
def test_lone_surrogate_escape_is_a_parse_error(client, url, body, needs_session):
    # "\ud800" is an unpaired UTF-16 surrogate: it is no Unicode character and cannot be encoded as UTF-8,
    # so neither an answer echoing it nor a database row holding it can be written.
    headers = open_session(client, url) if needs_session else {}
    assert_error(post_quick(client, url, body, headers), 400, PARSE_ERROR)
    assert_serving(client, url)


# -- Content-Type and Accept ------------------------------------------------------------------------------
@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "text/json", None])
def test_wrong_content_type_is_415(client, url, content_type):
    headers = {**POST_HEADERS, **open_session(client, url)}
    headers.pop("Content-Type")
    if content_type is not None:
        headers["Content-Type"] = content_type
    response = client.post(url, content=json.dumps(rpc("ping")).encode(), headers=headers)
    assert_error(response, 415, INVALID_REQUEST)
    assert_serving(client, url)


def test_content_type_with_charset_is_accepted(client, url):
    headers = open_session(client, url)
    response = post(client, url, rpc("ping"), {**headers, "Content-Type": "application/json; charset=utf-8"})
    assert response.status_code == 200
    assert response.json()["result"] == {}


@pytest.mark.parametrize("accept", ["application/json", "text/event-stream", "text/html", "image/*"])
def test_post_accept_lacking_json_or_sse_is_406(client, url, accept):
    headers = open_session(client, url)
    response = post(client, url, rpc("ping"), {**headers, "Accept": accept})
    assert_error(response, 406, INVALID_REQUEST)
    assert_serving(client, url)


@pytest.mark.parametrize("accept", ["application/json, text/event-stream;q=0", "application/json;q=0, text/event-stream"])
def test_post_accept_refusing_json_or_sse_with_q0_is_406(client, url, accept):
    # RFC 9110, 12.4.2: a weight of 0 means "not acceptable".
    headers = open_session(client, url)
    response = post(client, url, rpc("ping"), {**headers, "Accept": accept})
    assert_error(response, 406, INVALID_REQUEST)
    assert_serving(client, url)


@pytest.mark.parametrize("accept", ["*/*", "application/*, text/*", "text/event-stream;q=0.9, application/json"])
def test_post_accept_wildcards_are_accepted(client, url, accept):
    headers = open_session(client, url)
    response = post(client, url, rpc("ping"), {**headers, "Accept": accept})
    assert response.status_code == 200
    assert response.json()["result"] == {}


def test_get_accept_json_is_406(client, url):
    headers = open_session(client, url)
    response = refused_get(client, url, {**headers, "Accept": "application/json"})
    assert_error(response, 406, INVALID_REQUEST)
    assert_serving(client, url)


# -- HTTP methods -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["PUT", "PATCH"])
def test_other_methods_are_405_with_allow(client, url, method):
    headers = {**POST_HEADERS, **open_session(client, url)}
    response = client.request(method, url, content=json.dumps(rpc("ping")).encode(), headers=headers)
    assert_error(response, 405, INVALID_REQUEST)
    allowed = {m.strip().upper() for m in response.headers["allow"].split(",")}
    assert {"GET", "POST", "DELETE"} <= allowed
    assert_serving(client, url)


# -- sessions ---------------------------------------------------------------------------------------------
def test_missing_session_id_is_400(client, url):
    open_session(client, url)
    assert_error(post(client, url, rpc("ping"), {"MCP-Protocol-Version": LATEST}), 400, INVALID_REQUEST)
    assert_error(post(client, url, rpc("tools/list")), 400, INVALID_REQUEST)
    assert_error(refused_get(client, url, {"Accept": "text/event-stream"}), 400, INVALID_REQUEST)
    assert_error(client.delete(url), 400, INVALID_REQUEST)
    assert_serving(client, url)


def test_unknown_session_id_is_404(client, url):
    headers = {"Mcp-Session-Id": "UnknownSessionId0123456789abcdefghijklmnopq"}
    assert_error(post(client, url, rpc("ping"), headers), 404, SESSION_NOT_FOUND)
    assert_error(refused_get(client, url, {**headers, "Accept": "text/event-stream"}), 404, SESSION_NOT_FOUND)
    assert_error(client.delete(url, headers=headers), 404, SESSION_NOT_FOUND)
    assert_serving(client, url)


def test_delete_ends_the_session(client, url):
    headers = open_session(client, url)
    response = client.delete(url, headers=headers)
    assert response.status_code == 204
    assert response.content == b""
    assert_error(post(client, url, rpc("ping", id=9), headers), 404, SESSION_NOT_FOUND)
    assert_error(post(client, url, rpc("notifications/initialized", id=None), headers), 404, SESSION_NOT_FOUND)
    assert_error(refused_get(client, url, {**headers, "Accept": "text/event-stream"}), 404, SESSION_NOT_FOUND)
    assert_error(client.delete(url, headers=headers), 404, SESSION_NOT_FOUND)
    assert_serving(client, url)


@pytest.mark.parametrize(
    "session_id",
    [
        "garbage",
        "x" * 129,
        "x" * 4000,
        "has space",
        "' OR '1'='1",
        "../../etc/passwd",
        "%00%ff",
        b"caf\xc3\xa9",
        b"\xff\xfe\x01",
    ],
    ids=["garbage", "129-chars", "4000-chars", "space", "sql", "path", "percent", "utf8-bytes", "control-bytes"],
)
def test_garbage_session_id_is_404_never_500(client, url, session_id):
    headers = {"Mcp-Session-Id": session_id}
    assert_error(
        client.post(url, content=json.dumps(rpc("ping")).encode(), headers={**POST_HEADERS, **headers}), 404, SESSION_NOT_FOUND
    )
    assert_error(refused_get(client, url, {**headers, "Accept": "text/event-stream"}), 404, SESSION_NOT_FOUND)
    assert_error(client.delete(url, headers=headers), 404, SESSION_NOT_FOUND)
    assert_serving(client, url)


# -- MCP-Protocol-Version ---------------------------------------------------------------------------------
@pytest.mark.parametrize("version", ["1999-01-01", "2025-11-26", "latest", "x" * 500])
def test_unsupported_protocol_version_header_is_400(client, url, version):
    headers = {**open_session(client, url), "MCP-Protocol-Version": version}
    message = assert_error(post(client, url, rpc("ping"), headers), 400, INVALID_REQUEST)
    assert len(message) < 400, "the message must not echo an arbitrarily long header"
    assert_error(refused_get(client, url, {**headers, "Accept": "text/event-stream"}), 400, INVALID_REQUEST)
    assert_error(client.delete(url, headers=headers), 400, INVALID_REQUEST)
    # A rejected DELETE left the session alone.
    headers["MCP-Protocol-Version"] = LATEST
    assert post(client, url, rpc("ping"), headers).status_code == 200
    assert_serving(client, url)


@pytest.mark.parametrize("version", [None, "2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"])
def test_absent_or_supported_protocol_version_header_is_accepted(client, url, version):
    headers = open_session(client, url)
    if version is None:
        del headers["MCP-Protocol-Version"]
    else:
        headers["MCP-Protocol-Version"] = version
    response = post(client, url, rpc("ping", id="v"), headers)
    assert response.status_code == 200, response.text
    assert response.json() == {"jsonrpc": "2.0", "id": "v", "result": {}}


# -- Host and Origin --------------------------------------------------------------------------------------
def test_bad_origin_is_403(client, url):
    evil = {"Origin": "http://evil.example.com"}
    assert_error(post(client, url, rpc("initialize", initialize_params()), evil), 403, INVALID_REQUEST)
    headers = open_session(client, url)
    assert_error(post(client, url, rpc("ping"), {**headers, **evil}), 403, INVALID_REQUEST)
    assert_error(refused_get(client, url, {**headers, **evil, "Accept": "text/event-stream"}), 403, INVALID_REQUEST)
    assert_error(client.delete(url, headers={**headers, **evil}), 403, INVALID_REQUEST)
    # The forbidden DELETE did not end the session.
    assert post(client, url, rpc("ping"), headers).status_code == 200
    assert_serving(client, url)


@pytest.mark.parametrize("origin", ["null", "file://", "http://127.0.0.1", "http://127.0.0.1:1", "https://localhost"])
def test_origins_other_than_the_host_are_403(client, url, origin):
    assert_error(post(client, url, rpc("initialize", initialize_params()), {"Origin": origin}), 403, INVALID_REQUEST)
    assert_serving(client, url)


def test_origin_equal_to_host_is_accepted(client, url, daphne_server):
    origin = {"Origin": f"http://127.0.0.1:{daphne_server.port}"}
    response = post(client, url, rpc("initialize", initialize_params()), origin)
    assert response.status_code == 200, response.text
    headers = {"Mcp-Session-Id": response.headers["mcp-session-id"], "MCP-Protocol-Version": LATEST, **origin}
    response = post(client, url, rpc("ping"), headers)
    assert response.status_code == 200
    assert client.delete(url, headers=headers).status_code == 204


@pytest.mark.parametrize("host", ["evil.example.com", "evil.example.com:80", "127.0.0.1.evil.example.com"])
def test_bad_host_is_421(client, url, host):
    bad = {"Host": host}
    assert_error(post(client, url, rpc("initialize", initialize_params()), bad), 421, INVALID_REQUEST)
    headers = open_session(client, url)
    assert_error(post(client, url, rpc("ping"), {**headers, **bad}), 421, INVALID_REQUEST)
    assert_error(refused_get(client, url, {**headers, **bad, "Accept": "text/event-stream"}), 421, INVALID_REQUEST)
    assert_error(client.delete(url, headers={**headers, **bad}), 421, INVALID_REQUEST)
    assert post(client, url, rpc("ping"), headers).status_code == 200
    assert_serving(client, url)


def test_host_and_origin_are_checked_before_the_session(client, url):
    unknown = {"Mcp-Session-Id": "no-such-session"}
    assert_error(post(client, url, rpc("ping"), {**unknown, "Host": "evil.example.com"}), 421, INVALID_REQUEST)
    assert_error(post(client, url, rpc("ping"), {**unknown, "Origin": "http://evil.example.com"}), 403, INVALID_REQUEST)
    # ... and before the body is parsed.
    assert_error(post(client, url, b"{not json", {"Host": "evil.example.com"}), 421, INVALID_REQUEST)
    assert_serving(client, url)


# -- the GET stream ---------------------------------------------------------------------------------------
def _read_until(chunks: Iterator[bytes], marker: bytes) -> bytes:
    """Read an open stream until ``marker``; ``chunks`` is kept by the caller so the stream stays open."""
    seen = b""
    for chunk in chunks:
        seen += chunk
        if marker in seen:
            return seen
    raise AssertionError(f"the stream ended before {marker!r}: {seen!r}")


def test_second_get_stream_is_409_while_the_first_is_open(client, url):
    headers = {**open_session(client, url), "Accept": "text/event-stream"}
    with httpx.Client(timeout=10) as stream_client, stream_client.stream("GET", url, headers=headers) as first:
        assert first.status_code == 200
        assert first.headers["content-type"].startswith("text/event-stream")
        chunks = first.iter_raw()
        assert b"retry:" in _read_until(chunks, b"\n\n")
        assert_error(refused_get(client, url, headers), 409, INVALID_REQUEST)
        # POSTs on the session are not affected by the open stream.
        assert post(client, url, rpc("ping"), headers | {"Accept": POST_HEADERS["Accept"]}).status_code == 200
    # The server notices the disconnect asynchronously: a new GET is accepted again shortly after.
    deadline = time.monotonic() + 5
    while True:
        with httpx.Client(timeout=10) as stream_client, stream_client.stream("GET", url, headers=headers) as again:
            if again.status_code == 200:
                assert b"retry:" in _read_until(again.iter_raw(), b"\n\n")
                break
            again.read()
            assert_error(again, 409, INVALID_REQUEST)
        assert time.monotonic() < deadline, "the closed stream was never released"
        time.sleep(0.05)
    assert_serving(client, url)


def test_delete_closes_the_open_get_stream(client, url):
    headers = {**open_session(client, url), "Accept": "text/event-stream"}
    with httpx.Client(timeout=10) as stream_client, stream_client.stream("GET", url, headers=headers) as stream:
        assert stream.status_code == 200
        chunks = stream.iter_raw()
        _read_until(chunks, b"\n\n")
        assert client.delete(url, headers=headers).status_code == 204
        rest = b"".join(chunks)  # ends (rather than timing out) once the session is gone
        assert b"Traceback" not in rest
    assert_serving(client, url)


# -- batches ----------------------------------------------------------------------------------------------
def test_batch_is_rejected_on_a_2025_11_25_session(client, url):
    headers = open_session(client, url)
    assert_error(post(client, url, [rpc("ping", id=1), rpc("tools/list", id=2)], headers), 400, INVALID_REQUEST)
    assert_error(post(client, url, [1, 2], headers), 400, INVALID_REQUEST)
    assert post(client, url, rpc("ping"), headers).status_code == 200
    assert_serving(client, url)


def test_batch_is_answered_on_a_2025_03_26_session(client, url):
    headers = open_session(client, url, BATCH_VERSION)
    assert headers["MCP-Protocol-Version"] == BATCH_VERSION
    response = post(client, url, [rpc("ping", id="a"), rpc("tools/list", id="b")], headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    answers = response.json()
    assert isinstance(answers, list) and len(answers) == 2
    by_id = {answer["id"]: answer for answer in answers}
    assert set(by_id) == {"a", "b"}
    assert by_id["a"]["result"] == {}
    assert any(tool["name"] == "uppercase_text" for tool in by_id["b"]["result"]["tools"])
    assert_valid(answers, "JSONRPCBatchResponse", BATCH_VERSION)
    assert_valid(by_id["b"]["result"], "ListToolsResult", BATCH_VERSION)


def test_batch_with_notifications_and_invalid_items_on_a_2025_03_26_session(client, url):
    headers = open_session(client, url, BATCH_VERSION)
    # Notifications are not answered; only the request is.
    response = post(client, url, [rpc("notifications/initialized", id=None), rpc("ping", id=1)], headers)
    assert response.status_code == 200
    assert response.json() == [{"jsonrpc": "2.0", "id": 1, "result": {}}]
    # Only notifications: nothing to answer.
    response = post(client, url, [rpc("notifications/initialized", id=None)], headers)
    assert response.status_code == 202 and response.content == b""
    # An invalid item gets its own error beside the valid request's answer.
    response = post(client, url, [{"foo": 1}, rpc("ping", id=2)], headers)
    assert response.status_code == 200
    answers = response.json()
    assert len(answers) == 2
    errors = [a for a in answers if "error" in a]
    assert len(errors) == 1 and errors[0]["error"]["code"] == INVALID_REQUEST and errors[0]["id"] is None
    assert_readable(errors[0]["error"]["message"])
    assert {"jsonrpc": "2.0", "id": 2, "result": {}} in answers
    # Only invalid items: 400 with one error each.
    response = post(client, url, [1, 2], headers)
    assert response.status_code == 400
    answers = response.json()
    assert [a["error"]["code"] for a in answers] == [INVALID_REQUEST, INVALID_REQUEST]
    for answer in answers:
        assert answer["id"] is None
        assert_readable(answer["error"]["message"])
    assert_serving(client, url)


@pytest.mark.parametrize("version", [BATCH_VERSION, LATEST])
def test_batch_with_initialize_is_400(client, url, version):
    headers = open_session(client, url, version)
    batch = [rpc("initialize", initialize_params(BATCH_VERSION), id=1), rpc("ping", id=2)]
    assert_error(post(client, url, batch, headers), 400, INVALID_REQUEST)
    assert_error(post(client, url, batch), 400, INVALID_REQUEST)
    assert_serving(client, url)


def test_empty_batch_is_400(client, url):
    headers = open_session(client, url, BATCH_VERSION)
    assert_error(post(client, url, [], headers), 400, INVALID_REQUEST)
    assert_serving(client, url)


# -- methods and tool calls -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("method", "hint"),
    [
        ("no/such/method", "no/such/method"),
        ("listTools", "tools/list"),
        ("callTool", "tools/call"),
    ],
)
def test_unknown_method_is_200_method_not_found(client, url, method, hint):
    headers = open_session(client, url)
    message = assert_error(post(client, url, rpc(method, {}, id=11), headers), 200, METHOD_NOT_FOUND, 11)
    assert hint in message
    assert_serving(client, url)


@pytest.mark.parametrize(
    "params",
    [
        {"name": "no_such_tool", "arguments": {}},
        {"arguments": {"text": "x"}},
        {"name": 5},
        {"name": "uppercase_text", "arguments": "hello"},
        {"name": "uppercase_text", "arguments": ["hello"]},
    ],
    ids=["unknown-tool", "no-name", "name-not-string", "arguments-string", "arguments-array"],
)
def test_bad_tools_call_is_invalid_params(client, url, params):
    headers = open_session(client, url)
    assert_error(post(client, url, rpc("tools/call", params, id="c"), headers), 200, INVALID_PARAMS, "c")
    assert_serving(client, url)


@pytest.mark.parametrize(
    "arguments", [{"text": 5}, {}, {"text": None}, {"text": ["a"]}], ids=["number", "missing", "null", "array"]
)
def test_bad_tool_arguments_are_an_error_result_naming_the_argument(client, url, arguments):
    headers = open_session(client, url)
    response = post(client, url, rpc("tools/call", {"name": "uppercase_text", "arguments": arguments}), headers)
    assert response.status_code == 200
    body = response.json()
    assert "error" not in body, body
    result = body["result"]
    assert result["isError"] is True
    text = tool_text(result)
    assert_readable(text.replace("\n", " "))
    assert "text" in text
    assert_valid(result, "CallToolResult", LATEST)
    assert_serving(client, url)


def test_tools_call_answers_json(client, url):
    headers = open_session(client, url)
    response = post(client, url, rpc("tools/call", {"name": "uppercase_text", "arguments": {"text": "hi"}}), headers)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    result = response.json()["result"]
    assert tool_text(result) == "HI" and not result.get("isError")
    assert_valid(result, "CallToolResult", LATEST)


def test_whole_answers_carry_their_length_and_are_not_sent_chunked(client, url):
    """A JSON answer and a 202 declare their length (one write fewer for the server than a chunked answer's
    end); a 204 declares none, as RFC 9110 requires."""
    headers = open_session(client, url)
    response = post(client, url, rpc("tools/call", {"name": "uppercase_text", "arguments": {"text": "hi"}}), headers)
    assert response.status_code == 200 and tool_text(response.json()["result"]) == "HI"
    assert response.headers["content-length"] == str(len(response.content))
    assert "transfer-encoding" not in response.headers
    accepted = post(client, url, {"jsonrpc": "2.0", "method": "notifications/initialized"}, headers)
    assert accepted.status_code == 202 and accepted.content == b""
    assert accepted.headers["content-length"] == "0" and "transfer-encoding" not in accepted.headers
    ended = client.delete(url, headers=headers)
    assert ended.status_code == 204 and "content-length" not in ended.headers


# -- SSE answers ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("token", ["progress-token-1", 99])
def test_progress_makes_the_answer_an_event_stream(client, url, token):
    headers = open_session(client, url)
    params = {"name": "test_tool_with_progress", "arguments": {}, "_meta": {"progressToken": token}}
    response = post(client, url, rpc("tools/call", params, id="p"), headers)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    messages = sse_messages(response.text)
    *progress, final = messages
    assert len(progress) == 3, messages
    for notification in progress:
        assert notification["method"] == "notifications/progress"
        assert notification["params"]["progressToken"] == token
        assert "id" not in notification
        assert_valid(notification, "ProgressNotification", LATEST)
    assert [n["params"]["progress"] for n in progress] == [0, 50, 100]
    assert final["id"] == "p"
    assert tool_text(final["result"]) == str(token)
    assert_valid(final, "JSONRPCResultResponse", LATEST)
    assert_valid(final["result"], "CallToolResult", LATEST)


def test_progress_tool_without_token_answers_json(client, url):
    headers = open_session(client, url)
    params = {"name": "test_tool_with_progress", "arguments": {}}
    response = post(client, url, rpc("tools/call", params, id="np"), headers)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["id"] == "np" and "result" in body and not body["result"].get("isError")


def test_logging_tool_answers_an_event_stream(client, url):
    headers = open_session(client, url)
    response = post(client, url, rpc("tools/call", {"name": "test_tool_with_logging", "arguments": {}}, id=3), headers)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    *logs, final = sse_messages(response.text)
    assert [m["method"] for m in logs] == ["notifications/message"] * 3
    assert [m["params"]["data"] for m in logs] == [
        "Tool execution started",
        "Tool processing data",
        "Tool execution completed",
    ]
    for message in logs:
        assert_valid(message, "LoggingMessageNotification", LATEST)
    assert final["id"] == 3
    assert tool_text(final["result"]) == "Tool with logging executed successfully"


# -- concurrency ------------------------------------------------------------------------------------------
async def test_concurrent_requests_with_the_same_id_get_their_own_answers(daphne_server):
    url = daphne_server.mcp_url
    with httpx.Client(timeout=15) as sync_client:
        headers = {**POST_HEADERS, **open_session(sync_client, url)}

    async def call(client: httpx.AsyncClient, text: str) -> str:
        body = rpc("tools/call", {"name": "uppercase_text", "arguments": {"text": text}}, id=7)
        response = await client.post(url, json=body, headers=headers)
        assert response.status_code == 200, response.text
        answer = response.json()
        assert answer["id"] == 7
        return tool_text(answer["result"])

    texts = ["alpha", "beta"] * 20
    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=len(texts))) as client:
        answers = await asyncio.gather(*(call(client, text) for text in texts))
    assert answers == [text.upper() for text in texts]


# -- a client that goes away --------------------------------------------------------------------------------
def _cancelled_labels(client: httpx.Client, url: str, headers: dict[str, str]) -> str:
    return post(client, url, rpc("resources/read", {"uri": "test://cancelled"}), headers).json()["result"]["contents"][0]["text"]


def test_client_leaving_mid_call_does_not_cancel_the_handler(client, url):
    # 2025-03-26 and later: "Disconnection SHOULD NOT be interpreted as the client cancelling its request";
    # the request goes on (its later events are kept for a resume), and notifications/cancelled stops it.
    headers = open_session(client, url)
    label = f"stays-{time.time_ns()}"
    with pytest.raises(httpx.ReadTimeout), httpx.Client(timeout=httpx.Timeout(5, read=0.3)) as impatient:
        post(
            impatient, url, rpc("tools/call", {"name": "wait_until_cancelled", "arguments": {"label": label}}, id="left"), headers
        )
    time.sleep(1.5)  # well past the moment the server noticed the disconnect
    assert label not in _cancelled_labels(client, url, headers), "a dropped connection cancelled the request"
    assert post(client, url, rpc("notifications/cancelled", {"requestId": "left"}, id=None), headers).status_code == 202
    deadline = time.monotonic() + 5
    while label not in _cancelled_labels(client, url, headers):
        assert time.monotonic() < deadline, "notifications/cancelled did not stop the detached request"
        time.sleep(0.05)
    assert_serving(client, url)


@pytest.mark.parametrize(
    "leaves_after",
    [
        # Before the watcher starts (WATCH_DISCONNECT_AFTER, 50 ms into a request): noticed when it starts.
        pytest.param(0.005, id="before-the-watcher-starts"),
        pytest.param(0.3, id="mid-call"),
    ],
)
def test_client_leaving_mid_call_cancels_the_handler_of_a_2024_session(client, url, leaves_after):
    # 2024-11-05 on /mcp has no resumable streams: an answer nobody can fetch is not worth computing.
    headers = open_session(client, url, version="2024-11-05")
    label = f"gone-{time.time_ns()}"
    with pytest.raises(httpx.ReadTimeout), httpx.Client(timeout=httpx.Timeout(5, read=leaves_after)) as impatient:
        post(impatient, url, rpc("tools/call", {"name": "wait_until_cancelled", "arguments": {"label": label}}), headers)
    deadline = time.monotonic() + 5
    while label not in _cancelled_labels(client, url, headers):
        assert time.monotonic() < deadline, f"the server kept running the handler of a client that left after {leaves_after}s"
        time.sleep(0.05)
    assert_serving(client, url)
