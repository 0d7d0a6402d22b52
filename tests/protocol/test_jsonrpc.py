"""JSON-RPC framing: parse errors and invalid messages get the right codes and readable messages."""

from __future__ import annotations

import pytest

from mcp_app.protocol import jsonrpc
from mcp_app.protocol.errors import INVALID_REQUEST, PARSE_ERROR, ParseError


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"{not json", "invalid JSON at line 1"),
        (b"\xff\xfe{}", "not valid UTF-8"),
        (b"", "body is empty"),
        (b"   ", "body is empty"),
        (b"[" * 100_000, "nested too deeply"),
        (b'{"id": NaN}', "NaN is not valid JSON"),
        (b'{"x": -Infinity}', "-Infinity is not valid JSON"),
        (b'{"id": ' + b"9" * 5000 + b"}", "too large to read"),
        (b'{"method": "\\ud800"}', "lone UTF-16 surrogate"),
        # Numbers past a double's range would become infinity, which no JSON (and no audit row) can hold.
        (b'{"x": 1e999}', "number 1e999 is too large"),
        (b'{"x": -1e999}', "number -1e999 is too large"),
        (b'{"a": {"b": [1, {"c": 1E400}]}}', "number 1E400 is too large"),
        (b'{"x": 1.8e308}', "number 1.8e308 is too large"),
        (b'{"x": -' + b"9" * 400 + b".5}", "is too large"),
    ],
)
def test_loads_parse_errors(body: bytes, fragment: str) -> None:
    with pytest.raises(ParseError) as info:
        jsonrpc.loads(body)
    assert info.value.code == PARSE_ERROR
    assert fragment in info.value.message


@pytest.mark.parametrize(
    ("obj", "fragment", "echo_id"),
    [
        ([1], "expected a JSON-RPC message object", None),
        ("ping", "expected a JSON-RPC message object", None),
        ({"id": 1, "method": "ping"}, '"jsonrpc" must be exactly "2.0"', 1),
        ({"jsonrpc": "1.0", "id": 1, "method": "ping"}, '"jsonrpc" must be exactly "2.0"', 1),
        ({"jsonrpc": "2.0", "id": 2, "method": 5}, '"method" must be a non-empty string', 2),
        ({"jsonrpc": "2.0", "id": 2, "method": ""}, '"method" must be a non-empty string', 2),
        ({"jsonrpc": "2.0", "id": 3, "method": "ping", "params": [1]}, '"params" must be an object', 3),
        ({"jsonrpc": "2.0", "id": None, "method": "ping"}, '"id" must be a string or an integer', None),
        ({"jsonrpc": "2.0", "id": 1.5, "method": "ping"}, '"id" must be a string or an integer', None),
        ({"jsonrpc": "2.0", "id": True, "method": "ping"}, '"id" must be a string or an integer', None),
        ({"jsonrpc": "2.0", "id": 4, "result": {}, "error": {"code": 1}}, "exactly one of", 4),
        ({"jsonrpc": "2.0", "id": 4, "result": 7}, '"result" must be an object', 4),
        ({"jsonrpc": "2.0", "id": 4, "error": {"message": "x"}}, 'integer "code"', 4),
        ({"jsonrpc": "2.0", "result": {}}, "needs a string or integer", None),
        ({"jsonrpc": "2.0", "id": 9}, 'needs "method"', 9),
    ],
)
def test_invalid_messages(obj: object, fragment: str, echo_id: object) -> None:
    with pytest.raises(jsonrpc.InvalidMessage) as info:
        jsonrpc.parse_message(obj)
    assert info.value.code == INVALID_REQUEST
    assert fragment in info.value.message
    assert info.value.request_id == echo_id


def test_parse_kinds() -> None:
    request = jsonrpc.parse_message({"jsonrpc": "2.0", "id": "a", "method": "tools/list", "params": {"_meta": {"x": 1}}})
    assert isinstance(request, jsonrpc.Request)
    assert (request.id, request.method, request.meta) == ("a", "tools/list", {"x": 1})
    note = jsonrpc.parse_message({"jsonrpc": "2.0", "method": "notifications/initialized"})
    assert isinstance(note, jsonrpc.Notification) and note.params == {}
    response = jsonrpc.parse_message({"jsonrpc": "2.0", "id": 5, "result": {"ok": True}})
    assert isinstance(response, jsonrpc.Response) and response.result == {"ok": True} and response.error is None
    error = jsonrpc.parse_message({"jsonrpc": "2.0", "id": 5, "error": {"code": -1, "message": "no"}})
    assert isinstance(error, jsonrpc.Response) and error.error == {"code": -1, "message": "no"}


def test_numbers_within_range_are_kept() -> None:
    assert jsonrpc.loads(b"[1.7976931348623157e308, -2.5e-300, 1e-999, 12345678901234567890]") == [
        1.7976931348623157e308,
        -2.5e-300,
        0.0,
        12345678901234567890,
    ]


def test_the_overflow_message_names_the_number_briefly() -> None:
    with pytest.raises(ParseError) as info:
        jsonrpc.loads(b'{"x": 1' + b"0" * 2000 + b".0}")
    assert len(info.value.message) < 200 and "finite" in info.value.message


def test_deep_nesting_is_a_parse_error_at_any_depth() -> None:
    for depth in (5_000, 100_000, 1_000_000):
        for opener, closer in ((b"[", b"]"), (b'{"a":', b"}")):
            with pytest.raises(ParseError) as info:
                jsonrpc.loads(opener * depth + b"1" + closer * depth)
            assert info.value.code == PARSE_ERROR and "nested too deeply" in info.value.message


def test_paired_surrogate_escapes_are_fine() -> None:
    assert jsonrpc.loads(b'{"text": "\\ud83d\\ude00"}') == {"text": "\U0001f600"}


def test_encode_never_fails_on_lone_surrogates_from_handlers() -> None:
    assert jsonrpc.encode({"text": "a\ud800"}) == b'{"text":"a\\ud800"}'
    assert jsonrpc.encode({"text": "é"}) == '{"text":"é"}'.encode()


def test_builders_are_strict_envelopes() -> None:
    # Clients reject envelopes with extra keys (e.g. "error": null next to "result").
    assert jsonrpc.response(1, {}) == {"jsonrpc": "2.0", "id": 1, "result": {}}
    assert set(jsonrpc.error_response(None, {"code": -32600, "message": "m"})) == {"jsonrpc", "id", "error"}
    assert jsonrpc.notification("x") == {"jsonrpc": "2.0", "method": "x"}
    assert jsonrpc.dumps({"a": "é\n"}) == '{"a":"é\\n"}'
