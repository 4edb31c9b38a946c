"""The engine's runtime on real Kafka topics: the same interface as `InMemoryRuntime`.

Each persistent query runs in a thread (`QueryRunner`) that consumes a batch, evaluates it (the
vectorized path where the query has one), produces the output and waits for the broker's
acknowledgements. Kafka transactions are never used: the embedded broker (Tansu) loses transactional
records. Exactly-once output comes from determinism and a progress log instead:

- Before a batch's output is produced, the query writes a `Progress` record to its own internal topic
  (`_confluent-ksql-<service id>query_<ID>-progress`, one partition): the source offsets the batch spans
  and, per sink partition, the offset after the last output record acknowledged so far.
- A query's output is a pure function of its input records (same keys, same partitioner), so after a
  crash the batch in flight is evaluated again and only the records that are not already in the sink,
  after the recorded sink offsets, are produced. Records already there are matched by content (key,
  value, timestamp), counting repeats, so identical records from different inputs are neither merged
  nor lost. User topics stay exactly as ksqlDB writes them (no extra headers).

The query's consumer group (`_confluent-ksql-default_query_<ID>`, as ksqlDB names it) still gets the
offsets committed after each batch, so lag tools work; the progress log is what a restart trusts.

A stateless query keeps three batches going at once (`QueryRunner._pipelined_loop`): one consumed, one
evaluated on a worker thread, one being acknowledged; its progress records span every batch not yet
acknowledged. A stateful query goes one batch at a time, its state committed with each.
"""

from __future__ import annotations

import json
import logging
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from fraudstream.kafka import (
    READ_FETCH_WAIT_MS,
    admin_client,
    client_config,
    end_offsets,
    ensure_topic,
    fetch_wait_ms,
    producer_config,
)

from .durable_state import Changelog, DurableStateStores, QueryState, StateReader
from .processing_log import ProcessingLog
from .records import Columns, Output, Record
from .runtime import Query, evaluate
from .stream_time import TableGate, TimeOrder, in_time_order, key_partition
from .topic_reader import read_window

logger = logging.getLogger(__name__)

DEFAULT_SERVICE_ID = "default_"
#: Java's partitioner, so that keyed output lands where a real ksqlDB would put it, deterministically.
PARTITIONER = "murmur2_random"
#: Records per batch: large batches make the vectorized path fast; a crash re-evaluates at most one.
BATCH_SIZE = 10_000
#: Input offsets are committed at most this often: lag tools read them, a restart trusts the progress log, and
#: on the durable broker each commit is an object written per partition.
COMMIT_INTERVAL = 1.0
#: An idle query records that its last batch is settled once it has been idle this long (a restart then has
#: nothing to re-check). Written after every batch, under a trickle it doubled the broker round trips a batch.
SETTLE_AFTER_IDLE = 1.0
#: Stream records a join holds back per partition, waiting for its table, before it stops fetching more.
MAX_HELD = 50_000
#: How long a batch's records may take to be acknowledged before the batch counts as failed (and is
#: recovered like a crash). Well below librdkafka's message.timeout.ms, so an acknowledged batch has no
#: timed-out record in it.
ACK_TIMEOUT = 60.0


def query_group(query_id: str, service_id: str = DEFAULT_SERVICE_ID) -> str:
    """ksqlDB's consumer group for a persistent query: `_confluent-ksql-default_query_<ID>`."""
    return f"_confluent-ksql-{service_id}query_{query_id}"


def progress_topic(query_id: str, service_id: str = DEFAULT_SERVICE_ID) -> str:
    """A persistent query's progress log, named like ksqlDB's other per-query internal topics."""
    return f"{query_group(query_id, service_id)}-progress"


def processing_log_topic(service_id: str = DEFAULT_SERVICE_ID) -> str:
    return f"{service_id}ksql_processing_log"


def to_record(m: Message) -> Record:
    ts_type, ts = m.timestamp()
    return Record(
        m.topic(),
        m.key(),
        m.value(),
        ts if ts_type else int(time.time() * 1000),
        m.partition(),
        m.offset(),
        list(m.headers() or []),
    )


def to_columns(topic: str, messages: list[Message], with_headers: bool) -> Columns:
    """A batch of consumed messages, column by column (no per-record objects)."""
    now = int(time.time() * 1000)
    return Columns(
        topic,
        list(map(Message.key, messages)),
        list(map(Message.value, messages)),
        [ts if ts_type else now for ts_type, ts in map(Message.timestamp, messages)],
        list(map(Message.partition, messages)),
        list(map(Message.offset, messages)),
        [list(m.headers() or []) for m in messages] if with_headers else None,
    )


