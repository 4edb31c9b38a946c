"""The stall watchdog's clock (issue 16, item 14): a stall is judged from when data became available."""

from __future__ import annotations

from streams.stalls import StallWatch


def test_data_arriving_after_an_idle_spell_is_not_a_stall() -> None:
    watch = StallWatch(window=30)
    assert watch.observe("p0", lag=0, now=0) is None
    assert watch.observe("p0", lag=0, now=298) is None  # idle: nothing to be stalled on
    assert watch.observe("p0", lag=3, now=299) is None  # data just arrived
    assert watch.observe("p0", lag=3, now=320) is None
    assert watch.observe("p0", lag=3, now=330) == 31  # waited past the window with no progress


def test_progress_restarts_the_clock_and_a_first_sighting_with_lag_starts_it() -> None:
    watch = StallWatch(window=30)
    assert watch.observe("p1", lag=500, now=100) is None  # a worker that just started, data already waiting
    watch.progressed("p1", now=125)
    assert watch.observe("p1", lag=200, now=150) is None
    assert watch.observe("p1", lag=200, now=156) == 31
    assert watch.observe("p1", lag=0, now=157) is None
    assert watch.observe("p1", lag=1, now=158) is None
