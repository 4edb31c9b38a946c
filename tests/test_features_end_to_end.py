"""The ML loop as a user meets it, on the session stack: every payment is scored, labels or not, and the
model's inputs are what the statements compute (a column added to a statement reaches the running workers).

The statements are the project's own `ksql/` files, names prefixed; payments are produced the way the
README tells producers to (confluent-kafka, DELIMITED, no label); a worker process scores them.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

from fraudstream.kafka import consumer_config, end_offsets, producer_config
from models.autoencoder import Autoencoder
from models.datasets import GeneratedSource, KafkaSource, ServedSource
from models.registry import ModelRegistry
from models.training import train
from producers.generate import generate_payments
from producers.payments import frame_payments
from producers.replay import replay
from stack.embedded import EmbeddedStack
from stack.ksqldb.apply import KsqlRest
from stack.supervisor import free_port
from streams.cli import start_worker

REPO = Path(__file__).resolve().parents[1]
FEATURE_STATEMENTS = ("010-source", "012-source-avro", "014-user-history", "015-labels", "020-preprocessed")


def wait_until(
    condition: Callable[[], bool], what: str, proc: subprocess.Popen | None = None, timeout: float = 240.0
) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc is None or proc.poll() is None, f"the worker exited ({proc.returncode}) while waiting for {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def size(stack: EmbeddedStack, topic: str) -> int:
    try:
        return sum(end_offsets(stack.addresses.bootstrap_servers, topic).values())
    except LookupError:
        return 0


def read_values(stack: EmbeddedStack, topic: str) -> list[dict]:
    """Every record of `topic` up to its end now, decoded as a downstream consumer decodes it."""
    bootstrap = stack.addresses.bootstrap_servers
    try:
        ends = end_offsets(bootstrap, topic)
    except LookupError:
        return []
    deserialize = AvroDeserializer(SchemaRegistryClient({"url": stack.addresses.schema_registry_url}))
    consumer = Consumer(consumer_config(bootstrap, f"e2e-{uuid.uuid4().hex[:6]}", enable_auto_commit=False))
    consumer.assign([TopicPartition(topic, p, 0) for p, end in ends.items() if end > 0])
    values: list[dict] = []
    try:
        while len(values) < sum(ends.values()):
            message = consumer.poll(10)
            assert message is not None and message.error() is None, f"could not read {topic} back"
            values.append(deserialize(message.value(), SerializationContext(topic, MessageField.VALUE)))
    finally:
        consumer.close()
    return values


class Pipeline:
    """One prefixed copy of the flagship's feature statements, a model name and a worker."""

    def __init__(self, stack: EmbeddedStack, tmp_path: Path) -> None:
        self.stack, self.tmp_path = stack, tmp_path
        self.prefix = f"e2e{uuid.uuid4().hex[:6]}_"
        self.source = f"{self.prefix}creditcardfraud_source"
        self.labels = f"{self.prefix}creditcardfraud_labels"
        self.features = f"{self.prefix}creditcardfraud_preprocessed_avro"
        self.scores = f"{self.prefix}scores"
        self.model = f"{self.prefix}fraud"
        self.ksql = KsqlRest(stack.addresses.ksqldb_url)
        self.registry = ModelRegistry.from_addresses(stack.addresses, cache_dir=tmp_path / "registry-cache")
        self.workers: list[subprocess.Popen] = []

    def statement(self, name: str) -> str:
        text = (REPO / "ksql" / f"{name}.sql").read_text()
        return re.sub("creditcardfraud_", f"{self.prefix}creditcardfraud_", text)

    def apply(self, text: str, offset_reset: str = "earliest") -> None:
        answer = self.ksql.ksql(text, {"auto.offset.reset": offset_reset})
        assert all("errorMessage" not in a for a in answer), answer

    def served(self) -> ServedSource:
        """The point-in-time training set over this pipeline's features and labels, known now."""
        addresses = self.stack.addresses
        features = KafkaSource(self.features, None, addresses.bootstrap_servers, addresses.schema_registry_url)
        return ServedSource.of_topic(features, self.labels)

    def promote(self, result) -> int:
        version = self.registry.register(self.model, result.output_dir)["version"]
        self.registry.promote(self.model, version, force=True)
        return version

    def start_worker(self) -> tuple[subprocess.Popen, int]:
        port = free_port()
        env = {**os.environ, **self.stack.addresses.to_env(), "FRAUDSTREAM_MODEL_CACHE": str(self.tmp_path / "cache")}
        overrides = {
            "INPUT_TOPIC": self.features,
            "SCORES_TOPIC": self.scores,
            "SHADOW_TOPIC": f"{self.scores}-shadow",
            "GROUP": f"{self.prefix}scoring",
            "MODEL": self.model,
            "WEB_PORT": port,
            "DATA_DIR": self.tmp_path / "workers",
            "POLL_SECONDS": 2,
        }
        self.workers.append(start_worker(overrides, self.tmp_path / "worker.log", env))
        return self.workers[-1], port

    def stop(self) -> None:
        for proc in self.workers:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(60)
                except subprocess.TimeoutExpired:
                    proc.kill()


