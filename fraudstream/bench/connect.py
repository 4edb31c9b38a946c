"""The S3 sink's throughput as a ratio to a raw confluent-kafka consume of the same topic, in the same run.

`sink_throughput(addresses)` produces Avro records shaped like `creditcardfraud_preprocessed_avro`,
times a bare consume of them, then times the sink task landing them (convert, write Avro files,
upload, commit), both from the first record received to the last one handled. `fraudstream bench`
calls it; the tests call `produce_payments` for their own records.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from fraudstream.config import Addresses
from fraudstream.credentials import schema_registry_conf
from fraudstream.kafka import consumer_config, ensure_topic, producer_config
from stack.connect import definitions as d
from stack.connect.metrics import SinkMetrics
from stack.connect.settings import SinkSettings
from stack.connect.task import SinkTask

#: Shaped like the preprocessed payments: an event id, the sequence number within its partition, 30 features.
PAYMENT_SCHEMA = json.dumps(
    {
        "type": "record",
        "name": "PreprocessedPayment",
        "namespace": "fraudstream.bench",
        "fields": [{"name": "event_id", "type": "string"}, {"name": "seq", "type": "long"}]
        + [{"name": f"v{i}", "type": "double"} for i in range(1, 29)]
        + [{"name": "amount", "type": "double"}, {"name": "class", "type": ["null", "int"], "default": None}],
    }
)


def create_topic(addresses: Addresses, topic: str, partitions: int) -> None:
    if not ensure_topic(addresses.bootstrap_servers, topic, partitions):
        raise RuntimeError(f"benchmark topic {topic} exists already")


def produce_payments(addresses: Addresses, topic: str, per_partition: int, partitions: int, start: int = 0) -> None:
    """`per_partition` Avro records into each partition; a record's `seq` is the offset it will get there."""
    serializer = AvroSerializer(
        SchemaRegistryClient(schema_registry_conf(addresses.schema_registry_url)), PAYMENT_SCHEMA
    )
    producer = Producer(producer_config(addresses.bootstrap_servers, linger_ms=20))
    context = SerializationContext(topic, MessageField.VALUE)
    for partition in range(partitions):
        for seq in range(start, start + per_partition):
            value = {
                "event_id": f"{partition}-{seq}",
                "seq": seq,
                "amount": seq * 0.01,
                "class": seq % 2,
                **{f"v{i}": i * 0.5 + seq for i in range(1, 29)},
            }
            producer.produce(
                topic, key=f"{partition}-{seq}".encode(), value=serializer(value, context), partition=partition
            )
            producer.poll(0)
    if producer.flush(60):
        raise RuntimeError(f"records to {topic} not acknowledged within 60 s")


def raw_consume_rate(addresses: Addresses, topic: str, total: int, partitions: int) -> float:
    """Records per second of a bare confluent-kafka consume of `total` records (the practical limit)."""
    consumer = Consumer(
        consumer_config(addresses.bootstrap_servers, f"bench-raw-{uuid.uuid4().hex[:8]}", enable_auto_commit=False)
    )
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    seen, first = 0, None
    deadline = time.monotonic() + 300
    try:
        while seen < total and time.monotonic() < deadline:
            batch = [m for m in consumer.consume(2000, 1.0) if m.error() is None]
            if batch and first is None:
                first = time.monotonic()
            seen += len(batch)
        elapsed = time.monotonic() - (first or time.monotonic())
    finally:
        consumer.close()
    if seen < total:
        raise TimeoutError(f"raw consume saw {seen} of {total} records")
    return total / max(elapsed, 1e-9)


def sink_rate(
    addresses: Addresses, topic: str, total: int, format_class: str = d.AVRO_FORMAT, flush_size: int = 1000
) -> float:
    """Records per second of one sink task landing `total` records in the lake (upload and commit included)."""
    name = f"bench-{topic}"
    config = {
        "name": name,
        "connector.class": d.S3_SINK_CLASS,
        "topics": topic,
        "s3.bucket.name": addresses.bucket,
        "store.url": addresses.s3_endpoint_url,
        "storage.class": d.S3_STORAGE,
        "format.class": format_class,
        "flush.size": str(flush_size),
        "topics.dir": "bench",
        "value.converter": d.AVRO_CONVERTER,
        "value.converter.schema.registry.url": addresses.schema_registry_url,
    }
    failures: list[str] = []
    task = SinkTask(
        SinkSettings.parse(config, {}),
        0,
        addresses.bootstrap_servers,
        SinkMetrics(),
        lambda _task, state, trace: failures.append(trace or "") if state == "FAILED" else None,
    )
    task.start()
    deadline = time.monotonic() + 600
    try:
        while sum(task.committed.values()) < total:
            if failures or time.monotonic() > deadline:
                raise RuntimeError(
                    f"the sink task did not land {total} records: {failures[-1] if failures else 'timeout'}"
                )
            time.sleep(0.01)
        elapsed = time.monotonic() - (task.first_record_at or time.monotonic())
    finally:
        task.stop()
        task.join(60)
    return total / max(elapsed, 1e-9)


def sink_throughput(
    addresses: Addresses,
    records: int = 100_000,
    partitions: int = 4,
    flush_size: int = 1000,
    format_class: str = d.AVRO_FORMAT,
) -> dict[str, Any]:
    """Produce `records` Avro payments, then measure a raw consume and the S3 sink on them; the ratio is sink/raw."""
    per_partition = max(flush_size, records // partitions // flush_size * flush_size)  # whole files only
    total = per_partition * partitions
    topic = f"bench-connect-{uuid.uuid4().hex[:8]}"
    create_topic(addresses, topic, partitions)
    produce_payments(addresses, topic, per_partition, partitions)
    raw = raw_consume_rate(addresses, topic, total, partitions)
    sink = sink_rate(addresses, topic, total, format_class, flush_size)
    return {
        "records": total,
        "partitions": partitions,
        "flush_size": flush_size,
        "format": format_class.rsplit(".", 1)[1],
        "raw_consume_per_s": raw,
        "sink_per_s": sink,
        "ratio": sink / raw,
        "topic": topic,
    }