def start_offsets(
    bootstrap: str, consumer: Consumer, topic: str, earliest: bool, timeout: float = 10.0
) -> list[TopicPartition]:
    """Where to read `topic` from: the group's committed offsets, else the start or the true end.

    "Latest" comes from `end_offsets`: the embedded broker answers ListOffsets(latest) with the last batch's
    base offset + 1, short of the true end whenever that batch holds several records.
    """
    ends = end_offsets(bootstrap, topic, timeout)
    wanted = [TopicPartition(topic, p) for p in sorted(ends)]
    committed = consumer.committed(wanted, timeout=timeout) if consumer is not None else wanted
    out = []
    for tp in committed:
        offset = tp.offset
        if consumer is None or offset < 0:
            offset = 0 if earliest else ends[tp.partition]
        out.append(TopicPartition(topic, tp.partition, offset))
    return out


@dataclass(frozen=True)
class Progress:
    """Where a persistent query stands, as written to its progress topic.

    Every output of source offsets below `start` is in the sink, below `sink` (per sink partition). The
    source offsets in [start, end) are the batch in flight: any of its outputs already produced are at or
    after `sink`. Nothing is in flight when start == end.
    """

    start: dict[int, int]
    end: dict[int, int]
    sink: dict[int, int]

    @property
    def in_flight(self) -> dict[int, tuple[int, int]]:
        """Source partition -> [first, last + 1) offsets of the batch in flight."""
        return {p: (s, self.end[p]) for p, s in self.start.items() if self.end.get(p, s) > s}

    def settled(self, sink: dict[int, int]) -> Progress:
        """The batch in flight is fully in the sink, which now ends at `sink`."""
        return Progress(dict(self.end), dict(self.end), dict(sink))

    def encode(self) -> bytes:
        def enc(d: dict[int, int]) -> dict[str, int]:
            return {str(k): v for k, v in sorted(d.items())}

        return json.dumps(
            {"version": 1, "start": enc(self.start), "end": enc(self.end), "sink": enc(self.sink)},
            separators=(",", ":"),
        ).encode()

    @classmethod
    def decode(cls, data: bytes) -> Progress:
        raw = json.loads(data)
        if raw.get("version") != 1:
            raise ValueError(f"unknown progress record version {raw.get('version')!r}")

        def dec(d: dict[str, int]) -> dict[Any, int]:
            return {int(k) if k.isdigit() else k: int(v) for k, v in d.items()}  # "topic:partition": Sources

        return cls(dec(raw["start"]), dec(raw["end"]), dec(raw["sink"]))


class Sources:
    """The topics a query reads, and how its progress names their partitions: by partition number when it
    reads one topic, by "topic:partition" when it reads several (joins)."""

    def __init__(self, topics: list[str]) -> None:
        self.topics = topics
        self.single = len(topics) == 1

    def key(self, topic: str, partition: int) -> Any:
        return partition if self.single else f"{topic}:{partition}"

    def tp(self, key: Any) -> tuple[str, int]:
        if self.single:
            return self.topics[0], key
        topic, _, partition = key.rpartition(":")
        return topic, int(partition)


def read_progress(bootstrap: str, topic: str, timeout: float = 10.0) -> Progress | None:
    """The last record of a progress topic (one partition), or None when it is empty."""
    end = end_offsets(bootstrap, topic, timeout).get(0, 0)
    if end == 0:
        return None
    consumer = Consumer(
        client_config(
            bootstrap,
            **{"group.id": f"{topic}-reader", "enable.auto.commit": False, "fetch.wait.max.ms": READ_FETCH_WAIT_MS},
        )
    )
    try:
        consumer.assign([TopicPartition(topic, 0, end - 1)])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = consumer.poll(0.5)
            if m is not None and m.error() is None and m.value() is not None:
                return Progress.decode(m.value())
        raise TimeoutError(f"cannot read the last record of {topic}")
    finally:
        consumer.close()


class KafkaProcessingLog(ProcessingLog):
    """ksqlDB's processing log, written as JSON to `default_ksql_processing_log` (flushed with each batch)."""

    def __init__(self, producer: Producer, topic: str = processing_log_topic()) -> None:
        super().__init__()
        self.producer = producer
        self.topic = topic
        self._lock = threading.Lock()
        #: Entries written per query since the server started (the /metrics processing-error counters).
        self.errors_by_query: Counter[str] = Counter()

    def _ship(self) -> None:
        with self._lock:
            entries, self.entries = self.entries, []
            self.errors_by_query.update(str(entry.get("query")) for entry in entries)
        for entry in entries:
            self.producer.produce(self.topic, json.dumps(entry).encode(), key=str(entry.get("query")).encode())
        self.producer.poll(0)

    def deserialization_error(self, *args: Any, **kwargs: Any) -> None:
        super().deserialization_error(*args, **kwargs)
        self._ship()

    def expression_error(self, *args: Any, **kwargs: Any) -> None:
        super().expression_error(*args, **kwargs)
        self._ship()

    def serialization_error(self, *args: Any, **kwargs: Any) -> None:
        super().serialization_error(*args, **kwargs)
        self._ship()


