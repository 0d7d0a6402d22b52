"""Run the conformance suite 0.2.0-alpha.12 (npm alias ``conformance-next``) against a running server and
print, per scenario, its counts and the checks that did not succeed (id, status, message).

It is a tool for implementing MCP 2026-07-28 (issue 13, docs/design/mcp-2026-07-28.md), not a test: pytest
does not collect it. Start the fixture server first (see tests/conformance/settings.py), then:

    .venv/bin/python tests/conformance_next/summarize.py --url http://127.0.0.1:8001/mcp --requirements 2026-07-28
    .venv/bin/python tests/conformance_next/summarize.py --url http://127.0.0.1:8001/mcp --requirements 2025-11-25

``--scenario NAME`` runs one scenario instead of a requirement set; ``--all`` also lists the checks that
passed. The suite's ``conformance`` bin in tests/node/node_modules/.bin stays 0.1.16 (the older suite, which
the test suite runs), so this runs the newer one by its path.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

NODE_DIR = Path(__file__).resolve().parent.parent / "node"
NODE = NODE_DIR / "node_modules" / ".bin" / "node"  # the pinned Node 22 (the suite needs Node >= 22)
SUITE = NODE_DIR / "node_modules" / "conformance-next" / "dist" / "index.js"
# The suite names each result directory "server-<scenario>-<ISO timestamp with dashes>".
TIMESTAMP_LENGTH = len("-2026-11-30T07-54-08-967Z")


def run_suite(url: str, selection: list[str], output: Path) -> str:
    """Run the suite, saving checks.json files under ``output``; return its console output."""
    if not SUITE.exists():
        raise SystemExit(f"missing {SUITE}: run `npm ci --prefix tests/node`")
    command = [str(NODE), str(SUITE), "server", "--url", url, *selection, "-o", str(output)]
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "NO_COLOR": "1"}, timeout=1200)
    return done.stdout + done.stderr


def scenario_name(result_dir: Path) -> str:
    return result_dir.name.removeprefix("server-")[:-TIMESTAMP_LENGTH]


def report(output: Path, show_all: bool) -> int:
    """Print each scenario's counts and its non-successful checks; return the number of failed checks."""
    failed_total = 0
    for result_dir in sorted(output.glob("server-*")):
        checks_file = result_dir / "checks.json"
        if not checks_file.exists():
            print(f"{scenario_name(result_dir)}: no checks.json")
            continue
        checks = json.loads(checks_file.read_text())
        failed = sum(1 for check in checks if check.get("status") == "FAILURE")
        passed = sum(1 for check in checks if check.get("status") == "SUCCESS")
        failed_total += failed
        print(f"{scenario_name(result_dir)}: {passed} passed, {failed} failed")
        for check in checks:
            status = check.get("status")
            if status == "SUCCESS" and not show_all:
                continue
            message = (check.get("errorMessage") or check.get("description") or "").replace("\n", " ")
            print(f"    {status:<8} {check.get('id')}: {message[:300]}")
    return failed_total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True, help="the server's MCP endpoint, e.g. http://127.0.0.1:8001/mcp")
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--requirements", help="a spec revision's frozen requirement set: 2026-07-28 or 2025-11-25")
    group.add_argument("--scenario", help="one scenario, e.g. server-stateless")
    parser.add_argument("--all", action="store_true", help="also list the checks that passed")
    parser.add_argument("--keep", type=Path, help="keep the suite's result directories here")
    args = parser.parse_args()
    selection = ["--requirements", args.requirements] if args.requirements else ["--scenario", args.scenario]
    with tempfile.TemporaryDirectory() as tmp:
        output = args.keep or Path(tmp)
        console = run_suite(args.url, selection, output)
        failed = report(output, args.all)
    # The suite's own verdict lines (per scenario, the total, the unscored scenarios), without its chatter.
    print()
    for line in console.splitlines():
        if line.startswith(("✓ ", "✗ ", "  ✓ ", "  ✗ ", "Total:", "Passed:", "Not scored")):
            print(line)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
