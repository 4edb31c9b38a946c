"""Exactly-once results of a windowed aggregation across a `kill -9` of the engine, without Kafka transactions.

A stateful query commits its state (SQLite file + changelog topics) together with the input positions it
reflects, after the batch's output is acknowledged and before input offsets are committed; after a crash the
batch in flight is evaluated again from the state before it, and only the output the sink lacks is produced
(durable_state.py, kafka_runtime.py). The runtime emits each key's last change per batch (ksqlDB's record
cache), so the output holds a subset of an uninterrupted run's updates: never a record that run would not
produce, never one more often, and the final aggregate of every key (latest record per key, and a pull
query) equal to that run's. A second engine process with an empty state directory then restores the state
from the changelogs.
"""

from __future__ import annotations

import dataclasses
import json
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from ksqldb_server_helpers import server_spec

from fraudstream.bench.ksql import ksql_aggregate_rate
from fraudstream.kafka import committed_offsets, end_offsets, producer_config
from ksql import KSQLAPI
from stack import supervisor
from stack.ksqldb.engine import Engine
from stack.ksqldb.kafka_runtime import query_group
from stack.ksqldb.records import Record

RECORDS = 100_000
MORE = 10_000  # produced while the engine is down, before a process with an empty state directory takes over
USERS = 100
PARTITIONS = 4


def _statements(source: str, table: str, topic: str) -> list[str]:
    return [
        f"CREATE STREAM {source} (USER_ID STRING KEY, AMOUNT DOUBLE) WITH (KAFKA_TOPIC='{topic}', "
        f"VALUE_FORMAT='JSON', PARTITIONS={PARTITIONS});",
        f"CREATE TABLE {table} WITH (KAFKA_TOPIC='{topic}-agg') AS SELECT USER_ID, COUNT(*) AS N, "
        f"SUM(AMOUNT) AS TOTAL, MAX(AMOUNT) AS BIGGEST FROM {source} WINDOW TUMBLING (SIZE 1 HOUR) GROUP BY USER_ID;",
    ]


def _payments(start: int, count: int) -> list[tuple[bytes, bytes, int]]:
    """(key, value, timestamp): USERS users, one payment every 400 ms from t = 1 h (so within the grace period)."""
    return [
        (
            f"u{i % USERS}".encode(),
            json.dumps({"AMOUNT": round((i * 7919) % 10_000 / 100, 2)}).encode(),
            3_600_000 + 400 * i,
        )
        for i in range(start, start + count)
    ]


def _produce(bootstrap: str, topic: str, payments: list[tuple[bytes, bytes, int]]) -> None:
    producer = Producer(producer_config(bootstrap, linger_ms=20))
    for key, value, ts in payments:
        while True:
            try:
                producer.produce(topic, value, key, timestamp=ts)
                break
            except BufferError:
                producer.poll(0.1)
    assert producer.flush(60) == 0


def _reference(payments: list[tuple[bytes, bytes, int]]) -> list[tuple[bytes | None, bytes | None, int]]:
    """The output of an uninterrupted run: the same statements on the in-process engine."""
    engine = Engine(None)
    for sql in _statements("S", "T", "in"):
        engine.execute(sql, {"auto.offset.reset": "earliest"})
    for key, value, ts in payments:
        engine.runtime.produce(Record("in", key, value, ts))
    return [(r.key, r.value, r.timestamp) for r in engine.runtime.topics["in-agg"]]


def _read_all(bootstrap: str, topic: str) -> list[tuple[bytes | None, bytes | None, int]]:
    ends = {p: e for p, e in end_offsets(bootstrap, topic).items() if e > 0}
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"read-{uuid.uuid4().hex}", "enable.auto.commit": False}
    )
    consumer.assign([TopicPartition(topic, p, 0) for p in ends])
    out = []
    deadline = time.monotonic() + 120
    try:
        while ends:
            assert time.monotonic() < deadline, f"{topic} stopped short of its end: {ends}"
            for m in consumer.consume(10_000, 0.2):
                if m.error() is None:
                    out.append((m.key(), m.value(), m.timestamp()[1]))
                    if m.offset() >= ends.get(m.partition(), 0) - 1:
                        ends.pop(m.partition(), None)
    finally:
        consumer.close()
    return out


def _size(bootstrap: str, topic: str) -> int:
    return sum(end_offsets(bootstrap, topic).values())


