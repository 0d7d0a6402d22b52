"""Channel-layer sends from synchronous code (:func:`mcp_app.layerops.call_from_sync`).

On a cross-process layer (channels_redis) they all run on one event loop per process, so the layer's
per-loop connection pool is reused; ``async_to_sync`` alone would start a new loop (and a new Redis connection)
for every send of a WSGI worker or a management command. With the in-memory layer, whose queues belong to the
server's loop, they run as ``async_to_sync`` runs them.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from channels.layers import InMemoryChannelLayer

from mcp_app import layerops


class CrossProcessLayer:
    """Stands for channels_redis: anything that is not the in-memory layer."""


async def where_am_i(label: str) -> tuple[str, int, str]:
    await asyncio.sleep(0)
    return label, id(asyncio.get_running_loop()), threading.current_thread().name


def test_sends_from_sync_code_share_one_loop_on_a_cross_process_layer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(layerops, "get_channel_layer", lambda: CrossProcessLayer())
    results = [layerops.call_from_sync(where_am_i, f"send {n}") for n in range(3)]
    assert [label for label, _, _ in results] == ["send 0", "send 1", "send 2"]
    assert len({loop for _, loop, _ in results}) == 1  # one loop, so one connection pool, for every send
    assert {thread for _, _, thread in results} == {"mcp_app-layer-sends"}
    from_threads: list[Any] = []
    workers = [threading.Thread(target=lambda: from_threads.append(layerops.call_from_sync(where_am_i, "t"))) for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(10)
    assert {loop for _, loop, _ in from_threads} == {results[0][1]}  # the same loop from any thread


def test_a_send_that_fails_raises_to_its_caller(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(layerops, "get_channel_layer", lambda: CrossProcessLayer())

    async def refused() -> None:
        raise ConnectionError("the layer is down")

    with pytest.raises(ConnectionError, match="the layer is down"):
        layerops.call_from_sync(refused)


def test_the_in_memory_layer_keeps_async_to_sync(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(layerops, "get_channel_layer", lambda: InMemoryChannelLayer())
    _, _, thread = layerops.call_from_sync(where_am_i, "x")
    assert thread != "mcp_app-layer-sends"
