"""ksqlDB benchmarks: the preprocessing and the windowed-features queries against a raw passthrough."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import click
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from fraudstream.bench.passthrough import PARTITIONS, Rate, create_topics, passthrough
from fraudstream.config import Addresses
from fraudstream.kafka import client_config, consumer_config, end_offsets


def ksql_rate(addresses: Addresses, count: int, ksql_dir: Path = Path("ksql")) -> list[Rate]:
    """A projection of the source (DELIMITED -> AVRO, WHERE, MASK_LEFT) against a raw passthrough of the same records.

    The source stream is `ksql/010-source.sql` itself, renamed onto fresh topics. The query's output is
    consumed as it arrives, and its rate timed from the first output record to the last, as the passthrough
    is timed from the first record it consumes: the query's start-up is not counted.
    """
    from producers.generate import generate_payments
    from producers.replay import replay
    from stack.ksqldb.apply import KsqlRest

    run = uuid.uuid4().hex[:8]
    source, passed, out = f"bench_ksql_{run}_in", f"bench_ksql_{run}_pass", f"bench_ksql_{run}_out"
    create_topics(addresses.bootstrap_servers, source, passed, out)
    payments = generate_payments(count, seed=1)
    expected = int(payments["Amount"].notna().sum())  # the rows WHERE AMOUNT IS NOT NULL keeps
    summary = replay(payments, bootstrap_servers=addresses.bootstrap_servers, topic=source, labels_topic=None)
    rates = [passthrough(addresses.bootstrap_servers, source, passed, summary.acknowledged)]
    source_sql = (ksql_dir / "010-source.sql").read_text().replace("creditcardfraud_source", source)
    features = ", ".join(["TIME", *(f"V{i}" for i in range(1, 29)), "AMOUNT"])
    query_sql = (
        f"CREATE STREAM {out} WITH (KAFKA_TOPIC='{out}', VALUE_FORMAT='AVRO') AS SELECT PAYMENT_ID, "
        f"MASK_LEFT(`USER`, 2) AS MASKED_USER, {features} FROM {source} WHERE AMOUNT IS NOT NULL EMIT CHANGES;"
    )
    client = KsqlRest(addresses.ksqldb_url)
    client.ksql(source_sql)
    output = Consumer(
        client_config(
            addresses.bootstrap_servers,
            **{"group.id": f"bench-{run}", "enable.auto.commit": False, "fetch.wait.max.ms": 10},
        )
    )
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
    from producers.generate import generate_payments
    from producers.replay import replay
    from stack.ksqldb.apply import KsqlRest
    from stack.ksqldb.kafka_runtime import query_group

    run = uuid.uuid4().hex[:8]
    source, passed, out = f"bench_agg_{run}_in", f"bench_agg_{run}_pass", f"bench_agg_{run}_out"
    create_topics(addresses.bootstrap_servers, source, passed)
    summary = replay(
        generate_payments(count, seed=1), bootstrap_servers=addresses.bootstrap_servers, topic=source, labels_topic=None
    )
    rates = [passthrough(addresses.bootstrap_servers, source, passed, summary.acknowledged)]
    source_sql = (ksql_dir / "010-source.sql").read_text().replace("creditcardfraud_source", source)
    query_sql = (
        (ksql_dir / "070-user-features.sql")
        .read_text()
        .replace("creditcardfraud_user_features", out)
        .replace("creditcardfraud_enriched", source)
    )
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
