"""Settings of the conformance fixture server: mcp_app plus the fixtures the official suite calls.

Start it by hand (see README, "Testing"):

    DJANGO_SETTINGS_MODULE=tests.conformance.settings .venv/bin/python manage.py migrate
    DJANGO_SETTINGS_MODULE=tests.conformance.settings .venv/bin/daphne -b 127.0.0.1 -p 8001 tests.conformance.asgi:application
"""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent.parent

SECRET_KEY = "conformance-fixtures-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["localhost", "127.0.0.1", "[::1]"]

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "mcp_app",
    "tests.conformance",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
ROOT_URLCONF = "tests.conformance.urls"
ASGI_APPLICATION = "tests.conformance.asgi.application"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

# SQLite by default; MCP_TEST_POSTGRES_DB selects PostgreSQL (127.0.0.1, user postgres) for the
# multi-process tests, MCP_TEST_REDIS_URL the Redis channel layer.
if os.environ.get("MCP_TEST_POSTGRES_DB"):
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": os.environ["MCP_TEST_POSTGRES_DB"],
            "HOST": os.environ.get("MCP_TEST_POSTGRES_HOST", "127.0.0.1"),
            "USER": os.environ.get("MCP_TEST_POSTGRES_USER", "postgres"),
            "PASSWORD": os.environ.get("MCP_TEST_POSTGRES_PASSWORD", ""),
            # Keep connections between messages, as a production site with PostgreSQL would.
            "CONN_MAX_AGE": 60,
        }
    }
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.environ.get("MCP_TEST_DB", str(BASE_DIR / "conformance.sqlite3")),
            # Live servers write sessions while tests read them: wait for the lock instead of failing.
            "OPTIONS": {"timeout": 20},
        }
    }
if os.environ.get("MCP_TEST_REDIS_URL"):
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                # No read timeout: redis-py 8's default (5 s) races channels_redis's 5 s blocking pop, and
                # any timeout makes redis-py wrap commands in wait_for, which can swallow a cancellation.
                "hosts": [{"address": os.environ["MCP_TEST_REDIS_URL"], "socket_timeout": None}],
                # One prefix per test run, so parallel runs sharing a Redis never see each other's messages.
                "prefix": os.environ.get("MCP_TEST_REDIS_PREFIX", "mcp_app_test"),
                "capacity": int(os.environ.get("MCP_TEST_LAYER_CAPACITY", "1000")),
            },
        }
    }
else:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels.layers.InMemoryChannelLayer",
            "CONFIG": {"capacity": int(os.environ.get("MCP_TEST_LAYER_CAPACITY", "1000"))},
        }
    }
MCP_APP = {
    "SERVER_NAME": "mcp_app-conformance",
    "SSE_KEEPALIVE_INTERVAL": float(os.environ.get("MCP_TEST_KEEPALIVE", "15")),
    # The conformance suite and the SDK tests connect without credentials: everything is public here.
    # (Authentication and the default of 401 are tested with tests.auth.settings.)
    "ALLOW_ANONYMOUS": True,
    "DEFAULT_PERMISSION_CLASSES": ["mcp_app.permissions.AllowAny"],
    # Many sessions from 127.0.0.1, one anonymous principal: no cap in the fixture server.
    "MAX_SESSIONS_PER_PRINCIPAL": None,
    "MAX_STREAMS_PER_PRINCIPAL": None,
    "TOOL_CALL_RATE": None,
    "REQUEST_RATE": None,
}
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
