"""Scoring workers against the real embedded stack: real `faust -A streams.app worker` processes.

Input is produced as ksqlDB writes the preprocessed stream (fraudstream/bench/replay.py); scores are read back with
confluent-kafka's AvroDeserializer. Models are quick logistic baselines in the real registry. Every wait
is on an observable condition (records arrived, a metric moved) with a bound.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

from fraudstream.bench.ksql import create_topics
from fraudstream.bench.replay import avro_serializer, generated_payments, produce, replay
from fraudstream.kafka import committed_offsets, consumer_config, end_offsets
from fraudstream.statements import statements_hash
from models.baseline import LogisticBaseline
from models.datasets import GeneratedSource
from models.registry import ModelRegistry
from models.training import train
from stack.supervisor import free_port
from streams.cli import start_worker


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 120.0, proc: Any = None) -> None:
    """Poll an observable condition; fail with `what` if it never holds (a bound, not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"worker exited with {proc.returncode} while waiting for {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


class Topics:
    def __init__(self, prefix: str) -> None:
        self.input = f"{prefix}-in"
        self.scores = f"{prefix}-scores"
        self.shadow = f"{prefix}-shadow"
        self.dlq = f"{prefix}-in-dlq"
        self.group = f"{prefix}-group"


@pytest.fixture
def topics(stack, topic_name) -> Topics:
    t = Topics(topic_name)
    create_topics(stack.addresses.bootstrap_servers, t.input)
    return t


@pytest.fixture
def registry(stack, tmp_path) -> ModelRegistry:
    return ModelRegistry.from_addresses(stack.addresses, cache_dir=tmp_path / "test-cache")


@pytest.fixture
def model_name() -> str:
    return f"fraud-{uuid.uuid4().hex[:8]}"


def trained(tmp_path: Path, seed: int, label: str) -> Path:
    """A baseline trained on its own generated payments: versions with different seeds score differently."""
    source = GeneratedSource(3_000, seed=1 + seed, fraud_rate=0.02)
    return train(source, LogisticBaseline(C=0.5 + seed), output_dir=tmp_path / label).output_dir


class Worker:
    def __init__(self, stack, topics: Topics, model: str, tmp_path: Path, **settings: Any) -> None:
        self.port = free_port()
        self.log = tmp_path / f"worker-{self.port}.log"
        env = {
            **os.environ,
            **stack.addresses.to_env(),
            "FRAUDSTREAM_MODEL_CACHE": str(tmp_path / f"cache-{self.port}"),
        }
        overrides = {
            "INPUT_TOPIC": topics.input,
            "SCORES_TOPIC": topics.scores,
            "SHADOW_TOPIC": topics.shadow,
            "GROUP": topics.group,
            "MODEL": model,
            "WEB_PORT": self.port,
            "DATA_DIR": tmp_path / "workers",
            "WORKER": f"test-worker-{self.port}",
            "POLL_SECONDS": 2,
            **settings,
        }
        self.proc: subprocess.Popen = start_worker(overrides, self.log, env)

    def metrics(self) -> dict[str, float]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as response:
                text = response.read().decode()
        except OSError:
            return {}
        values = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                values[name] = float(value)
        return values

    def metric(self, name: str) -> float:
        return self.metrics().get(name, 0.0)

    def post(self, path: str, body: bytes) -> tuple[int, Any]:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}",
            data=body,
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    def stop(self, kill: bool = False) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""


@contextmanager
def running(stack, topics: Topics, model: str, tmp_path: Path, **settings: Any) -> Iterator[Worker]:
    worker = Worker(stack, topics, model, tmp_path, **settings)
    try:
        yield worker
    except BaseException:
        print(worker.tail())
        raise
    finally:
        worker.stop()


def total(bootstrap: str, topic: str) -> int:
    try:
        return sum(end_offsets(bootstrap, topic).values())
    except LookupError:
        return 0


