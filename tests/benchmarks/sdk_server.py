"""The official MCP SDK's server (``mcp`` 2.x, MCPServer) with the benchmark's ``echo`` tool, for comparison.

Served by uvicorn; ``BENCH_SDK_MODE`` chooses the transport of ``app``::

    BENCH_SDK_MODE=stateful BENCH_TOKEN=secret .venv/bin/python -m uvicorn tests.benchmarks.sdk_server:app --port 8002

- ``stateful``: Streamable HTTP with sessions, as the SDK ships it (answers as SSE); ``stateful_json``: the
  same answering ``application/json``;
- ``stateless``: Streamable HTTP without sessions, JSON answers (the SDK's stateless example); it answers the
  per-request 2026-07-28 protocol too;
- ``sse``: the legacy HTTP+SSE transport (GET /sse, then POST /messages/?session_id=...).

With ``BENCH_TOKEN`` set, every request must carry ``Authorization: Bearer <BENCH_TOKEN>``, checked by the
SDK's own bearer-token middleware (a verifier that compares against that one token): the same kind of
work our server does for a token, minus its database. Without it the server is open. The tool is the one
``tests/benchmarks/mcp.py`` registers with mcp_app (tests/benchmarks/echo.py).
"""

from __future__ import annotations

import hmac
import os

from mcp.server.auth.provider import AccessToken
from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver import MCPServer
from starlette.applications import Starlette

from .echo import echo

HOST = "127.0.0.1"


class StaticTokenVerifier:
    """Accepts one bearer token (the SDK's TokenVerifier protocol)."""

    def __init__(self, token: str) -> None:
        self.token = token

    async def verify_token(self, token: str) -> AccessToken | None:
        if hmac.compare_digest(token.encode(), self.token.encode()):
            return AccessToken(token=token, client_id="bench", scopes=["mcp"])
        return None


def server() -> MCPServer:
    """An MCPServer with the ``echo`` tool, behind a bearer token when ``BENCH_TOKEN`` is set."""
    token = os.environ.get("BENCH_TOKEN")
    auth: dict = {}
    if token:
        auth = {
            "token_verifier": StaticTokenVerifier(token),
            # The URLs only name the server in its metadata and WWW-Authenticate: not used by the benchmark.
            "auth": AuthSettings(
                issuer_url=f"http://{HOST}",
                resource_server_url=f"http://{HOST}/mcp",
                required_scopes=["mcp"],
                validate_token_resource=False,  # the verifier knows its one token
            ),
        }
    mcp = MCPServer("sdk-bench", log_level="WARNING", **auth)
    mcp.tool()(echo)
    return mcp


def stateful_app() -> Starlette:
    """Streamable HTTP with sessions (``Mcp-Session-Id``), as the SDK ships it (answers as SSE)."""
    return server().streamable_http_app(host=HOST)


def stateful_json_app() -> Starlette:
    """Streamable HTTP with sessions, answering ``application/json`` instead of an SSE stream."""
    return server().streamable_http_app(host=HOST, json_response=True)


def stateless_app() -> Starlette:
    """Streamable HTTP without sessions; serves the per-request 2026-07-28 protocol as well."""
    return server().streamable_http_app(host=HOST, stateless_http=True, json_response=True)


def sse_app() -> Starlette:
    """The legacy HTTP+SSE transport: GET /sse, then POST /messages/?session_id=..."""
    return server().sse_app(host=HOST)


APPS = {"stateful": stateful_app, "stateful_json": stateful_json_app, "stateless": stateless_app, "sse": sse_app}
#: What uvicorn serves: the app of ``BENCH_SDK_MODE`` (default ``stateful``).
app = APPS[os.environ.get("BENCH_SDK_MODE", "stateful")]()
