"""The body deadline (``BODY_TIMEOUT``) of :meth:`MCPConsumer.read_body`, in-process.

One timer covers the whole body and cancels the reading task when it fires: the read then ends as 408, and
the task is left as it was (not cancelled); a cancellation from elsewhere (the server, a client that left)
stays a cancellation; a body that arrives in time leaves no timer behind. The live 408 under uvicorn is in
``test_bodies.py``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from django.test import override_settings

from mcp_app.transports.consumer import Disconnected, HTTPError, MCPConsumer


def consumer() -> MCPConsumer:
    reader = MCPConsumer()
    reader.scope = {"type": "http", "headers": []}
    return reader


def chunks(*parts: bytes, then_wait: bool = False) -> Any:
    """An ASGI receive() giving ``parts`` (the last without ``more_body``), or waiting for ever after them."""
    queue = list(parts)

    async def receive() -> dict[str, Any]:
        if not queue:
            await asyncio.Event().wait()
        part = queue.pop(0)
        return {"type": "http.request", "body": part, "more_body": bool(queue) or then_wait}

    return receive


@override_settings(MCP_APP={"BODY_TIMEOUT": 0.05})
def test_a_body_that_stops_arriving_is_a_408_and_the_task_is_not_left_cancelled() -> None:
    async def scenario() -> tuple[HTTPError, int]:
        with pytest.raises(HTTPError) as refused:
            await consumer().read_body(chunks(b'{"a":', then_wait=True))
        task = asyncio.current_task()
        assert task is not None
        await asyncio.sleep(0)  # the task goes on: no cancellation is left pending on it
        return refused.value, task.cancelling()

    error, cancelling = asyncio.run(scenario())
    assert error.status == 408 and "BODY_TIMEOUT" in str(error) and "0.05 s" in str(error)
    assert cancelling == 0


@override_settings(MCP_APP={"BODY_TIMEOUT": 0.05})
def test_a_cancellation_from_elsewhere_during_the_read_stays_a_cancellation() -> None:
    async def scenario() -> None:
        reader = asyncio.ensure_future(consumer().read_body(chunks(then_wait=True)))
        await asyncio.sleep(0.01)
        reader.cancel()
        with pytest.raises(asyncio.CancelledError):
            await reader

    asyncio.run(scenario())


@override_settings(MCP_APP={"BODY_TIMEOUT": 0.05})
def test_a_cancellation_at_the_deadline_stays_a_cancellation() -> None:
    """Someone else cancels the task at the moment the timer fires: it must end cancelled, not answer 408."""

    async def scenario() -> int:
        async def read() -> bytes:
            task = asyncio.current_task()
            assert task is not None
            asyncio.get_running_loop().call_later(0.05, task.cancel)
            return await consumer().read_body(chunks(then_wait=True))

        reader = asyncio.ensure_future(read())
        with pytest.raises(asyncio.CancelledError):
            await reader
        return reader.cancelling()

    assert asyncio.run(scenario()) >= 1


@override_settings(MCP_APP={"BODY_TIMEOUT": 30})
def test_a_body_in_time_is_joined_and_leaves_no_timer() -> None:
    async def scenario() -> tuple[bytes, int]:
        loop = asyncio.get_running_loop()
        body = await consumer().read_body(chunks(b'{"a":', b"1}"))
        live = [h for h in loop._scheduled if not h.cancelled()]  # type: ignore[attr-defined]
        return body, len(live)

    body, timers = asyncio.run(scenario())
    assert body == b'{"a":1}' and timers == 0


@override_settings(MCP_APP={"BODY_TIMEOUT": None})
def test_without_a_deadline_the_body_is_read_and_a_disconnect_still_ends_it() -> None:
    async def gone() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    assert asyncio.run(consumer().read_body(chunks(b"{}"))) == b"{}"
    with pytest.raises(Disconnected):
        asyncio.run(consumer().read_body(gone))