def read_all(stack, topic: str, avro: bool = True) -> list[dict[str, Any]]:
    """Every record of `topic` (to its true end), values decoded with AvroDeserializer."""
    bootstrap = stack.addresses.bootstrap_servers
    ends = end_offsets(bootstrap, topic)
    deserialize = AvroDeserializer(SchemaRegistryClient({"url": stack.addresses.schema_registry_url}))
    consumer = Consumer(consumer_config(bootstrap, f"read-{uuid.uuid4().hex}", enable_auto_commit=False))
    consumer.assign([TopicPartition(topic, p, 0) for p, end in ends.items() if end > 0])
    remaining = {p: end for p, end in ends.items() if end > 0}
    out = []
    try:
        while remaining:
            message = consumer.poll(10)
            assert message is not None, f"no records from {topic} within 10 s; waiting for {remaining}"
            assert message.error() is None, message.error()
            value = message.value()
            if avro:
                value = deserialize(value, SerializationContext(topic, MessageField.VALUE))
            out.append(
                {
                    "key": message.key(),
                    "value": value,
                    "partition": message.partition(),
                    "offset": message.offset(),
                    "headers": dict(message.headers() or []),
                }
            )
            if message.offset() >= remaining.get(message.partition(), math.inf) - 1:
                remaining.pop(message.partition())
    finally:
        consumer.close()
    return out


def features_frame(payments: list[tuple[str, dict]]) -> pd.DataFrame:
    return pd.DataFrame([value for _, value in payments])


def expected_scores(directory: Path, payments: list[tuple[str, dict]]) -> dict[str, float]:
    from models.artifacts import load_model

    scores = load_model(directory).score_samples(features_frame(payments))
    return {pid: float(s) for (pid, _), s in zip(payments, scores)}


def promote(registry: ModelRegistry, name: str, directory: Path) -> int:
    version = registry.register(name, directory)["version"]
    registry.promote(name, version, force=True)
    return version


def test_end_to_end_scores_dead_letters_and_score_view(stack, topics, registry, model_name, tmp_path):
    bootstrap, sr_url = stack.addresses.bootstrap_servers, stack.addresses.schema_registry_url
    directory = trained(tmp_path, 0, "v1")
    promote(registry, model_name, directory)
    payments = generated_payments(2_000, seed=5)
    replay(bootstrap, sr_url, topics.input, payments)
    # bad records: not Avro, a NaN feature, a null feature, a schema without the model's fields
    serialize = avro_serializer(sr_url)
    ctx = SerializationContext(topics.input, MessageField.VALUE)
    nan_value = {**payments[0][1], "V3": float("nan")}
    null_value = {**payments[0][1], "AMOUNT": None}
    other = avro_serializer(sr_url, {"type": "record", "name": "Other", "fields": [{"name": "x", "type": "string"}]})
    bad = [
        (b"bad-bytes", b"\x07 not avro"),
        (b"bad-nan", serialize(nan_value, ctx)),
        (b"bad-null", serialize(null_value, ctx)),
        (b"bad-schema", other({"x": "y"}, SerializationContext(f"{topics.input}-other", MessageField.VALUE))),
    ]
    produce(bootstrap, topics.input, bad)

    with running(stack, topics, model_name, tmp_path) as worker:
        wait_until(lambda: total(bootstrap, topics.scores) >= len(payments), "2,000 scores", proc=worker.proc)
        wait_until(lambda: total(bootstrap, topics.dlq) >= len(bad), "4 dead letters", proc=worker.proc)

        scores = read_all(stack, topics.scores)
        expected = expected_scores(directory, payments)
        by_id = {r["value"]["payment_id"]: r for r in scores}
        assert set(by_id) == set(expected) and len(scores) >= len(expected)
        for pid, record in by_id.items():
            value, headers = record["value"], record["headers"]
            assert record["key"] == pid.encode()
            assert value["score"] == pytest.approx(expected[pid], rel=1e-9, abs=1e-12)
            assert value["is_fraud"] == (value["score"] > value["threshold"])
            assert (value["model_name"], value["model_version"], value["threshold_version"]) == (model_name, 1, 1)
            assert value["ksql_hash"] == statements_hash()
            assert value["source_partition"] == record["partition"]
            assert value["scored_at"] >= value["event_timestamp"]
            assert headers["model"] == model_name.encode() and headers["model_version"] == b"1"
            assert headers["source_offset"] == str(value["source_offset"]).encode()
            assert headers["ksql_hash"] == statements_hash().encode()
        assert any(r["value"]["is_fraud"] for r in scores) and not all(r["value"]["is_fraud"] for r in scores)

        letters = {r["key"]: r for r in read_all(stack, topics.dlq, avro=False)}
        reasons = {key: r["headers"]["error.reason"].decode() for key, r in letters.items()}
        assert reasons == {
            b"bad-bytes": "decode",
            b"bad-nan": "validation",
            b"bad-null": "validation",
            b"bad-schema": "schema",
        }
        assert letters[b"bad-bytes"]["value"] == b"\x07 not avro"  # kept byte for byte
        for r in letters.values():
            assert r["headers"]["worker"] == f"test-worker-{worker.port}".encode()
            assert int(r["headers"]["source.offset"]) >= 0 and r["headers"]["error.message"]
        assert b"V3" in letters[b"bad-nan"]["headers"]["error.message"]

        metrics = worker.metrics()
        assert metrics['fraudstream_dead_letters_total{reason="validation"}'] == 2
        assert metrics['fraudstream_dead_letters_total{reason="decode"}'] == 1
        assert metrics["fraudstream_events_scored_total"] >= len(payments)
        assert metrics[f'fraudstream_model_info{{model="{model_name}",version="1"}}'] == 1

        # POST /score: same model, same code path; clear 400s
        pid, value = payments[7]
        status, body = worker.post("/score", json.dumps({**value, "payment_id": pid}).encode())
        assert status == 200 and body["model_version"] == 1
        assert body["scores"][0]["score"] == pytest.approx(expected[pid], rel=1e-9)
        status, body = worker.post("/score", b"{not json")
        assert status == 400 and "not valid JSON" in body["message"]
        status, body = worker.post("/score", json.dumps([{**value, "V2": "high"}]).encode())
        assert status == 400 and "V2 must be a finite number" in body["message"]
        status, body = worker.post("/score", json.dumps({"TIME": 1}).encode())
        assert status == 400 and "missing fields" in body["message"]


