"""The engine's runtime on real Kafka topics: the same interface as `InMemoryRuntime`.

Each persistent query runs in a thread: consume a batch, `PersistentQuery.process`, produce, wait for
the broker's acknowledgements, and only then commit the batch's offsets in the query's consumer group
(`_confluent-ksql-default_query_<ID>`, as ksqlDB names it). A crash therefore replays at most the
batch in flight, and because the output is a pure function of the input (same keys, same
partitioner) a replay re-produces the same records. Kafka transactions are never used: the embedded
broker loses transactional records (DESIGN.md).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import NewTopic

from stack.kafka import admin_client, end_offsets, producer_config

from .executor import PersistentQuery, ProcessingLog, Record

log = logging.getLogger(__name__)

DEFAULT_SERVICE_ID = "default_"
#: Java's partitioner, so that keyed output lands where a real ksqlDB would put it, deterministically.
PARTITIONER = "murmur2_random"


def query_group(query_id: str, service_id: str = DEFAULT_SERVICE_ID) -> str:
    """ksqlDB's consumer group for a persistent query: `_confluent-ksql-default_query_<ID>`."""
    return f"_confluent-ksql-{service_id}query_{query_id}"


def processing_log_topic(service_id: str = DEFAULT_SERVICE_ID) -> str:
    return f"{service_id}ksql_processing_log"


def to_record(m: Message) -> Record:
    ts_type, ts = m.timestamp()
    return Record(m.topic(), m.key(), m.value(), ts if ts_type else int(time.time() * 1000), m.partition(),
                  m.offset(), list(m.headers() or []))


def start_offsets(bootstrap: str, consumer: Consumer, topic: str, earliest: bool,
                  timeout: float = 10.0) -> list[TopicPartition]:
    """Where to read `topic` from: the group's committed offsets, else the start or the true end.

    "Latest" comes from `end_offsets` (the broker's own answer is wrong, DESIGN.md).
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


class KafkaProcessingLog(ProcessingLog):
    """ksqlDB's processing log, written as JSON to `default_ksql_processing_log` (flushed with each batch)."""

    def __init__(self, producer: Producer, topic: str = processing_log_topic()) -> None:
        super().__init__()
        self.producer = producer
        self.topic = topic
        self._lock = threading.Lock()

    def _ship(self) -> None:
        with self._lock:
            entries, self.entries = self.entries, []
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


class QueryRunner(threading.Thread):
    """One persistent query's consume -> process -> produce -> ack -> commit loop."""

    def __init__(self, runtime: KafkaRuntime, query: PersistentQuery, earliest: bool) -> None:
        super().__init__(name=f"query-{query.id}", daemon=True)
        self.runtime = runtime
        self.query = query
        self.earliest = earliest
        self.stopping = threading.Event()
        self.error: str | None = None
        self.committed_batches = 0
        self.consumer: Consumer
        self.positions: list[TopicPartition] = []

    def position(self) -> None:
        """Find and commit where to start, before the statement returns: rows produced after a CREATE ...
        AS SELECT with "latest" are never missed, and "latest" means the same thing after a crash."""
        rt, q = self.runtime, self.query
        self.consumer = Consumer({
            "bootstrap.servers": rt.bootstrap, "group.id": query_group(q.id, rt.service_id),
            "enable.auto.commit": False, "enable.auto.offset.store": False, "fetch.wait.max.ms": 50,
        })
        self.positions = start_offsets(rt.bootstrap, self.consumer, q.source.topic, self.earliest)
        self.consumer.commit(offsets=self.positions, asynchronous=False)

    def run(self) -> None:
        rt = self.runtime
        q = self.query
        consumer = self.consumer
        producer = Producer(producer_config(rt.bootstrap, partitioner=PARTITIONER))
        try:
            sink_partitions = rt.partition_count(q.sink.topic)
            positions = self.positions
            consumer.assign(positions)
            log.info("query %s reading %s from %s", q.id, q.source.topic, [(p.partition, p.offset) for p in positions])
            while not self.stopping.is_set():
                messages = consumer.consume(num_messages=rt.batch_size, timeout=0.2)
                batch = [m for m in messages if m.error() is None]
                for m in messages:
                    if m.error() is not None and m.error().code() != KafkaError._PARTITION_EOF:
                        log.warning("query %s: consume error: %s", q.id, m.error())
                if not batch:
                    continue
                records = [to_record(m) for m in batch]
                while not self.stopping.is_set():
                    try:
                        out = q.process(records)
                        self._produce(producer, out, sink_partitions)
                        break
                    except Exception as e:  # noqa: BLE001 - e.g. registry down: retry, never skip
                        self.error = str(e)
                        log.warning("query %s: batch failed, retrying: %s", q.id, e)
                        time.sleep(1.0)
                else:
                    return  # stopped before the batch was acknowledged: do not commit it
                rt.plog_producer.flush()
                ends: dict[int, int] = {}
                for m in batch:
                    ends[m.partition()] = max(ends.get(m.partition(), 0), m.offset() + 1)
                consumer.commit(offsets=[TopicPartition(q.source.topic, p, o) for p, o in ends.items()],
                                asynchronous=False)
                self.committed_batches += 1
                self.error = None
        except Exception as e:  # noqa: BLE001 - a dead query is reported in SHOW QUERIES, not lost silently
            self.error = str(e)
            q.state = "ERROR"
            log.exception("query %s stopped", q.id)
        finally:
            consumer.close()
            producer.flush(10)

    def _produce(self, producer: Producer, out: list[Record], sink_partitions: int) -> None:
        """Produce `out` and wait for every acknowledgement; raise if any record was not acknowledged."""
        failures: list[KafkaError] = []

        def delivered(err: KafkaError | None, _msg: Message) -> None:
            if err is not None:
                failures.append(err)

        for rec in out:
            kwargs: dict[str, Any] = {"key": rec.key, "value": rec.value, "timestamp": rec.timestamp,
                                      "on_delivery": delivered}
            if rec.key is None:  # no key: stay deterministic by following the input partition
                kwargs["partition"] = rec.partition % sink_partitions
            if rec.headers:
                kwargs["headers"] = rec.headers
            while True:
                try:
                    producer.produce(rec.topic, **kwargs)
                    break
                except BufferError:
                    producer.poll(0.1)
        remaining = producer.flush(30)
        if remaining or failures:
            raise KafkaException(failures[0] if failures else KafkaError(KafkaError._MSG_TIMED_OUT))


