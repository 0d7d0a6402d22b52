"""Settings for the test run: the conformance fixture server's, with the demo app and its templates added."""

import os
import tempfile
from pathlib import Path

from tests.conformance.settings import *  # noqa: F403

INSTALLED_APPS = [*INSTALLED_APPS, "django.contrib.staticfiles", "oauth2_provider", "mcpsite.demo", "mcpsite.library"]  # noqa: F405
TEMPLATES[0]["DIRS"] = [BASE_DIR / "templates"]  # noqa: F405
STATIC_URL = "static/"
# A file, not SQLite's default in-memory test database: in-memory connections are never closed, so
# one left open in asgiref's worker thread by an async ORM test would leak into later tests.
# One per pytest process, so that two runs in the same checkout never share (and wipe) a test database.
DATABASES["default"]["TEST"] = {"NAME": str(Path(tempfile.gettempdir()) / f"test_mcp_app_{os.getpid()}.sqlite3")}  # noqa: F405
# Hashing passwords slowly protects nothing in tests and costs a third of a second per user.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
