"""Delivery acknowledgements of legacy SSE streams, in one process (mcp_app.transports.events, sse.py).

A POST /sse/messages answers 202 only after the stream's worker confirmed that it took the answer (or a probe)
into the stream's buffer. Here the real pieces run on an in-memory channel layer: the stream worker's bus
listener handing what is addressed to the stream's session to its LocalStream (streams._on_stream_message), the
sender's bus listener as the reply address, and SSEMessagesConsumer._confirm, which decides the POST's status.
The same path under ``kill -9`` with two daphne workers is tests/transports/test_worker_death.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.layers import InMemoryChannelLayer
from django.test import override_settings
from django.utils import timezone

from mcp_app import bus as bus_module
from mcp_app import workers
from mcp_app.models import Worker
from mcp_app.transports import events, fanout, streams
from mcp_app.transports.sse import SSEMessagesConsumer, StreamClosed, StreamGone, Unconfirmed

pytestmark = pytest.mark.django_db(transaction=True)

ACK_TIMEOUT = 0.3


@pytest.fixture(autouse=True)
def close_thread_connections(transactional_db: None) -> Any:
    yield
    from django.db import connections

    connections.close_all()


class Harness:
    """One legacy stream held by one worker (its bus listening), and one sender's bus, on a shared in-memory
    layer."""

    def __init__(self, layer: InMemoryChannelLayer) -> None:
        self.layer = layer
        self.bus = bus_module.Bus()
        self.stream_bus = bus_module.Bus()  # the stream's worker
        self.server = SimpleNamespace(bus=self.bus)
        self.local = fanout.LocalStream("s1", 1 << 20)
        self.session = SimpleNamespace(id="s1", stream_channel="", worker="")
        self.post = SSEMessagesConsumer()

    async def open(self) -> None:
        streams._attach(self.stream_bus)
        streams._addressable["s1"] = self.local
        self.session.stream_channel = await self.stream_bus.reply_channel()

    async def stop_reading(self) -> None:
        """The stream's worker stops taking messages (as if it were killed)."""
        for task in self.stream_bus._listeners.values():
            task.cancel()
        await asyncio.gather(*self.stream_bus._listeners.values(), return_exceptions=True)

    async def confirm(self, answer_acks: list[asyncio.Future[bool]] | None = None) -> Exception | None:
        reply = await self.post._reply_channel(self.server)
        assert reply is not None
        return await self.post._confirm(self.session, reply, answer_acks or [])


@pytest.fixture
async def harness(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Harness]:
    layer = InMemoryChannelLayer()
    monkeypatch.setattr(bus_module, "get_channel_layer", lambda: layer)
    monkeypatch.setattr(events, "get_channel_layer", lambda: layer)
    h = Harness(layer)
    await h.open()
    with override_settings(MCP_APP={"STREAM_ACK_TIMEOUT": ACK_TIMEOUT}):
        try:
            yield h
        finally:
            streams._addressable.pop("s1", None)
            for task in [*h.bus._listeners.values(), *h.stream_bus._listeners.values()]:
                task.cancel()


async def test_an_acknowledged_answer_is_confirmed(harness: Harness) -> None:
    reply = await harness.post._reply_channel(harness.server)
    ack_id, future = events.acks.expect()
    await events.send_to_stream(
        harness.session.stream_channel, {"jsonrpc": "2.0", "id": 7, "result": {}}, ack=(reply, ack_id), session="s1"
    )
    assert await asyncio.wait_for(future, 2) is True  # the reader took it and confirmed
    assert harness.local.pop()["message"]["id"] == 7  # ...into the stream's buffer
    assert await harness.confirm([future]) is None  # -> 202
    events.acks.forget(ack_id)


async def test_a_running_request_is_confirmed_by_a_probe_that_writes_nothing(harness: Harness) -> None:
    started = asyncio.get_running_loop().time()
    assert await harness.confirm() is None  # -> 202
    assert asyncio.get_running_loop().time() - started < ACK_TIMEOUT
    assert len(harness.local) == 0  # the probe is not written to the client
    assert events.acks.pending() == 0  # nothing left waiting


async def test_no_ack_from_a_live_worker_is_503(harness: Harness) -> None:
    await sync_to_async(workers._beat)("silent", 60)  # its lease is live: it may only be stalled
    harness.session.worker = "silent"
    await harness.stop_reading()
    started = asyncio.get_running_loop().time()
    failure = await harness.confirm()
    took = asyncio.get_running_loop().time() - started
    assert isinstance(failure, Unconfirmed), failure
    assert "did not confirm" in str(failure) and "GET /sse" in str(failure)
    assert ACK_TIMEOUT <= took < ACK_TIMEOUT + 1.5, took  # bounded: the ack's wait plus one lease read
    assert events.acks.pending() == 0


async def test_no_ack_from_a_worker_whose_lease_lapsed_is_404(harness: Harness) -> None:
    # Cached as alive a moment ago: the lease is read again, not taken from the cache.
    await sync_to_async(workers._beat)("dying", 60)
    assert await workers.maintenance.is_alive("dying")
    await Worker.objects.filter(id="dying").aupdate(expires=timezone.now() - timedelta(seconds=1))
    harness.session.worker = "dying"
    await harness.stop_reading()
    assert isinstance(await harness.confirm(), StreamGone)


async def test_a_closing_stream_refuses_at_once(harness: Harness) -> None:
    harness.local.put({"type": "mcp.close"})  # its session ended: the stream is closing
    started = asyncio.get_running_loop().time()
    assert isinstance(await harness.confirm(), StreamClosed)
    assert asyncio.get_running_loop().time() - started < ACK_TIMEOUT  # a refusal, not a timeout


async def test_a_session_whose_stream_is_not_on_that_worker_refuses_at_once(harness: Harness) -> None:
    # The stream's worker holds no stream of this session (it closed there): refused, not left to time out.
    harness.session.id = "gone"
    started = asyncio.get_running_loop().time()
    assert isinstance(await harness.confirm(), StreamClosed)
    assert asyncio.get_running_loop().time() - started < ACK_TIMEOUT
