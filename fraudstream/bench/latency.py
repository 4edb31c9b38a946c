"""`fraudstream bench latency`: how long a payment takes to become a score, hop by hop, on the whole pipeline.

Payments are offered at a fixed rate for a fixed time to a stack running everything the demo runs (every
statement of `ksql/`, the `connectors/` S3 sinks, a scoring worker). Each record is timed when it becomes
readable on its topic: the source, the preprocessed features, the scores. Kafka gives that moment as the
record's timestamp on a topic with `message.timestamp.type=LogAppendTime`; the embedded broker (Tansu 0.6)
stamps append time only when the producer asks for it in the batch, which no client does, and ignores the
topic setting. So where a record carries no broker time, the moment a dedicated reader sees it stands in:
one consumer that does nothing else, polling all three topics with a 5 ms fetch wait, the same for every
hop, so that its own delay cancels out of the hops between topics. Its floor shows in the first hop
(producer's send -> readable), where the send time is the record's CreateTime, stamped by our producer.

The same run on the in-memory broker is the floor: what the pipeline costs without the object store.
"""

from __future__ import annotations

import logging
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
from confluent_kafka import TIMESTAMP_LOG_APPEND_TIME, Consumer, KafkaException, TopicPartition
from prometheus_client.parser import text_string_to_metric_families
from rich.table import Table

from fraudstream.config import Addresses
from fraudstream.kafka import consumer_config, end_offsets
from fraudstream.live import reader_fetch_wait_ms, topic_size
from fraudstream.topics import PREPROCESSED_TOPIC, SCORES_TOPIC, SOURCE_TOPIC
from producers.replay import RDKAFKA_LOG

logger = logging.getLogger(__name__)

#: The model the workers score with (streams/settings.py's default).
MODEL_NAME = "fraud"

#: The hops, in pipeline order, then the whole way.
HOPS: tuple[str, ...] = ("sent -> source", "source -> preprocessed", "preprocessed -> scored", "end to end")
#: Payments sent, and awaited until scored, before the measurement starts (group joins, model load).
WARM_UP = 20


@dataclass(frozen=True)
class Percentiles:
    count: int
    p50: float
    p99: float
    max: float

    @classmethod
    def of(cls, values_ms: Iterable[float]) -> Percentiles | None:
        values = np.fromiter(values_ms, float)
        if not len(values):
            return None
        p50, p99 = np.percentile(values, [50, 99])
        return cls(len(values), float(p50), float(p99), float(values.max()))


@dataclass
class Seen:
    """When each payment (by key) was sent, and when it became readable on each topic, in epoch milliseconds."""

    sent: dict[bytes, float] = field(default_factory=dict)
    readable: dict[str, dict[bytes, float]] = field(default_factory=dict)
    #: How many of the readable times the broker stamped itself (LogAppendTime), per topic.
    broker_stamped: dict[str, int] = field(default_factory=dict)


def hop_latencies(seen: Seen, topics: tuple[str, str, str]) -> dict[str, list[float]]:
    """Per hop, the milliseconds each payment spent in it, for the payments that made it through that hop."""
    source, preprocessed, scores = (seen.readable.get(topic, {}) for topic in topics)
    hops: dict[str, list[float]] = {hop: [] for hop in HOPS}
    for key, sent in seen.sent.items():
        points = (sent, source.get(key), preprocessed.get(key), scores.get(key))
        for hop, start, end in zip(HOPS[:3], points, points[1:]):
            if start is not None and end is not None:
                hops[hop].append(max(0.0, end - start))
        if points[3] is not None:
            hops[HOPS[3]].append(max(0.0, points[3] - sent))
    return hops


@dataclass(frozen=True)
class Requests:
    """The object store's S3 requests of one type over a run."""

    per_second: float
    mean_ms: float


