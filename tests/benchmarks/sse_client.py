"""A small asyncio HTTP/1.1 client for the legacy HTTP+SSE transport, light enough to load a server with.

wrk cannot follow an answer from a POST to another connection's event stream, and httpx costs more CPU per
request than the servers measured here, so the benchmark speaks HTTP/1.1 itself: keep-alive POSTs with a
Content-Length, event streams read with chunked transfer coding (or to the end of the connection).

- :func:`round_trips`: ``connections`` legacy sessions at once, each sending ``tools/call echo`` to its
  messages URL and waiting for the answer on its stream before the next: round trips per second and
  latency percentiles.
- :func:`open_streams`: open ``count`` idle streams (each up to its ``endpoint`` event) and keep them.

Both work against any server of the legacy transport (this project's ``/sse`` and the official SDK's).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

try:
    import uvloop
except ImportError:  # optional: the client works on asyncio's own loop without it
    uvloop = None

from tests.live import HEADERS

from .load import echo_call

#: The protocol version of the legacy transport's initialize.
LEGACY_VERSION = "2024-11-05"


class ProtocolError(Exception):
    """The server answered something a client of the legacy transport does not expect."""


@dataclass
class Event:
    """One server-sent event: its type (``message`` when unnamed) and its data lines joined."""

    event: str
    data: str


class Connection:
    """One HTTP/1.1 connection to ``host:port``: sequential requests, or one event stream."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str, port: int) -> None:
        self.reader, self.writer, self.host, self.port = reader, writer, host, port
        self._chunked = False
        self._buffer = b""

    @classmethod
    async def open(cls, host: str, port: int) -> Connection:
        reader, writer = await asyncio.open_connection(host, port, limit=1 << 20)
        return cls(reader, writer, host, port)

    def close(self) -> None:
        self.writer.close()

    def _send(self, method: str, target: str, headers: dict[str, str], body: bytes = b"") -> None:
        lines = [f"{method} {target} HTTP/1.1", f"host: {self.host}:{self.port}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        if method == "POST":
            lines.append(f"content-length: {len(body)}")
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)

    async def _head(self) -> tuple[int, dict[str, str]]:
        head = (await self.reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        status = int(head[0].split(" ", 2)[1])
        headers = {}
        for line in head[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        self._chunked = headers.get("transfer-encoding", "").lower() == "chunked"
        return status, headers

    async def _chunk(self) -> bytes:
        """The next piece of a streamed body (b"" at its end)."""
        if not self._chunked:
            return await self.reader.read(1 << 16)
        size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
        data = await self.reader.readexactly(size + 2)
        return data[:-2]

    async def request(self, method: str, target: str, headers: dict[str, str], body: bytes = b"") -> tuple[int, bytes]:
        """Send a request and read its whole answer: (status, body)."""
        self._send(method, target, headers, body)
        await self.writer.drain()
        status, answer_headers = await self._head()
        if "content-length" in answer_headers:
            return status, await self.reader.readexactly(int(answer_headers["content-length"]))
        if self._chunked:
            parts = []
            while part := await self._chunk():
                parts.append(part)
            return status, b"".join(parts)
        if status in (204, 304) or 100 <= status < 200:
            return status, b""
        return status, await self.reader.read()

    async def start_stream(self, target: str, headers: dict[str, str]) -> int:
        """Send a GET for an event stream and read its head; the events follow with :meth:`event`."""
        self._send("GET", target, {"accept": "text/event-stream", **headers})
        await self.writer.drain()
        status, _ = await self._head()
        return status

    async def event(self) -> Event:
        """The next event of the stream (comments and keep-alives skipped)."""
        while True:
            end = self._buffer.find(b"\n\n")
            if end < 0:
                piece = await self._chunk()
                if not piece:
                    raise ProtocolError("the stream ended")
                self._buffer += piece.replace(b"\r\n", b"\n")
                continue
            block, self._buffer = self._buffer[:end], self._buffer[end + 2 :]
            name, data = "message", []
            for line in block.decode().split("\n"):
                if line.startswith("event:"):
                    name = line[6:].strip()
                elif line.startswith("data:"):
                    data.append(line[5:].removeprefix(" "))
            if data:
                return Event(name, "\n".join(data))


@dataclass
class LegacySession:
    """An open legacy session: its stream and a connection for its POSTs."""

    stream: Connection
    post: Connection
    messages_url: str
    headers: dict[str, str]
    next_id: int = 1

    async def call(self, message: dict[str, Any]) -> dict[str, Any]:
        """POST ``message`` (a request) and return its answer from the stream."""
        status, body = await self.post.request("POST", self.messages_url, self.headers, json.dumps(message).encode())
        if status != 202:
            raise ProtocolError(f"POST answered {status}: {body[:300]!r}")
        while True:
            event = await self.stream.event()
            if event.event == "message":
                answer = json.loads(event.data)
                if answer.get("id") == message["id"]:
                    return answer

    async def notify(self, message: dict[str, Any]) -> None:
        """POST ``message`` (a notification): 202, nothing on the stream."""
        status, body = await self.post.request("POST", self.messages_url, self.headers, json.dumps(message).encode())
        if status != 202:
            raise ProtocolError(f"notification POST answered {status}: {body[:300]!r}")

    def close(self) -> None:
        self.stream.close()
        self.post.close()


async def open_stream(host: str, port: int, path: str, headers: dict[str, str]) -> tuple[Connection, str]:
    """Open a legacy event stream up to its ``endpoint`` event: (the stream, the messages URL it names)."""
    stream = await Connection.open(host, port)
    status = await stream.start_stream(path, headers)
    if status != 200:
        stream.close()
        raise ProtocolError(f"GET {path} answered {status}")
    event = await stream.event()
    if event.event != "endpoint":
        raise ProtocolError(f"the first event is {event.event!r}, not endpoint")
    return stream, event.data


async def open_session(host: str, port: int, path: str, headers: dict[str, str]) -> LegacySession:
    """Open a stream and initialize its session (initialize, then notifications/initialized)."""
    stream, messages_url = await open_stream(host, port, path, headers)
    session = LegacySession(stream, await Connection.open(host, port), messages_url, {**HEADERS, **headers})
    init = {
        "jsonrpc": "2.0",
        "id": 0,
        "method": "initialize",
        "params": {"protocolVersion": LEGACY_VERSION, "capabilities": {}, "clientInfo": {"name": "bench", "version": "1"}},
    }
    answer = await session.call(init)
    if "result" not in answer:
        raise ProtocolError(f"initialize failed: {answer}")
    await session.notify({"jsonrpc": "2.0", "method": "notifications/initialized"})
    return session


def check_echo(answer: dict[str, Any], text: str) -> None:
    """Raise unless ``answer`` is the echo tool's successful result for ``text``."""
    result = answer.get("result") or {}
    content = result.get("content") or [{}]
    if result.get("isError") or content[0].get("text") != text:
        raise ProtocolError(f"not the echo of {text!r}: {answer}")


@dataclass
class RoundTrips:
    """What :func:`round_trips` measured."""

    seconds: float
    latencies: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.seconds

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(len(ordered) * q))] if ordered else float("nan")

    def row(self) -> str:
        return (
            f"{self.rate:9.0f} req/s   p50 {self.percentile(0.5) * 1000:6.2f}ms   p99 {self.percentile(0.99) * 1000:6.2f}ms"
            f"   ({len(self.latencies)} round trips)"
        )


