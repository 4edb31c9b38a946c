"""`fraudstream bench`: throughput as a ratio to a raw confluent-kafka passthrough on the same broker.

These machines are shared and noisy, so an absolute events/s figure says little; the same broker's
raw consume -> produce rate, measured in the same run, is the practical limit every stage is held to.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import click
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from confluent_kafka.admin import NewTopic
from rich.table import Table

from stack.config import Addresses
from stack.embedded import EmbeddedStack
from stack.kafka import admin_client, consumer_config, end_offsets, producer_config
from stack.terminal import make_console

console = make_console()

#: The shape DESIGN.md's reference numbers were measured with: ~60-byte JSON records, 4 partitions.
PARTITIONS = 4


@dataclass(frozen=True)
class Rate:
    name: str
    events: int
    seconds: float

    @property
    def per_second(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else float("inf")


def create_topics(bootstrap: str, *names: str, partitions: int = PARTITIONS) -> None:
    admin = admin_client(bootstrap)
    for future in admin.create_topics([NewTopic(name, partitions, 1) for name in names]).values():
        future.result(timeout=30)


def sample_value(i: int) -> bytes:
    """A ~60-byte JSON payment-like record."""
    return json.dumps({"id": f"p-{i:09d}", "amount": round(i % 997 * 1.37, 2), "v1": -1.359807}).encode()


def produce_records(bootstrap: str, topic: str, count: int) -> Rate:
    """Produce `count` records with fraudstream's producer defaults (acks=all, idempotent); all acknowledged."""
    producer = Producer(producer_config(bootstrap, linger_ms=20, batch_num_messages=10_000))
    records = [(str(i).encode(), sample_value(i)) for i in range(count)]  # made before the clock starts
    started = time.perf_counter()
    for i, (key, value) in enumerate(records):
        while True:
            try:
                producer.produce(topic, key=key, value=value)
                break
            except BufferError:
                producer.poll(0.05)
        if i % 1000 == 0:  # serve delivery callbacks now and then, as the passthrough does once per batch
            producer.poll(0)
    if producer.flush(120) != 0:
        raise click.ClickException(f"not every record to {topic} was acknowledged")
    return Rate("produce", count, time.perf_counter() - started)


def consume_records(bootstrap: str, topic: str, count: int, on_batch: Callable[[list], None] | None = None) -> Rate:
    """Consume `count` records from the start of `topic` in a fresh group, timing from the first record."""
    consumer = Consumer(consumer_config(bootstrap, f"bench-{uuid.uuid4().hex[:8]}", enable_auto_commit=False))
    consumer.subscribe([topic])
    seen, started = 0, None
    deadline = time.monotonic() + 300
    try:
        while seen < count:
            if time.monotonic() > deadline:
                raise click.ClickException(f"only {seen:,} of {count:,} records arrived from {topic}")
            batch = [m for m in consumer.consume(10_000, timeout=0.5) if m.error() is None]
            if batch and started is None:
                started = time.perf_counter()
            if on_batch is not None and batch:
                on_batch(batch)
            seen += len(batch)
    finally:
        consumer.close()
    return Rate("consume", seen, time.perf_counter() - (started or time.perf_counter()))


def passthrough(bootstrap: str, source: str, sink: str, count: int) -> Rate:
    """The baseline: raw confluent-kafka consume -> produce of `count` records, all acknowledged."""
    producer = Producer(producer_config(bootstrap, linger_ms=20, batch_num_messages=10_000))

    def forward(batch: list) -> None:
        for message in batch:
            while True:
                try:
                    producer.produce(sink, key=message.key(), value=message.value())
                    break
                except BufferError:
                    producer.poll(0.05)
        producer.poll(0)

    rate = consume_records(bootstrap, source, count, on_batch=forward)
    started = time.perf_counter()
    if producer.flush(120) != 0:
        raise click.ClickException(f"not every record to {sink} was acknowledged")
    return Rate("passthrough", count, rate.seconds + time.perf_counter() - started)


def broker_rates(bootstrap: str, count: int) -> list[Rate]:
    """Raw produce, consume and consume -> produce rates of one broker, on fresh topics."""
    source, sink = (f"bench-{uuid.uuid4().hex[:8]}-{kind}" for kind in ("in", "out"))
    create_topics(bootstrap, source, sink)
    return [produce_records(bootstrap, source, count), consume_records(bootstrap, source, count), passthrough(bootstrap, source, sink, count)]


