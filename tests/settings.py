"""Settings for the test run: the conformance fixture server's, with the demo app and its templates added."""

from tests.conformance.settings import *  # noqa: F403

INSTALLED_APPS = [*INSTALLED_APPS, "django.contrib.staticfiles", "mcpsite.demo"]  # noqa: F405
TEMPLATES[0]["DIRS"] = [BASE_DIR / "templates"]  # noqa: F405
STATIC_URL = "static/"