def test_hot_swap_and_shadow(stack, topics, registry, model_name, tmp_path):
    bootstrap, sr_url = stack.addresses.bootstrap_servers, stack.addresses.schema_registry_url
    v1_dir, v2_dir = trained(tmp_path, 0, "v1"), trained(tmp_path, 1, "v2")
    promote(registry, model_name, v1_dir)
    first = generated_payments(1_000, seed=11)
    replay(bootstrap, sr_url, topics.input, first)
    with running(stack, topics, model_name, tmp_path, SHADOW="candidate") as worker:
        wait_until(lambda: total(bootstrap, topics.scores) >= 1_000, "scores of version 1", proc=worker.proc)
        registry.register(model_name, v2_dir)  # a candidate: scored in shadow
        wait_until(
            lambda: (
                worker.metric("fraudstream_shadow_events_scored_total") > 0
                or (replay(bootstrap, sr_url, topics.input, generated_payments(50, seed=int(time.time()))) and False)
            ),
            "shadow scores of the candidate",
            proc=worker.proc,
        )
        registry.promote(model_name, 2, force=True)
        batches = 0

        def scored_by_v2() -> bool:
            nonlocal batches
            batches += 1
            replay(bootstrap, sr_url, topics.input, generated_payments(200, seed=1000 + batches))
            return worker.metric(f'fraudstream_model_info{{model="{model_name}",version="2"}}') == 1

        wait_until(scored_by_v2, "the worker to switch to version 2", proc=worker.proc)
        last = generated_payments(500, seed=99)
        replay(bootstrap, sr_url, topics.input, last)
        ids = {pid for pid, _ in last}
        wait_until(
            lambda: ids <= {r["value"]["payment_id"] for r in read_all(stack, topics.scores)},
            "the last payments scored",
            proc=worker.proc,
        )

    scores = read_all(stack, topics.scores)
    versions = [r["value"]["model_version"] for r in scores]
    assert versions[0] == 1 and set(versions) == {1, 2}
    # every score was made by exactly one complete model: it equals that version's own score
    everything = first + [p for r in range(1, batches + 1) for p in generated_payments(200, seed=1000 + r)] + last
    by_model = {1: expected_scores(v1_dir, everything), 2: expected_scores(v2_dir, everything)}
    for r in scores:
        value = r["value"]
        if value["payment_id"] in by_model[1]:
            assert value["score"] == pytest.approx(by_model[value["model_version"]][value["payment_id"]], rel=1e-9)
    assert all(r["value"]["model_version"] == 2 for r in scores if r["value"]["payment_id"] in ids)
    # per partition, once version 2 appears, version 1 never comes back (an atomic switch)
    for p in {r["partition"] for r in scores}:
        seq = [r["value"]["model_version"] for r in sorted(scores, key=lambda r: r["offset"]) if r["partition"] == p]
        assert seq == sorted(seq)
    shadow = read_all(stack, topics.shadow)
    assert shadow and all(r["value"]["model_version"] == 2 for r in shadow)
    for r in shadow:
        if r["value"]["payment_id"] in by_model[2]:
            assert r["value"]["score"] == pytest.approx(by_model[2][r["value"]["payment_id"]], rel=1e-9)