class KafkaRuntime:
    """Topics, persistent queries and inserts on a Kafka cluster.

    While `deferring` (the command topic is being replayed), queries are only noted and topic deletes
    are skipped: `finish_replay` starts the queries still alive at the end, from their committed offsets.
    """

    def __init__(self, bootstrap: str, service_id: str = DEFAULT_SERVICE_ID, batch_size: int = 1000) -> None:
        self.bootstrap = bootstrap
        self.service_id = service_id
        self.batch_size = batch_size
        self.admin = admin_client(bootstrap)
        self.producer = Producer(producer_config(bootstrap, partitioner=PARTITIONER))
        self.plog_producer = Producer(producer_config(bootstrap, linger_ms=50))
        self.runners: dict[str, QueryRunner] = {}
        self.deferring = False
        self._pending: dict[str, tuple[PersistentQuery, bool]] = {}
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

    def create_topic(self, name: str, partitions: int = 1) -> None:
        if name in self.partitions:
            return
        futures = self.admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])
        try:
            futures[name].result(30)
        except KafkaException as e:
            if e.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
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
    def add_query(self, q: PersistentQuery, replay: bool = True) -> None:
        if self.deferring:
            self._pending[q.id] = (q, replay)
            return
        runner = QueryRunner(self, q, earliest=replay)
        runner.position()
        self.runners[q.id] = runner
        runner.start()

    def remove_query(self, query_id: str) -> None:
        self._pending.pop(query_id, None)
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
                log.error("query %s cannot resume: %s", q.id, e)

    def query_error(self, query_id: str) -> str | None:
        runner = self.runners.get(query_id)
        return runner.error if runner is not None else None

    def close(self) -> None:
        for qid in list(self.runners):
            self.remove_query(qid)
        self.producer.flush(10)
        self.plog_producer.flush(10)

    # ---------------------------------------------------------------- inserts
    def produce(self, rec: Record) -> None:
        """INSERT VALUES and /inserts-stream: returns once the broker has acknowledged the record."""
        failures: list[KafkaError] = []
        self.producer.produce(rec.topic, key=rec.key, value=rec.value, timestamp=rec.timestamp,
                              on_delivery=lambda err, _m: failures.append(err) if err else None)
        if self.producer.flush(30) or failures:
            raise KafkaException(failures[0] if failures else KafkaError(KafkaError._MSG_TIMED_OUT))
