"""Settings of the limit and body tests (tests/transports/test_limits_concurrency.py, test_bodies.py): a real
site's defaults (credentials required: tests/auth_settings.py), with the limits under test taken from the
environment, so that one module can start servers with different ones:

- ``MCP_TEST_LIMIT_TOOL_CALL_RATE`` / ``MCP_TEST_LIMIT_REQUEST_RATE``: ``"calls,seconds"`` or ``"none"``;
- ``MCP_TEST_RATE_CACHE``: ``"locmem"`` (Django's default cache) or ``"redis"`` (Django's RedisCache at
  ``MCP_TEST_REDIS_CACHE_URL``, keys prefixed with ``MCP_TEST_REDIS_PREFIX`` so parallel runs never meet);
- ``MCP_TEST_MAX_SESSIONS``, ``MCP_TEST_SESSION_TOUCH_INTERVAL``, ``MCP_TEST_SESSION_IDLE_TIMEOUT``,
  ``MCP_TEST_SESSION_REAP_INTERVAL``, ``MCP_TEST_BODY_TIMEOUT``: the settings of the same names, set only
  when given.
"""

import os

from tests.auth_settings import *  # noqa: F403


def _rate(name: str, default: str) -> tuple[int, float] | None:
    value = os.environ.get(name, default)
    if value == "none":
        return None
    calls, seconds = value.split(",")
    return int(calls), float(seconds)


CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
if os.environ.get("MCP_TEST_RATE_CACHE") == "redis":
    CACHES["rates"] = {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": os.environ.get("MCP_TEST_REDIS_CACHE_URL", "redis://127.0.0.1:6379/0"),
        "KEY_PREFIX": os.environ.get("MCP_TEST_REDIS_PREFIX", "mcp_app_limits_test"),
    }

MCP_APP = {
    **MCP_APP,  # noqa: F405
    "TOOL_CALL_RATE": _rate("MCP_TEST_LIMIT_TOOL_CALL_RATE", "none"),
    "REQUEST_RATE": _rate("MCP_TEST_LIMIT_REQUEST_RATE", "none"),
    "RATE_LIMIT_CACHE": "rates" if "rates" in CACHES else "default",
    "MAX_SESSIONS_PER_PRINCIPAL": int(os.environ.get("MCP_TEST_MAX_SESSIONS", "100")),
    "MAX_STREAMS_PER_PRINCIPAL": 20,
}
for _key in ("SESSION_TOUCH_INTERVAL", "SESSION_IDLE_TIMEOUT", "SESSION_REAP_INTERVAL", "BODY_TIMEOUT"):
    if f"MCP_TEST_{_key}" in os.environ:
        MCP_APP[_key] = float(os.environ[f"MCP_TEST_{_key}"])
