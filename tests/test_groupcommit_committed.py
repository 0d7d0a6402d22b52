"""groupcommit.committed: awaiting a group writer's future from the event loop without ever cancelling it."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Future

import pytest

from mcp_app.groupcommit import committed


def resolve_later(done: Future, *, result: object = None, error: BaseException | None = None, after: float = 0.05) -> None:
    def run() -> None:
        threading.Event().wait(after)
        if error is not None:
            done.set_exception(error)
        else:
            done.set_result(result)

    threading.Thread(target=run).start()


def test_the_result_and_the_exception_come_back() -> None:
    async def scenario() -> object:
        ok: Future = Future()
        resolve_later(ok, result=42)
        failed: Future = Future()
        resolve_later(failed, error=ValueError("refused"))
        value = await committed(ok)
        with pytest.raises(ValueError, match="refused"):
            await committed(failed)
        return value

    assert asyncio.run(scenario()) == 42


def test_a_cancelled_caller_leaves_the_write_alone() -> None:
    done: Future = Future()

    async def scenario() -> None:
        waiter = asyncio.ensure_future(committed(done))
        await asyncio.sleep(0.01)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert not done.cancelled()  # the item is still to be written, and is
        done.set_result("written")
        await asyncio.sleep(0.01)  # the hand-over finds its waiter cancelled: nothing raises

    asyncio.run(scenario())
    assert done.result() == "written"


def test_a_write_ending_after_its_loop_closed_raises_nothing_in_the_writer(caplog: pytest.LogCaptureFixture) -> None:
    done: Future = Future()

    async def scenario() -> None:
        committed(done)  # nobody awaits it; the loop ends first

    asyncio.run(scenario())
    done.set_result("late")  # the hand-over meets a closed loop: ignored, not raised in this (the writer's) thread
    assert done.result() == "late"
    assert "exception calling callback" not in caplog.text  # what concurrent.futures logs for a raising callback
