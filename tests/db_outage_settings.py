"""Settings of the database outage test (tests/transports/test_db_outage.py): a real site's defaults
(credentials required: tests/auth_settings.py), on PostgreSQL when ``MCP_TEST_POSTGRES_DB`` names a
database, with a tool whose side effect is a file outside the database (tests/side_effects)."""

from tests.auth_settings import *  # noqa: F403

INSTALLED_APPS = [*INSTALLED_APPS, "tests.side_effects"]  # noqa: F405

MCP_APP = {
    **MCP_APP,  # noqa: F405
    # The test counts outcomes, not budgets.
    "TOOL_CALL_RATE": None,
    # Large, but on: initialize then counts open sessions in the database, as on a real site.
    "MAX_SESSIONS_PER_PRINCIPAL": 1000,
}
