"""A worker stopped gracefully (SIGTERM) in the middle of a load of tools/call loses no audit row.

A real daphne (or uvicorn) process serves eight clients, each with its own Streamable HTTP session, calling
``uppercase_text`` one call after another with a text of its own (``call-<n>``), 200 calls in all. Once a
quarter of them have been answered the worker gets SIGTERM, and the clients go on until their calls are
refused. When the process has exited, the audit log (the worker's SQLite file) must hold:

- a row with outcome ``ok`` and the call's arguments for every call that got a successful answer, and one
  row, exactly, for every answer the clients received (those completed during shutdown included);
- no row left half-written (outcome ``started``);
- a row without an answer only for a call that was running when the stop came (at most one per client):
  daphne cancels (or abandons) what still runs when it stops, so such a call's row is ``failed`` with the
  :data:`~mcp_app.audit.INTERRUPTED` message (the audit writer's drain at exit) or the cancellation's, or,
  when the tool had already finished, its outcome, though the stop cut its answer (the transport does not yet let running
  calls finish before the server stops: their answers are what a stop loses, never their rows).

Under uvicorn, which stops accepting and lets running requests finish before it exits, the count is exact:
every call has an answer and a row, or neither.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.live import HEADERS, LATEST, initialize_message, start_daphne

CLIENTS = 8
CALLS = 200


def parse_answer(response: httpx.Response) -> dict[str, Any] | None:
    """The JSON-RPC answer in a POST's response (JSON, or the last message of an SSE stream)."""
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        messages = [json.loads(line[5:]) for line in response.text.splitlines() if line.startswith("data:") and line[5:].strip()]
        answers = [m for m in messages if "id" in m and ("result" in m or "error" in m)]
        return answers[-1] if answers else None
    if response.headers.get("content-type", "").startswith("application/json"):
        return response.json()
    return None


async def client(url: str, numbers: list[int], answered: dict[int, dict[str, Any]], refused: list[int]) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        answer = await http.post(url, json=initialize_message(LATEST), headers=HEADERS)
        assert answer.status_code == 200, answer.text
        headers = {**HEADERS, "mcp-session-id": answer.headers["mcp-session-id"], "mcp-protocol-version": LATEST}
        initialized = {"jsonrpc": "2.0", "method": "notifications/initialized"}
        assert (await http.post(url, json=initialized, headers=headers)).status_code == 202
        for n in numbers:
            call = {
                "jsonrpc": "2.0",
                "id": n,
                "method": "tools/call",
                "params": {"name": "uppercase_text", "arguments": {"text": f"call-{n}"}},
            }
            try:
                response = await http.post(url, json=call, headers=headers)
            except httpx.HTTPError:
                refused.append(n)  # the worker is gone (or going): not accepted
                continue
            message = parse_answer(response)
            if message is None:
                refused.append(n)  # no JSON-RPC answer (a 503 page, a cut stream): not accepted
            else:
                answered[n] = message


async def run_load(url: str, stop: Any) -> tuple[dict[int, dict[str, Any]], list[int]]:
    answered: dict[int, dict[str, Any]] = {}
    refused: list[int] = []
    shares = [list(range(i, CALLS, CLIENTS)) for i in range(CLIENTS)]
    load = asyncio.gather(*(client(url, share, answered, refused) for share in shares))

    async def stop_midway() -> None:
        while len(answered) < CALLS // 4:
            await asyncio.sleep(0.005)
        stop()

    await asyncio.gather(load, stop_midway())
    return answered, refused


@pytest.mark.parametrize("serving", ["daphne", "uvicorn"])
def test_sigterm_mid_load_loses_no_audit_row(tmp_path: Path, serving: str) -> None:
    server = start_daphne(tmp_path, server=serving)
    try:
        answered, refused = asyncio.run(run_load(server.mcp_url, lambda: server.process.send_signal(signal.SIGTERM)))
        assert server.process.wait(30) is not None
    finally:
        server.stop()
    log = server.log()
    with sqlite3.connect(tmp_path / "db.sqlite3") as db:
        rows = db.execute(
            "SELECT arguments, outcome, error_message FROM mcp_app_toolcall WHERE tool = 'uppercase_text'"
        ).fetchall()
    outcomes: dict[int, list[tuple[str, str]]] = {}
    for arguments, outcome, message in rows:
        outcomes.setdefault(int(json.loads(arguments)["text"].split("-")[1]), []).append((outcome, message))
    succeeded = {n for n, m in answered.items() if "result" in m and not m["result"].get("isError")}
    assert CALLS // 4 <= len(succeeded) < CALLS, (len(succeeded), "the stop did not come mid-load")
    assert len(answered) + len(refused) == CALLS
    missing = sorted(n for n in succeeded if [o for o, _ in outcomes.get(n, [])] != ["ok"])
    assert not missing, f"answered calls without their one 'ok' row: {missing[:20]}\n{log[-3000:]}"
    assert all(len(outcomes.get(n, [])) == 1 for n in answered), "an answer without its one row"
    assert not [n for n, outs in outcomes.items() if any(o == "started" for o, _ in outs)], f"half-written: {outcomes}"
    cut_short = {n for n in outcomes if n not in answered}
    assert len(cut_short) <= CLIENTS, f"rows for calls that were never running at the stop: {sorted(cut_short)}"
    assert all(len(outcomes[n]) == 1 for n in cut_short), {n: outcomes[n] for n in cut_short}
    assert len(rows) == len(answered) + len(cut_short)
    if serving == "uvicorn":  # it drains what runs before it exits: rows and answers match exactly
        assert not cut_short and len(rows) == len(answered), {n: outcomes[n] for n in cut_short}
