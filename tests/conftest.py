"""Fixtures shared by the whole suite."""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from tests.live import LiveServer, start_daphne

SCHEMA_DIR = Path(__file__).resolve().parent.parent.parent / "shared" / "mcp-schema"


@cache
def _schema(version: str) -> dict[str, Any]:
    path = SCHEMA_DIR / version / "schema.json"
    if not path.exists():
        raise FileNotFoundError(f"the official MCP schemas are expected at {path} (../shared/mcp-schema)")
    return json.loads(path.read_text())


def assert_valid(instance: Any, definition: str, version: str) -> None:
    """Validate ``instance`` against ``definition`` of the official schema of ``version``."""
    root = _schema(version)
    defs_key = "$defs" if "$defs" in root else "definitions"
    if definition not in root[defs_key]:
        raise KeyError(f"{definition} is not defined in the {version} schema")
    schema = {**root, "$ref": f"#/{defs_key}/{definition}"}
    validator_cls = jsonschema.validators.validator_for(root)
    validator_cls(schema).validate(instance)


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
