"""Live figures of one answer, from the times the worker measured."""

import pytest

from ondevice.live import LiveStats
from ondevice.runtime.protocol import GenerationStats, StopReason, TokenEvent


def tokens(times: list[float]) -> list[TokenEvent]:
    return [TokenEvent("x", i, t) for i, t in enumerate(times)]


def finished() -> GenerationStats:  # 3 tokens, the last two in 0.2 s: 10 tok/s
    return GenerationStats(
        prompt_tokens=5,
        prompt_tokens_evaluated=5,
        generated_tokens=3,
        prompt_seconds=0.1,
        generation_seconds=0.2,
        time_to_first_token=0.15,
        peak_rss_bytes=1,
        stop_reason=StopReason.LENGTH,
    )


def test_speed_counts_the_tokens_after_the_first_over_the_time_since_it():
    live = LiveStats()
    assert live.tokens_per_second == 0.0 and live.time_to_first_token is None
    for event in tokens([1.0, 1.1, 1.2, 1.3, 1.4]):
        live.add(event)
    live.add(TokenEvent("held-back text", -1, 9.0))  # not a token: changes nothing
    assert live.tokens == 5 and live.time_to_first_token == 1.0
    assert live.tokens_per_second == pytest.approx(10.0)
    live.finish(finished())
    # The worker's figures win once it has finished.
    assert live.time_to_first_token == 0.15 and live.tokens_per_second == pytest.approx(10.0)
    assert live.final is not None and live.final.generated_tokens == 3


def test_the_sparkline_gets_one_sample_a_window_and_the_tail_when_it_is_long_enough():
    live = LiveStats(window=0.5)
    for event in tokens([0.01 * i for i in range(151)]):  # 100 tok/s for 1.5 s
        live.add(event)
    assert live.samples == pytest.approx([100.0, 100.0, 100.0])
    live.finish(finished())
    assert len(live.samples) == 3  # nothing left over

    tail = LiveStats(window=0.5)
    for event in tokens([0.01 * i for i in range(51)] + [0.5 + 0.02 * i for i in range(1, 16)]):
        tail.add(event)  # one window at 100 tok/s, then 0.3 s at 50 tok/s
    tail.finish(finished())
    assert tail.samples == pytest.approx([100.0, 50.0])

    short = LiveStats(window=0.5)
    for event in tokens([0.01 * i for i in range(53)]):  # one window, then 2 tokens in 20 ms
        short.add(event)
    short.finish(finished())
    assert len(short.samples) == 1  # a 20 ms stretch is too short to plot

    quick = LiveStats(window=0.5)
    for event in tokens([0.0, 0.05, 0.1]):  # done before a window closes: no sample
        quick.add(event)
    quick.finish(finished())
    assert quick.samples == []
