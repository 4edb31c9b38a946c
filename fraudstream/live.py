"""The live view of the pipeline that `fraudstream demo` shows: events in, scores out, fraud rate, latency, model.

Everything comes from the topics, read the way any downstream consumer reads them: topic sizes from
`fraudstream.kafka.end_offsets` (the embedded broker's "latest" offset is wrong), scores decoded with
confluent-kafka's AvroDeserializer. Every count is of what happened since the view started (topic sizes
less their size then), so that the rows add up: events in, preprocessed, scores out, and the flagged
share of the scores read. Latency is what `fraudstream bench latency` calls end to end, per payment: from
the Kafka timestamp its producer gave it in the source topic to the moment its score became readable to a
consumer (this one), joined on the payment id. The worker's own event-to-score histogram (/metrics) cannot
stand in for it: it starts at the preprocessed record's timestamp, which `ksql/010-source.sql` takes from
the payment's own Timestamp (September 2013 for a replayed Kaggle file), it ends before the score is
acknowledged, and its buckets give only coarse quantiles.

`PipelineStats` and the two renderings (a rich table, a plain line) are pure, so they are unit-tested on
data; `TopicReader` feeds the stats from Kafka in a thread; `watch()` draws them until a deadline or Ctrl-C.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import TracebackType

import numpy as np
from confluent_kafka import Consumer, KafkaException, Message, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext
from rich.console import Console
from rich.live import Live
from rich.table import Table

from fraudstream.config import Addresses
from fraudstream.credentials import schema_registry_conf
from fraudstream.kafka import READ_FETCH_WAIT_MS, consumer_config, end_offsets
from fraudstream.topics import DLQ_SUFFIX, PREPROCESSED_TOPIC, SCORES_TOPIC, SOURCE_TOPIC
from stack.ksqldb.kafka_runtime import processing_log_topic

logger = logging.getLogger(__name__)


#: A reader's fetch wait in memory: short, so that it adds little to the latency it measures.
MEMORY_READ_FETCH_WAIT_MS = 5


def reader_fetch_wait_ms(durable: bool) -> int:
    """The fetch wait of a reader that times records as they become readable: short, except on the durable
    broker, whose fetches answer nothing when the wait is shorter than its object listing
    (`fraudstream.kafka.READ_FETCH_WAIT_MS`)."""
    return READ_FETCH_WAIT_MS if durable else MEMORY_READ_FETCH_WAIT_MS


#: Refreshes of the live view per second.
REFRESH_PER_SECOND = 2
#: Seconds between lines when the output is not a terminal (CI logs, pipes).
PLAIN_EVERY = 2.0


@dataclass(frozen=True)
class Topics:
    """The pipeline's topics, as ksql/, streams/ and connectors/ name them."""

    source: str = SOURCE_TOPIC
    preprocessed: str = PREPROCESSED_TOPIC
    scores: str = SCORES_TOPIC
    #: Where bad records go, with the reason: the producer's, ksqlDB's processing log, the worker's, the S3 sinks'.
    dead_letters: tuple[str, ...] = (
        SOURCE_TOPIC + DLQ_SUFFIX,
        processing_log_topic(),
        PREPROCESSED_TOPIC + DLQ_SUFFIX,
        PREPROCESSED_TOPIC + "-s3-dlq",
        SCORES_TOPIC + "-s3-dlq",
    )

    @property
    def counted(self) -> tuple[str, ...]:
        return (self.source, self.preprocessed, self.scores, *self.dead_letters)


