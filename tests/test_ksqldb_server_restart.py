"""kill -9 of the server while the preprocessing query runs, then a restart: the command topic brings the
statements back, the query resumes from its committed offsets, and the output has every input (no gaps).

Offsets are committed only after the produced records are acknowledged, so a crash can only repeat the
batch in flight; the output is deterministic, so a repeat is the same record again. The test measures
and prints the duplicates rather than pretending there are none."""

from __future__ import annotations

import uuid
from collections import Counter

from confluent_kafka import Consumer, TopicPartition

from ksqldb_server_helpers import labelled_payments, prefixed_statements, read_avro, server_spec
from stack import supervisor
from stack.kafka import end_offsets
from stack.ksqldb.apply import KsqlRest, apply_directory
from stack.ksqldb.kafka_runtime import query_group
from stack.produce import replay

BATCH = 1000  # the runtime's consume batch: the most a crash may repeat per query


def _committed(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        parts = [TopicPartition(topic, p) for p in end_offsets(bootstrap, topic)]
        return {tp.partition: tp.offset for tp in consumer.committed(parts, timeout=10)}
    finally:
        consumer.close()


def test_kill_minus_nine_and_restart_leave_no_gaps(stack, tmp_path, capsys) -> None:
    addresses = stack.addresses
    prefix = f"k{uuid.uuid4().hex[:8]}"
    service_id = f"{prefix}_"
    source, output = f"{prefix}_creditcardfraud_source", f"{prefix}_creditcardfraud_preprocessed_avro"
    spec = server_spec(addresses, supervisor.free_port(), service_id)
    server = supervisor.start(spec, tmp_path / "logs")
    try:
        outcomes = apply_directory(KsqlRest(server.address), prefixed_statements(tmp_path / "ksql", prefix))
        assert [o.status for o in outcomes] == ["created"] * 4
        query_id = next(q["id"] for q in KsqlRest(server.address).ksql("SHOW QUERIES;")[0]["queries"]
                        if q["sinkKafkaTopics"] == [output])

        payments = labelled_payments(24000, seed=11)
        before, after = payments[:20000], payments[20000:]
        assert replay(before, bootstrap_servers=addresses.bootstrap_servers, topic=source).ok
        while sum(end_offsets(addresses.bootstrap_servers, output).values()) == 0:
            pass  # kill as soon as output starts to arrive: the query is mid-stream
        supervisor.stop(server, kill=True)
        produced_at_kill = sum(end_offsets(addresses.bootstrap_servers, output).values())

        assert replay(after, bootstrap_servers=addresses.bootstrap_servers, topic=source).ok
        server = supervisor.start(spec, tmp_path / "logs")
        expected = {p.id for p in payments if p.label is not None}
        # every input arrives; then wait until the group has committed all of the source
        records = read_avro(addresses, output, len(expected), timeout=120)
        while True:
            ends = end_offsets(addresses.bootstrap_servers, source)
            if _committed(addresses.bootstrap_servers, query_group(query_id, service_id), source) == ends:
                break
        total = sum(end_offsets(addresses.bootstrap_servers, output).values())
        records = read_avro(addresses, output, total, timeout=120)
        counts = Counter(key for key, _ in records)
        assert set(counts) == expected  # no gaps, nothing foreign
        duplicates = total - len(expected)
        with capsys.disabled():
            print(f"\nkill -9 restart: {len(expected)} labelled inputs, {produced_at_kill} output records at the "
                  f"kill, {total} after the restart, {duplicates} duplicates (bound: one batch of {BATCH} "
                  "per partition in flight)")
        assert duplicates <= BATCH * 4
        same = [r for r in records if counts[r[0]] > 1]
        by_key: dict[str, list[dict]] = {}
        for key, value in same:
            by_key.setdefault(key, []).append(value)
        assert all(all(v == values[0] for v in values) for values in by_key.values())  # a repeat is the same record
    finally:
        supervisor.stop(server)


def test_restart_replays_drops_and_terminations(stack, tmp_path, topic_name) -> None:
    service_id = f"r{uuid.uuid4().hex[:8]}_"
    spec = server_spec(stack.addresses, supervisor.free_port(), service_id)
    server = supervisor.start(spec, tmp_path / "logs")
    try:
        rest = KsqlRest(server.address)
        rest.ksql(f"CREATE STREAM A (N INT) WITH (KAFKA_TOPIC='{topic_name}', VALUE_FORMAT='JSON', PARTITIONS=1);"
                  f"CREATE STREAM B WITH (KAFKA_TOPIC='{topic_name}-b') AS SELECT * FROM A;"
                  f"CREATE STREAM C WITH (KAFKA_TOPIC='{topic_name}-c') AS SELECT N FROM A;")
        queries = {q["sinks"][0]: q["id"] for q in rest.ksql("SHOW QUERIES;")[0]["queries"]}
        rest.ksql(f"TERMINATE {queries['C']}; DROP STREAM C DELETE TOPIC;"
                  f"CREATE STREAM C (M STRING) WITH (KAFKA_TOPIC='{topic_name}-c2', VALUE_FORMAT='JSON', PARTITIONS=1);")
        supervisor.stop(server)
        server = supervisor.start(spec, tmp_path / "logs")
        rest = KsqlRest(server.address)
        assert {s["name"] for s in rest.ksql("SHOW STREAMS;")[0]["streams"]} == {"A", "B", "C"}
        assert [f["name"] for f in rest.describe("C")["fields"]] == ["M"]
        assert [(q["id"], q["state"]) for q in rest.ksql("SHOW QUERIES;")[0]["queries"]] == [(queries["B"], "RUNNING")]
    finally:
        supervisor.stop(server)
