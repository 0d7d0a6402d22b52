"""Fixtures shared by the whole suite."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.live import LiveServer, start_daphne


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