def test_fallback_on_load_failure_and_over_budget(stack, topics, registry, model_name, tmp_path):
    bootstrap, sr_url = stack.addresses.bootstrap_servers, stack.addresses.schema_registry_url
    v1_dir = trained(tmp_path, 0, "v1")
    promote(registry, model_name, v1_dir)
    # a budget no model can meet: the first version is kept anyway (nothing to fall back to)
    with running(stack, topics, model_name, tmp_path, BUDGET_MS="0.000001") as worker:
        replay(bootstrap, sr_url, topics.input, generated_payments(300, seed=3))
        wait_until(lambda: total(bootstrap, topics.scores) >= 300, "scores of version 1", proc=worker.proc)

        # version 2 is corrupted in the object store after the gate saw it: the worker cannot load it
        v2 = registry.register(model_name, trained(tmp_path, 1, "v2"))["version"]
        registry.load(model_name, v2)  # into the test's cache, so the promotion gate still works
        key = f"models/{model_name}/{v2}/artifacts/model.skops"
        registry.s3.put_object(Bucket=registry.bucket, Key=key, Body=b"corrupted")
        registry.promote(model_name, v2, force=True)
        wait_until(
            lambda: worker.metric('fraudstream_model_fallbacks_total{reason="load"}') >= 1,
            "the load failure to be counted",
            proc=worker.proc,
        )

        # version 3 loads, but is over the budget: refused
        v3 = promote(registry, model_name, trained(tmp_path, 2, "v3"))
        wait_until(
            lambda: worker.metric('fraudstream_model_fallbacks_total{reason="budget"}') >= 1,
            "the over-budget refusal to be counted",
            proc=worker.proc,
        )
        more = generated_payments(300, seed=4)
        replay(bootstrap, sr_url, topics.input, more)
        wait_until(lambda: total(bootstrap, topics.scores) >= 600, "the next scores", proc=worker.proc)
        assert worker.metric(f'fraudstream_model_info{{model="{model_name}",version="1"}}') == 1
        assert f'version="{v3}"' not in " ".join(k for k in worker.metrics() if k.startswith("fraudstream_model_info"))
        log = worker.tail() + worker.log.read_text(errors="replace")
        assert "could not load" in log and "over the" in log
    assert {r["value"]["model_version"] for r in read_all(stack, topics.scores)} == {1}


