"""Request bodies within bounds, under uvicorn (which hands the application the body as it arrives).

- A body that declares more than ``MAX_BODY_SIZE`` (here 64 KiB) is refused with 413 before a byte of it is
  read: a declared 100 MB body is answered at once, and the server's memory does not grow while the client
  keeps sending.
- A chunked body (no declared size) is read only up to the limit: 413 arrives while the client is still
  sending, before the body's end.
- A body that trickles in for longer than ``BODY_TIMEOUT`` (here 2 s) gets 408 with a JSON-RPC error.

After each, the server still serves. Daphne reads a whole body before calling the application, so there
these bounds apply only once it has (see the README's note on bodies).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.live import LiveServer, start_daphne
from tests.transports.test_limits_concurrency import SETTINGS, make_tokens

LATEST = "2025-11-25"
LIMIT = 64 * 1024  # MAX_BODY_SIZE in tests/auth_settings.py
PING = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "ping"}).encode()
INIT = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": LATEST, "capabilities": {}, "clientInfo": {"name": "bodies", "version": "1"}},
}


@pytest.fixture(scope="module")
def uvicorn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, str]]:
    workdir = tmp_path_factory.mktemp("bodies")
    env = {"MCP_TEST_DB": str(workdir / "db.sqlite3"), "MCP_TEST_BODY_TIMEOUT": "2"}
    server = start_daphne(workdir, settings=SETTINGS, extra_env=env, server="uvicorn")
    [(_pk, token)] = make_tokens(env, 1)
    yield server, token
    server.stop()
    server.assert_no_traceback()


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def head(server: LiveServer, token: str, extra: str) -> bytes:
    return (
        f"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nAuthorization: Bearer {token}\r\n"
        "Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n"
        f"{extra}\r\n"
    ).encode()


def read_response(sock: socket.socket, timeout: float) -> tuple[int, dict[str, str], dict]:
    """Read one response (a Content-Length or a chunked body); (status, headers, JSON body)."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"the server closed the connection without an answer: {data!r}"
        data += chunk
    top, _, body = data.partition(b"\r\n\r\n")
    lines = top.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    chunked = headers.get("transfer-encoding") == "chunked"
    while (b"0\r\n\r\n" not in body) if chunked else (len(body) < int(headers["content-length"])):
        chunk = sock.recv(65536)
        assert chunk, f"the connection closed mid-answer: {data!r}"
        body += chunk
    if chunked:  # size line, data, CRLF; ... ; 0 CRLF CRLF
        decoded, rest = b"", body
        while True:
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line, 16)
            if size == 0:
                break
            decoded, rest = decoded + rest[:size], rest[size + 2 :]
        body = decoded
    return int(lines[0].split()[1]), headers, json.loads(body)


def assert_still_serving(server: LiveServer, token: str) -> None:
    answer = httpx.post(
        server.mcp_url,
        json=INIT,
        timeout=10,
        headers={"authorization": f"Bearer {token}", "accept": "application/json, text/event-stream"},
    )
    assert answer.status_code == 200, answer.text


def test_a_declared_100_mb_body_is_refused_before_it_is_read(uvicorn: tuple[LiveServer, str]) -> None:
    server, token = uvicorn
    declared = 100 * 1024 * 1024
    before = rss_kib(server.process.pid)
    sent = 0
    stop = threading.Event()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(head(server, token, f"Content-Length: {declared}\r\n"))
        started = time.monotonic()

        def pour() -> None:  # the client goes on sending its 100 MB, as a careless client would
            nonlocal sent
            block = b"x" * 65536
            try:
                while sent < declared and not stop.is_set():
                    sock.sendall(block)
                    sent += len(block)
            except OSError:
                pass  # the server closed the connection: what a refused body should lead to

        pourer = threading.Thread(target=pour, daemon=True)
        pourer.start()
        status, headers, body = read_response(sock, timeout=5)
        answered_in = time.monotonic() - started
        time.sleep(1)  # let the client pour for a while after the answer
        stop.set()
        pourer.join(10)
    grown = rss_kib(server.process.pid) - before
    print(
        f"\ndeclared 100 MB body under uvicorn: {status} after {answered_in * 1000:.0f} ms; client sent "
        f"{sent / 1e6:.1f} MB in all; server RSS grew by {grown / 1024:.1f} MiB"
    )
    assert status == 413 and body["error"]["code"] == -32600
    assert str(declared) in body["error"]["message"] and "MAX_BODY_SIZE" in body["error"]["message"]
    assert headers.get("connection") == "close"
    assert answered_in < 2
    assert grown < 10 * 1024  # KiB: nothing of the body was kept
    assert_still_serving(server, token)


def test_a_chunked_body_is_read_only_up_to_the_limit(uvicorn: tuple[LiveServer, str]) -> None:
    server, token = uvicorn
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(head(server, token, "Transfer-Encoding: chunked\r\n"))
        piece = b"x" * 16384
        for _ in range(LIMIT // len(piece) + 2):  # past the limit, and the body's last chunk never sent
            sock.sendall(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
        status, headers, body = read_response(sock, timeout=5)
    assert status == 413 and body["error"]["code"] == -32600
    assert f"over {LIMIT} bytes" in body["error"]["message"]
    assert headers.get("connection") == "close"
    assert_still_serving(server, token)


def test_a_body_that_trickles_in_times_out_with_408(uvicorn: tuple[LiveServer, str]) -> None:
    server, token = uvicorn
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(head(server, token, f"Content-Length: {len(PING)}\r\n"))
        started = time.monotonic()
        sock.sendall(PING[:5])  # and the rest never comes (a slow-loris client)
        status, headers, body = read_response(sock, timeout=8)
        waited = time.monotonic() - started
    print(f"\ntrickling body under uvicorn: {status} after {waited:.1f} s (BODY_TIMEOUT 2 s)")
    assert status == 408 and body["error"]["code"] == -32600
    assert "BODY_TIMEOUT" in body["error"]["message"] and "2 s" in body["error"]["message"]
    assert headers.get("connection") == "close"
    assert 1.8 <= waited < 5
    assert_still_serving(server, token)
