"""Resumable Streamable HTTP streams: event ids, the priming event, ``Last-Event-ID`` and retention.

A client whose connection drops has not cancelled anything: what the request sends afterwards (progress,
its result) is kept, and ``GET`` with ``Last-Event-ID`` on any worker replays that stream's events after
the id, then follows the stream until the request's answer. Checked here:

- raw HTTP against one daphne: ids, priming, replay from the middle of a stream, a stream closed by the
  tool (``ctx.close_stream()``) and resumed, another stream's or session's ids refused, bad ids answered
  with JSON-RPC errors, and a plain JSON answer keeps nothing;
- the store's bounds (count and age), in process;
- the official SDK client, its connection cut mid-call by a proxy in the test, resuming on the OTHER
  worker of two daphne processes sharing PostgreSQL and Redis, and getting every progress event exactly
  once and the result.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest

from tests.live import LiveServer
from tests.transports.test_multiprocess import Cluster, cluster  # noqa: F401 - the two-worker fixture

LATEST = "2025-11-25"
POST_HEADERS = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}


# -- helpers ------------------------------------------------------------------------------------------------
def rpc(method: str, params: dict[str, Any] | None = None, id: int | str | None = 1) -> dict[str, Any]:
    message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
    if params is not None:
        message["params"] = params
    if id is not None:
        message["id"] = id
    return message


def open_session(client: httpx.Client, url: str, version: str = LATEST) -> dict[str, str]:
    init = client.post(
        url,
        json=rpc(
            "initialize", {"protocolVersion": version, "capabilities": {}, "clientInfo": {"name": "resume-test", "version": "1"}}
        ),
        headers=POST_HEADERS,
    )
    assert init.status_code == 200, init.text
    headers = {**POST_HEADERS, "Mcp-Session-Id": init.headers["mcp-session-id"], "MCP-Protocol-Version": version}
    assert client.post(url, json=rpc("notifications/initialized", id=None), headers=headers).status_code == 202
    return headers


def sse_events(text: str) -> list[dict[str, Any]]:
    """Each SSE event of a body as ``{"id", "retry", "data"}`` (data: the parsed message, or None when empty)."""
    events = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        fields: dict[str, Any] = {}
        data: list[str] = []
        for line in block.split("\n"):
            if not line or line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "data":
                data.append(value)
            else:
                fields[name] = value
        if not fields and not data:
            continue
        joined = "\n".join(data)
        fields["data"] = json.loads(joined) if joined else None
        events.append(fields)
    return events


def get_resume(client: httpx.Client, url: str, headers: dict[str, str], last_event_id: str) -> httpx.Response:
    get_headers = {k: v for k, v in headers.items() if k != "Content-Type"}
    return client.get(url, headers={**get_headers, "Accept": "text/event-stream", "Last-Event-ID": last_event_id})


def stored_events(server: LiveServer, session_id: str) -> int:
    with sqlite3.connect(server.log_path.parent / "db.sqlite3", timeout=20) as db:
        return db.execute("SELECT count(*) FROM mcp_app_streamevent WHERE session_id = ?", (session_id,)).fetchone()[0]


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=30) as http:
        yield http


# -- one worker, raw HTTP -------------------------------------------------------------------------------------
def test_post_stream_starts_with_a_priming_event_and_numbers_its_events(client, daphne_server):
    url = daphne_server.mcp_url
    headers = open_session(client, url)
    params = {"name": "test_tool_with_progress", "arguments": {}, "_meta": {"progressToken": 7}}
    response = client.post(url, json=rpc("tools/call", params, id="n"), headers=headers)
    assert response.headers["content-type"].startswith("text/event-stream")
    events = sse_events(response.text)
    priming, *rest = events
    assert priming["data"] is None and priming["retry"] == "1000" and priming["id"].endswith(":0")
    stream = priming["id"].split(":")[0]
    assert stream.startswith("p")
    assert [e["id"] for e in rest] == [f"{stream}:{n}" for n in range(1, 5)]
    assert [e["data"].get("method") for e in rest] == ["notifications/progress"] * 3 + [None]
    assert rest[-1]["data"]["id"] == "n"


def test_get_stream_starts_with_a_priming_event(client, daphne_server):
    url = daphne_server.mcp_url
    headers = open_session(client, url)
    get_headers = {k: v for k, v in headers.items() if k != "Content-Type"}
    with client.stream("GET", url, headers={**get_headers, "Accept": "text/event-stream"}) as stream:
        assert stream.status_code == 200
        head = b""
        for chunk in stream.iter_raw():
            head += chunk
            if head.count(b"\n\n") >= 2:
                break
    retry, priming = sse_events(head.decode())[:2]
    assert retry == {"retry": "1000", "data": None}
    assert priming["data"] is None and priming["id"].startswith("g") and priming["id"].endswith(":0")


def test_resume_replays_the_events_after_the_id_then_closes(client, daphne_server):
    url = daphne_server.mcp_url
    headers = open_session(client, url)
    params = {"name": "test_tool_with_progress", "arguments": {}, "_meta": {"progressToken": "r"}}
    full = sse_events(client.post(url, json=rpc("tools/call", params, id=5), headers=headers).text)
    resumed = get_resume(client, url, headers, full[1]["id"])  # the client saw the first progress event only
    assert resumed.status_code == 200 and resumed.headers["content-type"].startswith("text/event-stream")
    replayed = [e for e in sse_events(resumed.text) if e["data"] is not None]
    assert replayed == full[2:]  # the same ids and messages, nothing before, the answer last, then closed


def test_a_stream_closed_by_its_tool_is_resumed_with_its_result(client, daphne_server):
    url = daphne_server.mcp_url
    headers = open_session(client, url)
    started = time.monotonic()
    response = client.post(url, json=rpc("tools/call", {"name": "test_reconnection", "arguments": {}}, id=9), headers=headers)
    closed_after = time.monotonic() - started
    events = sse_events(response.text)
    assert len(events) == 1 and events[0]["data"] is None, events  # only the priming event: closed mid-call
    assert closed_after < 0.2, f"the stream stayed open {closed_after:.2f} s, as long as the tool ran"
    resumed = sse_events(get_resume(client, url, headers, events[0]["id"]).text)
    answers = [e for e in resumed if e["data"] is not None]
    assert len(answers) == 1 and answers[0]["data"]["id"] == 9
    assert answers[0]["data"]["result"]["content"][0]["text"] == "Reconnection test completed successfully"


def test_resume_never_replays_another_stream_or_session(client, daphne_server):
    url = daphne_server.mcp_url
    headers = open_session(client, url)
    other = open_session(client, url)
    params = {"name": "test_tool_with_progress", "arguments": {}, "_meta": {"progressToken": 1}}
    first = sse_events(client.post(url, json=rpc("tools/call", params, id="a"), headers=headers).text)
    second = sse_events(client.post(url, json=rpc("tools/call", params, id="b"), headers=headers).text)
    assert first[0]["id"].split(":")[0] != second[0]["id"].split(":")[0]
    replayed = [
        e["data"]["id"]
        for e in sse_events(get_resume(client, url, headers, first[0]["id"]).text)
        if e["data"] is not None and "id" in e["data"]
    ]
    assert replayed == ["a"]
    # Another session naming this stream's id learns nothing: 404, as for a stream that never existed.
    refused = get_resume(client, url, other, first[0]["id"])
    assert refused.status_code == 404
    assert refused.json()["error"]["code"] == -32600 and "Open a new stream" in refused.json()["error"]["message"]


@pytest.mark.parametrize(
    ("last_event_id", "status", "says"),
    [
        ("42", 400, "is not an event id of this server"),
        ("x:1", 400, "is not an event id of this server"),
        ("pNoSuchStream:0", 404, "no longer kept"),
        ("gNoSuchStream:3", 404, "no longer kept"),
    ],
)
def test_bad_last_event_ids_get_json_rpc_errors(client, daphne_server, last_event_id, status, says):
    url = daphne_server.mcp_url
    headers = open_session(client, url)
    response = get_resume(client, url, headers, last_event_id)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    assert says in response.json()["error"]["message"]


def test_an_id_ahead_of_its_stream_is_refused(client, daphne_server):
    url = daphne_server.mcp_url
    headers = open_session(client, url)
    params = {"name": "test_tool_with_progress", "arguments": {}, "_meta": {"progressToken": 1}}
    events = sse_events(client.post(url, json=rpc("tools/call", params), headers=headers).text)
    stream = events[0]["id"].split(":")[0]
    response = get_resume(client, url, headers, f"{stream}:99")
    assert response.status_code == 400 and "ahead of its stream" in response.json()["error"]["message"]


def test_a_plain_json_answer_keeps_nothing(client, daphne_server):
    url = daphne_server.mcp_url
    headers = open_session(client, url)
    answer = client.post(url, json=rpc("tools/call", {"name": "uppercase_text", "arguments": {"text": "x"}}), headers=headers)
    assert answer.headers["content-type"] == "application/json"
    assert stored_events(daphne_server, headers["Mcp-Session-Id"]) == 0


def test_older_sessions_get_ids_but_no_priming_event(client, daphne_server):
    # 2025-06-18 clients resume with Last-Event-ID too, but would try to parse a priming event's empty data.
    url = daphne_server.mcp_url
    headers = open_session(client, url, version="2025-06-18")
    params = {"name": "test_tool_with_progress", "arguments": {}, "_meta": {"progressToken": 1}}
    events = sse_events(client.post(url, json=rpc("tools/call", params), headers=headers).text)
    assert all(e["data"] is not None for e in events) and events[0]["id"].endswith(":0")


# -- the store's bounds, in process ---------------------------------------------------------------------------
@pytest.fixture
def stored_session(transactional_db: Any) -> str:
    from mcp_app.models import Session

    return Session.objects.create(id="resume-bounds", protocol_version=LATEST).id


@pytest.mark.django_db(transaction=True)
async def test_a_stream_keeps_at_most_its_cap_of_events(stored_session, settings):
    from mcp_app.models import StreamEvent
    from mcp_app.transports import resume

    settings.MCP_APP = {"STREAM_EVENT_MAX_PER_STREAM": 5}
    writer = resume.EventWriter(stored_session, "pCap")
    for n in range(8):
        assert await writer.append({"jsonrpc": "2.0", "method": "notifications/message", "params": {"n": n}}) == f"pCap:{n}"
    seqs = [s async for s in StreamEvent.objects.filter(stream="pCap").order_by("seq").values_list("seq", flat=True)]
    assert seqs == [3, 4, 5, 6, 7]
    assert [s for s, _, _ in (await resume.replay_after(stored_session, "pCap", 2)).events] == [3, 4, 5, 6, 7]
    with pytest.raises(resume.ResumeRefused) as refused:  # events 2.. are gone: no silent gap
        await resume.replay_after(stored_session, "pCap", 1)
    assert refused.value.status == 404


@pytest.mark.django_db(transaction=True)
async def test_events_past_their_age_are_never_replayed(stored_session, settings):
    from django.utils import timezone

    from mcp_app.models import StreamEvent
    from mcp_app.transports import resume

    settings.MCP_APP = {"STREAM_EVENT_RETENTION_SECONDS": 60}
    writer = resume.EventWriter(stored_session, "pAge")
    await writer.append(None)
    await writer.append({"jsonrpc": "2.0", "id": 1, "result": {}}, final=True)
    assert (await resume.replay_after(stored_session, "pAge", 0)).ended
    await StreamEvent.objects.filter(stream="pAge").aupdate(created=timezone.now() - timedelta(seconds=61))
    with pytest.raises(resume.ResumeRefused) as refused:
        await resume.replay_after(stored_session, "pAge", 0)
    assert refused.value.status == 404


@pytest.mark.django_db(transaction=True)
async def test_a_burst_of_events_is_stored_in_a_few_inserts(stored_session, monkeypatch):
    # A broadcast reaches every GET stream of a worker at once: their events go in batches, not one by one.
    from mcp_app.models import StreamEvent
    from mcp_app.transports import resume

    inserts: list[int] = []
    real_insert = resume._insert

    def counting_insert(rows: list[Any]) -> None:
        inserts.append(len(rows))
        real_insert(rows)

    monkeypatch.setattr(resume, "_insert", counting_insert)
    writers = [resume.EventWriter(stored_session, f"gBurst{n}") for n in range(1000)]
    message = {"jsonrpc": "2.0", "method": "notifications/tools/list_changed"}
    ids = await asyncio.gather(*(writer.append(message) for writer in writers))
    assert ids == [f"gBurst{n}:0" for n in range(1000)]
    assert await StreamEvent.objects.filter(stream__startswith="gBurst").acount() == 1000
    # A worker's thousand GET streams: one statement, not batches that each wait for the one before.
    assert inserts == [1000], inserts


@pytest.mark.django_db(transaction=True)
def test_a_broadcast_past_every_streams_cap_trims_them_in_a_few_statements(stored_session, settings):
    # Long-lived GET streams all pass their cap; a broadcast then reaches each: one DELETE per stream per event
    # would be hundreds of statements per notification. The batch trims them all in a few, exactly.
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from mcp_app.models import StreamEvent
    from mcp_app.transports import resume

    settings.MCP_APP = {"STREAM_EVENT_MAX_PER_STREAM": 2}
    streams = [f"gTrim{n}" for n in range(300)]
    message = {"jsonrpc": "2.0", "method": "notifications/resources/updated", "params": {"uri": "x://1"}}
    for seq in range(2):
        resume._insert([(stored_session, stream, seq, message, False) for stream in streams])
    with CaptureQueriesContext(connection) as queries:
        resume._insert([(stored_session, stream, 2, message, False) for stream in streams])
    deletes = [q["sql"] for q in queries.captured_queries if q["sql"].lstrip().upper().startswith("DELETE")]
    assert 1 <= len(deletes) <= 300 // resume.TRIM_CHUNK + 1, len(deletes)
    kept: dict[str, list[int]] = {}
    for stream, seq in StreamEvent.objects.filter(stream__startswith="gTrim").values_list("stream", "seq"):
        kept.setdefault(stream, []).append(seq)
    assert {stream: sorted(seqs) for stream, seqs in kept.items()} == {stream: [1, 2] for stream in streams}
    stored = StreamEvent.objects.get(stream="gTrim7", seq=2)
    assert stored.message == message and not stored.final  # the shared message, stored per row


# -- two workers: the official SDK client resumes on the other one --------------------------------------------
class SwitchingProxy:
    """A TCP proxy on 127.0.0.1 that sends new connections to one backend port; :meth:`cut` aborts every open
    connection (as a network failure would) and :meth:`switch` picks the backend of later ones. It records
    each request's first line, its Last-Event-ID and the backend it went to."""

    def __init__(self, backend: int) -> None:
        self.backend = backend
        self.requests: list[tuple[int, str, str | None]] = []
        self._open: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self._server.sockets[0].getsockname()[1]

    def switch(self, backend: int) -> None:
        self.backend = backend

    def cut(self) -> int:
        connections = list(self._open)
        for downstream, upstream in connections:
            downstream.transport.abort()
            upstream.transport.abort()
        return len(connections)

    async def close(self) -> None:
        self.cut()
        self._server.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        backend = self.backend
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", backend)
        pair = (writer, up_writer)
        self._open.add(pair)

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter, sniff: bool) -> None:
            try:
                while data := await source.read(65536):
                    if sniff and data.split(b" ", 1)[0] in (b"GET", b"POST", b"DELETE"):
                        head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
                        last = [h.split(":", 1)[1].strip() for h in head if h.lower().startswith("last-event-id:")]
                        self.requests.append((backend, head[0], last[0] if last else None))
                    sink.write(data)
                    await sink.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                sink.close()

        try:
            await asyncio.gather(pipe(reader, up_writer, True), pipe(up_reader, writer, False))
        finally:
            self._open.discard(pair)


