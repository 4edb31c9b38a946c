"""Replaying payments into the features topic as ksqlDB writes it (for tests, benches, demos).

Key: the payment id as a KAFKA-format string; value: Avro through Schema Registry with the schema ksqlDB
registers for a stream of DOUBLE columns (record io.confluent.ksql.avro_schemas.KsqlDataSourceSchema,
upper-case nullable fields), so the workers can be exercised without the ksqlDB server.

The columns are this module's own (:data:`BENCH_FEATURES`, the layout the benches have always measured),
not the models': a model reads whatever columns it was trained on, by name, and the benches train theirs
on these records.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from confluent_kafka import Producer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from fraudstream.credentials import schema_registry_conf
from fraudstream.kafka import producer_config
from models.datasets import GeneratedSource, load_dataset
from models.reference import BEHAVIOUR_COLUMNS

BENCH_FEATURES: tuple[str, ...] = ("HOUR_OF_DAY", *(f"V{i}" for i in range(1, 29)), "AMOUNT", *BEHAVIOUR_COLUMNS)
"""The bench records' feature columns, in record order (each a nullable DOUBLE, as ksqlDB writes them): the
flagship's served features, so that a model trained on generated payments reads these records."""
LABEL_FIELD = "CLASS"

VALUE_FIELDS: tuple[str, ...] = (*BENCH_FEATURES, LABEL_FIELD)


def preprocessed_schema(features: Sequence[str] = BENCH_FEATURES, label: bool = True) -> dict[str, Any]:
    """The Avro schema ksqlDB registers for `features` as DOUBLE columns (and the label as INT, if asked)."""
    fields = [{"name": name, "type": ["null", "double"], "default": None} for name in features]
    if label:
        fields.append({"name": LABEL_FIELD, "type": ["null", "int"], "default": None})
    return {
        "type": "record",
        "name": "KsqlDataSourceSchema",
        "namespace": "io.confluent.ksql.avro_schemas",
        "fields": fields,
    }


PREPROCESSED_SCHEMA: dict[str, Any] = preprocessed_schema()


def generated_payments(
    count: int, seed: int = 0, fraud_rate: float = 0.01, features: Sequence[str] = BENCH_FEATURES
) -> list[tuple[str, dict[str, Any]]]:
    """(payment id, value) pairs of synthetic payments: `features` (matched case-insensitively in the
    generated data) and CLASS, with ksqlDB's upper-case column names."""
    frame = load_dataset(GeneratedSource(count, seed=seed, fraud_rate=fraud_rate)).frame
    by_lower = {str(c).lower(): c for c in frame.columns}
    missing = [f for f in (*features, LABEL_FIELD) if f.lower() not in by_lower]
    if missing:
        raise LookupError(f"the generated payments have no columns {missing}; they have {list(frame.columns)}")
    names = [*(f.upper() for f in features), LABEL_FIELD]
    values = frame[[by_lower[f.lower()] for f in (*features, LABEL_FIELD)]].to_numpy()
    ids = frame["ID"].astype(str).tolist()
    return [
        (pid, {name: (int(x) if name == LABEL_FIELD else float(x)) for name, x in zip(names, row)})
        for pid, row in zip(ids, values)
    ]


def avro_serializer(schema_registry_url: str, schema: Mapping[str, Any] = PREPROCESSED_SCHEMA) -> AvroSerializer:
    client = SchemaRegistryClient(schema_registry_conf(schema_registry_url))
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