def object_store_totals(metrics_url: str) -> dict[str, tuple[float, float]]:
    """(count, seconds) of SeaweedFS's S3 requests by type, and ("received bytes", 0) for what was uploaded."""
    totals: dict[str, tuple[float, float]] = {}
    for family in text_string_to_metric_families(httpx.get(metrics_url, timeout=10).text):
        for sample in family.samples:
            if sample.name in ("SeaweedFS_s3_request_seconds_count", "SeaweedFS_s3_request_seconds_sum"):
                kind = sample.labels.get("type", "?")
                count, seconds = totals.get(kind, (0.0, 0.0))
                if sample.name.endswith("_count"):
                    count += sample.value
                else:
                    seconds += sample.value
                totals[kind] = (count, seconds)
            elif sample.name == "SeaweedFS_s3_bucket_traffic_received_bytes_total":
                totals[RECEIVED] = (totals.get(RECEIVED, (0.0, 0.0))[0] + sample.value, 0.0)
    return totals


#: The key of the uploaded bytes in `object_store_totals`.
RECEIVED = "received bytes"


def requests_between(
    before: dict[str, tuple[float, float]], after: dict[str, tuple[float, float]], seconds: float
) -> dict[str, Requests]:
    out = {}
    for kind, (count, total) in after.items():
        count0, total0 = before.get(kind, (0.0, 0.0))
        if kind != RECEIVED and count > count0:
            out[kind] = Requests((count - count0) / seconds, 1000 * (total - total0) / (count - count0))
    received = after.get(RECEIVED, (0.0, 0.0))[0] - before.get(RECEIVED, (0.0, 0.0))[0]
    if "PUT" in out and received > 0:
        out["PUT bytes"] = Requests(received / seconds, 0.0)
    return out


@dataclass(frozen=True)
class LatencyRun:
    broker: str
    offered_per_second: float
    seconds: float
    sent: int
    scored: int
    hops: dict[str, Percentiles | None]
    #: "broker" when every record carried a LogAppendTime, else the reader's.
    clock: str
    #: Payments of the run seen on each topic.
    readable: dict[str, int] = field(default_factory=dict)
    #: The object store's requests from the first payment sent to the last score seen (durable broker only).
    object_store: dict[str, Requests] = field(default_factory=dict)


class Tap:
    """One consumer per topic, reading from the true ends and noting when each key becomes readable.

    The first topic is the source: its records' CreateTime (stamped by the producer at send) is the send time.
    One consumer per topic, so that a slow fetch of one topic does not delay the others' sightings.
    """

    def __init__(self, bootstrap_servers: str, topics: Iterable[str], fetch_wait_ms: int) -> None:
        self.topics = tuple(topics)
        self.lock = threading.Lock()
        self.seen = Seen(readable={topic: {} for topic in self.topics}, broker_stamped=dict.fromkeys(self.topics, 0))
        self._stop = threading.Event()
        self._consumers: list[Consumer] = []
        self._threads: list[threading.Thread] = []
        for topic in self.topics:
            ends = end_offsets(bootstrap_servers, topic, timeout=60.0)
            group = f"fraudstream-bench-latency-{uuid.uuid4().hex[:8]}"  # assign() only: never joins, never commits
            consumer = Consumer(
                consumer_config(
                    bootstrap_servers,
                    group,
                    enable_auto_commit=False,
                    fetch_wait_max_ms=fetch_wait_ms,
                    logger=RDKAFKA_LOG,
                )
            )
            consumer.assign([TopicPartition(topic, partition, end) for partition, end in ends.items()])
            self._consumers.append(consumer)
            self._threads.append(
                threading.Thread(
                    target=self._read, args=(consumer,), name=f"fraudstream-bench-tap-{topic}", daemon=True
                )
            )

    def __enter__(self) -> Tap:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)
        for consumer in self._consumers:
            consumer.close()

    def count(self, topic: str) -> int:
        with self.lock:
            return len(self.seen.readable[topic])

    def _read(self, consumer: Consumer) -> None:
        source = self.topics[0]
        while not self._stop.is_set():
            messages = consumer.consume(num_messages=10_000, timeout=0.05)
            now = time.time() * 1000
            with self.lock:
                for message in messages:
                    key = message.key()
                    if message.error() is not None or key is None:
                        continue
                    kind, stamp = message.timestamp()
                    topic = message.topic()
                    if kind == TIMESTAMP_LOG_APPEND_TIME:
                        self.seen.broker_stamped[topic] += 1
                        self.seen.readable[topic].setdefault(key, float(stamp))
                    else:
                        self.seen.readable[topic].setdefault(key, now)
                        if topic == source:
                            self.seen.sent.setdefault(key, float(stamp))


