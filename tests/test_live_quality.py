"""Live precision and recall move as labels arrive (ksql/090-live-quality.sql), checked against a known labelling.

Scores are produced as a worker writes them (its Avro schema, keyed and partitioned by payment id) under
a model name of this test's own, labels as `fraudstream produce` sends them; the statements run on the
session's ksqlDB. The rules for awkward labels are checked on the way: a payment labelled twice counts
once with its latest label, a label before its score counts once the score arrives, a label for a payment
never scored, a label that is not 0 or 1 and one that is not JSON never count, and nothing stops the query.
"""

from __future__ import annotations

import json
import shutil
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext
from ksqldb_server_helpers import prefixed_statements

from fraudstream.kafka import consumer_config, producer_config
from fraudstream.topics import SCORES_TOPIC
from ksql import KSQLAPI
from producers.labels import Label
from stack.embedded import EmbeddedStack
from stack.ksqldb.apply import KsqlRest, apply_directory
from streams import metrics
from streams.quality import Quality, publish, read_live_quality
from streams.records import SCORE_SCHEMA

#: When the payments happened: an hour before the test, so that every label sent now is known after them.
PAID_AT = int(time.time() * 1000) - 3_600_000


def _score(payment_id: str, model: str, is_fraud: bool, paid_at: int) -> dict:
    now = int(time.time() * 1000)
    return {
        "payment_id": payment_id,
        "source_partition": 0,
        "source_offset": 0,
        "event_timestamp": paid_at,
        "score": 9.0 if is_fraud else 0.1,
        "threshold": 1.0,
        "is_fraud": is_fraud,
        "model_name": model,
        "model_version": 3,
        "threshold_version": 1,
        "ksql_hash": "test",
        "scored_at": now,
    }


class Feed:
    def __init__(self, stack: EmbeddedStack, labels_topic: str) -> None:
        self.producer = Producer(producer_config(stack.addresses.bootstrap_servers))
        registry = SchemaRegistryClient({"url": stack.addresses.schema_registry_url})
        self.avro = AvroSerializer(registry, json.dumps(SCORE_SCHEMA), conf={"auto.register.schemas": False})
        self.labels_topic = labels_topic

    def score(self, payment_id: str, model: str, is_fraud: bool, paid_at: int = PAID_AT) -> None:
        context = SerializationContext(SCORES_TOPIC, MessageField.VALUE)
        value = self.avro(_score(payment_id, model, is_fraud, paid_at), context)
        self.producer.produce(SCORES_TOPIC, key=payment_id.encode(), value=value)
        self.producer.flush(30)

    def label(self, payment_id: str, label: int) -> None:
        known = Label(datetime.now(UTC), payment_id, label)
        self.producer.produce(self.labels_topic, key=known.key(), value=known.encode())
        self.producer.flush(30)

    def raw_label(self, payment_id: str, value: bytes) -> None:
        self.producer.produce(self.labels_topic, key=payment_id.encode(), value=value)
        self.producer.flush(30)


def _wait_for(url: str, table: str, model: str, want: Quality, timeout: float = 90.0) -> Quality | None:
    deadline = time.monotonic() + timeout
    row = None
    while time.monotonic() < deadline:
        rows = [r for r in read_live_quality(url, table) if r.model == model]
        row = rows[0] if rows else None
        if row == want:
            return row
        time.sleep(0.5)
    return row


def _first_value(stack: EmbeddedStack, topic: str, key: bytes, timeout: float = 60.0) -> dict:
    """The JSON value of the first record of `topic` with `key`, read from the beginning as a consumer would."""
    consumer = Consumer(consumer_config(stack.addresses.bootstrap_servers, f"read-{uuid.uuid4().hex}"))
    consumer.subscribe([topic])
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            message = consumer.poll(1.0)
            if message is not None and not message.error() and message.key() == key:
                return json.loads(message.value())
    finally:
        consumer.close()
    raise AssertionError(f"no record keyed {key!r} in {topic}")


@pytest.fixture
def statements(tmp_path: Path) -> tuple[str, Path]:
    prefix = f"q{uuid.uuid4().hex[:8]}"
    every = prefixed_statements(tmp_path / "all", prefix)
    chosen = tmp_path / "chosen"
    chosen.mkdir()
    for name in ("015-labels.sql", "090-live-quality.sql"):
        shutil.copy(every / name, chosen / name)
    return prefix, chosen


def test_live_precision_and_recall_follow_the_labels(stack: EmbeddedStack, statements: tuple[str, Path]) -> None:
    prefix, folder = statements
    url = stack.addresses.ksqldb_url
    outcomes = apply_directory(KsqlRest(url), folder)
    assert [o.status for o in outcomes if o.status == "error"] == [], [o.detail for o in outcomes]
    table = f"{prefix}_creditcardfraud_live_quality".upper()
    feed = Feed(stack, f"{prefix}_creditcardfraud_labels")
    model = f"quality-{uuid.uuid4().hex[:8]}"
    ids = {name: f"{model}-{name}" for name in ("p1", "p2", "p3", "p4", "p5", "p6", "p7", "p8", "unknown")}

    for name, alert in (("p1", True), ("p2", True), ("p3", False), ("p4", False), ("p5", True), ("p6", False)):
        feed.score(ids[name], model, alert)
    # First labels: p1 fraud (alert: true positive), p2 genuine (alert: false positive), p3 fraud (missed).
    for name, label in (("p1", 1), ("p2", 0), ("p3", 1)):
        feed.label(ids[name], label)
    first = Quality(model, 3, true_positives=1, false_positives=1, false_negatives=1, true_negatives=0)
    assert _wait_for(url, table, model, first) == first
    assert (first.precision, first.recall) == (0.5, 0.5)

    # Later: p4 genuine, p5 fraud; p2 relabelled fraud after an investigation; a label for a payment never
    # scored; a label for p7 before its score; a label that is not 0/1, and one that is not JSON (for p6); a
    # label for p8, a payment that happens a day after the label was known (impossible).
    for name, label in (("p4", 0), ("p5", 1), ("p2", 1), ("unknown", 1), ("p7", 1)):
        feed.label(ids[name], label)
    feed.label(ids["p6"], 7)
    feed.raw_label(ids["p6"], b"{not json")
    feed.score(ids["p7"], model, False)
    feed.label(ids["p8"], 1)
    feed.score(ids["p8"], model, True, paid_at=int(time.time() * 1000) + 86_400_000)
    final = Quality(model, 3, true_positives=3, false_positives=0, false_negatives=2, true_negatives=1)
    assert _wait_for(url, table, model, final) == final
    assert (final.precision, final.recall, final.labelled) == (1.0, 0.6, 6)

    # The label that is not a label is kept with its reason.
    rejected = _first_value(stack, f"{prefix}_creditcardfraud_labels_rejected", ids["p6"].encode())
    assert rejected["LABEL"] == 7 and rejected["REASON"] == "LABEL must be 0 or 1", rejected

    # The same table through the client a data scientist uses, and the worker's gauges from it.
    sql = f"SELECT LABELLED, TRUE_POSITIVES FROM {table} WHERE MODEL_NAME = '{model}' AND MODEL_VERSION = 3;"
    body = json.loads("".join(KSQLAPI(url).query(sql)))
    assert [item["row"]["columns"] for item in body if "row" in item] == [[6, 3]]
    publish(read_live_quality(url, table))
    assert metrics.LIVE_PRECISION.labels(model, "3")._value.get() == 1.0
    assert metrics.LIVE_RECALL.labels(model, "3")._value.get() == 0.6
    assert metrics.LIVE_LABELLED.labels(model, "3", "false_negatives")._value.get() == 2
