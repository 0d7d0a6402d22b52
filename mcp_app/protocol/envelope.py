"""The modern era's request envelope (MCP 2026-07-28): which era a request belongs to, and the validation
ladder every modern request passes before it is dispatched.

A modern request carries everything a session used to hold in its own ``params._meta`` (protocol version,
client capabilities, client info, log level) and mirrors its routing fields in HTTP headers
(``MCP-Protocol-Version``, ``Mcp-Method``, ``Mcp-Name``, ``Mcp-Param-*``). The checks are pure functions of
the decoded body and the headers, applied in the order the specification's examples and the conformance
suite probe (docs/design/mcp-2026-07-28.md, section 2); the first failing rung answers, as an
:class:`EnvelopeError` that says its JSON-RPC code and the HTTP status it calls for. Transports call these
and never compare method names themselves. Django-free, like the rest of :mod:`mcp_app.protocol`.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Container, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from . import jsonrpc, versions
from .context import LOG_LEVELS
from .errors import (
    HEADER_MISMATCH,
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    MISSING_CLIENT_CAPABILITY,
    UNSUPPORTED_PROTOCOL_VERSION,
    HeaderMismatch,
    InvalidRequest,
    McpError,
)
from .versions import Era

# Reserved ``_meta`` keys (Basic › General fields › ``_meta``).
META_PROTOCOL_VERSION = "io.modelcontextprotocol/protocolVersion"
META_CLIENT_CAPABILITIES = "io.modelcontextprotocol/clientCapabilities"
META_CLIENT_INFO = "io.modelcontextprotocol/clientInfo"
META_LOG_LEVEL = "io.modelcontextprotocol/logLevel"
META_SERVER_INFO = "io.modelcontextprotocol/serverInfo"

# Header names, lowercased (HTTP header names are case-insensitive; ASGI lowercases them).
VERSION_HEADER = "mcp-protocol-version"
SESSION_HEADER = "mcp-session-id"
METHOD_HEADER = "mcp-method"
NAME_HEADER = "mcp-name"
PARAM_HEADER_PREFIX = "mcp-param-"

# Methods whose ``Mcp-Name`` header mirrors a param (Streamable HTTP › Standard Request Headers).
_NAME_PARAMS = {"tools/call": "name", "prompts/get": "name", "resources/read": "uri"}
_BASE64_OPEN, _BASE64_CLOSE = "=?base64?", "?="
_OWS = " \t"


class Headers:
    """A request's headers by lowercased name, every value kept (so duplicates can be refused).

    Values are decoded as Latin-1, so that any byte outside ASCII survives to be refused by
    :func:`decode_header_value` rather than mangled.
    """

    def __init__(self, values: Mapping[str, tuple[str, ...]] | None = None) -> None:
        self._values: dict[str, tuple[str, ...]] = dict(values or {})

    @classmethod
    def from_pairs(cls, pairs: Iterable[tuple[bytes | str, bytes | str]]) -> Headers:
        """From ``(name, value)`` pairs, as ASGI's ``scope["headers"]`` holds them (bytes) or as str."""
        values: dict[str, tuple[str, ...]] = {}
        for name, value in pairs:
            key = (name.decode("latin-1") if isinstance(name, bytes) else name).lower()
            text = value.decode("latin-1") if isinstance(value, bytes) else value
            found = values.get(key)
            # A tuple per name from the start: a repeated header is rare, and this runs on every request.
            values[key] = (text,) if found is None else (*found, text)
        headers = cls.__new__(cls)
        headers._values = values
        return headers

    def all(self, name: str) -> tuple[str, ...]:
        """Every value sent for ``name`` (case-insensitive), in order."""
        return self._values.get(name.lower(), ())

    def get(self, name: str) -> str | None:
        """The first value of ``name``, or None."""
        found = self.all(name)
        return found[0] if found else None

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and bool(self.all(name))