@dataclass
class PipelineStats:
    """What the view shows, from topic sizes over time and the scores read since it started.

    Times are passed in (monotonic seconds for sizes, epoch milliseconds from records), so that the
    numbers follow from the data alone.
    """

    topics: Topics = field(default_factory=Topics)
    started: float = 0.0
    #: Rates and latency quantiles cover this many seconds back.
    window: float = 10.0
    #: At most this many latencies are kept (the window's, at up to 10k scores/s).
    latency_limit: int = 100_000
    #: Source timestamps kept while their scores are awaited (bounded: a score may never come).
    pending_limit: int = 200_000
    #: What the producer in the background is doing, for the view ("replaying 10,000", "200/s").
    producing: str = ""
    sent: int = 0
    scores: int = 0
    flagged: int = 0
    unreadable: int = 0
    model: tuple[str, int] | None = None
    first_score_after: float | None = None
    samples: deque[tuple[float, dict[str, int]]] = field(default_factory=deque)
    #: Each topic's size in the first sample (a topic missing from it counts from 0): counts start there.
    baseline: dict[str, int] = field(default_factory=dict)
    latencies_ms: deque[tuple[float, float]] = field(default_factory=deque)
    pending: OrderedDict[str, int] = field(default_factory=OrderedDict)

    def observe_sizes(self, now: float, sizes: Mapping[str, int]) -> None:
        if not self.samples:
            self.baseline = dict(sizes)
        self.samples.append((now, dict(sizes)))
        while len(self.samples) > 2 and now - self.samples[1][0] >= self.window:
            self.samples.popleft()

    def observe_payment(self, payment_id: str, produced_ms: int) -> None:
        self.pending[payment_id] = produced_ms
        if len(self.pending) > self.pending_limit:
            self.pending.popitem(last=False)

    def observe_score(
        self, now: float, payment_id: str | None, is_fraud: bool, model: tuple[str, int], seen_ms: float
    ) -> None:
        """A score read at `now` (monotonic) and `seen_ms` (epoch milliseconds, the latency's end)."""
        self.scores += 1
        self.flagged += bool(is_fraud)
        self.model = model
        if self.first_score_after is None:
            self.first_score_after = now - self.started
        produced_ms = self.pending.pop(payment_id, None) if payment_id is not None else None
        if produced_ms is not None:
            self.latencies_ms.append((now, max(0.0, float(seen_ms - produced_ms))))
            if len(self.latencies_ms) > self.latency_limit:
                self.latencies_ms.popleft()

    def size(self, topic: str) -> int:
        """Records added to `topic` since the view started."""
        return self.samples[-1][1].get(topic, 0) - self.baseline.get(topic, 0) if self.samples else 0

    def rate(self, topic: str) -> float:
        """Records per second into `topic` over the rate window (0 until two samples exist)."""
        if len(self.samples) < 2:
            return 0.0
        (t0, first), (t1, last) = self.samples[0], self.samples[-1]
        return (last.get(topic, 0) - first.get(topic, 0)) / (t1 - t0) if t1 > t0 else 0.0

    @property
    def fraud_rate(self) -> float | None:
        return self.flagged / self.scores if self.scores else None

    def latency_ms(self, now: float) -> tuple[float, float] | None:
        """p50 and p99 of the event-to-score latency of the scores read in the last `window` seconds, in milliseconds."""
        while self.latencies_ms and now - self.latencies_ms[0][0] > self.window:
            self.latencies_ms.popleft()
        if not self.latencies_ms:
            return None
        p50, p99 = np.percentile(np.fromiter((ms for _, ms in self.latencies_ms), float), [50, 99])
        return float(p50), float(p99)

    @property
    def dead_letters(self) -> dict[str, int]:
        return {topic: self.size(topic) for topic in self.topics.dead_letters if self.size(topic)}


def _latency_text(stats: PipelineStats, now: float) -> str:
    latency = stats.latency_ms(now)
    return "-" if latency is None else f"p50 {_ms(latency[0])}, p99 {_ms(latency[1])}"


def _ms(value: float) -> str:
    return f"{value:,.0f} ms" if value < 10_000 else f"{value / 1000:,.1f} s"


def _model_text(stats: PipelineStats) -> str:
    return "-" if stats.model is None else f"{stats.model[0]} version {stats.model[1]}"


def _fraud_text(stats: PipelineStats) -> str:
    rate = stats.fraud_rate
    return "-" if rate is None else f"{rate:.2%} ({stats.flagged:,} of {stats.scores:,} scores flagged)"


