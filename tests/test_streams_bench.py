"""A smoke run of `fraudstream bench scoring` with tiny sizes on the session stack (numbers not checked)."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from fraudstream.bench.scoring import print_bench, scoring_bench


def test_scoring_bench_smoke(stack, tmp_path):
    result = scoring_bench(stack.addresses, events=2_000, naive_events=10, rate=200.0, seconds=2.0, work_dir=tmp_path)
    assert [r.name for r in result.rates] == ["passthrough", "naive Faust agent", "fraudstream worker"]
    assert [r.events for r in result.rates] == [2_000, 9, 1_999]
    assert all(r.seconds > 0 for r in result.rates)
    assert 0 <= result.latency_ms["p50"] <= result.latency_ms["p99"] and result.offered_per_second > 0
    assert result.floor_ms["p50"] <= result.floor_ms["p99"]
    console = Console(record=True, width=120)
    print_bench(result, console, Table)
    text = console.export_text()
    assert "vs passthrough" in text and "p99" in text and "raw consumer of the same events" in text
