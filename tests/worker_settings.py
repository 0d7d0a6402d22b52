"""The test settings with a short worker heartbeat (``MCP_TEST_HEARTBEAT`` seconds), so that the fault tests
(tests/transports/test_worker_death.py, test_redis_restart.py) see a dead worker within seconds."""

import os

from tests.settings import *  # noqa: F403

MCP_APP = {**MCP_APP, "WORKER_HEARTBEAT_INTERVAL": float(os.environ.get("MCP_TEST_HEARTBEAT", "5"))}  # noqa: F405