def render(stats: PipelineStats, now: float) -> Table:
    """The live view: one row per measure."""
    topics = stats.topics
    table = Table(
        title=f"fraudstream demo, {now - stats.started:,.0f} s (Ctrl-C to stop); counts since the start",
        show_header=True,
        title_justify="left",
    )
    table.add_column("")
    table.add_column("records", justify="right")
    table.add_column("per second", justify="right")
    table.add_column("")
    for label, topic in (
        ("events in", topics.source),
        ("preprocessed", topics.preprocessed),
        ("scores out", topics.scores),
    ):
        table.add_row(label, f"{stats.size(topic):,}", f"{stats.rate(topic):,.0f}", topic)
    dead = stats.dead_letters
    table.add_row(
        "dead letters", f"{sum(dead.values()):,}", "", ", ".join(f"{t} {n:,}" for t, n in dead.items()) or "none"
    )
    table.add_section()
    table.add_row("fraud rate", _fraud_text(stats), "", "is_fraud share of the scores read")
    table.add_row(
        "latency", _latency_text(stats, now), "", f"payment sent -> score readable, the last {stats.window:.0f} s"
    )
    table.add_row("model", _model_text(stats), "", "as the newest score names it")
    first = "-" if stats.first_score_after is None else f"{stats.first_score_after:,.1f} s after start"
    table.add_row("first score", first, "", "")
    table.add_row("producing", stats.producing or "-", "", f"{stats.sent:,} payments sent")
    if stats.unreadable:
        table.add_row("unreadable", f"{stats.unreadable:,}", "", f"records of {topics.scores} that are not scores")
    return table


def plain_line(stats: PipelineStats, now: float) -> str:
    """The view as one line, for logs."""
    topics = stats.topics
    return (
        f"[{now - stats.started:,.0f} s] in {stats.size(topics.source):,} ({stats.rate(topics.source):,.0f}/s), "
        f"preprocessed {stats.size(topics.preprocessed):,}, scored {stats.size(topics.scores):,} "
        f"({stats.rate(topics.scores):,.0f}/s), fraud rate {_fraud_text(stats)}, latency {_latency_text(stats, now)}, "
        f"model {_model_text(stats)}, dead letters {sum(stats.dead_letters.values()):,}"
    )


def topic_size(bootstrap_servers: str, topic: str) -> int:
    """Records in `topic` (the sum of its partitions' true ends); 0 for a topic that does not exist yet."""
    try:
        return sum(end_offsets(bootstrap_servers, topic).values())
    except LookupError:
        return 0


