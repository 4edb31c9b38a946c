"""`fraudstream bench`: throughput and latency, each as a ratio to a raw confluent-kafka passthrough."""

from __future__ import annotations

import statistics
import tempfile
from collections.abc import Callable
from pathlib import Path

import click
from rich.table import Table

from fraudstream.bench.ksql import ksql_aggregate_rate, ksql_rate
from fraudstream.bench.passthrough import Rate, bench_stack, broker_rates, console, print_ratios
from fraudstream.bench.scoring import print_bench, scoring_bench
from fraudstream.config import Addresses
from stack.embedded import EmbeddedStack


@click.group("bench")
def bench_command() -> None:
    """Throughput and latency benchmarks, each printed as a ratio to a raw passthrough on the same broker."""


@bench_command.command("broker")
@click.option("-n", "--records", type=click.IntRange(min=1), default=200_000, show_default=True)
@click.option(
    "--bootstrap-servers", help="Measure this broker instead of starting embedded ones (durable and in memory)."
)
def bench_broker(records: int, bootstrap_servers: str | None) -> None:
    """Raw produce, consume and passthrough rates of the broker, durable (S3 storage) and in memory.

    The ratios are each rate over the passthrough's, the baseline every other benchmark uses.
    """
    table = Table("broker", "produce/s", "consume/s", "passthrough/s", "produce ratio", "consume ratio")
    if bootstrap_servers:
        targets = [(bootstrap_servers, None)]
    else:
        targets = [("durable (s3://)", False), ("ephemeral (memory://)", True)]
    for label, ephemeral in targets:
        if ephemeral is None:
            rates = broker_rates(label, records)
        else:
            with tempfile.TemporaryDirectory(prefix="fraudstream-bench-") as data_dir:
                with EmbeddedStack.on_free_ports(
                    data_dir, ephemeral=ephemeral, services=("objectstore", "broker")
                ) as stack:
                    rates = broker_rates(stack.addresses.bootstrap_servers, records)
        produce, consume, through = (rate.per_second for rate in rates)
        table.add_row(
            label,
            f"{produce:,.0f}",
            f"{consume:,.0f}",
            f"{through:,.0f}",
            f"{produce / through:.2f}",
            f"{consume / through:.2f}",
        )
    console.print(table)


REPEAT = click.option(
    "--repeat",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Measure this many times (each with its own passthrough) and print the median ratio too.",
)
USE_ENV = click.option(
    "--use-env",
    is_flag=True,
    help="Measure the stack at the environment's addresses instead of a throwaway one (in-memory broker).",
)
KSQL_DIR = click.option(
    "--ksql-dir", type=click.Path(exists=True, file_okay=False, path_type=Path), default=Path("ksql"), show_default=True
)


def measure_ksql(rates_of: Callable[[Addresses], list[Rate]], use_env: bool, repeat: int) -> None:
    """Run a ksqlDB benchmark `repeat` times, printing each run's rates and, over several runs, the median
    ratio (the machines are noisy)."""
    ratios = []
    with bench_stack(use_env, ("objectstore", "broker", "schema-registry", "ksqldb")) as addresses:
        for _ in range(repeat):
            rates = rates_of(addresses)
            print_ratios(rates)
            ratios.append(rates[1].per_second / rates[0].per_second)
    if repeat > 1:
        console.print(
            f"median ratio over {repeat} runs: {statistics.median(ratios):.2f} "
            f"(each: {', '.join(f'{r:.2f}' for r in ratios)})"
        )


@bench_command.command("ksql")
@click.option("-n", "--records", type=click.IntRange(min=1), default=100_000, show_default=True)
@KSQL_DIR
@USE_ENV
@REPEAT
def bench_ksql(records: int, ksql_dir: Path, use_env: bool, repeat: int) -> None:
    """The KSQL preprocessing query's rate as a ratio to a raw confluent-kafka passthrough (goal: 0.5)."""
    measure_ksql(lambda addresses: ksql_rate(addresses, records, ksql_dir), use_env, repeat)


@bench_command.command("ksql-aggregate")
@click.option("-n", "--records", type=click.IntRange(min=1), default=100_000, show_default=True)
@KSQL_DIR
@USE_ENV
@REPEAT
def bench_ksql_aggregate(records: int, ksql_dir: Path, use_env: bool, repeat: int) -> None:
    """The per-user windowed features query's rate (ksql/070) as a ratio to a raw confluent-kafka passthrough."""
    measure_ksql(lambda addresses: ksql_aggregate_rate(addresses, records, ksql_dir), use_env, repeat)


@bench_command.command("sink")
@click.option("-n", "--records", type=click.IntRange(min=1000), default=100_000, show_default=True)
def bench_sink(records: int) -> None:
    """The S3 sink's rate (convert, write Avro objects, upload, commit) as a ratio to a raw consume of the same records."""
    from fraudstream.bench.connect import sink_throughput

    with bench_stack(False, ("objectstore", "broker", "schema-registry")) as addresses:
        result = sink_throughput(addresses, records=records)
    print_ratios(
        [
            Rate("raw consume", result["records"], result["records"] / result["raw_consume_per_s"]),
            Rate("s3 sink (avro)", result["records"], result["records"] / result["sink_per_s"]),
        ]
    )