@pytest.fixture
def pipeline(stack: EmbeddedStack, tmp_path: Path) -> Iterator[Pipeline]:
    made = Pipeline(stack, tmp_path)
    yield made
    made.stop()


def test_a_payment_sent_without_a_label_as_the_readme_says_is_scored(pipeline: Pipeline) -> None:
    for name in FEATURE_STATEMENTS:
        pipeline.apply(pipeline.statement(name))
    first = train(GeneratedSource(3_000, seed=5, fraud_rate=0.02), Autoencoder(epochs=1, seed=5),
                  output_dir=pipeline.tmp_path / "v1")  # fmt: skip
    pipeline.promote(first)
    proc, _ = pipeline.start_worker()

    payment = next(frame_payments(generate_payments(1, seed=99)))
    producer = Producer(producer_config(pipeline.stack.addresses.bootstrap_servers))  # the README's producer
    producer.produce(pipeline.source, key=payment.id, value=payment.encode().decode())  # Id first, no label
    assert producer.flush(30) == 0

    wait_until(lambda: bool(read_values(pipeline.stack, pipeline.scores)), "the payment's score", proc)
    [score] = read_values(pipeline.stack, pipeline.scores)
    assert score["payment_id"] == payment.id and score["model_version"] == 1
    assert not any("label" in key.lower() or key.upper() == "CLASS" for key in read_values(
        pipeline.stack, pipeline.features)[0])  # fmt: skip


def test_a_column_added_to_a_statement_reaches_the_running_workers(pipeline: Pipeline) -> None:
    for name in FEATURE_STATEMENTS:
        pipeline.apply(pipeline.statement(name))
    bootstrap = pipeline.stack.addresses.bootstrap_servers
    before = generate_payments(2_000, seed=21, fraud_rate=0.05)
    replay(before, bootstrap_servers=bootstrap, topic=pipeline.source, labels_topic=pipeline.labels,
           label_delay=timedelta(0))  # fmt: skip
    served = pipeline.served()
    wait_until(lambda: size(pipeline.stack, pipeline.features) >= 2_000, "the features")
    v1 = pipeline.promote(train(served, Autoencoder(epochs=1, seed=1), output_dir=pipeline.tmp_path / "v1"))
    proc, _ = pipeline.start_worker()
    wait_until(lambda: len(read_values(pipeline.stack, pipeline.scores)) >= 2_000, "scores by v1", proc)

    # A data scientist adds a feature to the statement: apply it, then train, promote.
    added = pipeline.statement("020-preprocessed").replace(
        "  AS_VALUE(p.PAYMENT_ID) AS ID,", "  p.AMOUNT * p.AMOUNT AS AMOUNT_SQUARED,\n  AS_VALUE(p.PAYMENT_ID) AS ID,"
    )
    assert "AMOUNT_SQUARED" in added
    pipeline.apply(f"DROP STREAM {pipeline.features};")  # ends its query; the topic and its records stay
    pipeline.apply(added, offset_reset="latest")  # the new version serves the payments from now on
    after = generate_payments(2_000, seed=22, fraud_rate=0.05)
    after["Id"] = [f"after-{i}" for i in range(len(after))]
    replay(after, bootstrap_servers=bootstrap, topic=pipeline.source, labels_topic=pipeline.labels,
           label_delay=timedelta(0))  # fmt: skip
    wait_until(lambda: size(pipeline.stack, pipeline.features) >= 4_000, "the new features", proc)
    second = train(pipeline.served(),
                   Autoencoder(epochs=1, seed=2), output_dir=pipeline.tmp_path / "v2")  # fmt: skip
    assert "AMOUNT_SQUARED" in second.model.feature_names
    v2 = pipeline.promote(second)

    # The running worker switches without a restart and scores new payments with the new column.
    later = generate_payments(500, seed=23, fraud_rate=0.05)
    later["Id"] = [f"later-{i}" for i in range(len(later))]
    deadline = time.monotonic() + 240
    while True:
        replay(later.iloc[:50], bootstrap_servers=bootstrap, topic=pipeline.source, labels_topic=None)
        scores = read_values(pipeline.stack, pipeline.scores)
        if any(s["model_version"] == v2 for s in scores):
            break
        assert proc.poll() is None and time.monotonic() < deadline, "the worker never scored with the new model"
        time.sleep(2)
    assert v1 != v2 and {s["model_version"] for s in scores} <= {v1, v2}
    assert size(pipeline.stack, f"{pipeline.features}-dlq") == 0  # every record fit the model scoring it