async def round_trips(
    host: str, port: int, path: str, headers: dict[str, str], *, connections: int, seconds: float, warmup: float = 1.0
) -> RoundTrips:
    """``connections`` sessions, each calling ``echo`` and awaiting the answer on its stream, for ``seconds``
    (after ``warmup`` seconds not counted). Every answer is checked; an error stops the run."""
    sessions = await asyncio.gather(*(open_session(host, port, path, headers) for _ in range(connections)))
    measured = RoundTrips(seconds)
    started = time.perf_counter()
    counting_from, deadline = started + warmup, started + warmup + seconds

    async def loop(session: LegacySession) -> None:
        while (now := time.perf_counter()) < deadline:
            session.next_id += 1
            text = f"hello {session.next_id}"
            check_echo(await session.call(echo_call(session.next_id, text)), text)
            if now >= counting_from:
                measured.latencies.append(time.perf_counter() - now)

    try:
        await asyncio.gather(*(loop(session) for session in sessions))
    finally:
        for session in sessions:
            session.close()
    return measured


async def open_streams(
    host: str, port: int, path: str, headers: dict[str, str], *, count: int, concurrency: int = 64
) -> tuple[list[Connection], float]:
    """Open ``count`` idle streams, at most ``concurrency`` being opened at a time; return them (still open) and
    the seconds from the first connection to the last ``endpoint`` event."""
    gate = asyncio.Semaphore(concurrency)

    async def one() -> Connection:
        async with gate:
            stream, _ = await open_stream(host, port, path, headers)
            return stream

    started = time.perf_counter()
    streams = await asyncio.gather(*(one() for _ in range(count)))
    return list(streams), time.perf_counter() - started


def run(coroutine: Awaitable[Any]) -> Any:
    """Run ``coroutine`` on uvloop when it is installed (uvicorn[standard] brings it), else asyncio's loop."""
    runner: Callable[[Awaitable[Any]], Any] = uvloop.run if uvloop is not None else asyncio.run
    return runner(coroutine)
