"""Smoke runs of `fraudstream bench` with tiny sizes: the benchmarks work, their numbers are not judged here."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from fraudstream.bench.ksql import ksql_rate
from fraudstream.bench.passthrough import broker_rates
from fraudstream.cli import main
from stack.embedded import EmbeddedStack


def test_broker_rates_move_every_record(stack: EmbeddedStack) -> None:
    rates = broker_rates(stack.addresses.bootstrap_servers, 500)
    assert [(rate.name, rate.events) for rate in rates] == [("produce", 500), ("consume", 500), ("passthrough", 500)]
    assert all(rate.per_second > 0 for rate in rates)


def test_bench_broker_prints_ratios(stack: EmbeddedStack) -> None:
    result = CliRunner().invoke(
        main, ["bench", "broker", "-n", "300", "--bootstrap-servers", stack.addresses.bootstrap_servers]
    )
    assert result.exit_code == 0, result.output
    assert "passthrough" in result.output
    assert stack.addresses.bootstrap_servers in result.output


def test_ksql_rate_runs_the_preprocessing_over_every_record(stack: EmbeddedStack) -> None:
    ksql_dir = Path(__file__).resolve().parents[1] / "ksql"
    passthrough, query = ksql_rate(stack.addresses, 300, ksql_dir)
    assert passthrough.events == 300
    assert (query.name, query.events) == ("ksql", 300)  # every generated payment is labelled: all come out
    assert query.per_second > 0


def test_sink_throughput_lands_every_record(stack: EmbeddedStack) -> None:
    from fraudstream.bench.connect import sink_throughput

    result = sink_throughput(stack.addresses, records=2_000, partitions=2, flush_size=500)
    assert result["records"] == 2_000
    assert result["sink_per_s"] > 0 and result["ratio"] > 0
