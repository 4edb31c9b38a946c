"""Crashes and restarts of persistent queries: no gaps and no duplicates in their output.

A query records the batch it is about to produce in its progress topic; after a crash it evaluates that
batch again and produces only what the sink lacks (kafka_runtime.py). The end-to-end test `kill -9`s the
server twice while the fraud preprocessing runs; the in-process tests build the state a crash leaves
(a batch recorded as in flight, part of its output in the sink) exactly, and let the real runtime finish.
"""

from __future__ import annotations

import re
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Message, Producer, TopicPartition
from ksqldb_server_helpers import labelled_payments, prefixed_statements, server_spec

from fraudstream.kafka import committed_offsets, end_offsets, producer_config
from producers.replay import replay
from stack import supervisor
from stack.ksqldb.apply import KsqlRest, apply_directory
from stack.ksqldb.engine import Engine
from stack.ksqldb.formats import HttpSchemaRegistry
from stack.ksqldb.kafka_runtime import KafkaRuntime, Progress, progress_topic, query_group, read_progress, to_columns
from stack.ksqldb.runtime import evaluate

RECOVERED = re.compile(
    r"query (\S+): recovered the batch in flight \((\d+) source records\): (\d+) of its (\d+) output"
)


def _size(bootstrap: str, topic: str) -> int:
    return sum(end_offsets(bootstrap, topic).values())


def _messages(bootstrap: str, topic: str) -> list[Message]:
    """Every record of `topic`, up to its true end."""
    ends = {p: e for p, e in end_offsets(bootstrap, topic).items() if e > 0}
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"read-{uuid.uuid4().hex}", "enable.auto.commit": False}
    )
    consumer.assign([TopicPartition(topic, p, 0) for p in ends])
    out = []
    deadline = time.monotonic() + 60
    try:
        while ends:
            assert time.monotonic() < deadline, f"{topic} stopped short of its end: {ends}"
            for m in consumer.consume(10_000, 0.2):
                if m.error() is None:
                    out.append(m)
                    if m.offset() >= ends.get(m.partition(), 0) - 1:
                        ends.pop(m.partition(), None)
    finally:
        consumer.close()
    return out


def _read_all(bootstrap: str, topic: str) -> list[tuple[int, bytes | None, bytes | None, int]]:
    """(partition, key, value, timestamp) of every record of `topic`, up to its true end."""
    return [(m.partition(), m.key(), m.value(), m.timestamp()[1]) for m in _messages(bootstrap, topic)]


def _recoveries(log_dir: Path) -> list[tuple[str, int, int, int]]:
    """(query, source records, output records already in the sink, output records) per recovery logged."""
    found = []
    for path in log_dir.glob("*.log"):
        for m in RECOVERED.finditer(path.read_text(errors="replace")):
            found.append((m.group(1), int(m.group(2)), int(m.group(3)), int(m.group(4))))
    return found


def test_kill_minus_nine_twice_mid_stream_leaves_no_gaps_and_no_duplicates(stack, tmp_path, capsys) -> None:
    addresses = stack.addresses
    bootstrap = addresses.bootstrap_servers
    prefix = f"k{uuid.uuid4().hex[:8]}"
    service_id = f"{prefix}_"
    source = f"{prefix}_creditcardfraud_source"
    sinks = [f"{prefix}_creditcardfraud_{name}" for name in ("preprocessed_avro", "anonymised", "enriched")]
    spec = server_spec(addresses, supervisor.free_port(), service_id)
    logs = tmp_path / "logs"
    server = supervisor.start(spec, logs)
    try:
        # the statements behind the three sinks checked (the preprocessing and its user history), not the rest
        statements = prefixed_statements(tmp_path / "ksql", prefix, only=("010", "012", "014", "020", "030", "040"))
        outcomes = apply_directory(KsqlRest(server.address), statements)
        assert outcomes and all(o.status in ("created", "set", "unset") for o in outcomes), outcomes
        queries = {
            q["sinkKafkaTopics"][0]: q["id"] for q in KsqlRest(server.address).ksql("SHOW QUERIES;")[0]["queries"]
        }

        payments = labelled_payments(30_000, seed=11)
        before, after = payments[:25_000], payments[25_000:]
        assert replay(before, bootstrap_servers=bootstrap, topic=source).ok
        at_kills = []
        for _ in range(2):  # kill once output has started, and again once the restarted server has moved on
            seen = _size(bootstrap, sinks[0])
            while _size(bootstrap, sinks[0]) <= seen:
                pass
            supervisor.stop(server, kill=True)
            at_kills.append(_size(bootstrap, sinks[0]))
            server = supervisor.start(spec, logs)
        assert at_kills[-1] < len(before), "the kills did not land while the query was running: use more records"

        assert replay(after, bootstrap_servers=bootstrap, topic=source).ok
        ends = end_offsets(bootstrap, source)
        for sink in sinks:  # every query has consumed and committed all of the source: its output is complete
            while committed_offsets(bootstrap, query_group(queries[sink], service_id), source) != ends:
                time.sleep(0.2)

        expected = Counter(p.id.encode() for p in payments)
        for sink in sinks:
            keys = Counter(key for _, key, _, _ in _read_all(bootstrap, sink))
            assert keys == expected, (
                f"{sink}: {sum((keys - expected).values())} duplicates, {sum((expected - keys).values())} missing"
            )
        recoveries = _recoveries(logs)
        with capsys.disabled():
            print(
                f"\nkill -9 twice: {len(payments)} inputs, {at_kills} preprocessed records at the kills; "
                f"0 duplicates, 0 gaps in {len(sinks)} sinks; recoveries (query, batch, already in sink, "
                f"outputs): {recoveries}"
            )
        assert recoveries, "no batch was in flight at either kill"
    finally:
        supervisor.stop(server)


