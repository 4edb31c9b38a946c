"""`fraudstream bench latency`: the hop arithmetic on data, and a smoke run on throwaway stacks (durable and in memory).

The smoke run judges no number against a threshold (this machine is shared): it checks that every hop is
measured on both brokers, that every payment sent is scored, and that the numbers are consistent.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from cli_helpers import fraudstream
from rich.console import Console

from fraudstream.bench.latency import (
    HOPS,
    LatencyRun,
    Percentiles,
    Seen,
    hop_latencies,
    latency_table,
    requests_between,
    summary_line,
)

REPO = Path(__file__).resolve().parents[1]
TOPICS = ("source", "features", "scores")


def test_each_hop_runs_from_one_topic_to_the_next_and_end_to_end_from_the_send() -> None:
    seen = Seen(
        sent={b"a": 1000.0, b"b": 1000.0, b"c": 1000.0},
        readable={
            "source": {b"a": 1010.0, b"b": 1020.0, b"c": 1005.0},
            "features": {b"a": 1050.0, b"b": 1040.0},
            "scores": {b"a": 1100.0},
        },
    )
    hops = hop_latencies(seen, TOPICS)
    assert hops == {
        "sent -> source": [10.0, 20.0, 5.0],
        "source -> preprocessed": [40.0, 20.0],  # c never reached the features: not counted there
        "preprocessed -> scored": [50.0],
        "end to end": [100.0],
    }


def test_percentiles_and_the_table_show_every_hop_per_broker() -> None:
    assert Percentiles.of([]) is None
    p = Percentiles.of(range(1, 101))
    assert p is not None and (p.count, p.p50, p.max) == (100, 50.5, 100.0) and 99 <= p.p99 <= 100
    runs = [
        LatencyRun(broker, 200.0, 10.0, 2000, 2000, dict.fromkeys(HOPS, p), "reader")
        for broker in ("durable", "memory")
    ]
    console = Console(width=200, record=True)
    console.print(latency_table(runs))
    text = console.export_text()
    for hop in HOPS:
        assert re.search(rf"{hop}\s+│\s+50\s+│\s+99\s+│\s+100\s+│\s+50\s+│\s+99\s+│\s+100", text), text
    assert "2,000 / 2,000" in text


def test_the_object_store_work_of_a_run_is_per_second_and_per_request() -> None:
    before = {"PUT": (10.0, 1.0), "LIST": (5.0, 0.5), "received bytes": (100.0, 0.0)}
    after = {"PUT": (30.0, 1.4), "LIST": (5.0, 0.5), "GET": (4.0, 0.04), "received bytes": (20_580.0, 0.0)}
    store = requests_between(before, after, seconds=2.0)
    assert store.keys() == {"PUT", "GET", "PUT bytes"}  # no LIST in the run: not shown
    assert store["PUT"].per_second == 10.0 and round(store["PUT"].mean_ms) == 20
    assert store["PUT bytes"].per_second == 10_240.0
    run = LatencyRun("durable", 200.0, 10.0, 3, 2, dict.fromkeys(HOPS), "reader", {"in": 3, "out": 2}, store)
    line = summary_line(run)
    assert line.startswith("durable, 200/s: end to end no scores (2 of 3 scored; seen: in 3, out 2; clock: reader)")
    assert "PUT 10/s (20 ms)" in line and "PUT bytes 10 KB/s" in line


@pytest.mark.integration  # starts its own stacks
def test_bench_latency_times_every_hop_on_the_durable_broker_and_the_in_memory_floor(cli_env: dict[str, str]) -> None:
    dirs = ("--ksql-dir", str(REPO / "ksql"), "--connectors-dir", str(REPO / "connectors"))
    result = fraudstream("bench", "latency", "--rate", "20", "--seconds", "3", *dirs, env=cli_env, timeout=900)
    out = result.stdout
    assert "Traceback" not in result.stderr
    lines = re.findall(r"^(durable|memory), 20/s: end to end p50 ([\d,]+) ms, p99 ([\d,]+) ms, max ([\d,]+) ms "
                       r"\((\d+) of (\d+) scored;", out, re.MULTILINE)  # fmt: skip
    assert [line[0] for line in lines] == ["durable", "memory"], out
    for _, p50, p99, largest, scored, sent in lines:
        p50, p99, largest = (int(v.replace(",", "")) for v in (p50, p99, largest))
        assert 0 <= p50 <= p99 <= largest
        assert int(sent) == 60 and int(scored) == 60  # every payment offered is scored
    for hop in HOPS:  # one row per hop: p50, p99 and max for each broker, in that order
        rows = re.findall(rf"^│ {hop}\s+((?:│\s+[\d,]+\s+){{6}})│$", out, re.MULTILINE)
        assert len(rows) == 1, (hop, out)
        numbers = [int(cell.strip().replace(",", "")) for cell in rows[0].split("│")[1:]]
        assert numbers[0] <= numbers[1] <= numbers[2] and numbers[3] <= numbers[4] <= numbers[5], (hop, numbers)
