"""The stdio transport: newline-delimited JSON-RPC on a pair of byte streams (``manage.py mcp_stdio``).

One client, one conversation: every line read is one JSON-RPC message (or a batch); every line written is
one. The conversation's state lives in a :class:`~mcp_app.protocol.context.MemorySession` (no session row:
the process is the session). The dispatcher does everything MCP: :meth:`Dispatcher.take` acts on the
client's notifications (cancellation) and answers (sampling, elicitation, roots), and each request runs in a
task of its own, so that a slow tool never holds up a ``ping`` or a cancellation behind it.

Contract of :func:`serve`: returns once ``read_line`` reports end of input and the requests still running
have finished (or been cancelled after ``grace`` seconds); writes nothing but JSON-RPC messages.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from ..auth import Principal
from ..protocol import jsonrpc
from ..protocol.context import MemorySession
from ..protocol.errors import InvalidRequest, ParseError
from ..runtime import get_server

logger = logging.getLogger("mcp_app.transports.stdio")

#: What a request's context says it came through (``ctx.extra["via"]``, audited).
VIA = "stdio"

ReadLine = Callable[[], Awaitable[bytes]]
WriteLine = Callable[[bytes], Awaitable[None]]


class StdioConnection:
    """One stdio conversation as ``principal``: reads with ``read_line`` (b"" at end of input) and writes
    each message, encoded and newline-terminated, with ``write_line`` (writes never interleave)."""

    def __init__(self, principal: Principal, read_line: ReadLine, write_line: WriteLine) -> None:
        self.principal = principal
        self.session = MemorySession()
        self._read_line = read_line
        self._write_line = write_line
        self._write_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()

    async def send(self, message: Any) -> None:
        """Write one JSON-RPC message (or a batch's answers) as one line."""
        line = jsonrpc.encode(message)
        async with self._write_lock:
            await self._write_line(line.rstrip(b"\n") + b"\n")

    async def serve(self, *, grace: float = 10.0) -> None:
        """Read until end of input, then let running requests finish (at most ``grace`` seconds)."""
        while True:
            line = await self._read_line()
            if not line:
                break
            if line.strip():
                await self._take(line)
        if self._tasks:
            _, late = await asyncio.wait(set(self._tasks), timeout=grace)
            for task in late:  # nobody is left to answer a sampling request, or to read the result
                task.cancel()
            if late:
                await asyncio.wait(late)

    async def _take(self, line: bytes) -> None:
        try:
            payload = jsonrpc.loads(line)
        except ParseError as exc:
            await self.send(jsonrpc.error_response(None, exc.to_error()))
            return
        batch = isinstance(payload, list)
        items = payload if batch else [payload]
        if batch and not items:
            await self.send(jsonrpc.error_response(None, InvalidRequest("Invalid Request: an empty batch.").to_error()))
            return
        # Notifications (cancellation) and answers to our requests are settled now, in the order they came.
        requests, errors = await get_server().dispatcher.take(self.session, items)
        if not batch:
            for error in errors:
                await self.send(error)
            for request in requests:
                self._start(self._answer(request))
            return
        self._start(self._answer_batch(requests, errors))

    def _start(self, work: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, request: jsonrpc.Request) -> dict[str, Any] | None:
        dispatcher = get_server().dispatcher
        ctx = dispatcher.context(
            self.session,
            request.id,
            meta=request.meta,
            send=self.send,
            extra={"user": self.principal.user, "via": VIA, "principal": self.principal.key, "credential": self.principal},
        )
        return await dispatcher.handle_request(request, ctx)

    async def _answer(self, request: jsonrpc.Request) -> None:
        answer = await self._run(request)
        if answer is not None:  # None: the client cancelled it, and is not answered
            await self.send(answer)

    async def _answer_batch(self, requests: list[jsonrpc.Request], errors: list[dict[str, Any]]) -> None:
        # Each request of the batch in a task of its own: cancelling one cancels only it.
        answers = await asyncio.gather(*(self._run(request) for request in requests))
        out = [*errors, *(answer for answer in answers if answer is not None)]
        if out:
            await self.send(out)


async def serve(principal: Principal, read_line: ReadLine, write_line: WriteLine, *, grace: float = 10.0) -> None:
    """Serve one stdio conversation as ``principal`` until end of input (see :class:`StdioConnection`)."""
    await StdioConnection(principal, read_line, write_line).serve(grace=grace)
