"""The modern era's envelope (MCP 2026-07-28), without Django or HTTP: the era rule, the validation ladder
in its order, header value decoding and ``Mcp-Param-*`` matching (docs/design/mcp-2026-07-28.md, sections
1, 2 and 10)."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from mcp_app.protocol import jsonrpc
from mcp_app.protocol.envelope import (
    META_CLIENT_CAPABILITIES,
    META_CLIENT_INFO,
    META_LOG_LEVEL,
    META_PROTOCOL_VERSION,
    EnvelopeError,
    Headers,
    answer_status,
    check_param_headers,
    decode_header_value,
    era_of,
    error_response,
    param_header_problems,
    read_envelope,
    read_message,
)
from mcp_app.protocol.errors import HeaderMismatch
from mcp_app.protocol.versions import ALL_VERSIONS, Era

V = "2026-07-28"
METHODS = {"server/discover", "tools/list", "tools/call", "prompts/get", "resources/read"}


def meta(version: Any = V, capabilities: Any = None, **more: Any) -> dict[str, Any]:
    found = {META_PROTOCOL_VERSION: version, META_CLIENT_CAPABILITIES: {} if capabilities is None else capabilities}
    return {**found, **more}


def headers(**values: str | list[str]) -> Headers:
    pairs = []
    for name, value in values.items():
        for one in value if isinstance(value, list) else [value]:
            pairs.append((name.replace("_", "-").encode(), one.encode("latin-1")))
    return Headers.from_pairs(pairs)


def request(method: str = "tools/list", params: dict[str, Any] | None = None, request_id: int = 7) -> jsonrpc.Request:
    return jsonrpc.Request(request_id, method, {"_meta": meta()} if params is None else params)


def std(method: str = "tools/list", version: str = V, **more: str | list[str]) -> Headers:
    return headers(**{"mcp_protocol_version": version, "mcp_method": method, **more})


def refused(req: jsonrpc.Request, hdrs: Headers) -> EnvelopeError:
    with pytest.raises(EnvelopeError) as caught:
        read_envelope(req, hdrs, METHODS)
    assert caught.value.request_id == req.id  # every refusal echoes the id
    return caught.value


# -- the era rule ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("hdrs", "body", "era"),
    [
        ({"mcp_protocol_version": "2025-11-25"}, {"params": {"_meta": meta()}}, Era.HANDSHAKE),
        ({"mcp_protocol_version": "2024-11-05", "mcp_session_id": "s"}, None, Era.HANDSHAKE),
        ({"mcp_protocol_version": V}, None, Era.MODERN),
        ({"mcp_protocol_version": V, "mcp_session_id": "s"}, None, Era.MODERN),
        ({"mcp_protocol_version": "v999.0.0"}, None, Era.MODERN),
        # An unknown version within a session keeps the handshake era's answer (400, unsupported version).
        ({"mcp_protocol_version": "v999.0.0", "mcp_session_id": "s"}, None, Era.HANDSHAKE),
        ({"mcp_session_id": "s"}, {"params": {"_meta": meta()}}, Era.HANDSHAKE),
        ({}, {"params": {"_meta": meta()}}, Era.MODERN),
        ({}, {"method": "initialize", "params": {}}, Era.HANDSHAKE),
        ({}, None, Era.HANDSHAKE),
    ],
)
def test_era_rule(hdrs: dict[str, str], body: Any, era: Era) -> None:
    assert era_of(headers(**hdrs), body) is era


# -- rung 1 -----------------------------------------------------------------------------------------------
def test_one_message_per_post() -> None:
    with pytest.raises(EnvelopeError) as batch:
        read_message([{"jsonrpc": "2.0", "id": 1, "method": "tools/list"}])
    assert (batch.value.status, batch.value.code, batch.value.request_id) == (400, -32600, None)
    assert "id" not in batch.value.to_response()  # never "id": null in this era
    with pytest.raises(EnvelopeError) as answer:
        read_message({"jsonrpc": "2.0", "id": 3, "result": {}})
    assert (answer.value.status, answer.value.code, answer.value.request_id) == (400, -32600, 3)
    assert isinstance(read_message({"jsonrpc": "2.0", "method": "notifications/initialized"}), jsonrpc.Notification)
    assert isinstance(read_message({"jsonrpc": "2.0", "id": 1, "method": "x"}), jsonrpc.Request)


# -- rungs 2 to 5, in order -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "params",
    [
        {},
        {"_meta": "x"},
        {"_meta": {META_CLIENT_CAPABILITIES: {}}},
        {"_meta": {META_PROTOCOL_VERSION: V}},
        {"_meta": meta(version=20260728)},
        {"_meta": meta(capabilities=["sampling"])},
        {"_meta": meta(**{META_CLIENT_INFO: "me"})},
        {"_meta": meta(**{META_LOG_LEVEL: "loud"})},
    ],
)
def test_rung2_meta_is_invalid_params_before_anything_else(params: dict[str, Any]) -> None:
    # Even with every header wrong: _meta is checked first.
    error = refused(request("nope", params), headers())
    assert (error.status, error.code) == (400, -32602)


def test_client_info_is_optional_and_meta_is_read() -> None:
    env = read_envelope(
        request("tools/list", {"_meta": meta(capabilities={"sampling": {}}, **{META_LOG_LEVEL: "info"})}), std(), METHODS
    )
    assert (env.protocol_version, env.client_capabilities, env.client_info, env.log_level) == (V, {"sampling": {}}, {}, "info")
    assert env.id == "" and env.era is Era.MODERN


@pytest.mark.parametrize(
    "hdrs",
    [
        {"mcp_method": "tools/list"},  # no version header
        {"mcp_protocol_version": "2025-11-25", "mcp_method": "tools/list"},
        {"mcp_protocol_version": V},  # no Mcp-Method
        {"mcp_protocol_version": V, "mcp_method": "prompts/list"},
        {"mcp_protocol_version": V, "mcp_method": "TOOLS/LIST"},  # values are case-sensitive
        {"mcp_protocol_version": [V, V], "mcp_method": "tools/list"},  # duplicated routing header
        {"mcp_protocol_version": V, "mcp_method": ["tools/list", "tools/list"]},
    ],
)
def test_rung3_header_mismatch(hdrs: dict[str, Any]) -> None:
    error = refused(request(), headers(**hdrs))
    assert (error.status, error.code) == (400, -32020)


def test_rung3_before_rung4_and_rung4_data() -> None:
    # Header 2026-07-28 with _meta v999: the headers disagree (-32020), not the version (-32022).
    mismatch = refused(request("tools/list", {"_meta": meta("v999.0.0")}), std())
    assert mismatch.code == -32020
    unsupported = refused(request("tools/list", {"_meta": meta("v999.0.0")}), std(version="v999.0.0"))
    assert (unsupported.status, unsupported.code) == (400, -32022)
    assert unsupported.data == {"supported": list(ALL_VERSIONS), "requested": "v999.0.0"}
    # A handshake version in _meta with the same header is a modern request of a version not served here.
    handshake = refused(request("tools/list", {"_meta": meta("2025-11-25")}), std(version="2025-11-25"))
    assert handshake.code == -32022


@pytest.mark.parametrize("method", ["initialize", "ping", "logging/setLevel", "resources/subscribe", "nope"])
def test_rung5_unknown_method_is_404(method: str) -> None:
    error = refused(request(method), std(method))
    assert (error.status, error.code) == (404, -32601)


@pytest.mark.parametrize(
    ("method", "param", "value"),
    [("tools/call", "name", "add"), ("prompts/get", "name", "essay"), ("resources/read", "uri", "demo://x")],
)
def test_mcp_name(method: str, param: str, value: str) -> None:
    req = request(method, {"_meta": meta(), param: value})
    read_envelope(req, std(method, mcp_name=value), METHODS)
    read_envelope(req, std(method, mcp_name=f"  {value}\t"), METHODS)  # optional whitespace is stripped
    encoded = "=?base64?" + base64.b64encode(value.encode()).decode() + "?="
    read_envelope(req, std(method, mcp_name=encoded), METHODS)
    for bad in ({}, {"mcp_name": value.upper()}, {"mcp_name": [value, value]}):
        assert refused(req, std(method, **bad)).code == -32020
    # A header naming something the body lacks disagrees with it; without either, the handler says -32602.
    assert refused(request(method, {"_meta": meta()}), std(method, mcp_name=value)).code == -32020
    read_envelope(request(method, {"_meta": meta()}), std(method), METHODS)


def test_answer_status_by_code() -> None:
    assert answer_status(jsonrpc.response(1, {})) == 200
    assert answer_status(jsonrpc.error_response(1, {"code": -32602, "message": ""})) == 200
    for code, status in ((-32020, 400), (-32021, 400), (-32022, 400), (-32601, 404)):
        assert answer_status(jsonrpc.error_response(1, {"code": code, "message": ""})) == status
    assert error_response(None, {"code": 1, "message": ""}) == {"jsonrpc": "2.0", "error": {"code": 1, "message": ""}}
    assert error_response(0, {"code": 1, "message": ""})["id"] == 0


# -- header values ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("raw", "decoded"),
    [
        ("plain", "plain"),
        ("  padded \t", "padded"),
        ("=?base64?SGVsbG8=?=", "Hello"),
        ("=?base64?" + base64.b64encode("Grüße 日本".encode()).decode() + "?=", "Grüße 日本"),
        ("SGVsbG8=", "SGVsbG8="),  # no markers: a literal
        ("=?base64?SGVsbG8=", "=?base64?SGVsbG8="),  # one marker only: a literal
        ("=?BASE64?SGVsbG8=?=", "=?BASE64?SGVsbG8=?="),  # markers are lowercase
    ],
)
def test_decode_header_value(raw: str, decoded: str) -> None:
    assert decode_header_value(raw) == decoded


@pytest.mark.parametrize("raw", ["=?base64?SGVsbG8?=", "=?base64?SGVs!!!bG8=?=", "caf\xe9", "a\x01b", "=?base64?/w==?="])
def test_decode_header_value_refuses(raw: str) -> None:
    with pytest.raises(HeaderMismatch):
        decode_header_value(raw)


SCHEMA = {
    "type": "object",
    "properties": {
        "region": {"type": "string", "x-mcp-header": "Region"},
        "count": {"type": "integer", "x-mcp-header": "Count"},
        "dry": {"type": "boolean", "x-mcp-header": "Dry-Run"},
        "note": {"type": "string"},
    },
}


@pytest.mark.parametrize(
    ("arguments", "hdrs"),
    [
        ({"region": "eu-west"}, {"mcp_param_region": "eu-west"}),
        ({"region": "日本"}, {"mcp_param_region": "=?base64?" + base64.b64encode("日本".encode()).decode() + "?="}),
        ({"count": 42}, {"mcp_param_count": "42"}),
        ({"count": 42}, {"mcp_param_count": " 42 "}),
        ({"dry": True}, {"mcp_param_dry_run": "true"}),
        ({"dry": False}, {"mcp_param_dry_run": "false"}),
        ({"region": None, "note": "x"}, {}),  # null or absent: no header expected
        ({}, {"mcp_param_region": "ignored", "mcp_param_unknown": "x"}),
    ],
)
def test_param_headers_match(arguments: dict[str, Any], hdrs: dict[str, str]) -> None:
    check_param_headers(SCHEMA, arguments, headers(**hdrs))


@pytest.mark.parametrize(
    ("arguments", "hdrs"),
    [
        ({"region": "eu-west"}, {}),  # header missing
        ({"region": "eu-west"}, {"mcp_param_region": "us-east"}),
        ({"region": "eu-west"}, {"mcp_param_region": "EU-WEST"}),
        ({"count": 42}, {"mcp_param_count": "43"}),
        ({"count": 42}, {"mcp_param_count": "forty-two"}),
        ({"dry": True}, {"mcp_param_dry_run": "True"}),
        ({"region": "x"}, {"mcp_param_region": "=?base64?eA?="}),  # bad padding
        ({"region": "x"}, {"mcp_param_region": ["x", "x"]}),
    ],
)
def test_param_headers_mismatch(arguments: dict[str, Any], hdrs: dict[str, Any]) -> None:
    with pytest.raises(HeaderMismatch) as caught:
        check_param_headers(SCHEMA, arguments, headers(**hdrs))
    assert caught.value.code == -32020


# -- x-mcp-header annotations at registration -------------------------------------------------------------
@pytest.mark.parametrize(
    ("properties", "problem"),
    [
        ({"a": {"type": "string", "x-mcp-header": ""}}, "non-empty"),
        ({"a": {"type": "string", "x-mcp-header": "Bad Name"}}, "RFC 9110"),
        ({"a": {"type": "string", "x-mcp-header": "Région"}}, "RFC 9110"),
        ({"a": {"type": "string", "x-mcp-header": "X"}, "b": {"type": "string", "x-mcp-header": "x"}}, "already used"),
        ({"a": {"type": "object", "x-mcp-header": "A"}}, "string, integer or boolean"),
        ({"a": {"type": "number", "x-mcp-header": "A"}}, "string, integer or boolean"),
        ({"a": {"type": "array", "items": {"type": "string"}, "x-mcp-header": "A"}}, "string, integer or boolean"),
        ({"a": {"type": "object", "properties": {"b": {"type": "string", "x-mcp-header": "B"}}}}, "top-level"),
    ],
)
def test_invalid_param_header_annotations(properties: dict[str, Any], problem: str) -> None:
    problems = param_header_problems({"type": "object", "properties": properties})
    assert any(problem in p for p in problems), problems


def test_valid_param_header_annotations() -> None:
    schema = {
        "type": "object",
        "properties": {
            "region": {"type": "string", "x-mcp-header": "Region"},
            "count": {"anyOf": [{"type": "integer"}, {"type": "null"}], "x-mcp-header": "Count"},
            "dry": {"type": ["boolean", "null"], "x-mcp-header": "Dry-Run"},
            "note": {"type": "object"},
        },
    }
    assert param_header_problems(schema) == []