def _size(bootstrap: str, topic: str) -> int:
    """The topic's size, or -1 while a loaded broker does not answer in time (the caller asks again)."""
    try:
        return topic_size(bootstrap, topic)
    except (KafkaException, TimeoutError) as error:
        logger.debug("%s: size not known yet: %s", topic, error)
        return -1


def _wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.1)


def _wait_quiet(
    count: Callable[[], int], progress: Callable[[], int], expected: int, quiet_seconds: float, at_most: float
) -> int:
    """Wait until `count()` reaches `expected`, `progress()` stops growing for `quiet_seconds`, or `at_most`
    seconds have passed; return `count()`."""
    last, changed = progress(), time.monotonic()
    deadline = changed + at_most
    while count() < expected and time.monotonic() - changed < quiet_seconds and time.monotonic() < deadline:
        time.sleep(0.2)
        now = progress()
        if now != last:
            last, changed = now, time.monotonic()
    return count()


def measure(
    addresses: Addresses,
    broker: str,
    rate: float,
    seconds: float,
    topics: tuple[str, str, str] = (SOURCE_TOPIC, PREPROCESSED_TOPIC, SCORES_TOPIC),
    metrics_url: str | None = None,
    warm_up_seconds: float = 240.0,
    drain_seconds: float = 300.0,
    seed: int = 11,
) -> LatencyRun:
    """Offer `rate` payments a second for `seconds` to a running pipeline and time each through every hop.

    First a few payments go through and are awaited until scored, so that group joins and the model's
    loading are not measured. After the last is sent, the scores are awaited for at most `drain_seconds`:
    a payment not scored by then is left out of the hops it did not finish (the counts say how many).
    """
    from producers.generate import generate_payments
    from producers.replay import replay

    bootstrap = addresses.bootstrap_servers
    count = max(1, round(rate * seconds))
    warm_up, payments = generate_payments(WARM_UP, seed=seed), generate_payments(count, seed=seed + 1)
    scored_before = _size(bootstrap, topics[2])
    first = replay(warm_up, bootstrap_servers=bootstrap, topic=topics[0], labels_topic=None, live=True)
    _wait_until(
        lambda: _size(bootstrap, topics[2]) >= scored_before + first.acknowledged,
        warm_up_seconds,
        f"{broker}: the warm-up payments were not scored within {warm_up_seconds:.0f} s; is a worker running?",
    )
    wait_ms = reader_fetch_wait_ms(durable=broker != "memory")
    with Tap(bootstrap, topics, wait_ms) as tap:
        began, before = time.monotonic(), object_store_totals(metrics_url) if metrics_url else {}
        summary = replay(
            payments, bootstrap_servers=bootstrap, topic=topics[0], labels_topic=None, live=True, rate=rate
        )
        if summary.failed:
            raise RuntimeError(f"{broker}: payments not delivered: {'; '.join(summary.errors)}")
        scored = _wait_quiet(
            lambda: tap.count(topics[2]),
            lambda: sum(map(tap.count, topics)),
            summary.acknowledged,
            quiet_seconds=60.0,
            at_most=drain_seconds,
        )
        with tap.lock:
            seen = tap.seen
        store = (
            requests_between(before, object_store_totals(metrics_url), time.monotonic() - began) if metrics_url else {}
        )
    hops = {hop: Percentiles.of(values) for hop, values in hop_latencies(seen, topics).items()}
    stamped = all(seen.readable[t] and seen.broker_stamped[t] == len(seen.readable[t]) for t in topics)
    readable = {topic: len(seen.readable[topic]) for topic in topics}
    clock = "broker" if stamped else f"reader, {wait_ms} ms fetch wait"
    return LatencyRun(broker, rate, seconds, summary.acknowledged, scored, hops, clock, readable, store)


def train_bench_model(output_dir: Path) -> Path:
    """A small autoencoder for the runs: scoring costs the same whatever it learnt, so it learns little."""
    from models.autoencoder import Autoencoder
    from models.datasets import GeneratedSource
    from models.training import train

    return Path(
        train(GeneratedSource(10_000, seed=0, fraud_rate=0.01), Autoencoder(epochs=2), output_dir=output_dir).output_dir
    )


