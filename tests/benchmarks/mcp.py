"""The benchmark's ``echo`` tool, autodiscovered when ``tests.benchmarks`` is an installed app (demo_settings)."""

from mcp_app import tool

from .echo import echo

tool()(echo)