def era_of(headers: Headers, item: Any = None) -> Era:
    """The era of a POST (or GET/DELETE, with ``item`` None), by the rule of the design doc, section 1.

    - ``MCP-Protocol-Version`` naming a handshake version: handshake (as before 2026-07-28);
    - naming a modern version this server serves: modern (an ``Mcp-Session-Id`` is then ignored);
    - naming anything else (an unknown version, garbage): modern without ``Mcp-Session-Id`` (the ladder then
      says what is wrong: -32022, -32020); handshake with one, so that a session's client keeps getting
      the answer it got before 2026-07-28 (400, "unsupported MCP-Protocol-Version");
    - absent, with ``Mcp-Session-Id``: handshake;
    - absent, no session id, and the body's ``params._meta`` carries the modern protocol version key: modern
      (the ladder then asks for the header), so a modern client that forgot the header gets a modern error;
    - otherwise handshake (``initialize``, and 2025-03-26 clients, which send no version header).
    """
    version = headers.get(VERSION_HEADER)
    has_session = SESSION_HEADER in headers
    if version is not None:
        version = version.strip(_OWS)
        if versions.is_handshake(version) or (has_session and not versions.is_modern(version)):
            return Era.HANDSHAKE
        return Era.MODERN
    if has_session:
        return Era.HANDSHAKE
    if isinstance(item, dict):
        params = item.get("params")
        meta = params.get("_meta") if isinstance(params, dict) else None
        if isinstance(meta, dict) and META_PROTOCOL_VERSION in meta:
            return Era.MODERN
    return Era.HANDSHAKE


@dataclass(frozen=True)
class Envelope:
    """What a modern request says about itself: its version, the client, and its per-request options.

    It is also the request's :class:`~mcp_app.protocol.context.SessionState` (the context's ``session``):
    there is no session in the modern era, so ``id`` is empty and nothing is ever recorded; the methods
    that would record something (``initialize``, ``logging/setLevel``, ``resources/subscribe``) are not in
    the modern method table, and refuse if reached anyway.
    """

    protocol_version: str
    client_capabilities: dict[str, Any]
    client_info: dict[str, Any] = field(default_factory=dict)
    #: The minimum level of ``notifications/message`` for this request; None: no log messages at all.
    log_level: str | None = None
    headers: Headers = field(default_factory=Headers)
    #: No session: the empty id (audit rows record none).
    id: str = ""
    era: Era = Era.MODERN

    async def record_initialize(
        self, protocol_version: str, client_info: dict[str, Any], client_capabilities: dict[str, Any]
    ) -> None:
        raise InvalidRequest("Invalid Request: protocol 2026-07-28 has no initialize; send server/discover.")

    async def set_log_level(self, level: str) -> None:
        raise InvalidRequest(f"Invalid Request: set the log level per request in params._meta[{META_LOG_LEVEL!r}].")

    async def subscribe(self, uri: str) -> None:
        raise InvalidRequest("Invalid Request: use subscriptions/listen for resource updates.")

    async def unsubscribe(self, uri: str) -> None:
        raise InvalidRequest("Invalid Request: close the subscriptions/listen stream instead.")


