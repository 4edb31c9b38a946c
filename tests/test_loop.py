"""The loop closes: replay -> KSQL -> scores and lake -> retrain on the lake -> promote -> the workers switch.

Everything runs on the session stack through the interfaces a user has: the ksql/ statements over the
ksqlDB REST API, the connectors/ sink config over the Connect REST API, the model registry in object
storage, and a worker process. Names get a unique prefix so nothing collides with other tests.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext
from prometheus_client.parser import text_string_to_metric_families

from connectors.client import ConnectClient
from connectors.lake import list_objects
from fraudstream.kafka import consumer_config, end_offsets
from models.autoencoder import Autoencoder
from models.cli import models_group
from models.datasets import GeneratedSource, LakeSource, ServedSource
from models.registry import ModelRegistry
from models.training import train
from producers.generate import generate_payments
from producers.replay import replay
from stack.embedded import EmbeddedStack
from stack.ksqldb.apply import KsqlRest
from stack.supervisor import free_port
from streams.cli import start_worker

REPO = Path(__file__).resolve().parents[1]


def wait_until(
    condition: Callable[[], bool], what: str, timeout: float = 180.0, proc: subprocess.Popen | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the worker exited ({proc.returncode}) while waiting for {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.5)


def size(bootstrap: str, topic: str) -> int:
    try:
        return sum(end_offsets(bootstrap, topic).values())
    except LookupError:
        return 0


def model_versions(stack: EmbeddedStack, topic: str) -> list[int]:
    """The model version of every record in the scores topic, decoded as a downstream consumer would."""
    bootstrap = stack.addresses.bootstrap_servers
    ends = end_offsets(bootstrap, topic)
    deserialize = AvroDeserializer(SchemaRegistryClient({"url": stack.addresses.schema_registry_url}))
    consumer = Consumer(consumer_config(bootstrap, f"loop-reader-{uuid.uuid4().hex[:6]}", enable_auto_commit=False))
    consumer.assign([TopicPartition(topic, p, 0) for p, end in ends.items() if end > 0])
    versions: list[int] = []
    try:
        while len(versions) < sum(ends.values()):
            message = consumer.poll(10)
            assert message is not None and message.error() is None, "could not read the scores back"
            versions.append(
                deserialize(message.value(), SerializationContext(topic, MessageField.VALUE))["model_version"]
            )
    finally:
        consumer.close()
    return versions


def worker_metric(port: int, name: str) -> list[tuple[dict[str, str], float]]:
    """(labels, value) of each sample of metric `name` on a worker's /metrics, as Prometheus reads them."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return []
    return [
        (sample.labels, sample.value)
        for family in text_string_to_metric_families(text)
        if family.name == name
        for sample in family.samples
    ]


def scoring_versions(port: int) -> set[str]:
    """The model versions a worker says it scores with (its fraudstream_model_info gauge), as an operator reads them."""
    return {labels["version"] for labels, value in worker_metric(port, "fraudstream_model_info") if value == 1}


@pytest.fixture
def names() -> dict[str, str]:
    prefix = f"loop{uuid.uuid4().hex[:6]}_"
    return {
        "prefix": prefix,
        "source": f"{prefix}creditcardfraud_source",
        "labels": f"{prefix}creditcardfraud_labels",
        "preprocessed": f"{prefix}creditcardfraud_preprocessed_avro",
        "scores": f"{prefix}scores",
        "model": f"{prefix}model",
        "connector": f"{prefix}s3-sink",
    }


@pytest.fixture
def worker(
    stack: EmbeddedStack, names: dict[str, str], tmp_path: Path
) -> Iterator[Callable[[], tuple[subprocess.Popen, int]]]:
    """Starts a worker; returns its process and its web port."""
    started: list[subprocess.Popen] = []

    def start() -> tuple[subprocess.Popen, int]:
        port = free_port()
        env = {**os.environ, **stack.addresses.to_env(), "FRAUDSTREAM_MODEL_CACHE": str(tmp_path / "cache")}
        overrides = {
            "INPUT_TOPIC": names["preprocessed"],
            "SCORES_TOPIC": names["scores"],
            "SHADOW_TOPIC": f"{names['scores']}-shadow",
            "GROUP": f"{names['prefix']}scoring",
            "MODEL": names["model"],
            "WEB_PORT": port,
            "DATA_DIR": tmp_path / "workers",
            "POLL_SECONDS": 2,
            "DRIFT_EVENTS": 2_000,
        }
        started.append(start_worker(overrides, tmp_path / "worker.log", env))
        return started[-1], port

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()


