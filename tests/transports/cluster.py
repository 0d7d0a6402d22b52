"""Daphne workers sharing one fresh PostgreSQL database and a private Redis prefix, started one by one (a test
may kill one and start another). For the fault tests; builds on test_multiprocess.py's helpers.

Use the ``workers`` fixture: ``from tests.transports.cluster import Workers, workers_fixture``.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.live import LiveServer, start_daphne
from tests.transports.test_multiprocess import REDIS_URL, _check_services, _delete_redis_keys, _drop_database, _pg_connect

#: Seconds between worker heartbeats in the fault tests (the default is 5): a dead worker is known within
#: three of them.
HEARTBEAT = 1.0
SETTINGS = "tests.worker_settings"


@dataclass
class Workers:
    """The workers started so far (``start()`` adds one) and their shared database."""

    database: str
    env: dict[str, str]
    workdir: Path
    servers: list[LiveServer] = field(default_factory=list)

    def start(self) -> LiveServer:
        """Start one more worker (the first one migrates the database)."""
        server = start_daphne(self.workdir, settings=SETTINGS, extra_env=self.env, run_migrations=not self.servers)
        self.servers.append(server)
        return server

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Run ``sql`` on the workers' database, from a short-lived connection of the test's own."""
        with _pg_connect(self.database) as conn:
            return conn.execute(sql, params).fetchall()


@contextmanager
def running_workers(workdir: Path) -> Iterator[Workers]:
    """A fresh database and Redis prefix for workers started with ``start()``; every worker started is stopped,
    and both are removed, on leaving. Skips, saying what to start, when PostgreSQL or Redis is not running.
    (Also for the benchmarks, which run outside pytest.)"""
    _check_services()
    from psycopg import sql

    token = secrets.token_hex(6)
    database, prefix = f"mcp_app_test_{token}", f"mcp_app_test_{token}:"
    with _pg_connect() as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
    env = {
        "MCP_TEST_POSTGRES_DB": database,
        "MCP_TEST_REDIS_URL": REDIS_URL,
        "MCP_TEST_REDIS_PREFIX": prefix,
        "MCP_TEST_HEARTBEAT": str(HEARTBEAT),
    }
    cluster = Workers(database, env, workdir)
    try:
        yield cluster
    finally:
        for server in cluster.servers:
            server.stop()
        _drop_database(database)
        _delete_redis_keys(prefix)


@pytest.fixture(name="workers")
def workers_fixture(tmp_path: Path) -> Iterator[Workers]:
    """:func:`running_workers` in the test's temporary directory."""
    with running_workers(tmp_path) as cluster:
        yield cluster
