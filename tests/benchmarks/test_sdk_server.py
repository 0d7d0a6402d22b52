"""Smoke test of the benchmark's own parts (tests/benchmarks/bench_vs_sdk.py, not run by the suite): the official
SDK's server starts with the ``echo`` tool behind its bearer token, and the benchmark's clients get the echo back
from it, over Streamable HTTP and over the legacy SSE transport; this project's side serves ``echo`` and
``echo_in_thread`` and audits them. A few seconds each: a uvicorn process."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.benchmarks.bench_vs_sdk import OURS, SDK, SETTINGS, answer_of, create_token, database, manage
from tests.benchmarks.load import echo_call
from tests.benchmarks.sse_client import check_echo, open_session, run
from tests.live import LiveServer, start_daphne
from tests.live import open_session as open_http_session

TOKEN = "smoke-test-token"


def sdk(tmp_path: Path, mode: str) -> LiveServer:
    return start_daphne(
        tmp_path, server="uvicorn", app=SDK, run_migrations=False, extra_env={"BENCH_SDK_MODE": mode, "BENCH_TOKEN": TOKEN}
    )


def test_the_sdk_server_echoes_over_streamable_http_and_refuses_other_tokens(tmp_path: Path) -> None:
    server = sdk(tmp_path, "stateful")
    try:
        with httpx.Client(timeout=10) as http:
            headers = open_http_session(http, server.mcp_url, TOKEN)
            check_echo(answer_of(http.post(server.mcp_url, json=echo_call(2, "smoke"), headers=headers)), "smoke")
            refused = http.post(server.mcp_url, json=echo_call(3), headers={**headers, "authorization": "Bearer other"})
            assert refused.status_code == 401
    finally:
        server.stop()


def test_the_benchmark_sse_client_round_trips_with_the_sdk_sse_server(tmp_path: Path) -> None:
    server = sdk(tmp_path, "sse")

    async def round_trip() -> None:
        session = await open_session("127.0.0.1", server.port, "/sse", {"authorization": f"Bearer {TOKEN}"})
        try:
            check_echo(await session.call(echo_call(7, "smoke")), "smoke")
        finally:
            session.close()

    try:
        run(round_trip())
    finally:
        server.stop()


def test_this_projects_benchmark_server_answers_echo_on_the_loop_and_echo_in_thread_and_audits_both(tmp_path: Path) -> None:
    # The benchmark's own side, as bench_vs_sdk starts it: the demo's settings plus the two echo tools, with
    # the audit log on; each call's row is written (by the group writer) before its answer.
    with database("sqlite", tmp_path) as env:
        token = create_token(env)
        server = start_daphne(tmp_path, server="uvicorn", app=OURS, settings=SETTINGS, run_migrations=False, extra_env=env)
        try:
            with httpx.Client(timeout=10) as http:
                headers = open_http_session(http, server.mcp_url, token)
                tools = answer_of(
                    http.post(server.mcp_url, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, headers=headers)
                )
                assert {"echo", "echo_in_thread"} <= {tool["name"] for tool in tools["result"]["tools"]}
                for number, tool in enumerate(("echo", "echo_in_thread"), 2):
                    answer = http.post(server.mcp_url, json=echo_call(number, f"via {tool}", tool=tool), headers=headers)
                    check_echo(answer_of(answer), f"via {tool}")
        finally:
            server.stop()
        rows = manage(
            env,
            "shell",
            "-c",
            "from mcp_app.models import ToolCall; "
            "print(sorted((c.tool, c.outcome, c.arguments['text']) for c in ToolCall.objects.all()))",
        )
    assert rows.splitlines()[-1] == str([("echo", "ok", "via echo"), ("echo_in_thread", "ok", "via echo_in_thread")])
