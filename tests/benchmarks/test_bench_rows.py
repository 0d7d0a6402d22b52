"""The benchmark's table over several rounds: ratios are taken within a round, then their median."""

import pytest

from tests.benchmarks.bench_vs_sdk import Row, medians, turns
from tests.benchmarks.load import WrkResult, latency_ms, merge


def test_several_rounds_show_the_median_of_their_ratios_and_their_range() -> None:
    rounds = [
        [Row("call", 300.0, 100.0, "req/s", True, ">= 3.0x"), Row("memory", 20.0, None, "KiB", False)],
        [Row("call", 200.0, 50.0, "req/s", True, ">= 3.0x"), Row("memory", 22.0, None, "KiB", False)],
        [Row("call", 250.0, 125.0, "req/s", True, ">= 3.0x"), Row("memory", 24.0, None, "KiB", False)],
    ]
    call, memory = medians(rounds)
    assert (call.ours, call.theirs, call.ratios) == (250.0, 100.0, [3.0, 4.0, 2.0])
    # The median of the rounds' ratios (3.0x), not the ratio of the medians (2.5x).
    assert call.line() == "| call | 250 req/s | 100 req/s | 3.00x (2.00-4.00) | >= 3.0x |"
    assert memory.line() == "| memory | 22.0 KiB | n/a | n/a (lower is better) |  |"


def test_one_round_shows_its_ratio() -> None:
    assert Row("call", 300.0, 100.0, "req/s").line() == "| call | 300 req/s | 100 req/s | 3.00x |  |"


def test_slices_of_a_load_merge_into_one_rate_and_the_median_latencies() -> None:
    slices = [
        WrkResult(rps=1000.0, requests=2000, p50="10.00ms", p99="20.00ms", non2xx=0, errors=0, server_cpu=1.0),
        WrkResult(rps=500.0, requests=1000, p50="900.00us", p99="1.50s", non2xx=10, errors=1, server_cpu=0.5),
        WrkResult(rps=1500.0, requests=3000, p50="12.00ms", p99="30.00ms", non2xx=0, errors=0, server_cpu=0.9),
    ]
    merged = merge(slices)
    # 6,000 requests over 2 + 2 + 2 seconds, not the mean of the three rates (1,000 either way here)...
    assert (merged.requests, merged.rps, merged.non2xx, merged.errors) == (6000, 1000.0, 10, 1)
    # ... and the rate of 2xx answers counts the failures out.
    assert merged.ok_rps == 1000.0 * 5990 / 6000
    # Latencies are the middle slice's, ordered by value across units (900us < 10ms < 12ms; 20ms < 30ms < 1.5s).
    assert (merged.p50, merged.p99) == ("10.00ms", "30.00ms")
    assert merged.server_cpu == (1.0 * 2 + 0.5 * 2 + 0.9 * 2) / 6
    uneven = merge([slices[0], WrkResult(rps=100.0, requests=800, p50="1.00s", p99="2.00s", non2xx=0, errors=0)])
    assert uneven.rps == 2800 / 10  # 2 s and 8 s: the slow slice weighs by its time
    assert uneven.server_cpu == 1.0  # only the slice that measured CPU counts for it
    with pytest.raises(ValueError):
        merge([])


def test_wrk_latencies_read_in_milliseconds() -> None:
    assert [latency_ms(text) for text in ("970.00us", "12.43ms", "1.02s", "2.00m")] == [0.97, 12.43, 1020.0, 120_000.0]
    with pytest.raises(ValueError):
        latency_ms("12.43 parsecs")


def test_loads_take_turns_in_an_order_reversed_every_other_turn() -> None:
    assert turns(10, 5, 2) == (2, [[0, 1], [1, 0], [0, 1], [1, 0], [0, 1]])
    assert turns(10, 3, 3) == (3, [[0, 1, 2], [2, 1, 0], [0, 1, 2]])
    assert turns(10, 1, 2) == (10, [[0, 1]])  # --slices 1: each load in one go, back to back
    assert turns(2, 4, 1)[0] == 1  # never a turn shorter than wrk's whole second