class _Stopped(Exception):
    """The runner was asked to stop in the middle of a batch."""


class QueryRunner(threading.Thread):
    """One persistent query's loop: consume a batch, record it as in flight, evaluate, produce, await the
    acknowledgements; after a crash or a failed batch, recover the batch in flight without duplicates."""

    def __init__(self, runtime: KafkaRuntime, query: Query, earliest: bool) -> None:
        super().__init__(name=f"query-{query.id}", daemon=True)
        self.runtime = runtime
        self.query = query
        self.earliest = earliest
        self.stopping = threading.Event()
        self.error: str | None = None
        self.committed_batches = 0
        #: Records handed to the producer for the sink (ksqlDB's messages-produced; the /metrics counter).
        self.produced = 0
        self.progress_topic = progress_topic(query.id, runtime.service_id)
        self.progress: Progress
        self.consumer: Consumer
        self.producer: Producer
        self._acked: dict[int, int] = {}  # sink partition -> offset of the last acknowledged record
        self._uncommitted: list[TopicPartition] = []  # input offsets settled, not yet committed
        self._committed_at = 0.0
        self._busy_at = 0.0  # when the last batch was settled
        self._failures: list[KafkaError] = []
        self._progress_failures: list[KafkaError] = []
        self._recorded: Progress | None = None  # the last progress record written
        self.state = QueryState(query, runtime.state_stores(query.id))
        self.sources = Sources(list(getattr(query, "source_topics", None) or [query.source.topic]))
        self.gate = self._table_gate()
        self.merge: TimeOrder | None = None  # a stateful query's partitions, merged in time (set when positioned)
        self._paused: set[tuple[str, int]] = set()  # partitions not fetched while many of their records wait
        #: Nothing read is waiting to be processed and the last look found nothing new: a join gated on this
        #: query's sink may stop waiting for it (KafkaRuntime.behind).
        self.caught_up = False
        if hasattr(query, "coalesce"):  # ksqlDB's record cache, on by default: a key's last change per commit
            query.coalesce = getattr(query, "record_cache", True)

    # ---------------------------------------------------------------- set-up
    def _table_gate(self) -> TableGate | None:
        """A stream-table join's gate (stream_time): each stream record waits for the table to be read up
        to its time."""
        flow = getattr(self.query, "flow", None)
        lookup = flow.table_lookup() if flow is not None else None
        if lookup is None:
            return None
        stream_topic, table_topic = lookup
        partitions = self.runtime.partition_count(table_topic)

        def locate(m: Message) -> tuple[int, int | None] | None:
            located = flow.locate(to_record(m))
            if located is None:
                return None
            ts, key = located
            return ts, key_partition(key, partitions) if key is not None else None

        def more_coming(partition: int) -> bool:
            return self._more_coming(table_topic, partition)

        idle = getattr(self.query, "max_task_idle_ms", 0)
        logger.info(
            "query %s: %s records wait for %s to be read up to their time (max.task.idle.ms %d)",
            self.query.id,
            stream_topic,
            table_topic,
            idle,
        )
        return TableGate(stream_topic, table_topic, locate, more_coming, idle)

    def _read_to_end(self) -> bool:
        """Every source partition is read up to the end the broker last reported (unknown before the first
        fetch: not yet)."""
        return all(
            self._unread(topic, partition) == 0
            for topic in self.sources.topics
            for partition in range(self.runtime.partition_count(topic))
        )

    def _unread(self, topic: str, partition: int) -> int | None:
        """Records of a partition on the broker beyond those the consumer returned (None before its first
        fetch). With nothing returned since it was assigned, the consumer stands where processing ends."""
        _, high = self.consumer.get_watermark_offsets(TopicPartition(topic, partition), cached=True)
        if high < 0:
            return None
        position = self.consumer.position([TopicPartition(topic, partition)])[0].offset
        if position < 0:
            position = self.progress.end.get(self.sources.key(topic, partition), 0)
        return max(high - position, 0)

    def _more_coming(self, topic: str, partition: int) -> bool:
        """A partition read to its end has more on its way: on the broker beyond what the consumer returned,
        or still to be written by a query of this engine that is behind."""
        return bool(self._unread(topic, partition)) or self.runtime.behind(topic)

    def position(self) -> None:
        """Find where to start, before the statement returns: rows produced after a CREATE ... AS SELECT with
        "latest" are never missed, and "latest" means the same thing after a crash."""
        rt, q = self.runtime, self.query
        self.consumer = Consumer(
            client_config(
                rt.bootstrap,
                **{
                    "group.id": query_group(q.id, rt.service_id),
                    "enable.auto.commit": False,
                    "enable.auto.offset.store": False,
                    "enable.partition.eof": True,
                    "fetch.wait.max.ms": fetch_wait_ms(50),
                },
            )
        )
        self.producer = self._new_producer()
        rt.create_topic(self.progress_topic, 1, config={"cleanup.policy": "compact"})
        found = read_progress(rt.bootstrap, self.progress_topic)
        if found is None:  # a new query (or one started before progress logs): the group's offsets, else the reset
            positions = [
                tp
                for topic in self.sources.topics
                for tp in start_offsets(rt.bootstrap, self.consumer, topic, self.earliest)
            ]
            start = {self.sources.key(tp.topic, tp.partition): tp.offset for tp in positions}
            found = Progress(start, dict(start), end_offsets(rt.bootstrap, q.sink.topic))
            self._write_progress(found)
            self._await_acks()
            self.consumer.commit(offsets=positions, asynchronous=False)
        self.progress = self._recorded = found

    def _new_producer(self) -> Producer:
        config = producer_config(
            self.runtime.bootstrap, partitioner=PARTITIONER, linger_ms=5, batch_num_messages=10_000
        )
        acked, failures = self._acked, self._failures

        def delivered(err: KafkaError | None, msg: Message) -> None:
            """Every sink record's acknowledgement (called per record: kept lean; progress records have their own)."""
            if err is None:
                acked[msg.partition()] = msg.offset()
            else:
                failures.append(err)

        return Producer({**config, "on_delivery": delivered})

    # ---------------------------------------------------------------- the loop
    def run(self) -> None:
        try:
            while not self.stopping.is_set():
                try:
                    self._recover()
                    self._loop()
                except _Stopped:
                    break
                except Exception as e:  # noqa: BLE001 - e.g. registry or broker down: recover and go on, never skip
                    if self.stopping.is_set():
                        break
                    self.error = str(e)
                    logger.warning("query %s: batch failed, recovering: %s", self.query.id, e, exc_info=True)
                    if not self.state.rollback():
                        self.query.state = "ERROR"
                        logger.error("query %s: stopped; its state is safe and a restart resumes it", self.query.id)
                        break
                    self._discard_producer()
                    self.stopping.wait(1.0)
        finally:
            try:
                self._write_settled()
                self._commit(force=True)
            except Exception as e:  # noqa: BLE001 - a stale progress record only costs a re-check on restart
                logger.warning("query %s: cannot record its final progress: %s", self.query.id, e)
            self.consumer.close()
            self.producer.flush(10)

    def _loop(self) -> None:
        if not self.state.active and self.state.materialization is None:
            self._pipelined_loop()
            return
        while not self.stopping.is_set():  # a stateful query: one batch at a time, its state committed with it
            read = self._next_messages()
            messages = self._in_time(read) if self.gate is not None or self.merge is not None else read
            self.caught_up = not read and not messages and not self._waiting() and self._read_to_end()
            if not messages:
                self._idle()
                continue
            end = self._ends(messages)
            self.progress = Progress(dict(self.progress.start), end, dict(self.progress.sink))
            self._write_progress(self.progress)  # on its way while the batch is evaluated
            out = self._evaluate(messages)
            self._await_acks()
            self._produce(out)
            self.state.record(out.keys, out.values, out.timestamps)
            self.state.commit(self._positions(end))  # before the input offsets: state and positions agree
            self._settle(end, self.progress.settled(self._sink_ends()))

    def _pipelined_loop(self) -> None:
        """A stateless query's loop, three batches at a time: while one batch is evaluated on a worker thread
        (Arrow and numpy let go of the GIL), the batch before is produced and the next one consumed, and the
        broker acknowledges records in the meantime. Each progress record spans every batch not yet
        acknowledged; batches are settled in order."""
        executor = ThreadPoolExecutor(1, thread_name_prefix=f"evaluate-{self.query.id}")
        evaluating: tuple[Future[Output], dict[Any, int]] | None = None  # a batch on the worker, and its end
        produced: dict[Any, int] | None = None  # the end of the batch produced, not yet acknowledged
        try:
            while not self.stopping.is_set():
                messages = self._next_messages(wait=evaluating is None and produced is None)
                self.caught_up = not messages and evaluating is None and produced is None and self._read_to_end()
                following = None
                if messages:
                    end = self._ends(messages)
                    self.progress = Progress(dict(self.progress.start), end, dict(self.progress.sink))
                    self._write_progress(self.progress)  # acknowledged before this batch's records are produced
                    following = (executor.submit(self._evaluate, messages), end)
                if evaluating is not None or produced is not None:
                    out = evaluating[0].result() if evaluating is not None else None
                    self._await_acks()
                    if produced is not None:
                        self._settle(produced, Progress(produced, self.progress.end, self._sink_ends()))
                    produced = None
                    if evaluating is not None:
                        self._produce(out, wait=False)
                        produced = evaluating[1]
                evaluating = following
                if evaluating is None and produced is None:
                    self._idle()
            if produced is not None:  # stopping: settle what is produced; a batch still evaluating waits for a restart
                self._await_acks()
                self._settle(produced, Progress(produced, self.progress.end, self._sink_ends()))
        finally:
            if evaluating is not None:
                evaluating[0].exception()  # let it finish (its error, if any, is the caller's)
            executor.shutdown(wait=True)

    def _settle(self, end: dict[Any, int], progress: Progress) -> None:
        """A batch's records are all acknowledged: `progress` is where the query stands now."""
        self.runtime.plog_producer.flush()
        self.progress = progress
        self._uncommitted = [TopicPartition(*self.sources.tp(k), o) for k, o in end.items()]
        self._commit()
        self.committed_batches += 1
        self._busy_at = time.monotonic()
        self.error = None

    def _commit(self, force: bool = False) -> None:
        """Commit the settled input offsets, at most every COMMIT_INTERVAL unless `force`."""
        if self._uncommitted and (force or time.monotonic() - self._committed_at >= COMMIT_INTERVAL):
            self.consumer.commit(offsets=self._uncommitted, asynchronous=True)
            self._uncommitted, self._committed_at = [], time.monotonic()

    def _idle(self) -> None:
        """Nothing to do: commit what waits, and once idle a while, record that the last batch is settled."""
        self._commit()
        if time.monotonic() - self._busy_at >= SETTLE_AFTER_IDLE:
            self._write_settled()

    def _ends(self, messages: list[Message]) -> dict[Any, int]:
        """Where the source partitions stand after `messages` (those of a partition arrive in order)."""
        end = dict(self.progress.end)
        if self.sources.single:
            last = dict(zip(map(Message.partition, messages), map(Message.offset, messages)))
            end.update((p, o + 1) for p, o in last.items())
        else:
            key = self.sources.key
            for m in messages:
                end[key(m.topic(), m.partition())] = m.offset() + 1
        return end

    def _next_messages(self, wait: bool = True) -> list[Message]:
        """What is buffered (up to a batch), else (if `wait`) wait a little for the next record."""
        size = self.runtime.batch_size
        messages = self.consumer.consume(size, 0)
        if not messages:
            first = self.consumer.poll(0.2) if wait else None
            if first is None:
                return []
            messages = [first, *self.consumer.consume(size - 1, 0)]
        good = [m for m in messages if m.error() is None]
        if len(good) < len(messages):
            for m in messages:
                if m.error() is not None and m.error().code() != KafkaError._PARTITION_EOF:
                    logger.warning("query %s: consume error: %s", self.query.id, m.error())
            if self.gate is not None or self.merge is not None:  # they need to know where a partition ends
                return [m for m in messages if m.error() is None or m.error().code() == KafkaError._PARTITION_EOF]
        return good

    def _waiting(self) -> bool:
        """Records read but held back (stream_time)."""
        holder = self.gate if self.gate is not None else self.merge
        return holder is not None and holder.holding > 0

    def _in_time(self, messages: list[Message]) -> list[Message]:
        """What may be processed now, in event time (stream_time): a stateful query's partitions merged in
        time, a join's stream records once its table is read up to their time. A partition with many
        records waiting stops being fetched until they go (Kafka Streams' buffered.records.per.partition)."""
        holder: TableGate | TimeOrder = self.gate if self.gate is not None else self.merge  # type: ignore[assignment]
        released = holder.release(messages)
        for topic in self.sources.topics:
            for partition in range(self.runtime.partition_count(topic)):
                backlog, tp = holder.backlog(topic, partition), (topic, partition)
                if backlog >= MAX_HELD and tp not in self._paused:
                    self.consumer.pause([TopicPartition(topic, partition)])
                    self._paused.add(tp)
                elif backlog < MAX_HELD // 2 and tp in self._paused:
                    self.consumer.resume([TopicPartition(topic, partition)])
                    self._paused.discard(tp)
        return released

    def _evaluate(self, messages: list[Message]) -> Output:
        """A batch through the query: column-wise (the vectorized path where the query has one) for one
        source topic, record by record in timestamp order for several."""
        q = self.query
        if self.sources.single:
            return evaluate(q, to_columns(self.sources.topics[0], messages, bool(q.source.schema.headers)))
        ordered = self.gate.in_order(messages) if self.gate is not None else in_time_order(messages)
        return Output.from_records(q.process([to_record(m) for m in ordered]))

    def _positions(self, end: dict[Any, int]) -> dict[str, dict[int, int]]:
        """Input positions as the state records them (per source topic)."""
        out: dict[str, dict[int, int]] = {}
        for k, offset in end.items():
            topic, partition = self.sources.tp(k)
            out.setdefault(topic, {})[partition] = offset
        return out

    def _sink_ends(self) -> dict[int, int]:
        ends = dict(self.progress.sink)
        for p, o in self._acked.items():
            if o + 1 > ends.get(p, 0):
                ends[p] = o + 1
        return ends

    # ---------------------------------------------------------------- producing
    def _produce(self, out: Output, skip: set[int] | None = None, wait: bool = True) -> None:
        """Produce `out` (but the positions in `skip`) and, if `wait`, await every acknowledgement."""
        topic = self.query.sink.topic
        partitions = self.runtime.partition_count(topic)
        producer = self.producer
        produce = producer.produce
        self._failures.clear()
        for i, (key, value, ts, part) in enumerate(zip(out.keys, out.values, out.timestamps, out.partitions)):
            if skip and i in skip:
                continue
            while True:
                try:
                    if key is None:  # no key: stay deterministic by following the input partition
                        produce(topic, value, None, partition=part % partitions, timestamp=ts)
                    else:
                        produce(topic, value, key, timestamp=ts)
                    break
                except BufferError:
                    producer.poll(0.05)
                    if self.stopping.is_set():
                        raise _Stopped() from None
        self.produced += len(out.keys) - len(skip or ())
        if wait:
            self._await_acks()

    def _await_acks(self) -> None:
        """Wait until every record produced so far (output and progress) is acknowledged; raise if any was not."""
        remaining = self.producer.flush(ACK_TIMEOUT)
        failure = (
            self._failures[0]
            if self._failures
            else self._progress_failures[0]
            if self._progress_failures
            else KafkaError(KafkaError._MSG_TIMED_OUT)
            if remaining
            else None
        )
        if failure is not None:
            raise KafkaException(failure)

    def _discard_producer(self) -> None:
        """After a failed batch: drop what is still queued, wait for what is in flight, start afresh."""
        try:
            self.producer.purge(in_queue=True, in_flight=False)
            self.producer.flush(ACK_TIMEOUT)
        except Exception as e:  # noqa: BLE001
            logger.warning("query %s: cannot drain the producer: %s", self.query.id, e)
        # Its failures are spent: the batch is done again. A progress write's failure kept would fail every
        # later batch (recovery produces before it writes progress), and the query would retry without end.
        self._failures.clear()
        self._progress_failures.clear()
        self.producer = self._new_producer()

    # ---------------------------------------------------------------- progress
    def _write_progress(self, progress: Progress) -> None:
        self._progress_failures.clear()
        self.producer.produce(
            self.progress_topic, progress.encode(), self.query.id.encode(), on_delivery=self._progress_delivered
        )
        self._recorded = progress

    def _progress_delivered(self, err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            self._progress_failures.append(err)

    def _write_settled(self) -> None:
        """When idle: record that the last batch is done, so that a restart has nothing to re-check. Never
        while a batch is in flight: its record must stay the last one."""
        if self.progress.in_flight or self._recorded == self.progress:
            return
        self._write_progress(self.progress)
        self._await_acks()

    # ---------------------------------------------------------------- recovery
    def _recover(self) -> None:
        """Finish the batch in flight (after a crash or a failed batch) and position the consumer after it."""
        q = self.query
        if self.gate is not None:  # the consumer reads again from the end of what is processed
            self.gate.reset()
        if self.state.active and self.gate is None and self.sources.single:
            topic = self.sources.topics[0]
            partitions = [(topic, p) for p in range(self.runtime.partition_count(topic))]
            self.merge = TimeOrder(partitions, self._more_coming)
        self._paused.clear()
        in_flight = self.progress.in_flight
        if in_flight and self.state.includes(self._positions(self.progress.end)):
            # the state was committed after the batch's output was acknowledged: nothing to redo
            self.progress = self.progress.settled(end_offsets(self.runtime.bootstrap, q.sink.topic))
            self._write_settled()
        elif in_flight:
            batch = self._read_source(in_flight)
            out = self._evaluate(batch)
            present = Counter(
                _identity(m.key(), m.value(), m.timestamp()[1], m.partition())
                for m in read_window(self.runtime.bootstrap, q.sink.topic, self.progress.sink)
            )
            partitions = self.runtime.partition_count(q.sink.topic)
            skip = set()
            for i, (key, value, ts, part) in enumerate(zip(out.keys, out.values, out.timestamps, out.partitions)):
                ident = _identity(key, value, ts, part % partitions)
                if present[ident] > 0:
                    present[ident] -= 1
                    skip.add(i)
            self._produce(out, skip)
            self.state.record(out.keys, out.values, out.timestamps)
            self.state.commit(self._positions(self.progress.end))
            self.progress = self.progress.settled(self._sink_ends())
            self._write_settled()
            logger.info(
                "query %s: recovered the batch in flight (%d source records): %d of its %d output records "
                "were already in %s",
                q.id,
                len(batch),
                len(skip),
                len(out),
                q.sink.topic,
            )
        self.consumer.assign(
            [
                TopicPartition(*self.sources.tp(k), o)
                for k, o in sorted(self.progress.end.items(), key=lambda kv: str(kv[0]))
            ]
        )

    def _read_source(self, ranges: dict[Any, tuple[int, int]], timeout: float = 60.0) -> list[Message]:
        """Exactly the source records in `ranges` (partition -> [first, last + 1)), in order per partition."""
        consumer = self.consumer
        consumer.assign([TopicPartition(*self.sources.tp(k), s) for k, (s, _) in ranges.items()])
        remaining = {k: e for k, (_, e) in ranges.items()}
        taken: list[Message] = []
        deadline = time.monotonic() + timeout
        while remaining:
            if self.stopping.is_set():
                raise _Stopped()
            if time.monotonic() > deadline:
                raise TimeoutError(f"cannot read the batch in flight from {self.sources.topics}: {remaining}")
            for m in consumer.consume(self.runtime.batch_size, 0.5):
                p = self.sources.key(m.topic(), m.partition())
                if p not in remaining:
                    continue
                if m.error() is not None:
                    if m.error().code() == KafkaError._PARTITION_EOF:
                        del remaining[p]  # the rest of the range is gone (retention): nothing more to redo
                    continue
                if m.offset() < remaining[p]:
                    taken.append(m)
                if m.offset() >= remaining[p] - 1:
                    del remaining[p]
        return taken


def _identity(key: bytes | None, value: bytes | None, timestamp: int, partition: int) -> tuple:
    """What makes two sink records the same one; a keyless record's partition is part of it."""
    return (partition if key is None else -1, key, value, timestamp)


class KafkaRuntime:
    """Topics, persistent queries and inserts on a Kafka cluster. A query reading several topics (a join)
    runs as one instance over every partition of all of them (no repartition topics needed).

    While `deferring` (the command topic is being replayed), queries are only noted and topic deletes
    are skipped: `finish_replay` starts the queries still alive at the end, from where they stopped.

    Queries' state lives in `state_dir` (an SQLite file per query, ksqlDB's `ksql.streams.state.dir`), backed
    by changelog topics: without a `state_dir` it is a temporary directory, restored from the changelogs
    on every start.
    """

    runs_joins = True

    def __init__(
        self,
        bootstrap: str,
        service_id: str = DEFAULT_SERVICE_ID,
        batch_size: int = BATCH_SIZE,
        state_dir: Path | None = None,
    ) -> None:
        self.bootstrap = bootstrap
        self._scratch = tempfile.TemporaryDirectory(prefix="ksqldb-state-") if state_dir is None else None
        self.state_dir = Path(self._scratch.name) if self._scratch is not None else Path(state_dir)
        self._stores: dict[str, DurableStateStores] = {}
        self.service_id = service_id
        self.batch_size = batch_size
        self.admin = admin_client(bootstrap)
        self.producer = Producer(producer_config(bootstrap, partitioner=PARTITIONER))
        self.plog_producer = Producer(producer_config(bootstrap, linger_ms=50))
        self.runners: dict[str, QueryRunner] = {}
        self.deferring = False
        self._pending: dict[str, tuple[Query, bool]] = {}
        self._partitions_cache: dict[str, int] = {}

    # ---------------------------------------------------------------- topics
    @property
    def partitions(self) -> dict[str, int]:
        meta = self.admin.list_topics(timeout=10)
        return {name: len(t.partitions) for name, t in meta.topics.items() if t.error is None}

    @property
    def topics(self) -> dict[str, int]:
        return self.partitions

    def partition_count(self, topic: str) -> int:
        if topic not in self._partitions_cache:
            count = self.partitions.get(topic)
            if count is None:
                raise KafkaException(KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART, f"no topic {topic}"))
            self._partitions_cache[topic] = count
        return self._partitions_cache[topic]

    def create_topic(self, name: str, partitions: int = 1, config: dict[str, str] | None = None) -> None:
        if name in self.partitions:
            return
        ensure_topic(self.bootstrap, name, partitions, config)
        deadline = time.monotonic() + 30
        while name not in self.partitions and time.monotonic() < deadline:
            time.sleep(0.1)

    def delete_topic(self, name: str) -> None:
        self._partitions_cache.pop(name, None)
        if self.deferring:
            return  # replayed history: the topic was deleted then, and may have been re-created since
        if name not in self.partitions:
            return
        self.admin.delete_topics([name])[name].result(30)

    # ---------------------------------------------------------------- queries
    def add_query(self, q: Query, replay: bool = True) -> None:
        if self.deferring:
            self._pending[q.id] = (q, replay)
            return
        runner = QueryRunner(self, q, earliest=replay)
        runner.position()
        self.runners[q.id] = runner
        runner.start()

    def behind(self, topic: str, seen: frozenset[str] = frozenset()) -> bool:
        """Whether a running query writing `topic`, or one upstream of it, has records still to process."""
        for runner in list(self.runners.values()):
            if runner.query.sink.topic != topic or not runner.is_alive() or runner.error is not None:
                continue
            if not runner.caught_up:
                return True
            upstream = [t for t in runner.sources.topics if t not in seen]
            if any(self.behind(t, seen | {topic}) for t in upstream):
                return True
        return False

    def remove_query(self, query_id: str) -> None:
        """TERMINATE: stop the query and drop its progress log and state (as ksqlDB drops a query's internal
        topics)."""
        self._pending.pop(query_id, None)
        self._stop(query_id)
        self.delete_topic(progress_topic(query_id, self.service_id))
        stores = self._stores.pop(query_id, None)
        if stores is not None:
            stores.destroy(self.delete_topic)

    # ---------------------------------------------------------------- state
    def state_stores(self, query_id: str) -> DurableStateStores:
        """A query's durable stores, restored (from its file, else its changelogs) before the query is built."""
        stores = self._stores.get(query_id)
        if stores is None:
            group = query_group(query_id, self.service_id)
            changelog = Changelog(
                self.bootstrap, group, lambda name, parts, config: self.create_topic(name, parts, config)
            )
            stores = self._stores[query_id] = DurableStateStores(self.state_dir / f"{group}.db", changelog)
        return stores

    def materialized(self, query_id: str) -> StateReader:
        """The committed state of a query (pull queries read its materialised table from it)."""
        return self.state_stores(query_id).reader()

    def _stop(self, query_id: str) -> None:
        runner = self.runners.pop(query_id, None)
        if runner is not None:
            runner.stopping.set()
            runner.join(30)

    def finish_replay(self) -> None:
        self.deferring = False
        pending, self._pending = self._pending, {}
        for q, replay in pending.values():
            try:
                self.add_query(q, replay)
            except Exception as e:  # noqa: BLE001 - one broken query must not keep the server down
                q.state = "ERROR"
                logger.error("query %s cannot resume: %s", q.id, e)

    def query_error(self, query_id: str) -> str | None:
        runner = self.runners.get(query_id)
        return runner.error if runner is not None else None

    def close(self) -> None:
        """Stop every query where it stands (they resume on the next start)."""
        for qid in list(self.runners):
            self._stop(qid)
        for stores in self._stores.values():
            stores.close()
        self.producer.flush(10)
        self.plog_producer.flush(10)
        if self._scratch is not None:
            self._scratch.cleanup()

    # ---------------------------------------------------------------- inserts
    def produce(self, rec: Record) -> None:
        """INSERT VALUES and /inserts-stream: returns once the broker has acknowledged the record."""
        failures: list[KafkaError] = []
        self.producer.produce(
            rec.topic,
            key=rec.key,
            value=rec.value,
            timestamp=rec.timestamp,
            on_delivery=lambda err, _m: failures.append(err) if err else None,
        )
        if self.producer.flush(30) or failures:
            raise KafkaException(failures[0] if failures else KafkaError(KafkaError._MSG_TIMED_OUT))
