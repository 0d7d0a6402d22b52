"""The benchmark's tools, autodiscovered when ``tests.benchmarks`` is an installed app (demo_settings).

``echo`` runs on the event loop (``run_in_thread=False``), as the official SDK runs the same sync function,
so both servers run it alike; ``echo_in_thread`` is the same function where mcp_app runs a sync tool by
default, Django's thread for sync code, to measure what that hand-off costs.
"""

from mcp_app import tool

from .echo import echo

# Read-only, as an echo is: its audit row is written once, before the answer (AUDIT_WRITE_AHEAD's default);
# ``bench_vs_sdk --write-ahead always`` measures the row written ahead, as for a tool that changes things.
tool(annotations={"readOnlyHint": True}, run_in_thread=False)(echo)
tool(name="echo_in_thread", annotations={"readOnlyHint": True})(echo)