async def test_sdk_client_resumes_a_cut_call_on_the_other_worker(cluster: Cluster):  # noqa: F811
    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    proxy = SwitchingProxy(cluster.a.port)
    port = await proxy.start()
    progress: list[float] = []
    cut_at: list[float] = []
    steps = 12

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append(value)
        if value == 3 and not cut_at:
            proxy.switch(cluster.b.port)  # every new connection, the resume included, goes to B
            cut_at.append(time.monotonic())
            assert proxy.cut() >= 1  # the POST's stream (and the GET stream) die mid-call

    try:
        async with (
            streamable_http_client(f"http://127.0.0.1:{port}/mcp") as (read, write),
            ClientSession(read, write, read_timeout_seconds=30) as session,
        ):
            await session.initialize()
            result = await asyncio.wait_for(
                session.call_tool("slow_steps", {"steps": steps, "delay": 0.25}, progress_callback=on_progress), 60
            )
            answered_at = time.monotonic()
    finally:
        await proxy.close()
    assert result.is_error is False, result
    pid_a = cluster.a.process.pid
    assert result.content[0].text == f"{steps} steps on worker {pid_a}"  # the tool ran on, on A
    assert progress == list(range(1, steps + 1))  # every event exactly once, in order: none lost, none twice
    resumes = [(backend, line) for backend, line, last in proxy.requests if last and last.startswith("p")]
    assert resumes and all(backend == cluster.b.port for backend, _ in resumes), proxy.requests
    assert all(line.startswith("GET ") for _, line in resumes)
    print(
        f"\nresume on the other worker: cut after progress 3 of {steps}; result {answered_at - cut_at[0]:.2f} s "
        f"after the cut (tool time left ~{(steps - 3) * 0.25:.2f} s, retry 1 s); {len(resumes)} resume GET(s) to B"
    )
