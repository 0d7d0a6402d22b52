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
# MCP: "Resource not found" (spec, server/resources, error handling).
RESOURCE_NOT_FOUND = -32002


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


class RequestCancelled(Exception):
    """Raised inside a handler's context when the client cancelled the request."""


class ClientRequestError(Exception):
    """A request to the client failed: it answered with an error, did not answer in time, or the
    client never declared the capability. Tools report it as an ``isError`` result."""

    def __init__(self, message: str, *, error: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.error = error
