"""The live view's numbers and renderings, computed from data alone (no Kafka)."""

from __future__ import annotations

import io
import threading

import numpy as np
import pytest
from rich.console import Console

from fraudstream.live import PipelineStats, Topics, plain_line, render, watch

TOPICS = Topics()


def text(renderable: object) -> str:
    console = Console(file=io.StringIO(), width=200, color_system=None)
    console.print(renderable)
    return console.file.getvalue()  # type: ignore[attr-defined]


def sizes(source: int, preprocessed: int, scores: int, **dead: int) -> dict[str, int]:
    return {TOPICS.source: source, TOPICS.preprocessed: preprocessed, TOPICS.scores: scores, **dead}


def test_rates_are_records_per_second_over_the_window() -> None:
    stats = PipelineStats(TOPICS, started=100.0, window=10.0)
    assert stats.rate(TOPICS.source) == 0.0  # not before two samples
    stats.observe_sizes(100.0, sizes(0, 0, 0))
    stats.observe_sizes(105.0, sizes(1000, 900, 500))
    assert stats.rate(TOPICS.source) == 200.0
    assert stats.rate(TOPICS.scores) == 100.0
    assert stats.size(TOPICS.preprocessed) == 900
    for t in range(106, 131):  # a steady 50/s for 25 s: the burst at the start falls out of the window
        stats.observe_sizes(float(t), sizes(1000 + 50 * (t - 105), 0, 0))
    assert stats.rate(TOPICS.source) == 50.0
    assert stats.samples[0][0] >= 130.0 - 10.0 - 1.0


def test_fraud_rate_model_and_first_score_come_from_the_scores() -> None:
    stats = PipelineStats(TOPICS, started=10.0)
    assert stats.fraud_rate is None and stats.model is None
    for i, flagged in enumerate((True, False, False, False)):
        stats.observe_score(12.5 + i, f"p{i}", flagged, ("fraud", 1 if i < 3 else 2), seen_ms=0)
    assert stats.fraud_rate == 0.25
    assert stats.model == ("fraud", 2)  # the newest score names the model scoring now
    assert stats.first_score_after == 2.5


def test_latency_is_produced_to_scored_per_payment_over_the_window() -> None:
    stats = PipelineStats(TOPICS, started=0.0, window=10.0)
    latencies = np.arange(1, 101) * 10.0  # 10 ms .. 1000 ms
    for i, _latency in enumerate(latencies):
        stats.observe_payment(f"p{i}", produced_ms=1_000_000 + i)
    stats.observe_score(1.0, "unknown-payment", False, ("fraud", 1), seen_ms=5)  # no produce time: counted, no latency
    for i, latency in enumerate(latencies):
        stats.observe_score(2.0, f"p{i}", False, ("fraud", 1), seen_ms=1_000_000 + i + int(latency))
    p50, p99 = stats.latency_ms(now=3.0)
    assert (p50, p99) == tuple(np.percentile(latencies, [50, 99]))
    assert stats.scores == 101
    assert not stats.pending  # matched payments are forgotten
    assert stats.latency_ms(now=12.5) is None  # nothing scored in the last 10 s


def test_unscored_payments_are_forgotten_beyond_the_limit() -> None:
    stats = PipelineStats(TOPICS, pending_limit=3)
    for i in range(5):
        stats.observe_payment(f"p{i}", produced_ms=i)
    assert list(stats.pending) == ["p2", "p3", "p4"]


def test_dead_letters_name_the_topics_that_hold_some() -> None:
    stats = PipelineStats(TOPICS)
    stats.observe_sizes(0.0, sizes(0, 0, 0, **{TOPICS.dead_letters[0]: 4}))  # 4 from before the view started
    stats.observe_sizes(1.0, sizes(10, 9, 9, **{TOPICS.dead_letters[0]: 5, TOPICS.dead_letters[2]: 0}))
    assert stats.dead_letters == {TOPICS.dead_letters[0]: 1}


def test_the_view_and_the_line_show_every_measure() -> None:
    stats = PipelineStats(TOPICS, started=0.0, producing="generating 200 payments/s", sent=2_345)
    stats.observe_sizes(0.0, sizes(0, 0, 0))
    stats.observe_sizes(2.0, sizes(2_000, 1_990, 1_900, **{"creditcardfraud_preprocessed_avro-dlq": 7}))
    stats.observe_payment("a", produced_ms=1_000)
    stats.observe_score(3.0, "a", True, ("fraud", 3), seen_ms=1_042)
    stats.observe_score(3.5, "b", False, ("fraud", 3), seen_ms=2_000)
    view = text(render(stats, now=4.0))
    for expected in (
        "events in",
        "2,000",
        "1,000",
        TOPICS.source,
        "scores out",
        "1,900",
        "950",
        TOPICS.scores,
        "creditcardfraud_preprocessed_avro-dlq 7",
        "50.00% (1 of 2 scores flagged)",
        "p50 42 ms, p99 42 ms",
        "fraud version 3",
        "3.0 s after start",
        "generating 200 payments/s",
        "2,345 payments sent",
    ):
        assert expected in view, expected
    line = plain_line(stats, now=4.0)
    assert line.startswith("[4 s] in 2,000 (1,000/s), preprocessed 1,990, scored 1,900 (950/s)")
    assert "latency p50 42 ms, p99 42 ms" in line and "model fraud version 3" in line and "dead letters 7" in line


def test_off_a_terminal_the_view_is_printed_as_lines() -> None:
    out = io.StringIO()
    console = Console(file=out, width=120)
    assert not console.is_terminal
    stats = PipelineStats(TOPICS, started=0.0)
    stats.observe_sizes(0.0, sizes(5, 4, 3))  # before: not counted
    stats.observe_sizes(0.5, sizes(10, 8, 6))
    ticks = iter(range(1000))
    checks = iter([False] * 5 + [True])
    watch(stats, threading.Lock(), console, until=lambda: next(checks), clock=lambda: float(next(ticks)))
    lines = out.getvalue().splitlines()
    assert len(lines) >= 2  # at least one while running and the last one
    assert all(line.startswith("[") and "in 5 (10/s), preprocessed 4, scored 3" in line for line in lines)


@pytest.mark.parametrize("latency_ms, expected", [(12, "12 ms"), (9_999, "9,999 ms"), (12_345, "12.3 s")])
def test_latencies_read_in_the_right_unit(latency_ms: int, expected: str) -> None:
    stats = PipelineStats(TOPICS)
    stats.observe_payment("a", produced_ms=1_000)
    stats.observe_score(0.0, "a", False, ("fraud", 1), seen_ms=1_000 + latency_ms)
    assert f"latency p50 {expected}, p99 {expected}" in plain_line(stats, now=0.0)


def test_counts_start_with_the_view_so_that_they_add_up() -> None:
    """An earlier run's records are not this run's: events in, scores out and scores flagged share one start."""
    stats = PipelineStats(TOPICS, started=0.0)
    stats.observe_sizes(0.0, sizes(12_953, 12_953, 12_953))  # left by an earlier demo
    stats.observe_sizes(2.0, sizes(13_153, 13_103, 13_053))
    for i in range(100):
        stats.observe_score(2.0, f"p{i}", i < 3, ("fraud", 1), seen_ms=0)
    line = plain_line(stats, now=2.0)
    assert line.startswith("[2 s] in 200 (100/s), preprocessed 150, scored 100 (50/s)"), line
    assert "3.00% (3 of 100 scores flagged)" in line