def test_scores_topic_with_other_partition_count_is_keyed_by_murmur2(stack, topics, registry, model_name, tmp_path):
    """With fewer output partitions than input ones, a score goes where Kafka's partitioner puts its key."""
    from aiokafka.partitioner import murmur2

    bootstrap, sr_url = stack.addresses.bootstrap_servers, stack.addresses.schema_registry_url
    promote(registry, model_name, trained(tmp_path, 0, "v1"))
    create_topics(bootstrap, topics.scores, partitions=3)
    payments = generated_payments(600, seed=51)
    replay(bootstrap, sr_url, topics.input, payments)
    with running(stack, topics, model_name, tmp_path) as worker:
        wait_until(lambda: total(bootstrap, topics.scores) >= len(payments), "600 scores", proc=worker.proc)
    scores = read_all(stack, topics.scores)
    assert {r["value"]["payment_id"] for r in scores} == {pid for pid, _ in payments}
    for r in scores:
        assert r["partition"] == (murmur2(r["key"]) & 0x7FFFFFFF) % 3
        assert r["headers"]["source_partition"] == str(r["value"]["source_partition"]).encode()
        assert r["headers"]["source_offset"] == str(r["value"]["source_offset"]).encode()
    for p in range(3):  # in each output partition, each input partition's scores keep their input order
        rows = [r["value"] for r in sorted(scores, key=lambda r: r["offset"]) if r["partition"] == p]
        for source in {v["source_partition"] for v in rows}:
            offsets = [v["source_offset"] for v in rows if v["source_partition"] == source]
            assert offsets == sorted(offsets)


def scored_ids(stack, topic: str) -> list[str]:
    return [r["value"]["payment_id"] for r in read_all(stack, topic)]


def test_two_workers_share_partitions_and_rebalance(stack, topics, registry, model_name, tmp_path):
    bootstrap, sr_url = stack.addresses.bootstrap_servers, stack.addresses.schema_registry_url
    promote(registry, model_name, trained(tmp_path, 0, "v1"))
    first = generated_payments(4_000, seed=21)
    with running(stack, topics, model_name, tmp_path) as a, running(stack, topics, model_name, tmp_path) as b:

        def both_assigned() -> bool:
            lags = [{k for k in w.metrics() if k.startswith("fraudstream_consumer_lag{")} for w in (a, b)]
            return all(lags) and len(lags[0] | lags[1]) == 4 and not lags[0] & lags[1]

        replay(bootstrap, sr_url, topics.input, first)
        wait_until(
            lambda: total(bootstrap, topics.scores) >= len(first), "all events scored by two workers", proc=a.proc
        )
        wait_until(both_assigned, "the two workers to share the 4 partitions", proc=b.proc)
        assert a.metric("fraudstream_events_scored_total") > 0 and b.metric("fraudstream_events_scored_total") > 0
        b.stop()  # leaves the group: a rebalance gives its partitions to a
        second = generated_payments(4_000, seed=22)
        replay(bootstrap, sr_url, topics.input, second)
        ids = {pid for pid, _ in first + second}
        wait_until(lambda: ids <= set(scored_ids(stack, topics.scores)), "every event scored after b left", proc=a.proc)
        wait_until(
            lambda: len({k for k in a.metrics() if k.startswith("fraudstream_consumer_lag{")}) == 4,
            "the remaining worker to report all 4 partitions",
            proc=a.proc,
        )


def crash_replay(stack, topics, registry, model_name, tmp_path, events: int) -> int:
    """kill -9 a worker in the middle of a replay, restart it; every event scored; returns the duplicates."""
    bootstrap, sr_url = stack.addresses.bootstrap_servers, stack.addresses.schema_registry_url
    promote(registry, model_name, trained(tmp_path, 0, "v1"))
    payments = generated_payments(events, seed=31)
    worker = Worker(stack, topics, model_name, tmp_path)
    chunk = 1_000
    replaying = threading.Thread(
        target=lambda: [
            replay(bootstrap, sr_url, topics.input, payments[i : i + chunk]) for i in range(0, events, chunk)
        ]
    )
    replaying.start()
    try:
        wait_until(
            lambda: total(bootstrap, topics.scores) >= events // 4, "a quarter of the replay scored", proc=worker.proc
        )
    finally:
        worker.stop(kill=True)
        mid_replay = replaying.is_alive()
    replaying.join()
    assert worker.proc.returncode == -signal.SIGKILL
    scored_before_restart = total(bootstrap, topics.scores)
    committed = committed_offsets(bootstrap, topics.group, topics.input)
    with running(stack, topics, model_name, tmp_path) as again:
        wait_until(
            lambda: total(bootstrap, topics.scores) >= events,
            "the replay scored after restart",
            proc=again.proc,
            timeout=300,
        )
        scores = [r["value"] for r in read_all(stack, topics.scores)]
    ids = [score["payment_id"] for score in scores]
    assert set(ids) == {pid for pid, _ in payments}
    duplicates = len(ids) - len(set(ids))
    # Only what was scored but not yet committed when the worker died is scored again.
    repeated = {
        source: n - 1
        for source, n in Counter((score["source_partition"], score["source_offset"]) for score in scores).items()
        if n > 1
    }
    assert sum(repeated.values()) == duplicates
    assert all(offset >= committed.get(partition, 0) for partition, offset in repeated)
    print(
        f"crash test: {events} events, killed with {scored_before_restart} scored "
        f"({'during' if mid_replay else 'after'} the replay), {len(ids)} scores, {duplicates} duplicates"
    )
    return duplicates