@bench_command.command("scoring")
@click.option("-n", "--events", type=click.IntRange(min=100), default=100_000, show_default=True)
@click.option(
    "--naive-events",
    type=click.IntRange(min=10),
    default=300,
    show_default=True,
    help="Events for the naive per-event agent (it runs at tens per second).",
)
@click.option("--rate", type=float, default=2_000.0, show_default=True, help="Offered load for the latency run.")
@click.option("--seconds", type=float, default=10.0, show_default=True, help="Length of the latency run.")
@USE_ENV
def bench_scoring_command(events: int, naive_events: int, rate: float, seconds: float, use_env: bool) -> None:
    """Worker throughput vs a raw passthrough and a naive Faust agent; latency at a fixed load."""
    with bench_stack(use_env, ("objectstore", "broker", "schema-registry")) as addresses:
        result = scoring_bench(addresses, events, naive_events, rate, seconds)
    print_bench(result, console, Table)


@bench_command.command("handbook")
@click.option("--customers", type=click.IntRange(min=64), default=1000, show_default=True)
@click.option(
    "--days", type=click.IntRange(min=1), default=51, show_default=True, help="51 days: about 100,000 transactions."
)
@click.option("--seed", type=int, default=7, show_default=True)
@USE_ENV
def bench_handbook(customers: int, days: int, seed: int, use_env: bool) -> None:
    """The handbook pipeline's statements (ksql/handbook/), replay to served features, as a ratio to a raw passthrough."""
    from fraudstream.handbook import SERVICES, stream_features
    from producers.handbook import frame_transactions, generate_transactions

    items = list(frame_transactions(generate_transactions(customers, days, seed)))
    with bench_stack(use_env, SERVICES) as addresses:
        print_ratios(stream_features(addresses, items).rates)


@bench_command.command("latency")
@click.option("--rate", "rates", type=click.FloatRange(min=0, min_open=True), multiple=True, default=(200.0, 2000.0),
              show_default=True, help="Payments per second offered; repeat for several runs on the same stacks.")  # fmt: skip
@click.option("--seconds", type=click.FloatRange(min=0, min_open=True), default=20.0, show_default=True,
              help="How long each rate is offered.")  # fmt: skip
@click.option("--floor/--no-floor", default=True, show_default=True,
              help="Also run on a throwaway stack with the in-memory broker, the floor.")  # fmt: skip
@USE_ENV
@KSQL_DIR
@click.option("--connectors-dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
              default=Path("connectors"), show_default=True)  # fmt: skip
def bench_latency(
    rates: tuple[float, ...], seconds: float, floor: bool, use_env: bool, ksql_dir: Path, connectors_dir: Path
) -> None:
    """Payment to score, hop by hop (p50, p99, max), on the whole demo pipeline: durable broker and in-memory floor.

    Without --use-env it starts a throwaway durable stack (and, with --floor, an in-memory one) running every
    statement of ksql/, the S3 sinks and a worker; with --use-env it measures the running stack, which must
    have them (`fraudstream demo` leaves it so).
    """
    from fraudstream.bench.latency import (
        latency_table,
        measure,
        pipeline_stack,
        prepare_pipeline,
        summary_line,
        train_bench_model,
    )

    runs: dict[float, list] = {rate: [] for rate in rates}

    def measure_all(addresses: Addresses, broker: str, metrics_url: str | None = None) -> None:
        for rate in rates:
            console.print(f"{broker}: offering {rate:,.0f} payments/s for {seconds:,.0f} s...")
            run = measure(addresses, broker, rate, seconds, metrics_url=metrics_url)
            console.print(summary_line(run))
            runs[rate].append(run)

    try:
        if use_env:
            addresses = Addresses.from_env()
            prepare_pipeline(addresses, ksql_dir, connectors_dir, model_dir=None)
            measure_all(addresses, "this stack")
        else:
            with tempfile.TemporaryDirectory(prefix="fraudstream-bench-model-") as model_dir:
                console.print("training a small model for the runs...")
                model = train_bench_model(Path(model_dir))
                for broker, ephemeral in (("durable", False), ("memory", True))[: 2 if floor else 1]:
                    console.print(f"starting a throwaway {broker} stack with the whole pipeline...")
                    with pipeline_stack(ephemeral, ksql_dir, connectors_dir, model) as (addresses, metrics):
                        measure_all(addresses, broker, metrics)
    except (RuntimeError, TimeoutError) as error:
        raise click.ClickException(str(error)) from None
    for rate in rates:
        console.print(latency_table(runs[rate]))
    if any(run.clock != "broker" for rate in rates for run in runs[rate]):
        console.print(
            "times: when a reader first saw each record (the broker stamps no LogAppendTime); sent: the producer's "
            "CreateTime"
        )
