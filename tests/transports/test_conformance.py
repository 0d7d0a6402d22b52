"""The official conformance suite (npm @modelcontextprotocol/conformance 0.1.16) against a live daphne."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from tests.live import LiveServer
from tests.node_peers import node_env

# The suite's active scenarios in 0.1.16 (`conformance list --server`, less the two it marks pending).
ACTIVE_SCENARIOS = 30
SUMMARIES: list[str] = []  # printed at the end of the run by tests/conftest.py


def test_conformance_server_suite(daphne_server: LiveServer, tmp_path: Path) -> None:
    # The DNS-rebinding scenario needs a loopback URL; every scenario opens its own session.
    run = subprocess.run(
        ["conformance", "server", "--url", f"http://127.0.0.1:{daphne_server.port}/mcp"],
        env=node_env(tmp_path), cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )
    output = run.stdout + run.stderr
    summary = output[output.find("=== SUMMARY ==="):] if "=== SUMMARY ===" in output else output[-3000:]
    total = re.search(r"^Total: (\d+) passed, (\d+) failed$", output, re.MULTILINE)
    assert total is not None, f"no summary line in the suite's output:\n{output[-3000:]}"
    SUMMARIES.append(f"conformance {summary.strip()}")
    scenarios = re.findall(r"^([✓✗]) (\S+): (\d+) passed, (\d+) failed$", output, re.MULTILINE)
    failed = [name for mark, name, _, fails in scenarios if mark != "✓" or fails != "0"]
    assert failed == [], f"failing scenarios {failed}:\n{summary}"
    assert len(scenarios) == ACTIVE_SCENARIOS, summary
    assert int(total.group(2)) == 0 and run.returncode == 0, summary
    # 39 checks pass; the 40th (server-sse-multiple-streams' stream check) is INFO because plain
    # requests are answered with JSON, which the suite counts as valid.
    assert int(total.group(1)) >= 39, summary


def test_inspector_cli_over_streamable_http(daphne_server: LiveServer, tmp_path: Path) -> None:
    env = node_env(tmp_path)
    base = ["mcp-inspector", "--cli", daphne_server.mcp_url, "--transport", "http"]
    listed = subprocess.run([*base, "--method", "tools/list"], env=env, capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0, listed.stderr
    assert '"name": "uppercase_text"' in listed.stdout
    called = subprocess.run([*base, "--method", "tools/call", "--tool-name", "uppercase_text", "--tool-arg", "text=hi there"],
                            env=env, capture_output=True, text=True, timeout=120)
    assert called.returncode == 0, called.stderr
    assert '"text": "HI THERE"' in called.stdout