def test_crash_mid_replay_loses_nothing(stack, topics, registry, model_name, tmp_path, record_property):
    duplicates = crash_replay(stack, topics, registry, model_name, tmp_path, 20_000)
    record_property("duplicates", duplicates)
    assert duplicates < 20_000


def test_worker_command_starts_n_processes(stack, topics, registry, model_name, tmp_path):
    promote(registry, model_name, trained(tmp_path, 0, "v1"))
    port, log = free_port(), tmp_path / "worker-command.log"
    env = {
        **os.environ,
        **stack.addresses.to_env(),
        "FRAUDSTREAM_INPUT_TOPIC": topics.input,
        "FRAUDSTREAM_SCORES_TOPIC": topics.scores,
        "FRAUDSTREAM_GROUP": topics.group,
        "FRAUDSTREAM_MODEL": model_name,
        "FRAUDSTREAM_DATA_DIR": str(tmp_path / "workers"),
        "FRAUDSTREAM_MODEL_CACHE": str(tmp_path / "cache"),
    }
    command = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from fraudstream.lifecycle import worker_command; worker_command()",
            "--processes",
            "2",
            "--web-port",
            str(port),
        ],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:

        def answering(p: int) -> bool:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{p}/metrics", timeout=2) as response:
                    return b"fraudstream_events_scored_total" in response.read()
            except OSError:
                return False

        wait_until(lambda: answering(port) and answering(port + 1), "both workers' metrics", proc=command)
        replay(
            stack.addresses.bootstrap_servers,
            stack.addresses.schema_registry_url,
            topics.input,
            generated_payments(500, seed=41),
        )
        wait_until(lambda: total(stack.addresses.bootstrap_servers, topics.scores) >= 500, "500 scores", proc=command)
    finally:
        command.send_signal(signal.SIGTERM)
        command.wait(90)
        output = log.read_text(errors="replace")
    assert command.returncode == 0, output[-2000:]
    assert "worker 1/2" in output and "worker 2/2" in output


def trained_on(tmp_path: Path, label: str, payments: list[tuple[str, dict]], seed: int = 0) -> Path:
    """A baseline fitted on the records themselves (its inputs are exactly their feature columns), with a
    threshold for a 2% alert rate: a model folder as training writes it, less the card."""
    from models.calibrate import ALERT_RATE, calibrate
    from models.features import labels

    frame = features_frame(payments)
    model = LogisticBaseline(C=0.5 + seed).fit(frame)
    directory = model.save(tmp_path / label)
    calibrate(model.score_samples(frame), ALERT_RATE, 0.02, labels(frame)).save(directory)
    return directory


def with_a_new_column(payments: list[tuple[str, dict]]) -> list[tuple[str, dict]]:
    """The same payments as a newer features stream carries them: a column added before the last ones."""
    return [
        (pid, {**{k: v for k, v in value.items() if k != "CLASS"}, "AMOUNT_SQUARED": value["AMOUNT"] ** 2,
               "CLASS": value["CLASS"]})
        for pid, value in payments
    ]  # fmt: skip


