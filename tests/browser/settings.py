"""Settings of the live server the browser tests drive: the test settings with credentials required (so that
the token the "connect a client" page makes is what lets the SDK client in), and no rate limits (one
principal makes every call)."""

from tests.settings import *  # noqa: F403

MCP_APP = {
    **MCP_APP,  # noqa: F405
    "ALLOW_ANONYMOUS": False,
    "DEFAULT_PERMISSION_CLASSES": ["mcp_app.permissions.IsAuthenticated"],
}
# The server's port is chosen at start: the audience comes from the connection (what W005 warns about).
SILENCED_SYSTEM_CHECKS = ["mcp_app.W005"]
