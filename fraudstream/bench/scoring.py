"""`fraudstream bench scoring`: the worker's speed as a ratio to a raw passthrough, and its latency.

In one run, on one broker and the same pre-filled Avro topic of ksqlDB-shaped payments:
(a) raw confluent-kafka consume -> produce (fraudstream.bench.ksql.passthrough), the practical limit;
(b) a naive Faust agent, Keras `model.predict` and `await topic.send` per event (fraudstream/bench/naive.py), on a
    prefix of the topic (it manages tens of events per second);
(c) the fraudstream worker (streams.app).
(b) and (c) run as separate processes and are timed from their first output record's broker timestamp
to their last, so start-up and group joins are not counted. Then p50/p99 event-to-score latency of (c)
at a fixed offered load (events produced at a steady rate while the worker keeps up), next to the same
percentiles for a raw consumer in its place under the same load: on a shared machine most of the tail is
the broker's and the scheduler's, and the floor says how much.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import numpy as np
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from fraudstream.bench.passthrough import Rate, create_topics, passthrough
from fraudstream.bench.replay import PREPROCESSED_SCHEMA, avro_serializer, generated_payments, replay
from fraudstream.config import Addresses
from fraudstream.credentials import schema_registry_conf
from fraudstream.kafka import consumer_config, end_offsets
from streams.batching import FETCH_MAX_WAIT_MS
from streams.cli import start_worker


@dataclass(frozen=True)
class ScoringBench:
    rates: list[Rate]
    latency_ms: dict[str, float]
    offered_per_second: float
    floor_ms: dict[str, float]
    """The same percentiles for a raw consumer of the same events: the broker's and the machine's share."""


def _total(bootstrap: str, topic: str) -> int:
    try:
        return sum(end_offsets(bootstrap, topic).values())
    except LookupError:
        return 0


def _timestamps(bootstrap: str, topic: str) -> list[tuple[int, bytes]]:
    """(broker timestamp ms, value) of every record of `topic`."""
    ends = end_offsets(bootstrap, topic)
    consumer = Consumer(consumer_config(bootstrap, f"bench-{uuid.uuid4().hex[:8]}", enable_auto_commit=False))
    consumer.assign([TopicPartition(topic, p, 0) for p, end in ends.items() if end])
    remaining = {p: end for p, end in ends.items() if end}
    out = []
    try:
        while remaining:
            batch = consumer.consume(10_000, timeout=10)
            if not batch:
                raise click.ClickException(f"{topic}: records stopped arriving, {remaining} left")
            for m in batch:
                if m.error() is None:
                    out.append((m.timestamp()[1], m.value()))
                    if m.offset() >= remaining.get(m.partition(), float("inf")) - 1:
                        remaining.pop(m.partition(), None)
    finally:
        consumer.close()
    return out


def _wait(condition: Any, what: str, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            raise click.ClickException(f"{what}: the process exited with {proc.returncode}")
        if time.monotonic() > deadline:
            raise click.ClickException(f"timed out waiting for {what}")
        time.sleep(0.2)


def _run_until(name: str, proc: subprocess.Popen, bootstrap: str, topic: str, count: int, timeout: float) -> Rate:
    try:
        _wait(lambda: _total(bootstrap, topic) >= count, f"{name}: {count:,} outputs", proc, timeout)
    finally:
        proc.terminate()
        proc.wait(60)
    stamps = sorted(ts for ts, _ in _timestamps(bootstrap, topic))[:count]
    return Rate(name, len(stamps) - 1, (stamps[-1] - stamps[0]) / 1000.0)


def train_bench_model(directory: Path) -> Path:
    """A small autoencoder trained on the bench's own records, so that it reads exactly their columns (one
    epoch: speed does not depend on its quality)."""
    import pandas as pd

    from models.autoencoder import Autoencoder
    from models.datasets import Dataset
    from models.training import train

    frame = pd.DataFrame([value for _, value in generated_payments(5_000, seed=0, fraud_rate=0.01)])
    dataset = Dataset(frame, {"source": {"kind": "bench-replay", "rows": len(frame), "seed": 0}}, [])
    return train(dataset, Autoencoder(epochs=1), split="random", output_dir=directory).output_dir


def scoring_bench(
    addresses: Addresses,
    events: int = 100_000,
    naive_events: int = 300,
    rate: float = 2_000.0,
    seconds: float = 10.0,
    work_dir: Path | None = None,
) -> ScoringBench:
    bootstrap = addresses.bootstrap_servers
    work = Path(work_dir or tempfile.mkdtemp(prefix="fraudstream-bench-"))
    model_dir = train_bench_model(work / "model")
    run = uuid.uuid4().hex[:8]
    source, sink, naive_out, scores, latency_in, latency_scores, floor_in = (
        f"bench-{run}-{kind}"
        for kind in ("in", "passthrough", "naive", "scores", "latency-in", "latency-scores", "floor-in")
    )
    create_topics(bootstrap, source, sink, naive_out, latency_in, floor_in)
    payments = generated_payments(min(events, 50_000), seed=1)
    payments = (payments * (events // len(payments) + 1))[:events]
    replay(bootstrap, addresses.schema_registry_url, source, payments)
    base = {**os.environ, **addresses.to_env(), "TF_CPP_MIN_LOG_LEVEL": "3"}

    rates = [passthrough(bootstrap, source, sink, events)]

    naive_env = {
        **base,
        "FRAUDSTREAM_NAIVE_INPUT": source,
        "FRAUDSTREAM_NAIVE_OUTPUT": naive_out,
        "FRAUDSTREAM_NAIVE_SCHEMA": json.dumps(PREPROCESSED_SCHEMA),
        "FRAUDSTREAM_NAIVE_MODEL": str(model_dir),
        "FRAUDSTREAM_NAIVE_GROUP": f"bench-{run}-naive",
        "FRAUDSTREAM_NAIVE_DATA_DIR": str(work / "naive"),
    }
    from stack.supervisor import free_port

    naive_env["FRAUDSTREAM_NAIVE_WEB_PORT"] = str(free_port())
    log = open(work / "naive.log", "ab")
    naive = subprocess.Popen(
        [sys.executable, "-m", "faust", "-A", "fraudstream.bench.naive", "worker", "-l", "warn"],
        env=naive_env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    rates.append(_run_until("naive Faust agent", naive, bootstrap, naive_out, naive_events, 600))

    settings = {
        "INPUT_TOPIC": source,
        "SCORES_TOPIC": scores,
        "GROUP": f"bench-{run}-worker",
        "MODEL_DIR": model_dir,
        "WEB_PORT": free_port(),
        "DATA_DIR": work / "workers",
    }
    worker = start_worker(settings, work / "worker.log", base, loglevel="warn")
    rates.append(_run_until("fraudstream worker", worker, bootstrap, scores, events, 600))

    latency, offered, floor = _latency(
        addresses, model_dir, (latency_in, latency_scores, floor_in), rate, seconds, work, base
    )
    return ScoringBench(rates, latency, offered, floor)


def _latency(
    addresses: Addresses,
    model_dir: Path,
    run_topics: tuple[str, str, str],
    rate: float,
    seconds: float,
    work: Path,
    base: dict[str, str],
) -> tuple[dict[str, float], float, dict[str, float]]:
    """Event-to-score latency of the worker while events arrive at `rate` per second, and the floor under it.

    The floor is a raw consumer in the worker's place (own process, fetching as the worker does,
    FETCH_MAX_WAIT_MS) under the same offered load: event timestamp to arrival, what the producer, the
    broker and the machine take before any worker could score. The two run one after the other, so that
    neither's CPU shows in the other's tail. Events come from a producer with fraudstream's own settings
    (fraudstream.kafka.producer_config), as `fraudstream produce` and the demo send them.
    """
    from confluent_kafka import Producer
    from confluent_kafka.serialization import MessageField, SerializationContext

    from fraudstream.kafka import producer_config
    from stack.supervisor import free_port

    source, scores, floor_source = run_topics
    bootstrap = addresses.bootstrap_servers
    serialize = avro_serializer(addresses.schema_registry_url)
    ctx = SerializationContext(source, MessageField.VALUE)
    payments = generated_payments(int(rate * seconds) + 1, seed=2)
    encoded = [(pid.encode(), serialize(value, ctx)) for pid, value in payments]
    warm_up, events = encoded[0], encoded[1:]
    producer = Producer(producer_config(bootstrap))  # one connected producer: no record waits for a connection

    producer.produce(source, key=warm_up[0], value=warm_up[1])
    producer.flush(30)  # the worker is up once this record is scored
    settings = {
        "INPUT_TOPIC": source,
        "SCORES_TOPIC": scores,
        "GROUP": f"{source}-worker",
        "MODEL_DIR": model_dir,
        "WEB_PORT": free_port(),
        "DATA_DIR": work / "workers",
    }
    worker = start_worker(settings, work / "latency-worker.log", base, loglevel="warn")
    try:
        _wait(lambda: _total(bootstrap, scores) >= 1, "the latency worker to start", worker, 120)
        offered = _offer(producer, source, events, rate)
        _wait(lambda: _total(bootstrap, scores) >= len(encoded), "latency scores", worker, 120)
    finally:
        worker.terminate()
        worker.wait(60)

    mp = multiprocessing.get_context("spawn")
    floor_file = work / f"{floor_source}.json"
    ready = mp.Event()
    floor = mp.Process(
        target=_arrivals, args=(bootstrap, floor_source, len(encoded), str(floor_file), ready), daemon=True
    )
    floor.start()
    try:
        producer.produce(floor_source, key=warm_up[0], value=warm_up[1])
        producer.flush(30)
        if not ready.wait(120):
            raise click.ClickException("the raw consumer of the latency run did not start")
        _offer(producer, floor_source, events, rate)
        floor.join(120)
    finally:
        if floor.is_alive():
            floor.terminate()
    if not floor_file.exists():
        raise click.ClickException("the raw consumer of the latency run did not finish")

    from confluent_kafka.schema_registry import SchemaRegistryClient
    from confluent_kafka.schema_registry.avro import AvroDeserializer

    deserialize = AvroDeserializer(SchemaRegistryClient(schema_registry_conf(addresses.schema_registry_url)))
    sctx = SerializationContext(scores, MessageField.VALUE)
    values = [deserialize(v, sctx) for _, v in _timestamps(bootstrap, scores)]
    ms = [
        (v["scored_at"] - v["event_timestamp"]).total_seconds() * 1000
        if hasattr(v["scored_at"], "timestamp")
        else v["scored_at"] - v["event_timestamp"]
        for v in values
        if v["payment_id"] != warm_up[0].decode()
    ]
    arrivals = [delay for key, delay in json.loads(floor_file.read_text()) if key != warm_up[0].decode()]
    return _percentiles(ms), offered, _percentiles(arrivals)


def _offer(producer: Any, topic: str, events: list[tuple[bytes, bytes]], rate: float) -> float:
    """Produce `events` at a steady `rate` per second; returns the rate achieved."""
    started = time.perf_counter()
    for i, (key, value) in enumerate(events):
        delay = started + i / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        producer.produce(topic, key=key, value=value)
        producer.poll(0)
    producer.flush(60)
    return len(events) / (time.perf_counter() - started)


def _percentiles(values: list[float]) -> dict[str, float]:
    return {"p50": float(np.percentile(values, 50)), "p99": float(np.percentile(values, 99))}


def _arrivals(bootstrap: str, topic: str, count: int, out: str, ready: Any) -> None:
    """A raw consumer (child process): each record's key and arrival minus its timestamp in ms, to `out`.

    `ready` is set once the first record (the warm-up) has arrived: from then on it is fetching.
    """
    consumer = Consumer(
        consumer_config(
            bootstrap,
            f"bench-floor-{uuid.uuid4().hex[:8]}",
            enable_auto_commit=False,
            fetch_wait_max_ms=FETCH_MAX_WAIT_MS,
        )
    )
    partitions = consumer.list_topics(topic, timeout=30).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    seen: list[tuple[str, float]] = []
    deadline = time.monotonic() + 300
    try:
        while len(seen) < count and time.monotonic() < deadline:
            message = consumer.poll(0.1)  # one at a time: consume(n) would wait for n records
            if message is not None and message.error() is None:
                seen.append(
                    ((message.key() or b"").decode(errors="replace"), time.time() * 1000 - message.timestamp()[1])
                )
                ready.set()
    finally:
        consumer.close()
    Path(out).write_text(json.dumps(seen))


def print_bench(result: ScoringBench, console: Any, table_type: Any) -> None:
    base = result.rates[0].per_second
    table = table_type("path", "events", "events/s", "vs passthrough")
    for r in result.rates:
        table.add_row(r.name, f"{r.events:,}", f"{r.per_second:,.0f}", f"{r.per_second / base:.3f}")
    console.print(table)
    console.print(
        f"event-to-score latency at {result.offered_per_second:,.0f} events/s offered: "
        f"p50 {result.latency_ms['p50']:.1f} ms, p99 {result.latency_ms['p99']:.1f} ms "
        f"(a raw consumer of the same events: p50 {result.floor_ms['p50']:.1f} ms, "
        f"p99 {result.floor_ms['p99']:.1f} ms)"
    )