def ksql_rate(addresses: Addresses, count: int, ksql_dir: Path = Path("ksql")) -> list[Rate]:
    """The preprocessing query (DELIMITED -> AVRO, WHERE, MASK_LEFT) against a raw passthrough of the same records.

    The source stream is `ksql/010-source.sql` itself, renamed onto fresh topics. The query's output is
    consumed as it arrives, and its rate timed from the first output record to the last, as the passthrough
    is timed from the first record it consumes: the query's start-up is not counted.
    """
    from stack.generate import generate_payments
    from stack.ksqldb.apply import KsqlRest
    from stack.produce import replay

    run = uuid.uuid4().hex[:8]
    source, passed, out = f"bench_ksql_{run}_in", f"bench_ksql_{run}_pass", f"bench_ksql_{run}_out"
    create_topics(addresses.bootstrap_servers, source, passed, out)
    payments = generate_payments(count, seed=1)
    expected = int(payments["Class"].notna().sum())  # the rows WHERE CLASS IS NOT NULL keeps
    summary = replay(payments, bootstrap_servers=addresses.bootstrap_servers, topic=source)
    rates = [passthrough(addresses.bootstrap_servers, source, passed, summary.acknowledged)]
    source_sql = (ksql_dir / "010-source.sql").read_text().replace("creditcardfraud_source", source)
    features = ", ".join(["TIME", *(f"V{i}" for i in range(1, 29)), "AMOUNT", "CLASS"])
    query_sql = (
        f"CREATE STREAM {out} WITH (KAFKA_TOPIC='{out}', VALUE_FORMAT='AVRO') AS SELECT PAYMENT_ID, "
        f"MASK_LEFT(`USER`, 2) AS MASKED_USER, {features} FROM {source} WHERE CLASS IS NOT NULL EMIT CHANGES;"
    )
    client = KsqlRest(addresses.ksqldb_url)
    client.ksql(source_sql)
    output = Consumer({"bootstrap.servers": addresses.bootstrap_servers, "group.id": f"bench-{run}",
                       "enable.auto.commit": False, "fetch.wait.max.ms": 10})
    output.assign([TopicPartition(out, p, OFFSET_BEGINNING) for p in range(PARTITIONS)])  # no group join to wait for
    submitted = time.perf_counter()
    query_id = client.ksql(query_sql, {"auto.offset.reset": "earliest"})[0]["commandStatus"]["queryId"]
    try:
        rates.append(_arrivals(output, out, expected, submitted))
    finally:
        output.close()
        client.ksql(f"TERMINATE {query_id};")
        client.ksql(f"DROP STREAM IF EXISTS {out} DELETE TOPIC;")
        client.ksql(f"DROP STREAM IF EXISTS {source};")
    return rates


def _arrivals(consumer: Consumer, topic: str, count: int, submitted: float, timeout: float = 600.0) -> Rate:
    """Consume `count` records as they arrive; the rate from the first arrival to the last (from the statement
    when they all arrive at once, as in tiny runs)."""
    seen, started, finished = 0, None, submitted
    deadline = time.monotonic() + timeout
    while seen < count:
        if time.monotonic() > deadline:
            raise click.ClickException(f"only {seen:,} of {count:,} records reached {topic}")
        batch = [m for m in consumer.consume(10_000, timeout=0.1) if m.error() is None]
        if batch:
            finished = time.perf_counter()
            started = finished if started is None else started
            seen += len(batch)
    if started == finished:
        started = submitted
    return Rate("ksql", seen, finished - started)


def ksql_aggregate_rate(addresses: Addresses, count: int, ksql_dir: Path = Path("ksql")) -> list[Rate]:
    """The per-user features query (`ksql/070-user-features.sql`: hopping 1 h / 5 min windows, COUNT, SUM, MAX,
    state committed to SQLite and changelog topics every batch) against a raw passthrough of the same records.

    The query reads the source stream of `ksql/010-source.sql` directly (the enriched stream it reads in
    production is a projection of it); its rate is timed from the statement to the moment its consumer
    group has committed every source record, i.e. every record is aggregated and its state durable.
    """
    from stack.generate import generate_payments
    from stack.ksqldb.apply import KsqlRest
    from stack.ksqldb.kafka_runtime import query_group
    from stack.produce import replay

    run = uuid.uuid4().hex[:8]
    source, passed, out = f"bench_agg_{run}_in", f"bench_agg_{run}_pass", f"bench_agg_{run}_out"
    create_topics(addresses.bootstrap_servers, source, passed)
    summary = replay(generate_payments(count, seed=1), bootstrap_servers=addresses.bootstrap_servers, topic=source)
    rates = [passthrough(addresses.bootstrap_servers, source, passed, summary.acknowledged)]
    source_sql = (ksql_dir / "010-source.sql").read_text().replace("creditcardfraud_source", source)
    query_sql = ((ksql_dir / "070-user-features.sql").read_text()
                 .replace("creditcardfraud_user_features", out).replace("creditcardfraud_enriched", source))
    client = KsqlRest(addresses.ksqldb_url)
    service_id = client.http.get(f"{client.url}/info").json()["KsqlServerInfo"]["ksqlServiceId"]
    client.ksql(source_sql)
    started = time.perf_counter()
    query_id = client.ksql(query_sql, {"auto.offset.reset": "earliest"})[0]["commandStatus"]["queryId"]
    try:
        finished = _wait_for_commits(addresses.bootstrap_servers, query_group(query_id, service_id), source)
        rates.append(Rate("ksql windowed aggregation", summary.acknowledged, finished - started))
    finally:
        client.ksql(f"TERMINATE {query_id};")
        client.ksql(f"DROP TABLE IF EXISTS {out} DELETE TOPIC;")
        client.ksql(f"DROP STREAM IF EXISTS {source};")
    return rates


