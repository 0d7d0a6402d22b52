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


def test_a_burst_of_writes_wakes_the_loop_once_and_every_waiter_gets_its_own_outcome_in_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    futures: list[Future] = [Future() for _ in range(50)]
    wakes: list[int] = []

    async def scenario() -> list[object]:
        loop = asyncio.get_running_loop()
        real = loop.call_soon_threadsafe

        def counting(callback, *args, **kwargs):  # type: ignore[no-untyped-def]
            wakes.append(1)
            return real(callback, *args, **kwargs)

        monkeypatch.setattr(loop, "call_soon_threadsafe", counting)
        waiters = [committed(done) for done in futures]
        settled: list[int] = []
        for index, waiter in enumerate(waiters):
            waiter.add_done_callback(lambda _, index=index: settled.append(index))

        def writer() -> None:  # the group writer resolving a group: one future right after the other
            for index, done in enumerate(futures):
                if index == 7:
                    done.set_exception(ValueError("refused row 7"))
                else:
                    done.set_result(index)

        # The loop is busy (this coroutine holds it) while the whole group is resolved from the other thread.
        thread = threading.Thread(target=writer)
        thread.start()
        thread.join()
        outcomes = await asyncio.gather(*waiters, return_exceptions=True)
        assert settled == list(range(50))  # settled in the order the writer resolved them
        return outcomes

    outcomes = asyncio.run(scenario())
    assert [o for i, o in enumerate(outcomes) if i != 7] == [i for i in range(50) if i != 7]
    assert isinstance(outcomes[7], ValueError) and str(outcomes[7]) == "refused row 7"
    assert len(wakes) == 1  # fifty hand-overs, one wake-up of the loop


def test_each_loop_gets_its_own_hand_overs() -> None:
    # Two loops in two threads await writes of one writer: each waiter is settled on its own loop.
    results: dict[str, object] = {}
    futures = {"a": Future(), "b": Future()}
    ready = threading.Barrier(3)

    def run(name: str) -> None:
        async def scenario() -> object:
            waiter = committed(futures[name])
            ready.wait()
            return await waiter

        results[name] = asyncio.run(scenario())

    threads = [threading.Thread(target=run, args=(name,)) for name in futures]
    for thread in threads:
        thread.start()
    ready.wait()
    futures["b"].set_result("to b")
    futures["a"].set_result("to a")
    for thread in threads:
        thread.join(10)
    assert results == {"a": "to a", "b": "to b"}
