"""Smoke test of the benchmark's own parts (tests/benchmarks/bench_vs_sdk.py, not run by the suite): the official
SDK's server starts with the ``echo`` tool behind its bearer token, and the benchmark's clients get the echo back
from it, over Streamable HTTP and over the legacy SSE transport. A few seconds: two uvicorn processes."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.benchmarks.bench_vs_sdk import SDK, answer_of
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
