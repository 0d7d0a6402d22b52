"""The benchmark's ``echo`` tool, autodiscovered when ``tests.benchmarks`` is an installed app (demo_settings)."""

from mcp_app import tool

from .echo import echo

# Read-only, as an echo is: its audit row is written once, before the answer (AUDIT_WRITE_AHEAD's default);
# ``bench_vs_sdk --write-ahead always`` measures the row written ahead, as for a tool that changes things.
tool(annotations={"readOnlyHint": True})(echo)
