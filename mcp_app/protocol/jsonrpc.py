"""JSON-RPC 2.0 framing: parse bodies into typed messages and build outgoing ones.

Nothing here knows about MCP methods; :mod:`mcp_app.protocol.dispatcher` does.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from .errors import InvalidRequest, ParseError

JSONRPC_VERSION = "2.0"


@dataclass(frozen=True, slots=True)
class Request:
    """A JSON-RPC request: it has an id and expects exactly one response."""

    id: str | int
    method: str
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def meta(self) -> dict[str, Any]:
        meta = self.params.get("_meta")
        return meta if isinstance(meta, dict) else {}


@dataclass(frozen=True, slots=True)
class Notification:
    """A JSON-RPC notification: no id, never answered."""

    method: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Response:
    """A response from the peer to one of our requests (``result`` or ``error``)."""

    id: str | int
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None


Message: TypeAlias = "Request | Notification | Response"


class InvalidMessage(InvalidRequest):
    """A structurally invalid JSON-RPC message; ``request_id`` is echoed when it could be read."""

    def __init__(self, message: str, request_id: str | int | None = None) -> None:
        super().__init__(message)
        self.request_id = request_id


# A \uD800-\uDFFF escape: decoded alone it is a lone surrogate, which no UTF-8 text (or database) can hold.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _reject_constant(name: str) -> Any:
    raise ParseError(f"Parse error: {name} is not valid JSON; send numbers as finite decimals.")


def _finite_float(text: str) -> float:
    # float("1e999") is infinity: refuse it like the Infinity literal, or it would reach tools as inf and
    # fail later where JSON is written again (the audit log's JSON column refuses it).
    value = float(text)
    if math.isinf(value):
        shown = text if len(text) <= 40 else f"{text[:20]}...{text[-10:]}"
        raise ParseError(
            f"Parse error: the number {shown} is too large (beyond a 64-bit float); send finite numbers within about ±1.8e308."
        )
    return value


# Built once: json.loads and json.dumps with options build a decoder or encoder on every call. Both are
# stateless between calls, so sharing them across threads is safe.
# One Python call per float (about 0.25 µs): cheaper than any scan of the body for a big exponent.
_DECODER = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_finite_float)
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=str)


def loads(body: bytes | str) -> Any:
    """Decode a request body as strict UTF-8 JSON (RFC 8259), raising :class:`ParseError` with a readable reason.

    Stricter than :func:`json.loads`: NaN and Infinity are refused, and so are numbers that overflow a
    64-bit float (``1e999``), nesting deeper than the parser's recursion limit, and lone surrogate escapes.
    """
    if isinstance(body, bytes):
        try:
            body = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ParseError(f"Parse error: the body is not valid UTF-8 (byte {exc.start}).") from None
    if not body.strip():
        raise ParseError("Parse error: the body is empty; send one JSON-RPC message as JSON.")
    try:
        value = _DECODER.decode(body)
    except json.JSONDecodeError as exc:
        raise ParseError(f"Parse error: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}.") from None
    except RecursionError:
        # The C parser recurses once per level: about 1,000 levels (fewer as the stack is deeper) end here.
        raise ParseError(
            "Parse error: the JSON is nested too deeply; keep arrays and objects within a few hundred levels."
        ) from None
    except ValueError:  # e.g. an integer with more digits than Python converts
        raise ParseError("Parse error: a number in the JSON is too large to read.") from None
    # Paired surrogate escapes (emoji) decode to one character; only lone ones survive to fail here.
    if _SURROGATE_ESCAPE.search(body):
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise ParseError("Parse error: the JSON holds a lone UTF-16 surrogate escape (\\uD800-\\uDFFF).") from None
    return value


def dumps(message: Any) -> str:
    """Serialize a message compactly (no spaces: it travels on every SSE event)."""
    return _ENCODER.encode(message)


def encode(message: Any) -> bytes:
    """A message as UTF-8 bytes; text a handler made with lone surrogates goes out \\u-escaped instead of failing."""
    text = dumps(message)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(message, separators=(",", ":"), default=str).encode("ascii")


def _valid_id(value: Any) -> bool:
    # MCP restricts JSON-RPC ids to strings and integers (never null, never fractional).
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


def parse_message(obj: Any) -> Message:
    """Turn one decoded JSON value into a Request, Notification or Response.

    Raises :class:`InvalidMessage` (code -32600) naming what is wrong.
    """
    if not isinstance(obj, dict):
        raise InvalidMessage(f"Invalid Request: expected a JSON-RPC message object, got {type(obj).__name__}.")
    raw_id = obj.get("id")
    echo_id = raw_id if _valid_id(raw_id) else None
    if obj.get("jsonrpc") != JSONRPC_VERSION:
        raise InvalidMessage('Invalid Request: "jsonrpc" must be exactly "2.0".', echo_id)
    if "method" in obj:
        method = obj["method"]
        if not isinstance(method, str) or not method:
            raise InvalidMessage('Invalid Request: "method" must be a non-empty string.', echo_id)
        params = obj.get("params", {})
        if params is None:
            params = {}
        if not isinstance(params, dict):
            raise InvalidMessage('Invalid Request: "params" must be an object when present.', echo_id)
        if "id" not in obj:
            return Notification(method, params)
        if not _valid_id(raw_id):
            raise InvalidMessage('Invalid Request: "id" must be a string or an integer.')
        return Request(raw_id, method, params)
    if "result" in obj or "error" in obj:
        if not _valid_id(raw_id):
            raise InvalidMessage('Invalid Request: a response needs a string or integer "id".')
        result, error = obj.get("result"), obj.get("error")
        if ("result" in obj) == ("error" in obj):
            raise InvalidMessage('Invalid Request: a response has exactly one of "result" and "error".', raw_id)
        if result is not None and not isinstance(result, dict):
            raise InvalidMessage('Invalid Request: "result" must be an object.', raw_id)
        if error is not None and not (isinstance(error, dict) and isinstance(error.get("code"), int)):
            raise InvalidMessage('Invalid Request: "error" must be an object with an integer "code".', raw_id)
        return Response(raw_id, result, error)
    raise InvalidMessage('Invalid Request: a message needs "method" (request or notification) or "result"/"error".', echo_id)


def response(request_id: str | int | None, result: dict[str, Any]) -> dict[str, Any]:
    """Build a success response."""
    return {"jsonrpc": JSONRPC_VERSION, "id": request_id, "result": result}


def error_response(request_id: str | int | None, error: dict[str, Any]) -> dict[str, Any]:
    """Build an error response; ``request_id`` is None when the request's id could not be read."""
    return {"jsonrpc": JSONRPC_VERSION, "id": request_id, "error": error}


def notification(method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    """Build a notification."""
    message: dict[str, Any] = {"jsonrpc": JSONRPC_VERSION, "method": method}
    if params is not None:
        message["params"] = params
    return message


def request(request_id: str | int, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    """Build a request."""
    message: dict[str, Any] = {"jsonrpc": JSONRPC_VERSION, "id": request_id, "method": method}
    if params is not None:
        message["params"] = params
    return message