def test_a_model_of_another_schema_takes_over_without_a_restart(stack, topics, registry, model_name, tmp_path):
    """The statements define the features: promoting a model trained on a newer schema switches running
    workers to it, and records of that schema are scored by it with no dead letters."""
    from fraudstream.bench.replay import BENCH_FEATURES, preprocessed_schema

    bootstrap, sr_url = stack.addresses.bootstrap_servers, stack.addresses.schema_registry_url
    new_features = (*BENCH_FEATURES, "AMOUNT_SQUARED")
    old_dir = trained_on(tmp_path, "old", generated_payments(3_000, seed=21, fraud_rate=0.02))
    new_dir = trained_on(tmp_path, "new", with_a_new_column(generated_payments(3_000, seed=22, fraud_rate=0.02)), 1)
    promote(registry, model_name, old_dir)
    old_records = generated_payments(500, seed=23)
    new_records = with_a_new_column(generated_payments(500, seed=24))
    serialize_new = avro_serializer(sr_url, preprocessed_schema(new_features))
    ctx = SerializationContext(topics.input, MessageField.VALUE)
    replay(bootstrap, sr_url, topics.input, old_records)

    with running(stack, topics, model_name, tmp_path) as worker:
        wait_until(lambda: total(bootstrap, topics.scores) >= 500, "scores of the old model", proc=worker.proc)
        # the gate scores both versions on the same rows: rows that carry both schemas' columns
        from models.datasets import Dataset

        both = features_frame(with_a_new_column(generated_payments(1_000, seed=26)))
        registry.register(model_name, new_dir)
        registry.promote(model_name, 2, force=True, data=Dataset(both, {"rows": len(both)}, []))
        wait_until(
            lambda: worker.metric(f'fraudstream_model_info{{model="{model_name}",version="2"}}') == 1,
            "the worker to switch to the model of the new schema",
            proc=worker.proc,
        )
        produce(bootstrap, topics.input, [(pid.encode(), serialize_new(value, ctx)) for pid, value in new_records])
        wait_until(lambda: total(bootstrap, topics.scores) >= 1_000, "scores of the new model", proc=worker.proc)
        stale = generated_payments(5, seed=25)  # the old schema lacks AMOUNT_SQUARED: dead letters, reason schema
        replay(bootstrap, sr_url, topics.input, stale)
        wait_until(lambda: total(bootstrap, topics.dlq) >= 5, "dead letters of the old schema", proc=worker.proc)

        pid, value = new_records[3]
        status, body = worker.post("/score", json.dumps({**value, "payment_id": pid}).encode())
        metrics = worker.metrics()

    expected = {1: expected_scores(old_dir, old_records), 2: expected_scores(new_dir, new_records)}
    scores = read_all(stack, topics.scores)
    by_id = {r["value"]["payment_id"]: r["value"] for r in scores}
    assert set(by_id) == set(expected[1]) | set(expected[2])
    for version, wanted in expected.items():
        for payment, score in wanted.items():
            assert by_id[payment]["model_version"] == version
            assert by_id[payment]["score"] == pytest.approx(score, rel=1e-9, abs=1e-12)
    letters = read_all(stack, topics.dlq, avro=False)
    assert sorted(r["key"].decode() for r in letters) == sorted(pid for pid, _ in stale)
    assert {r["headers"]["error.reason"] for r in letters} == {b"schema"}
    assert b"AMOUNT_SQUARED" in letters[0]["headers"]["error.message"]
    assert metrics.get('fraudstream_dead_letters_total{reason="schema"}') == 5
    assert metrics.get('fraudstream_dead_letters_total{reason="validation"}', 0) == 0
    assert status == 200 and body["model_version"] == 2
    assert body["scores"][0]["score"] == pytest.approx(expected[2][pid], rel=1e-9)
    old_meta = json.loads((old_dir / "model.json").read_text())
    assert old_meta["feature_names"] == list(BENCH_FEATURES) and old_meta["ksql_sha256"] == statements_hash()
    assert json.loads((new_dir / "model.json").read_text())["feature_names"] == list(new_features)