def test_replay_ksql_lake_retrain_promote_and_the_workers_switch(
    stack: EmbeddedStack, names: dict[str, str], worker: Callable[[], tuple[subprocess.Popen, int]], tmp_path: Path
) -> None:
    bootstrap = stack.addresses.bootstrap_servers
    # 1. The preprocessing and the features, from the same statement files production runs.
    ksql = KsqlRest(stack.addresses.ksqldb_url)
    for name in ("010-source", "012-source-avro", "014-user-history", "015-labels", "020-preprocessed"):
        text = (
            (REPO / "ksql" / f"{name}.sql")
            .read_text()
            .replace("creditcardfraud_", f"{names['prefix']}creditcardfraud_")
        )
        ksql.ksql(text, {"auto.offset.reset": "earliest"})
    # 2. The lake, from the same connector config production posts.
    connector = json.loads((REPO / "connectors" / "s3-sink-preprocessed.json").read_text())["config"]
    connector.update(
        {
            "topics": names["preprocessed"],
            "flush.size": "500",
            "errors.deadletterqueue.topic.name": f"{names['preprocessed']}-s3-dlq",
        }
    )
    connect = ConnectClient(stack.addresses.connect_url)
    connect.create(names["connector"], connector)
    # 3. A first production model that has hardly learnt anything (one epoch at a tiny learning rate).
    registry = ModelRegistry.from_addresses(stack.addresses, cache_dir=tmp_path / "registry-cache")
    first = train(
        GeneratedSource(2_000, seed=3, fraud_rate=0.02),
        Autoencoder(epochs=1, learning_rate=1e-6, seed=3),
        output_dir=tmp_path / "v1",
    )
    v1 = registry.register(names["model"], first.output_dir)["version"]
    registry.promote(names["model"], v1, force=True)

    proc, port = worker()
    payments = generate_payments(6_000, seed=11, fraud_rate=0.01)
    sent = replay(payments, bootstrap_servers=bootstrap, topic=names["source"], labels_topic=names["labels"])
    assert sent.acknowledged == 6_000 and sent.labels_acknowledged == 6_000
    wait_until(lambda: size(bootstrap, names["scores"]) >= 6_000, "a score for every payment", proc=proc)
    assert set(model_versions(stack, names["scores"])) == {v1}

    # 4. Retrain on what the lake holds, and promote only through the gate.
    wait_until(
        lambda: (
            len(
                list_objects(
                    stack.addresses.bucket, names["preprocessed"], endpoint_url=stack.addresses.s3_endpoint_url
                )
            )
            >= 8
        ),
        "the lake to fill",
    )
    lake = LakeSource(names["preprocessed"], stack.addresses.bucket, endpoint_url=stack.addresses.s3_endpoint_url)
    # the features as served, with the labels known now
    served = ServedSource.of_topic(lake, names["labels"], bootstrap_servers=bootstrap)
    second = train(served, Autoencoder(epochs=8, seed=4), output_dir=tmp_path / "v2")
    assert second.dataset.description["source"]["features"]["kind"] == "lake"
    v2 = registry.register(names["model"], second.output_dir)["version"]
    registry.promote(names["model"], v2)  # raises PromotionRefused if v2 does not beat v1 on the same held-out rows

    # 5. The running worker switches (it says so in its metrics; loading can take seconds on a busy machine, and
    #    payments sent before that are rightly scored by v1); new payments are then scored by the new version.
    wait_until(lambda: scoring_versions(port) == {str(v2)}, "the worker to switch to the promoted version", proc=proc)
    more = generate_payments(3_000, seed=12, fraud_rate=0.01)
    more["Id"] = [f"more-{i}" for i in range(len(more))]

    replay(more, bootstrap_servers=bootstrap, topic=names["source"], labels_topic=names["labels"])
    wait_until(lambda: size(bootstrap, names["scores"]) >= 9_000, "a score for every new payment", proc=proc)
    assert Counter(model_versions(stack, names["scores"])) == {v1: 6_000, v2: 3_000}

    # 6. Drift against v2's training data: the worker's gauges (a window of 2,000 scored), and the command.
    psi = {labels["feature"]: value for labels, value in worker_metric(port, "fraudstream_feature_psi")}
    assert set(psi) == set(second.model.feature_names) and all(v >= 0 for v in psi.values())
    assert [labels["version"] for labels, _ in worker_metric(port, "fraudstream_score_psi")] == [str(v2)]
    drift = CliRunner().invoke(
        models_group,
        ["drift", "--name", names["model"], "--topic", names["preprocessed"], "--last", "3000"],
        env={**stack.addresses.to_env(), "COLUMNS": "200"},
    )
    assert drift.exit_code == 0, drift.output
    assert "score" in drift.output and all(name in drift.output for name in second.model.feature_names)
    connect.request("DELETE", f"/connectors/{names['connector']}")
    connect.close()
