"""The official conformance suite 0.2.0-alpha.12 (npm alias ``conformance-next``) against a live daphne, by
requirement set: ``--requirements 2025-11-25`` (the handshake era: no failure at all) and
``--requirements 2026-07-28`` (MCP 2026-07-28 on the same endpoint).

The 2026-07-28 run passes ``--expected-failures tests/conformance_next/expected-failures-2026-07-28.yml``: the
suite then fails on any failing check not listed there, and on any listed check that passes (a stale entry),
so the file is the exact list of what is still missing, with the reason for each.
"""

from __future__ import annotations

import re
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.live import LiveServer, shell, start_daphne
from tests.node_peers import CONFORMANCE_NEXT, node_env
from tests.transports.test_conformance import SUMMARIES

EXPECTED_FAILURES = Path(__file__).resolve().parent.parent / "conformance_next" / "expected-failures-2026-07-28.yml"
SCENARIO_LINE = re.compile(r"^([✓✗]) (\S+): (\d+) passed, (\d+) failed$", re.MULTILINE)
TOTAL_LINE = re.compile(r"^Total: (\d+) passed, (\d+) failed$", re.MULTILINE)
# Scenarios of the 2026-07-28 requirement set that must pass whole (no entry in the expected failures).
MODERN_SCENARIOS = [
    "completion-complete",
    "tools-list",
    "tools-call-simple-text",
    "tools-call-image",
    "tools-call-audio",
    "tools-call-embedded-resource",
    "tools-call-mixed-content",
    "tools-call-error",
    "tools-call-with-progress",
    "server-sse-multiple-streams",
    "resources-list",
    "resources-read-text",
    "resources-read-binary",
    "resources-templates-read",
    "sep-2164-resource-not-found",
    "prompts-list",
    "prompts-get-simple",
    "prompts-get-with-args",
    "prompts-get-embedded-resource",
    "prompts-get-with-image",
    "dns-rebinding-protection",
    "caching",
    "input-required-result-basic-elicitation",
    "input-required-result-basic-sampling",
    "input-required-result-basic-list-roots",
    "input-required-result-request-state",
    "input-required-result-multiple-input-requests",
    "input-required-result-multi-round",
    "input-required-result-missing-input-response",
    "input-required-result-non-tool-request",
    "input-required-result-result-type",
    "input-required-result-unsupported-methods",
    "input-required-result-tampered-state",
    "input-required-result-capability-check",
    "input-required-result-ignore-extra-params",
    "input-required-result-validate-input",
    "json-schema-2020-12",
    "http-header-validation",
    "http-custom-header-server-validation",
    "server-stateless",
]


def run_suite(server: LiveServer, tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], str]:
    run = subprocess.run(
        [
            "node",
            str(CONFORMANCE_NEXT),
            "server",
            "--url",
            f"http://127.0.0.1:{server.port}/mcp",
            *args,
            "-o",
            str(tmp_path / "out"),
        ],
        env=node_env(tmp_path),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=900,
    )
    output = run.stdout + run.stderr
    summary = output[output.find("=== SUMMARY ===") :] if "=== SUMMARY ===" in output else output[-3000:]
    return run, summary


@pytest.fixture(scope="module", autouse=True)
def _suite_present() -> None:
    if not CONFORMANCE_NEXT.exists():
        raise RuntimeError(f"missing {CONFORMANCE_NEXT}: run `npm ci --prefix tests/node` (the README's test command does)")


def test_handshake_era_requirement_set(daphne_server: LiveServer, tmp_path: Path) -> None:
    run, summary = run_suite(daphne_server, tmp_path, "--requirements", "2025-11-25")
    total = TOTAL_LINE.search(summary)
    assert total is not None, summary
    SUMMARIES.append(f"conformance-next --requirements 2025-11-25 {summary.strip()}")
    failed = [name for mark, name, _, fails in SCENARIO_LINE.findall(summary) if mark != "✓" or fails != "0"]
    assert failed == [] and int(total.group(2)) == 0, summary
    assert int(total.group(1)) >= 80 and run.returncode == 0, summary


def test_modern_requirement_set(daphne_server: LiveServer, tmp_path: Path) -> None:
    run, summary = run_suite(
        daphne_server, tmp_path, "--requirements", "2026-07-28", "--expected-failures", str(EXPECTED_FAILURES)
    )
    assert TOTAL_LINE.search(summary) is not None, summary
    SUMMARIES.append(f"conformance-next --requirements 2026-07-28 {summary.strip()}")
    scenarios = {name: (mark, int(passed), int(fails)) for mark, name, passed, fails in SCENARIO_LINE.findall(summary)}
    for name in MODERN_SCENARIOS:
        assert name in scenarios, f"{name} was not run:\n{summary}"
        mark, passed, fails = scenarios[name]
        assert mark == "✓" and fails == 0 and passed > 0, f"{name}: {passed} passed, {fails} failed\n{summary}"
    # No failure outside the baseline, and no baseline entry that passes now.
    assert "Baseline check passed" in summary and run.returncode == 0, summary


# -- the MCP Inspector CLI in its modern-only mode, with credentials ------------------------------------------
@pytest.fixture(scope="module")
def auth_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, str, Path]]:
    """A daphne with the settings a real site gets (credentials required), and a bearer token of a new user."""
    workdir = tmp_path_factory.mktemp("modern-auth")
    database = workdir / "db.sqlite3"
    server = start_daphne(workdir, settings="tests.auth_settings", db_path=database)
    code = """
import secrets
from django.contrib.auth.models import User
from mcp_app.models import Token
user = User.objects.create_user("modern-" + secrets.token_hex(4))
print(Token.create_for(user, name="inspector")[1])
"""
    token = shell("tests.auth_settings", {"MCP_TEST_DB": str(database)}, code)
    yield server, token, database
    server.stop()
    server.assert_no_traceback()


def test_inspector_cli_modern_era_with_a_bearer_token(auth_server: tuple[LiveServer, str, Path], tmp_path: Path) -> None:
    server, token, database = auth_server
    env = node_env(tmp_path)
    base = ["mcp-inspector", "--cli", server.mcp_url, "--transport", "http", "--protocol-era", "modern"]
    credentials = ["--header", f"Authorization: Bearer {token}"]
    listed = subprocess.run([*base, *credentials, "--method", "tools/list"], env=env, capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0, listed.stdout + listed.stderr
    assert '"name": "uppercase_text"' in listed.stdout
    args = ["--method", "tools/call", "--tool-name", "uppercase_text", "--tool-arg", "text=modern era"]
    called = subprocess.run([*base, *credentials, *args], env=env, capture_output=True, text=True, timeout=120)
    assert called.returncode == 0, called.stdout + called.stderr
    assert '"text": "MODERN ERA"' in called.stdout
    # Credentials are checked on every request: without them, nothing is discovered or listed.
    refused = subprocess.run([*base, "--method", "tools/list"], env=env, capture_output=True, text=True, timeout=120)
    assert refused.returncode != 0 and "uppercase_text" not in refused.stdout
    # The call is audited with its user and without a session (modern requests have none).
    with sqlite3.connect(database, timeout=20) as db:
        rows = db.execute(
            "SELECT c.session_id, c.outcome, u.username FROM mcp_app_toolcall c JOIN auth_user u ON u.id = c.user_id "
            "WHERE c.tool = 'uppercase_text'"
        ).fetchall()
    assert len(rows) == 1 and rows[0][:2] == (None, "ok") and rows[0][2].startswith("modern-"), rows