# ---------------------------------------------------------------- a crash's state, built exactly
def _engine(stack, service_id: str) -> tuple[Engine, KafkaRuntime]:
    runtime = KafkaRuntime(stack.addresses.bootstrap_servers, service_id)
    return Engine(HttpSchemaRegistry(stack.addresses.schema_registry_url), runtime), runtime


def _source_batch(bootstrap: str, topic: str):
    """Every record of `topic`, as the runtime's batch columns."""
    return to_columns(topic, _messages(bootstrap, topic), False), end_offsets(bootstrap, topic)


@pytest.mark.parametrize("already", [0, 0.4, 1.0], ids=["none-produced", "part-produced", "all-produced"])
def test_recovery_produces_exactly_what_the_batch_in_flight_lacks(stack, topic_name, already) -> None:
    bootstrap = stack.addresses.bootstrap_servers
    service_id = f"d{uuid.uuid4().hex[:8]}_"
    source, sink = topic_name, f"{topic_name}-out"
    engine, runtime = _engine(stack, service_id)
    try:
        engine.execute(
            f"CREATE STREAM S (ID STRING KEY, N INT, NAME STRING) WITH (KAFKA_TOPIC='{source}', "
            "VALUE_FORMAT='DELIMITED', PARTITIONS=2);"
        )
        # identical records (same key, value and timestamp) must each come out once: repeats are not replays
        producer = Producer(producer_config(bootstrap))
        for i in range(3000):
            n = i // 3 if i % 10 == 0 else i
            producer.produce(
                source, key=f"id{n}".encode(), value=f"{n},name{n % 7}".encode(), timestamp=1_000 + n, partition=i % 2
            )
        assert producer.flush(30) == 0

        runtime.deferring = True  # the query is set up but not started, as while the server replays its commands
        engine.execute(
            f"CREATE STREAM T WITH (KAFKA_TOPIC='{sink}', VALUE_FORMAT='JSON', PARTITIONS=3) AS "
            "SELECT ID, N, UCASE(NAME) AS NAME FROM S WHERE N % 7 <> 3 EMIT CHANGES;",
            {"auto.offset.reset": "earliest"},
        )
        (query_id,) = engine.queries
        query = engine.queries[query_id]

        # a record another writer put in the sink before the crash: identical to one of the query's outputs,
        # but before the batch in flight, so it must not count as already produced
        batch, source_ends = _source_batch(bootstrap, source)
        out = evaluate(query, batch)
        producer = Producer(producer_config(bootstrap, partitioner="murmur2_random"))
        producer.produce(sink, key=out.keys[0], value=out.values[0], timestamp=out.timestamps[0])
        assert producer.flush(30) == 0
        sink_start = end_offsets(bootstrap, sink)
        # the crash: the batch recorded as in flight, the first part of its output acknowledged
        runtime.create_topic(progress_topic(query_id, service_id), 1)
        progress = Progress({p: 0 for p in source_ends}, source_ends, sink_start)
        producer.produce(progress_topic(query_id, service_id), progress.encode(), query_id.encode())
        produced = int(len(out) * already)
        for i in range(produced):
            producer.produce(sink, key=out.keys[i], value=out.values[i], timestamp=out.timestamps[i])
        assert producer.flush(30) == 0

        runtime.finish_replay()  # the restart
        runner = runtime.runners[query_id]
        while runner.progress.in_flight or runner._recorded != runner.progress:
            assert runner.is_alive(), runner.error
            time.sleep(0.05)
        assert read_progress(bootstrap, progress_topic(query_id, service_id)) == runner.progress

        records = Counter((k, v, t) for _, k, v, t in _read_all(bootstrap, sink))
        wanted = Counter(zip(out.keys, out.values, out.timestamps))
        wanted[(out.keys[0], out.values[0], out.timestamps[0])] += 1  # the other writer's copy
        assert records == wanted
        assert sum(wanted.values()) == len(out) + 1 and len(out) > 2000
    finally:
        runtime.close()


def test_restart_replays_drops_and_terminations(stack, tmp_path, topic_name) -> None:
    service_id = f"r{uuid.uuid4().hex[:8]}_"
    spec = server_spec(stack.addresses, supervisor.free_port(), service_id)
    server = supervisor.start(spec, tmp_path / "logs")
    try:
        rest = KsqlRest(server.address)
        rest.ksql(
            f"CREATE STREAM A (N INT) WITH (KAFKA_TOPIC='{topic_name}', VALUE_FORMAT='JSON', PARTITIONS=1);"
            f"CREATE STREAM B WITH (KAFKA_TOPIC='{topic_name}-b') AS SELECT * FROM A;"
            f"CREATE STREAM C WITH (KAFKA_TOPIC='{topic_name}-c') AS SELECT N FROM A;"
        )
        queries = {q["sinks"][0]: q["id"] for q in rest.ksql("SHOW QUERIES;")[0]["queries"]}
        rest.ksql(
            f"TERMINATE {queries['C']}; DROP STREAM C DELETE TOPIC;"
            f"CREATE STREAM C (M STRING) WITH (KAFKA_TOPIC='{topic_name}-c2', VALUE_FORMAT='JSON', PARTITIONS=1);"
        )
        supervisor.stop(server)
        server = supervisor.start(spec, tmp_path / "logs")
        rest = KsqlRest(server.address)
        assert {s["name"] for s in rest.ksql("SHOW STREAMS;")[0]["streams"]} == {"A", "B", "C"}
        assert [f["name"] for f in rest.describe("C")["fields"]] == ["M"]
        assert [(q["id"], q["state"]) for q in rest.ksql("SHOW QUERIES;")[0]["queries"]] == [(queries["B"], "RUNNING")]
    finally:
        supervisor.stop(server)
