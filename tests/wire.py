"""Check messages on the wire against the official MCP SDK's typed models (the ``mcp-types`` distribution).

The suite must pass on a plain clone, so it validates against what the test dependencies install from PyPI rather
than against schema files beside the repository. ``mcp_types.methods`` maps every (method, protocol version) pair
to the wire model of that version's schema era (2025-11-25 for every handshake version, 2026-07-28 for the
stateless one); a pair missing from the map means the method does not exist in that version, which is checked too.

Validation is strict JSON validation (``validate_json(..., strict=True)``): a number where the schema wants a string,
a string where it wants a number, a missing required field or a wrong literal all fail, as they would against
the JSON Schema.
"""

from __future__ import annotations

import json
from functools import cache
from types import UnionType
from typing import Any, Union, get_args, get_origin

from mcp_types import jsonrpc
from mcp_types.methods import SERVER_NOTIFICATIONS, SERVER_REQUESTS, SERVER_RESULTS
from pydantic import BaseModel, TypeAdapter

#: JSON-RPC envelopes, named as the 2025-11-25 schema names them.
ENVELOPES: dict[str, Any] = {
    "JSONRPCResultResponse": jsonrpc.JSONRPCResponse,
    "JSONRPCErrorResponse": jsonrpc.JSONRPCError,
    "JSONRPCResponse": jsonrpc.JSONRPCResponse | jsonrpc.JSONRPCError,
    "JSONRPCBatchResponse": list[jsonrpc.JSONRPCResponse | jsonrpc.JSONRPCError],
    "JSONRPCRequest": jsonrpc.JSONRPCRequest,
    "JSONRPCNotification": jsonrpc.JSONRPCNotification,
}


def _members(target: Any) -> list[type[BaseModel]]:
    """The model classes a surface entry stands for (one class, or each arm of a union)."""
    if isinstance(target, UnionType) or get_origin(target) is Union:
        return [arm for union_arm in get_args(target) for arm in _members(union_arm)]
    return [target] if isinstance(target, type) and issubclass(target, BaseModel) else []


def _find(definition: str, version: str, surface: Any) -> type[BaseModel] | None:
    for (_method, entry_version), target in surface.items():
        if entry_version != version:
            continue
        for model in _members(target):
            if model.__name__ == definition:
                return model
    return None


@cache
def _adapter(definition: str, version: str) -> TypeAdapter[Any]:
    if definition in ENVELOPES:
        return TypeAdapter(ENVELOPES[definition])
    for surface in (SERVER_RESULTS, SERVER_NOTIFICATIONS, SERVER_REQUESTS):
        model = _find(definition, version, surface)
        if model is not None:
            return TypeAdapter(model)
    raise KeyError(f"{definition} is not a server message of protocol version {version} in the official SDK's types")


def assert_valid(instance: Any, definition: str, version: str) -> None:
    """Validate ``instance`` as ``definition`` (a schema definition name) of protocol ``version``.

    Notifications and requests must also use a method that exists in ``version``.
    """
    _adapter(definition, version).validate_json(json.dumps(instance), strict=True)
    if definition.endswith(("Notification", "Request")) and definition not in ENVELOPES:
        surface = SERVER_NOTIFICATIONS if definition.endswith("Notification") else SERVER_REQUESTS
        model = surface.get((instance.get("method"), version))
        assert model is not None and model.__name__ == definition, (
            f"{instance.get('method')!r} is not a {definition} in protocol version {version}"
        )
