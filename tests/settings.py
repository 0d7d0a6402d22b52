"""Settings for the test run: the conformance fixture server's, with the demo app added."""

from tests.conformance.settings import *  # noqa: F403

INSTALLED_APPS = [*INSTALLED_APPS, "mcpsite.demo"]  # noqa: F405
