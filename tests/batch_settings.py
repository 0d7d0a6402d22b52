"""The abuse matrix's settings (credentials required, tests/auth_settings.py) for the batch and limit tests
(tests/transports/test_batches.py): OAuth access tokens accepted, a resource whose reads cost real time,
a body limit large enough for the issue's 40,000-message batch, and small per-user limits."""

from tests.auth_settings import *  # noqa: F403

INSTALLED_APPS = [*INSTALLED_APPS, "tests.slow_resources"]  # noqa: F405

MCP_APP = {
    **MCP_APP,  # noqa: F405
    "DEFAULT_AUTHENTICATION_CLASSES": ["mcp_app.auth.BearerTokenAuthentication", "mcp_app.contrib.oauth.OAuth2Authentication"],
    "MAX_BODY_SIZE": 4 * 1024 * 1024,
    # Every message writes the session's last_seen, so another client's ping needs Django's database
    # thread, as the first message of every minute does with the default interval.
    "SESSION_TOUCH_INTERVAL": 0,
    "TOOL_CALL_RATE": (5, 60),
    "REQUEST_RATE": (400, 60),
    "MAX_SESSIONS_PER_PRINCIPAL": 3,
}

# Test servers listen on a free port chosen at start, so no RESOURCE_URL can be set in advance: the audience is
# taken from the connection, which is what W005 warns about in production.
SILENCED_SYSTEM_CHECKS = ["mcp_app.W005"]
