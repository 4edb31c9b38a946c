"""Replaying payments into the preprocessed topic exactly as ksqlDB writes it (for tests, benches, demos).

Key: the payment id as a KAFKA-format string; value: Avro through Schema Registry with the schema ksqlDB
registers for `ksql/020-preprocessed.sql` (record io.confluent.ksql.avro_schemas.KsqlDataSourceSchema,
upper-case nullable fields), so the workers can be exercised without the ksqlDB server.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from confluent_kafka import Producer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from fraudstream.kafka import producer_config
from models.datasets import GeneratedSource, load_dataset
from models.features import FEATURE_COLUMNS

VALUE_FIELDS: tuple[str, ...] = tuple(c.upper() for c in FEATURE_COLUMNS) + ("CLASS",)

PREPROCESSED_SCHEMA: dict[str, Any] = {
    "type": "record",
    "name": "KsqlDataSourceSchema",
    "namespace": "io.confluent.ksql.avro_schemas",
    "fields": [{"name": name, "type": ["null", "double"], "default": None} for name in VALUE_FIELDS[:-1]]
    + [{"name": "CLASS", "type": ["null", "int"], "default": None}],
}


def generated_payments(count: int, seed: int = 0, fraud_rate: float = 0.01) -> list[tuple[str, dict[str, Any]]]:
    """(payment id, value) pairs of synthetic payments, with ksqlDB's column names."""
    frame = load_dataset(GeneratedSource(count, seed=seed, fraud_rate=fraud_rate)).frame
    columns = [*FEATURE_COLUMNS, "Class"]
    values = frame[columns].to_numpy()
    ids = frame["Id"].astype(str).tolist()
    return [
        (pid, {name: (int(row[-1]) if name == "CLASS" else float(x)) for name, x in zip(VALUE_FIELDS, row)})
        for pid, row in zip(ids, values)
    ]


def avro_serializer(schema_registry_url: str, schema: Mapping[str, Any] = PREPROCESSED_SCHEMA) -> AvroSerializer:
    client = SchemaRegistryClient({"url": schema_registry_url})
    return AvroSerializer(client, json.dumps(schema), conf={"auto.register.schemas": True})


def produce(bootstrap: str, topic: str, records: Iterable[tuple[bytes | None, bytes | None]]) -> int:
    """Produce raw (key, value) pairs; returns how many, all acknowledged."""
    producer = Producer(producer_config(bootstrap, linger_ms=20))
    failures: list[str] = []

    def delivered(error: Any, _message: Any) -> None:
        if error is not None:
            failures.append(str(error))

    n = 0
    for key, value in records:
        while True:
            try:
                producer.produce(topic, key=key, value=value, on_delivery=delivered)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
        n += 1
    if producer.flush(120) or failures:
        raise RuntimeError(f"not every record reached {topic}: {failures[:3] or 'flush timed out'}")
    return n


def replay(bootstrap: str, schema_registry_url: str, topic: str, payments: Iterable[tuple[str, dict[str, Any]]]) -> int:
    """Produce payments as Avro values keyed by payment id; returns how many."""
    serialize = avro_serializer(schema_registry_url)
    context = SerializationContext(topic, MessageField.VALUE)
    return produce(bootstrap, topic, ((pid.encode(), serialize(value, context)) for pid, value in payments))
