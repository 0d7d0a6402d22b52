"""Running some of the suite's tests again on PostgreSQL, in a subprocess on a fresh test database
(``tests.pg_settings``): for code whose SQL differs by backend, while the suite itself runs on SQLite."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys

import pytest

from tests.live import REPO


def postgres_problem() -> str | None:
    """Why PostgreSQL at 127.0.0.1:5432 (or ``MCP_TEST_POSTGRES_*``) cannot be used; None when it can."""
    try:
        import psycopg

        with psycopg.connect(
            host=os.environ.get("MCP_TEST_POSTGRES_HOST", "127.0.0.1"),
            user=os.environ.get("MCP_TEST_POSTGRES_USER", "postgres"),
            password=os.environ.get("MCP_TEST_POSTGRES_PASSWORD") or None,
            dbname="postgres",
            connect_timeout=3,
        ) as conn:
            conn.execute("SELECT 1")
    except Exception as exc:  # noqa: BLE001 - any failure means: not reachable, say why
        return f"{type(exc).__name__}: {exc}"
    return None


def run_on_postgresql(test_file: str, selection: str, *, database_prefix: str) -> None:
    """Run the tests of ``test_file`` chosen by ``-k selection`` on PostgreSQL; fail unless they all pass
    (none skipped). Skips the calling test when PostgreSQL is not reachable, saying why."""
    problem = postgres_problem()
    if problem is not None:
        pytest.skip(f"PostgreSQL is not reachable at 127.0.0.1:5432 as postgres ({problem}); start it to run this test")
    env = {**os.environ, "MCP_TEST_PG_TEST_DB": f"{database_prefix}_{secrets.token_hex(4)}"}
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--ds", "tests.pg_settings", test_file, "-k", selection],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-3000:]
    assert " passed" in run.stdout and "skipped" not in run.stdout.splitlines()[-1], run.stdout[-2000:]
