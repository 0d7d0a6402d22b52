"""The demo site's settings as shipped (bearer tokens, audit log on), for measuring it as deployed.

mcpsite.settings unchanged (SQLite, or PostgreSQL with MCPSITE_POSTGRES_DB; in-memory channel layer), plus:

- the ``echo`` and ``echo_in_thread`` tools (tests/benchmarks/mcp.py, autodiscovered from this installed app);
- the per-caller caps raised, so that one load generator with one token can drive the server: rates, and
  sessions and streams per principal, unlimited (they would otherwise answer 429 or end sessions mid-run).

DJANGO_DEBUG=0 in the environment turns DEBUG off, as in production (the benchmark sets it);
BENCH_AUDIT_LOG=0 turns the audit log off, to measure what it costs; BENCH_WRITE_AHEAD=always writes every
call's row ahead of its tool (the shipped default writes the row of a read-only tool such as ``echo`` once).
"""

import os

from mcpsite.settings import *  # noqa: F403

INSTALLED_APPS = [*INSTALLED_APPS, "tests.benchmarks"]  # noqa: F405
MCP_APP = {
    **MCP_APP,  # noqa: F405
    "TOOL_CALL_RATE": None,
    "REQUEST_RATE": None,
    "MAX_SESSIONS_PER_PRINCIPAL": None,
    "MAX_STREAMS_PER_PRINCIPAL": None,
    "AUDIT_LOG": os.environ.get("BENCH_AUDIT_LOG", "1") == "1",
    "AUDIT_WRITE_AHEAD": os.environ.get("BENCH_WRITE_AHEAD", "unless_read_only"),
}
