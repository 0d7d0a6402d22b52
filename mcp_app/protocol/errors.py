"""Typed MCP / JSON-RPC errors.

Handlers raise these; the dispatcher turns them into JSON-RPC error objects in exactly one place
(:meth:`mcp_app.protocol.dispatcher.Dispatcher.handle_request`), so no handler builds error dicts itself.
"""

from __future__ import annotations

from typing import Any

# JSON-RPC 2.0 error codes (https://www.jsonrpc.org/specification#error_object).
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
# MCP: "Resource not found" (spec, server/resources, error handling); handshake era only: the modern era
# answers an unknown resource with INVALID_PARAMS (Resources › Error Handling, 2026-07-28).
RESOURCE_NOT_FOUND = -32002
# MCP 2026-07-28 (Basic › Error Codes): -32020..-32099 are reserved for the specification.
HEADER_MISMATCH = -32020
MISSING_CLIENT_CAPABILITY = -32021
UNSUPPORTED_PROTOCOL_VERSION = -32022


class McpError(Exception):
    """An error that becomes a JSON-RPC error response.

    ``message`` is shown to the client, so it must be safe to disclose and say what to do.
    """

    code: int = INTERNAL_ERROR

    def __init__(self, message: str, *, data: Any = None, code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.data = data
        if code is not None:
            self.code = code

    def to_error(self) -> dict[str, Any]:
        """Return the JSON-RPC ``error`` member for this exception."""
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return error


class ParseError(McpError):
    code = PARSE_ERROR


class InvalidRequest(McpError):
    code = INVALID_REQUEST


class MethodNotFound(McpError):
    code = METHOD_NOT_FOUND


class InvalidParams(McpError):
    code = INVALID_PARAMS


class InternalError(McpError):
    code = INTERNAL_ERROR


class ResourceNotFound(McpError):
    code = RESOURCE_NOT_FOUND


class HeaderMismatch(McpError):
    """An HTTP header disagrees with the body, is missing, or cannot be decoded (HTTP 400)."""

    code = HEADER_MISMATCH


class MissingRequiredClientCapability(McpError):
    """The request needs a capability the client did not declare in this request (modern era, HTTP 400).

    ``required`` is a ClientCapabilities object naming what is missing, e.g. ``{"sampling": {}}``; it becomes
    ``data.requiredCapabilities``.
    """

    code = MISSING_CLIENT_CAPABILITY

    def __init__(self, message: str, *, required: dict[str, Any]) -> None:
        super().__init__(message, data={"requiredCapabilities": required})
        self.required = required


class UnsupportedProtocolVersion(McpError):
    """The request's protocol version is not one this server serves in the modern era (HTTP 400);
    ``data`` says which are (``supported``) and echoes what was asked (``requested``)."""

    code = UNSUPPORTED_PROTOCOL_VERSION

    def __init__(self, requested: Any, supported: tuple[str, ...] | list[str]) -> None:
        super().__init__(
            f"Unsupported protocol version {str(requested)[:40]!r}; this server supports {', '.join(supported)}.",
            data={"supported": list(supported), "requested": requested},
        )


class RequestCancelled(Exception):
    """Raised inside a handler's context when the client cancelled the request."""


class ClientRequestError(Exception):
    """A request to the client failed: it answered with an error, did not answer in time, or the
    client never declared the capability. Tools report it as an ``isError`` result."""

    def __init__(self, message: str, *, error: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.error = error


class InputRequired(BaseException):
    """Raised by ``ctx.elicit()``, ``ctx.sample()`` and ``ctx.list_roots()`` in the modern era when the client
    has not answered yet: the dispatcher ends the request with an ``InputRequiredResult`` carrying
    ``input_requests`` (key -> ``{"method", "params"}``, every input asked so far in this run).

    A ``BaseException``, as :class:`asyncio.CancelledError` is, so that a handler's own ``except Exception``
    around the call does not swallow it; providers let it through untouched. It still propagates through
    ``asyncio.gather`` (the other inputs of the same gather are recorded before the handler sees it).
    """

    def __init__(self, input_requests: dict[str, dict[str, Any]]) -> None:
        super().__init__("input required")
        self.input_requests = input_requests
