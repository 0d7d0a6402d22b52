"""The benchmark's table over several rounds: ratios are taken within a round, then their median."""

from tests.benchmarks.bench_vs_sdk import Row, medians


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
