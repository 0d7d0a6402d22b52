"""The test settings with the defaults a real site gets: credentials required, nothing public unless
marked so, and small limits so the abuse matrix can reach them."""

import os

from tests.settings import *  # noqa: F403

MCP_APP = {
    **MCP_APP,  # noqa: F405
    "ALLOW_ANONYMOUS": False,
    "DEFAULT_PERMISSION_CLASSES": ["mcp_app.permissions.IsAuthenticated"],
    "OAUTH_AUTHORIZATION_SERVERS": ["/o"],
    "TOOL_CALL_RATE": (int(os.environ.get("MCP_TEST_RATE", "8")), 60),
    "REQUEST_RATE": (int(os.environ.get("MCP_TEST_REQUEST_RATE", "100")), 60),  # one largest batch
    "MAX_SESSIONS_PER_PRINCIPAL": 3,
    "MAX_STREAMS_PER_PRINCIPAL": 2,
    "MAX_BODY_SIZE": 64 * 1024,
    "ALLOWED_ORIGINS": ["http://localhost:6274"],  # the MCP Inspector's web UI
}

# Test servers listen on a free port chosen at start, so no RESOURCE_URL can be set in advance: the audience is
# taken from the connection, which is what W005 warns about in production.
SILENCED_SYSTEM_CHECKS = ["mcp_app.W005"]