def prepare_pipeline(addresses: Addresses, ksql_dir: Path, connectors_dir: Path, model_dir: Path | None) -> None:
    """What the demo runs, minus its payments: every statement, the S3 sinks, the card holders, a production model."""
    from connectors.apply import apply_dir
    from models.registry import ModelRegistry, RegistryError
    from producers.users import produce_users
    from stack.ksqldb.apply import KsqlRest, apply_directory

    errors = [o for o in apply_directory(KsqlRest(addresses.ksqldb_url), ksql_dir) if o.status == "error"]
    if errors:
        raise RuntimeError(f"{errors[0].file}: {errors[0].detail.splitlines()[0]}")
    apply_dir(addresses.connect_url, connectors_dir)
    produce_users(addresses.bootstrap_servers)
    if model_dir is None:
        return
    registry = ModelRegistry.from_addresses(addresses)
    try:
        registry.version(MODEL_NAME)
    except RegistryError:
        registry.promote(MODEL_NAME, registry.register(MODEL_NAME, model_dir)["version"])


@contextmanager
def pipeline_stack(
    ephemeral: bool, ksql_dir: Path, connectors_dir: Path, model_dir: Path
) -> Iterator[tuple[Addresses, str | None]]:
    """A throwaway stack on free ports running the whole demo pipeline, with one scoring worker; yields its
    addresses and, when the broker is durable, where its object store's metrics are."""
    from stack.embedded import WORKER, EmbeddedStack
    from stack.objectstore import metrics_url

    with tempfile.TemporaryDirectory(prefix="fraudstream-bench-latency-") as data_dir:
        with EmbeddedStack.on_free_ports(data_dir, ephemeral=ephemeral) as stack:
            prepare_pipeline(stack.addresses, ksql_dir, connectors_dir, model_dir)
            stack.start_service(WORKER)
            yield stack.addresses, None if ephemeral else metrics_url(stack.data_dir, stack.host)


def _cells(value: Percentiles | None) -> list[str]:
    if value is None:
        return ["-", "-", "-"]
    return [f"{value.p50:,.0f}", f"{value.p99:,.0f}", f"{value.max:,.0f}"]


def latency_table(runs: list[LatencyRun]) -> Table:
    """One table per offered rate: hops down, each broker's p50, p99 and max (ms) across."""
    rate = runs[0].offered_per_second
    table = Table(
        title=f"payment -> score at {rate:,.0f} payments/s, {runs[0].seconds:,.0f} s (ms)", title_justify="left"
    )
    table.add_column("hop")
    for run in runs:
        for name in ("p50", "p99", "max"):
            table.add_column(f"{run.broker}\n{name}", justify="right")
    for hop in HOPS:
        table.add_row(hop, *(cell for run in runs for cell in _cells(run.hops[hop])))
    table.add_section()
    table.add_row("scored / sent", *(cell for run in runs for cell in (f"{run.scored:,} / {run.sent:,}", "", "")))
    return table


def summary_line(run: LatencyRun) -> str:
    """One run in a line: end to end, how many were scored, where they got to, and the object store's work."""
    total = run.hops[HOPS[-1]]
    latency = (
        "no scores" if total is None else f"p50 {total.p50:,.0f} ms, p99 {total.p99:,.0f} ms, max {total.max:,.0f} ms"
    )
    seen = ", ".join(f"{topic} {count:,}" for topic, count in run.readable.items())
    line = (
        f"{run.broker}, {run.offered_per_second:,.0f}/s: end to end {latency} ({run.scored:,} of {run.sent:,} scored; "
        f"seen: {seen}; clock: {run.clock})"
    )
    if run.object_store:
        store = ", ".join(
            f"{kind} {r.per_second / 1024:,.0f} KB/s"
            if kind == "PUT bytes"
            else f"{kind} {r.per_second:,.0f}/s ({r.mean_ms:,.0f} ms)"
            for kind, r in sorted(run.object_store.items())
        )
        line += f"\n  object store, S3 requests a second (mean time): {store}"
    return line