def _caught_up(bootstrap: str, group: str, topic: str) -> bool:
    return committed_offsets(bootstrap, group, topic) == end_offsets(bootstrap, topic)


def _wait_until_done(bootstrap: str, group: str, source: str) -> None:
    """Every source record processed, its output acknowledged and its state committed (the group's offsets)."""
    deadline = time.monotonic() + 900  # a hang guard only: the loop waits on what the broker shows
    while not _caught_up(bootstrap, group, source):
        assert time.monotonic() < deadline, f"{group} has not caught up with {source}"
        time.sleep(0.5)


def _latest(records: list[tuple[bytes | None, bytes | None, int]]) -> dict[bytes | None, bytes | None]:
    out: dict[bytes | None, bytes | None] = {}
    for key, value, _ in records:
        out[key] = value
    return out


def test_bench_ksql_aggregate_smoke(stack) -> None:
    """`fraudstream bench ksql-aggregate` with a tiny size: the benchmark runs; its numbers are not judged."""
    passthrough, aggregation = ksql_aggregate_rate(stack.addresses, 300)
    assert passthrough.events == aggregation.events == 300 and aggregation.seconds > 0


@pytest.mark.slow
def test_kill_minus_nine_during_a_windowed_aggregation(stack, tmp_path: Path, capsys) -> None:
    bootstrap = stack.addresses.bootstrap_servers
    tag = uuid.uuid4().hex[:8]
    service_id = f"s{tag}_"
    source, table, topic = f"PAYMENTS_{tag}".upper(), f"PER_USER_{tag}".upper(), f"payments-{tag}"
    output = f"{topic}-agg"
    payments = _payments(0, RECORDS)
    expected = _reference(payments)

    spec = server_spec(stack.addresses, supervisor.free_port(), service_id)
    state = tmp_path / "state"
    with_state = dataclasses.replace(spec, argv=[*spec.argv, "--state-dir", str(state)])
    server = supervisor.start(with_state, tmp_path / "logs")
    try:
        client = KSQLAPI(server.address)
        for sql in _statements(source, table, topic):
            client.ksql(sql, stream_properties={"auto.offset.reset": "earliest"})
        query_id = next(q["id"] for q in client.ksql("SHOW QUERIES;")[0]["queries"] if q["sinks"] == [table])
        group = query_group(query_id, service_id)

        _produce(bootstrap, topic, payments)
        while _size(bootstrap, output) < USERS * 3:
            time.sleep(0.05)  # mid-stream: a few batches' output is there
        supervisor.stop(server, kill=True)
        at_kill = _size(bootstrap, output)
        assert not _caught_up(bootstrap, group, topic), "the query finished before the kill: nothing was tested"

        server = supervisor.start(with_state, tmp_path / "logs")
        _wait_until_done(bootstrap, group, topic)
        produced = _read_all(bootstrap, output)
        with capsys.disabled():
            print(
                f"\nkill -9 with {at_kill} output records; after the restart {len(produced)} (an uninterrupted "
                f"run emits {len(expected)} updates without ksqlDB's record cache)"
            )
        assert not Counter(produced) - Counter(expected)  # nothing an uninterrupted run lacks, no duplicate
        final = _latest(expected)
        assert _latest(produced) == final

        # pull queries read the same final aggregates from the restored state
        client = KSQLAPI(server.address)
        rows = json.loads("".join(client.query(f"SELECT * FROM {table} WHERE USER_ID = 'u7';")))[1:]
        windows = {key: json.loads(value) for key, value in final.items() if key[:-8] == b"u7"}
        assert sorted((r["row"]["columns"][1], r["row"]["columns"][3:]) for r in rows) == sorted(
            (int.from_bytes(key[-8:], "big"), [v["N"], v["TOTAL"], v["BIGGEST"]]) for key, v in windows.items()
        )

        # another engine process, an empty state directory: the state comes back from the changelogs
        supervisor.stop(server)
        more = _payments(RECORDS, MORE)
        _produce(bootstrap, topic, more)
        expected = _reference(payments + more)
        fresh = dataclasses.replace(spec, argv=[*spec.argv, "--state-dir", str(tmp_path / "empty")])
        server = supervisor.start(fresh, tmp_path / "logs")
        _wait_until_done(bootstrap, group, topic)
        produced = _read_all(bootstrap, output)
        assert not Counter(produced) - Counter(expected)
        assert _latest(produced) == _latest(expected)
    finally:
        supervisor.stop(server)