def _wait_for_commits(bootstrap: str, group: str, topic: str, timeout: float = 900.0) -> float:
    """Poll until `group` has committed the true end of every partition of `topic`; return when."""
    ends = end_offsets(bootstrap, topic)
    consumer = Consumer(consumer_config(bootstrap, group, enable_auto_commit=False))
    deadline = time.monotonic() + timeout
    try:
        while True:
            committed = consumer.committed([TopicPartition(topic, p) for p in ends], timeout=10)
            if all(tp.offset >= ends[tp.partition] for tp in committed):
                return time.perf_counter()
            if time.monotonic() > deadline:
                raise click.ClickException(f"the query had not read all of {topic} after {timeout:.0f} s")
            time.sleep(0.05)
    finally:
        consumer.close()


@click.group("bench")
def bench_command() -> None:
    """Throughput benchmarks, each printed as a ratio to a raw passthrough on the same broker."""


@bench_command.command("broker")
@click.option("-n", "--records", type=click.IntRange(min=1), default=200_000, show_default=True)
@click.option("--bootstrap-servers", help="Measure this broker instead of starting embedded ones (durable and in memory).")
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
                with EmbeddedStack.on_free_ports(data_dir, ephemeral=ephemeral, services=("objectstore", "broker")) as stack:
                    rates = broker_rates(stack.addresses.bootstrap_servers, records)
        produce, consume, through = (rate.per_second for rate in rates)
        table.add_row(label, f"{produce:,.0f}", f"{consume:,.0f}", f"{through:,.0f}", f"{produce / through:.2f}", f"{consume / through:.2f}")
    console.print(table)


REPEAT = click.option("--repeat", type=click.IntRange(min=1), default=1, show_default=True,
                      help="Measure this many times (each with its own passthrough) and print the median ratio too.")
USE_ENV = click.option("--use-env", is_flag=True,
                       help="Measure the stack at the environment's addresses instead of a throwaway one (in-memory broker).")
KSQL_DIR = click.option("--ksql-dir", type=click.Path(exists=True, file_okay=False, path_type=Path), default=Path("ksql"),
                        show_default=True)


@contextmanager
def bench_stack(use_env: bool, services: tuple[str, ...]) -> Iterator[Addresses]:
    """The stack a benchmark measures: the environment's (`--use-env`), or a throwaway embedded one with an
    in-memory broker, so that runs compare the code and not whatever else the user's stack holds."""
    if use_env:
        yield Addresses.from_env()
        return
    with tempfile.TemporaryDirectory(prefix="fraudstream-bench-") as data_dir:
        with EmbeddedStack.on_free_ports(data_dir, ephemeral=True, services=services) as stack:
            yield stack.addresses


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
        console.print(f"median ratio over {repeat} runs: {statistics.median(ratios):.2f} "
                      f"(each: {', '.join(f'{r:.2f}' for r in ratios)})")


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


def print_ratios(rates: list[Rate]) -> None:
    """A table of rates, each as a ratio to the first (the baseline)."""
    baseline = rates[0].per_second
    table = Table("path", "events", "seconds", "events/s", f"ratio to {rates[0].name}")
    for rate in rates:
        table.add_row(rate.name, f"{rate.events:,}", f"{rate.seconds:.2f}", f"{rate.per_second:,.0f}", f"{rate.per_second / baseline:.2f}")
    console.print(table)


@bench_command.command("sink")
@click.option("-n", "--records", type=click.IntRange(min=1000), default=100_000, show_default=True)
def bench_sink(records: int) -> None:
    """The S3 sink's rate (convert, write Avro objects, upload, commit) as a ratio to a raw consume of the same records."""
    from connectors.bench import sink_throughput

    with bench_stack(False, ("objectstore", "broker", "schema-registry")) as addresses:
        result = sink_throughput(addresses, records=records)
    print_ratios([Rate("raw consume", result["records"], result["records"] / result["raw_consume_per_s"]),
                  Rate("s3 sink (avro)", result["records"], result["records"] / result["sink_per_s"])])
