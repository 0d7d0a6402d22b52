"""tests.settings with pages of two items: clients must follow nextCursor (tests/transports/test_sdk_client_modern.py)."""

from tests.settings import *  # noqa: F403

MCP_APP = {**MCP_APP, "PAGE_SIZE": 2}  # noqa: F405