class EnvelopeError(Exception):
    """A modern request refused by a rung of the ladder: a JSON-RPC error with the HTTP status it calls for.

    ``request_id`` is the request's id when it could be read (echoed in the answer), else None (the ``id``
    member is then omitted: the 2026-07-28 schema does not allow ``null``).
    """

    def __init__(self, status: int, code: int, message: str, *, data: Any = None, request_id: str | int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.data = data
        self.request_id = request_id

    @classmethod
    def from_mcp(cls, status: int, exc: McpError, request_id: str | int | None = None) -> EnvelopeError:
        return cls(status, exc.code, exc.message, data=exc.data, request_id=request_id)

    def to_error(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return error

    def to_response(self) -> dict[str, Any]:
        return error_response(self.request_id, self.to_error())


def error_response(request_id: str | int | None, error: dict[str, Any]) -> dict[str, Any]:
    """A modern JSON-RPC error response: the request's id echoed, or no ``id`` member when it is unknown."""
    response = jsonrpc.error_response(request_id, error)
    if request_id is None:
        del response["id"]
    return response


def answer_status(answer: dict[str, Any]) -> int:
    """The HTTP status of a modern request's final JSON-RPC answer: 200, except the errors the revision
    sends with 400 (header mismatch, missing client capability, unsupported version) and 404 for an
    unknown method (decided by the error's code, never by the method)."""
    error = answer.get("error")
    code = error.get("code") if isinstance(error, dict) else None
    if code in (HEADER_MISMATCH, MISSING_CLIENT_CAPABILITY, UNSUPPORTED_PROTOCOL_VERSION):
        return 400
    if code == METHOD_NOT_FOUND:
        return 404
    return 200


# -- rung 1: one message ------------------------------------------------------------------------------------
def read_message(payload: Any) -> jsonrpc.Request | jsonrpc.Notification:
    """The one request or notification a modern POST carries; raise :class:`EnvelopeError` (400, -32600)
    for a batch, a response (the server never asks the client anything in this era) or a malformed message."""
    if isinstance(payload, list):
        raise EnvelopeError(400, INVALID_REQUEST, "Invalid Request: send one JSON-RPC message per POST; batches are not allowed.")
    try:
        message = jsonrpc.parse_message(payload)
    except jsonrpc.InvalidMessage as exc:
        raise EnvelopeError(400, INVALID_REQUEST, exc.message, request_id=exc.request_id) from None
    if isinstance(message, jsonrpc.Response):
        raise EnvelopeError(
            400,
            INVALID_REQUEST,
            "Invalid Request: protocol 2026-07-28 has no requests from the server, so there is nothing to answer.",
            request_id=message.id,
        )
    return message


# -- rungs 2 to 5 -------------------------------------------------------------------------------------------
def read_envelope(request: jsonrpc.Request, headers: Headers, methods: Container[str]) -> Envelope:
    """Check a modern request's ``_meta`` (rung 2), its headers against its body (3), its version (4) and
    its method (5, against ``methods``: the modern method table); return its :class:`Envelope`.

    Raises :class:`EnvelopeError`: -32602/400, -32020/400, -32022/400, -32601/404, in that order.
    """
    rid = request.id
    meta = request.params.get("_meta")

    def invalid(message: str) -> EnvelopeError:
        return EnvelopeError(400, INVALID_PARAMS, message, request_id=rid)

    if not isinstance(meta, dict):
        raise invalid(
            f"Invalid params: protocol 2026-07-28 requests carry params._meta with {META_PROTOCOL_VERSION!r} "
            f"and {META_CLIENT_CAPABILITIES!r}."
        )
    version = meta.get(META_PROTOCOL_VERSION)
    if version is None:
        raise invalid(f"Invalid params: params._meta lacks {META_PROTOCOL_VERSION!r}.")
    if not isinstance(version, str):
        raise invalid(f"Invalid params: params._meta[{META_PROTOCOL_VERSION!r}] must be a string.")
    capabilities = meta.get(META_CLIENT_CAPABILITIES)
    if capabilities is None:
        raise invalid(f"Invalid params: params._meta lacks {META_CLIENT_CAPABILITIES!r} (send {{}} when the client has none).")
    if not isinstance(capabilities, dict):
        raise invalid(f"Invalid params: params._meta[{META_CLIENT_CAPABILITIES!r}] must be an object.")
    client_info = meta.get(META_CLIENT_INFO, {})
    if not isinstance(client_info, dict):
        raise invalid(f"Invalid params: params._meta[{META_CLIENT_INFO!r}] must be an object.")
    log_level = meta.get(META_LOG_LEVEL)
    if log_level is not None and log_level not in LOG_LEVELS:
        raise invalid(f"Invalid params: params._meta[{META_LOG_LEVEL!r}] must be one of {', '.join(LOG_LEVELS)}.")

    try:
        check_standard_headers(request, version, headers)
    except HeaderMismatch as exc:
        raise EnvelopeError.from_mcp(400, exc, rid) from None

    if not versions.is_modern(version):
        raise EnvelopeError(
            400,
            UNSUPPORTED_PROTOCOL_VERSION,
            f"Unsupported protocol version {version[:40]!r}; this server supports {', '.join(versions.ALL_VERSIONS)} "
            f"(handshake-era versions through initialize).",
            data={"supported": list(versions.ALL_VERSIONS), "requested": version},
            request_id=rid,
        )
    if request.method not in methods:
        raise EnvelopeError(
            404,
            METHOD_NOT_FOUND,
            f"Method not found: {request.method[:80]!r} is not a method of protocol {version}.",
            request_id=rid,
        )
    return Envelope(
        protocol_version=version,
        client_capabilities=capabilities,
        client_info=client_info,
        log_level=log_level,
        headers=headers,
    )


def decode_header_value(raw: str) -> str:
    """A routing header's value as the client meant it (Streamable HTTP › Value Encoding).

    Optional whitespace around it is stripped; characters outside visible ASCII, space and tab are refused;
    a value of the exact form ``=?base64?{b64}?=`` is standard Base64 of UTF-8, decoded strictly (padding
    and alphabet). Anything else is a literal. Raises :class:`HeaderMismatch` for what cannot be decoded.
    """
    value = raw.strip(_OWS)
    if any(not (" " <= ch <= "~" or ch == "\t") for ch in value):
        raise HeaderMismatch("Header mismatch: a header value holds characters outside visible ASCII; Base64-encode it.")
    if len(value) >= len(_BASE64_OPEN) + len(_BASE64_CLOSE) and value.startswith(_BASE64_OPEN) and value.endswith(_BASE64_CLOSE):
        encoded = value[len(_BASE64_OPEN) : -len(_BASE64_CLOSE)]
        try:
            return base64.b64decode(encoded, validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            raise HeaderMismatch(
                "Header mismatch: a =?base64?…?= header value is not valid padded Base64 of UTF-8 text."
            ) from None
    return value


def _single(headers: Headers, name: str, label: str) -> str | None:
    found = headers.all(name)
    if len(found) > 1:
        raise HeaderMismatch(f"Header mismatch: {label} was sent {len(found)} times; send it once.")
    return found[0] if found else None


def check_standard_headers(request: jsonrpc.Request, version: str, headers: Headers) -> None:
    """Rung 3: ``MCP-Protocol-Version``, ``Mcp-Method`` and, where the method has one, ``Mcp-Name`` must be
    present once and equal the body's values (values are case-sensitive). Raises :class:`HeaderMismatch`."""
    sent_version = _single(headers, VERSION_HEADER, "MCP-Protocol-Version")
    if sent_version is None:
        raise HeaderMismatch(f"Header mismatch: MCP-Protocol-Version is required (send {version[:40]!r}, as in params._meta).")
    if sent_version.strip(_OWS) != version:
        raise HeaderMismatch(
            f"Header mismatch: MCP-Protocol-Version {sent_version.strip(_OWS)[:40]!r} differs from "
            f"params._meta[{META_PROTOCOL_VERSION!r}] {version[:40]!r}."
        )
    sent_method = _single(headers, METHOD_HEADER, "Mcp-Method")
    if sent_method is None:
        raise HeaderMismatch(f"Header mismatch: Mcp-Method is required (send {request.method[:80]!r}).")
    if sent_method.strip(_OWS) != request.method:
        raise HeaderMismatch(
            f"Header mismatch: Mcp-Method {sent_method.strip(_OWS)[:80]!r} differs from the method {request.method[:80]!r}."
        )
    param = _NAME_PARAMS.get(request.method)
    sent_name = _single(headers, NAME_HEADER, "Mcp-Name")
    if param is None:
        return
    body_name = request.params.get(param)
    if not isinstance(body_name, str):
        if sent_name is not None:
            raise HeaderMismatch(f"Header mismatch: Mcp-Name is sent but params.{param} is missing.")
        return  # the handler says what is wrong with the params (-32602)
    if sent_name is None:
        raise HeaderMismatch(f"Header mismatch: Mcp-Name is required for {request.method} (the value of params.{param}).")
    if decode_header_value(sent_name) != body_name:
        raise HeaderMismatch(f"Header mismatch: Mcp-Name differs from params.{param}.")


def param_headers(input_schema: dict[str, Any]) -> dict[str, str]:
    """The ``x-mcp-header`` annotations of a tool's top-level properties: property name -> header name."""
    found: dict[str, str] = {}
    properties = input_schema.get("properties") if isinstance(input_schema, dict) else None
    if not isinstance(properties, dict):
        return found
    for prop, schema in properties.items():
        if isinstance(schema, dict) and isinstance(schema.get("x-mcp-header"), str) and schema["x-mcp-header"]:
            found[prop] = schema["x-mcp-header"]
    return found


# RFC 9110 token characters: what a header name may consist of.
_TOKEN_CHARS = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_HEADER_TYPES = frozenset({"string", "integer", "boolean"})


def _primitive_types(schema: dict[str, Any]) -> set[str] | None:
    """The JSON types a property schema allows, when it says so plainly (``type``, or ``anyOf`` of plain
    types, as pydantic writes ``Optional``); None when it does not."""
    declared = schema.get("type")
    if isinstance(declared, str):
        return {declared}
    if isinstance(declared, list) and all(isinstance(t, str) for t in declared):
        return set(declared)
    arms = schema.get("anyOf")
    if isinstance(arms, list) and arms and all(isinstance(arm, dict) and isinstance(arm.get("type"), str) for arm in arms):
        return {arm["type"] for arm in arms}
    return None


def _count_annotations(node: Any) -> int:
    if isinstance(node, dict):
        return ("x-mcp-header" in node) + sum(_count_annotations(value) for value in node.values())
    if isinstance(node, list):
        return sum(_count_annotations(item) for item in node)
    return 0


def param_header_problems(input_schema: dict[str, Any]) -> list[str]:
    """What is wrong with a tool's ``x-mcp-header`` annotations (empty means nothing): each must sit on a
    top-level property, name a non-empty RFC 9110 token unique case-insensitively within the tool, and
    annotate a string, integer or boolean (optionally nullable). Clients drop tools whose annotations are
    invalid (*Streamable HTTP › Custom Headers from Tool Parameters*), so registration refuses them."""
    problems: list[str] = []
    properties = input_schema.get("properties") if isinstance(input_schema, dict) else None
    top = 0
    seen: dict[str, str] = {}
    for prop, schema in (properties or {}).items() if isinstance(properties, dict) else ():
        if not isinstance(schema, dict) or "x-mcp-header" not in schema:
            continue
        top += 1
        name = schema["x-mcp-header"]
        if not isinstance(name, str) or not name:
            problems.append(f"{prop}: x-mcp-header must be a non-empty header name")
            continue
        if not set(name) <= _TOKEN_CHARS:
            problems.append(f"{prop}: x-mcp-header {name!r} is not a valid header name (RFC 9110 token)")
        if name.lower() in seen:
            problems.append(
                f"{prop}: x-mcp-header {name!r} is already used by {seen[name.lower()]!r} (names are case-insensitive)"
            )
        seen.setdefault(name.lower(), prop)
        types = _primitive_types(schema)
        if types is None or not (types - {"null"}) or not (types - {"null"}) <= _HEADER_TYPES:
            problems.append(f"{prop}: x-mcp-header may only annotate a string, integer or boolean property")
    if _count_annotations(input_schema) > top:
        problems.append("x-mcp-header is only allowed on the input schema's top-level properties")
    return problems


def _matches(decoded: str, value: Any) -> bool:
    if isinstance(value, bool):
        return decoded == ("true" if value else "false")
    if isinstance(value, (int, float)):
        try:
            number = int(decoded) if isinstance(value, int) and decoded.lstrip("+-").isdigit() else float(decoded)
        except ValueError:
            return False
        return not (isinstance(number, float) and not math.isfinite(number)) and number == value
    if isinstance(value, str):
        return decoded == value
    return False


def check_param_headers(input_schema: dict[str, Any], arguments: dict[str, Any], headers: Headers) -> None:
    """Rung 6 for ``tools/call``: each argument the tool marks ``x-mcp-header: Name`` that is present and not
    null must come with one ``Mcp-Param-Name`` header equal to it after decoding (strings as they are,
    numbers numerically, booleans as ``true``/``false``). Headers of other names are ignored.
    Raises :class:`HeaderMismatch`."""
    for prop, name in param_headers(input_schema).items():
        value = arguments.get(prop)
        if value is None:
            continue
        label = f"Mcp-Param-{name}"
        sent = _single(headers, PARAM_HEADER_PREFIX + name.lower(), label)
        if sent is None:
            raise HeaderMismatch(f"Header mismatch: {label} is required (argument {prop!r} is in the body).")
        if not _matches(decode_header_value(sent), value):
            raise HeaderMismatch(f"Header mismatch: {label} differs from argument {prop!r}.")