class TopicReader:
    """Feeds `stats` from Kafka in two threads: one samples topic sizes, one reads payments and scores as they come.

    Sizes are sampled apart from the reading, because finding a partition's true end takes a fetch
    (~0.1 s a topic here); the dead-letter topics, which rarely move, are sampled less often. Reading starts
    at the topics' true ends, so it sees what is produced from now on; a topic that does not exist yet is
    read from its start once it appears.
    """

    def __init__(
        self,
        addresses: Addresses,
        stats: PipelineStats,
        lock: threading.Lock,
        size_every: float = 1.0,
        fetch_wait_ms: int = MEMORY_READ_FETCH_WAIT_MS,
        dead_letters_every: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.addresses = addresses
        self.stats = stats
        self.lock = lock
        self.size_every = size_every
        self.dead_letters_every = dead_letters_every
        self.clock = clock
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._sampled = threading.Event()  # the first sizes, where the counts start
        self.fetch_wait_ms = fetch_wait_ms
        self._threads = [
            threading.Thread(target=self._read, name="fraudstream-live-reader", daemon=True),
            threading.Thread(target=self._sample, name="fraudstream-live-sizes", daemon=True),
        ]
        self._assigned: set[str] = set()
        self._deserialize = AvroDeserializer(SchemaRegistryClient(schema_registry_conf(addresses.schema_registry_url)))

    def __enter__(self) -> TopicReader:
        """Start; returns once the reader has found the topics' ends, so that nothing produced after is missed."""
        for thread in self._threads:
            thread.start()
        self._ready.wait(timeout=60)
        self._sampled.wait(timeout=60)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    def _sample(self) -> None:
        topics = self.stats.topics
        sizes: dict[str, int] = {}
        next_dead_letters = 0.0
        while not self._stop.is_set():
            began = self.clock()
            # Downstream first: sampled a moment before their upstream, they never look ahead of it.
            names = [topics.scores, topics.preprocessed, topics.source]
            if began >= next_dead_letters:
                names += topics.dead_letters
                next_dead_letters = began + self.dead_letters_every
            try:
                sizes.update({topic: topic_size(self.addresses.bootstrap_servers, topic) for topic in names})
            except (KafkaException, TimeoutError) as error:  # a busy broker: the next round tries again
                logger.debug("live view: topic sizes not sampled: %s", error)
            else:
                with self.lock:
                    self.stats.observe_sizes(self.clock(), sizes)
                self._sampled.set()
            self._stop.wait(max(0.0, began + self.size_every - self.clock()))

    def _read(self) -> None:
        bootstrap = self.addresses.bootstrap_servers
        group = f"fraudstream-live-{uuid.uuid4().hex[:8]}"  # assign() only: the group never joins or commits
        consumer = Consumer(
            consumer_config(bootstrap, group, enable_auto_commit=False, fetch_wait_max_ms=self.fetch_wait_ms)
        )
        wanted = (self.stats.topics.source, self.stats.topics.scores)
        next_check = self.clock()
        try:
            while not self._stop.is_set():
                if len(self._assigned) < len(wanted) and self.clock() >= next_check:
                    try:  # topics there at the start are read from their ends, those created later from their start
                        self._assign(consumer, wanted, start_at_end=not self._ready.is_set())
                        self._ready.set()
                    except (KafkaException, TimeoutError) as error:  # a busy broker: try again in a moment
                        logger.debug("live view: topics not assigned yet: %s", error)
                    next_check = self.clock() + self.size_every
                for message in consumer.consume(num_messages=1000, timeout=0.2):
                    self._observe(message)
        except Exception:  # the view must not take the demo down; say what happened and stop feeding it
            logger.exception("the live view stopped reading Kafka")
        finally:
            self._ready.set()
            consumer.close()

    def _assign(self, consumer: Consumer, names: Iterable[str], start_at_end: bool) -> None:
        """Add the partitions of `names` not read yet: from their true ends, or from the start of a topic that is new."""
        partitions: dict[str, list[TopicPartition]] = {}
        for topic in names:
            if topic in self._assigned:
                continue
            try:
                ends = end_offsets(self.addresses.bootstrap_servers, topic)
            except LookupError:
                continue  # not created yet
            partitions[topic] = [TopicPartition(topic, p, end if start_at_end else 0) for p, end in ends.items()]
        if partitions:
            consumer.incremental_assign([tp for tps in partitions.values() for tp in tps])
            self._assigned.update(partitions)

    def _observe(self, message: Message) -> None:
        if message.error() is not None:
            logger.debug("live view: %s", message.error())
            return
        key = (message.key() or b"").decode(errors="replace")
        if message.topic() == self.stats.topics.source:
            with self.lock:
                self.stats.observe_payment(key, message.timestamp()[1])
            return
        try:
            score = self._deserialize(message.value(), SerializationContext(message.topic(), MessageField.VALUE))
            model = (str(score["model_name"]), int(score["model_version"]))
            seen_ms = time.time() * 1000
        except (KafkaException, KeyError, TypeError, ValueError) as error:
            logger.debug(
                "live view: unreadable score at %s[%d]@%d: %s",
                message.topic(),
                message.partition(),
                message.offset(),
                error,
            )
            with self.lock:
                self.stats.unreadable += 1
            return
        with self.lock:
            self.stats.observe_score(
                self.clock(), score.get("payment_id") or key, bool(score["is_fraud"]), model, seen_ms
            )


def watch(
    stats: PipelineStats,
    lock: threading.Lock,
    console: Console,
    until: Callable[[], bool],
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Draw `stats` (a live table on a terminal, a line every PLAIN_EVERY seconds otherwise) until `until()` or Ctrl-C.

    Ctrl-C ends the view and returns normally: the caller goes on to its summary.
    """

    def table() -> Table:
        with lock:
            return render(stats, clock())

    try:
        if console.is_terminal:
            with Live(get_renderable=table, console=console, refresh_per_second=REFRESH_PER_SECOND):
                while not until():
                    time.sleep(1 / REFRESH_PER_SECOND)
        else:
            next_line = clock()
            while not until():
                if clock() >= next_line:
                    with lock:
                        console.print(plain_line(stats, clock()), highlight=False, soft_wrap=True)
                    next_line += PLAIN_EVERY
                time.sleep(0.1)
    except KeyboardInterrupt:
        pass
    if not console.is_terminal:
        with lock:
            console.print(plain_line(stats, clock()), highlight=False, soft_wrap=True)
