"""Fixtures shared by the whole suite."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.live import LiveServer, start_daphne


@pytest.fixture(autouse=True)
def _close_connections_of_the_sync_thread() -> Iterator[None]:
    """After each test, close the database connections that asgiref's one thread for sync code holds.

    That thread outlives tests: a connection a database test opened there would otherwise still be open when a
    later test without database access calls a sync tool, whose ``close_old_connections()`` then touches it and
    is refused by pytest-django. Django closes a request's connections the same way in production.
    """
    yield
    from asgiref.sync import SyncToAsync
    from django.db import connections

    SyncToAsync.single_thread_executor.submit(connections.close_all).result(timeout=30)


@pytest.fixture(scope="session")
def daphne_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One daphne process serving the fixtures and the demo tools, for the whole run.

    At the end, its log must hold no traceback: a bad request is answered, never crashes a handler.
    """
    server = start_daphne(tmp_path_factory.mktemp("live"))
    yield server
    server.stop()
    server.assert_no_traceback()


def pytest_terminal_summary(terminalreporter: object) -> None:
    """Print the conformance suite's own summary in the test log (and so in CI's)."""
    from tests.transports.test_conformance import SUMMARIES

    for summary in SUMMARIES:
        terminalreporter.write_line(summary)  # type: ignore[attr-defined]
