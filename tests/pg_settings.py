"""The test settings on PostgreSQL (127.0.0.1, user postgres, or MCP_TEST_POSTGRES_*), for tests that must hold
on both databases: ``pytest --ds tests.pg_settings tests/test_exposure_security.py``.

The test database is ``MCP_TEST_PG_TEST_DB`` (a fresh name per run keeps parallel runs apart); pytest-django
creates and drops it.
"""

import os

from tests.settings import *  # noqa: F403

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": "postgres",  # only to connect: the tests run in the TEST database below
        "HOST": os.environ.get("MCP_TEST_POSTGRES_HOST", "127.0.0.1"),
        "USER": os.environ.get("MCP_TEST_POSTGRES_USER", "postgres"),
        "PASSWORD": os.environ.get("MCP_TEST_POSTGRES_PASSWORD", ""),
        "TEST": {"NAME": os.environ.get("MCP_TEST_PG_TEST_DB", "test_mcp_app_pg")},
    }
}
