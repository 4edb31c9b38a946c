"""One S3 sink task: consume, convert, partition, write files, upload, then commit.

The order is what makes the lake exactly once without Kafka transactions: an offset is committed
to the group `connect-<connector>` only after every object holding the records before it is stored,
and object names come from the files' start offsets, so after a crash the records from the last
committed offset are read again and land in the same objects with the same bytes.
"""

from __future__ import annotations

import itertools
import logging
import re
import threading
import time
import traceback
from collections.abc import Callable
from functools import partial
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Message, TopicPartition

from fraudstream.kafka import consumer_config
from fraudstream.s3 import s3_client
from stack.connect.converters import NULL, ConversionError, Converted, TransientError, make_converter
from stack.connect.dlq import DeadLetterQueue, Failure
from stack.connect.metrics import SinkMetrics
from stack.connect.s3sink.formats import make_format
from stack.connect.s3sink.naming import object_key
from stack.connect.s3sink.partitioners import RecordView, TimeBasedPartitioner, make_extractor, make_partitioner
from stack.connect.s3sink.writer import Batch, PartitionWriter, Rotation
from stack.connect.settings import SinkSettings

logger = logging.getLogger(__name__)

#: The first wait before retrying a failed upload or Schema Registry call; it doubles up to 30 s.
UPLOAD_BACKOFF_SECONDS = 0.5

#: How often a task looks for new partitions of its topics.
METADATA_REFRESH_SECONDS = 10.0

#: boto3's default session is not thread-safe while it builds clients, and tasks start side by side.
_BOTO_LOCK = threading.Lock()

StateListener = Callable[["SinkTask", str, str | None], None]  # (task, state, trace)


class TaskFailure(RuntimeError):
    """Stops the task; its message and cause become the trace in the task's status."""


class TaskStopped(Exception):
    """A stop request interrupted a retry: the task ends without failing."""


def group_id(connector: str) -> str:
    """The consumer group of a sink connector, named as Connect names it."""
    return f"connect-{connector}"


class SinkTask(threading.Thread):
    def __init__(
        self,
        settings: SinkSettings,
        task_id: int,
        bootstrap_servers: str,
        metrics: SinkMetrics,
        on_state: StateListener,
    ) -> None:
        super().__init__(name=f"{settings.name}-{task_id}", daemon=True)
        self.settings = settings
        self.task_id = task_id
        self.bootstrap_servers = bootstrap_servers
        self.metrics = metrics
        self.on_state = on_state
        self.connector = settings.name
        self.writers: dict[tuple[str, int], PartitionWriter] = {}
        self.committed: dict[tuple[str, int], int] = {}
        self.first_record_at: float | None = None  # monotonic; for throughput measurements
        self._stopping = threading.Event()
        self._refreshed_at = 0.0
        values = settings.values
        self.format = make_format(values["format.class"], values["avro.codec"], values["parquet.codec"])
        self.partitioner = make_partitioner(values)
        self.extractor = make_extractor(values["timestamp.extractor"], values["timestamp.field"])
        rotate_interval = values["rotate.interval.ms"]
        if rotate_interval > 0 and not isinstance(self.partitioner, TimeBasedPartitioner):
            # As Confluent's connector: record-time rotation needs the time-based partitioner's extractor.
            logger.warning("%s: rotate.interval.ms is ignored with %s", self.connector, values["partitioner.class"])
            rotate_interval = -1
        self.rotation = Rotation(
            flush_size=values["flush.size"],
            rotate_interval_ms=rotate_interval,
            schedule_interval_ms=values["rotate.schedule.interval.ms"],
            timezone=values["timezone"] or "UTC",
            wallclock=values["timestamp.extractor"] == "Wallclock",
        )
        self.converters = {side: make_converter(*settings.converter(side)) for side in ("key", "value")}
        self.s3: Any = None
        self.consumer: Consumer | None = None
        self.dlq: DeadLetterQueue | None = None

    # -- lifecycle ------------------------------------------------------------------------------------

    def stop(self) -> None:
        self._stopping.set()

    def run(self) -> None:
        try:
            self._start_when_reachable()
            self.on_state(self, "RUNNING", None)
            while not self._stopping.is_set():
                self.poll_once()
        except TaskStopped:
            pass
        except Exception as exc:  # any failure ends the task, with its trace in the status, as in Connect
            logger.error("task %s-%d failed: %s", self.connector, self.task_id, exc)
            self.metrics.task_failures.labels(self.connector).inc()
            self.on_state(self, "FAILED", traceback.format_exc())
        finally:
            if self.consumer is not None:
                self.consumer.close()  # no commit: uncommitted files are simply written again by the next owner

    def _start_when_reachable(self) -> None:
        """Start, trying again while the broker does not answer (restarting), as Connect's consumer waits for it."""
        for attempt in itertools.count():
            try:
                self._start()
                return
            except KafkaException as exc:
                if exc.args[0].fatal():
                    raise
                if self.consumer is not None:
                    self.consumer.close()
                    self.consumer = None
                self.writers.clear()  # assigned afresh to the next consumer
                self.committed.clear()
                self._back_off(attempt, exc, "the broker did not answer")

    def _start(self) -> None:
        values = self.settings.values
        with _BOTO_LOCK:
            self.s3 = s3_client(values["store.url"] or None)
        self._check_bucket(values["s3.bucket.name"], values["store.url"] or "AWS")
        if values["errors.tolerance"] == "all" and values["errors.deadletterqueue.topic.name"]:
            self.dlq = DeadLetterQueue(
                self.bootstrap_servers,
                values["errors.deadletterqueue.topic.name"],
                self.connector,
                self.task_id,
                values["errors.deadletterqueue.context.headers.enable"],
            )
        self.consumer = Consumer(
            consumer_config(
                self.bootstrap_servers,
                group_id(self.connector),
                enable_auto_commit=False,
                client_id=f"connector-consumer-{self.connector}-{self.task_id}",
            )
        )
        self._refresh_assignment()

    def _check_bucket(self, bucket: str, store: str) -> None:
        """Fail on a bucket the store says it lacks or refuses, as Confluent's connector does; wait for a store
        that does not answer (restarting), as uploads do."""
        for attempt in itertools.count():
            try:
                self.s3.head_bucket(Bucket=bucket)
                return
            except ClientError as exc:
                if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) < 500:
                    raise TaskFailure(f"S3 bucket {bucket} is not reachable at {store}: {exc}") from exc
                error: Exception = exc
            except BotoCoreError as exc:
                error = exc
            self.metrics.store_unanswered.labels(self.connector).inc()
            self._back_off(attempt, error, f"S3 at {store} does not answer")

    def owned(self, available: list[tuple[str, int]]) -> list[tuple[str, int]]:
        """This task's share of the connector's partitions: every tasks.max-th one, in a stable order."""
        tasks = self.settings["tasks.max"]
        return [tp for index, tp in enumerate(sorted(available)) if index % tasks == self.task_id]

    def _matching_partitions(self) -> list[tuple[str, int]]:
        assert self.consumer is not None
        topics = self.consumer.list_topics(timeout=30).topics  # all topics: naming one would auto-create it
        names, regex = self.settings["topics"], self.settings["topics.regex"]
        wanted = [t for t in topics if (t in names if names else re.fullmatch(regex, t))]
        return [(topic, p) for topic in wanted if topics[topic].error is None for p in topics[topic].partitions]

    def _refresh_assignment(self) -> None:
        """Assign this task's partitions, resuming each from the group's committed offset.

        The partitions are assigned, not subscribed through the group protocol: one worker runs every
        task, so there is nothing to balance, and the embedded broker's group rebalances can stall for
        minutes after a member leaves. Offsets still live in the group `connect-<name>`, as in Connect.
        """
        assert self.consumer is not None
        self._refreshed_at = time.monotonic()
        owned = set(self.owned(self._matching_partitions()))
        added = sorted(owned - set(self.writers))
        removed = sorted(set(self.writers) - owned)
        if removed:
            self.consumer.incremental_unassign([TopicPartition(t, p) for t, p in removed])
            for tp in removed:
                self.writers.pop(tp, None)
        if added:
            committed = self.consumer.committed([TopicPartition(t, p) for t, p in added], timeout=30)
            starts = [
                TopicPartition(tp.topic, tp.partition, tp.offset if tp.offset >= 0 else OFFSET_BEGINNING)
                for tp in committed
            ]
            for tp in starts:
                self.writers[(tp.topic, tp.partition)] = PartitionWriter(tp.topic, tp.partition, self.rotation)
                if tp.offset >= 0:
                    self.committed[(tp.topic, tp.partition)] = tp.offset
            self.consumer.incremental_assign(starts)
            logger.info(
                "%s-%d assigned %s",
                self.connector,
                self.task_id,
                [f"{tp.topic}[{tp.partition}]@{tp.offset}" for tp in starts],
            )

    # -- the loop ----------------------------------------------------------------------------------------

    def poll_once(self, max_records: int = 2000, timeout: float = 0.2) -> None:
        assert self.consumer is not None
        if time.monotonic() - self._refreshed_at > METADATA_REFRESH_SECONDS:
            try:
                self._refresh_assignment()  # new partitions, or new topics matching topics.regex
            except KafkaException as exc:  # the broker restarting: keep what is assigned, ask again later
                if exc.args[0].fatal():
                    raise
                logger.warning("%s-%d: cannot refresh the assignment: %s", self.connector, self.task_id, exc)
        for message in self.consumer.consume(max_records, timeout):
            error = message.error()
            if error is not None:
                if error.fatal():
                    raise TaskFailure(f"consumer failed: {error.str()}")
                logger.warning("%s-%d: %s", self.connector, self.task_id, error.str())
                continue
            self._put(message)
        now = _now_ms()
        for writer in list(self.writers.values()):
            batch = writer.due(now)
            if batch is not None:
                self._store(batch)
            elif not writer.files:
                self._commit(writer)  # past records that were skipped, with no file open

    def _put(self, message: Message) -> None:
        writer = self.writers.get((message.topic(), message.partition()))
        offset = message.offset()
        if writer is None or (writer.next_offset is not None and offset < writer.next_offset):
            return  # a partition no longer ours, or a record seen already
        if self.first_record_at is None:
            self.first_record_at = time.monotonic()
        converted = self._convert(message)
        if converted is None:
            writer.skip(offset)
            return
        if converted is NULL:
            if self.settings["behavior.on.null.values"] == "ignore":
                writer.skip(offset)
                return
            raise TaskFailure(
                f"null value at {message.topic()}[{message.partition()}]@{offset}; set behavior.on.null.values=ignore to skip such records"
            )
        kind, timestamp = message.timestamp()
        view = RecordView(message.topic(), message.partition(), offset, timestamp if kind else None, converted.value)
        encoded = self.partitioner.encode(view)
        record_time = self.extractor(view)
        for batch in writer.add(
            offset, record_time, encoded, converted.value, converted.schema, converted.schema_key, _now_ms()
        ):
            self._store(batch)

    def _convert(self, message: Message) -> Converted | None:
        """The converted value; None when a conversion error was tolerated (the record is dead-lettered)."""
        for side, data in (("key", message.key()), ("value", message.value())):
            try:
                try:
                    converted = self.converters[side].convert(message.topic(), data)
                except TransientError as exc:
                    converted = self._retrying(partial(self.converters[side].convert, message.topic(), data), exc)
            except ConversionError as exc:
                self._tolerate(message, Failure(f"{side.upper()}_CONVERTER", self.settings[f"{side}.converter"], exc))
                return None
        return converted

    def _retrying(self, convert: Callable[[], Converted], error: TransientError) -> Converted:
        """Convert again until the Schema Registry answers (as Connect retries retriable errors)."""
        for attempt in itertools.count():
            self._back_off(attempt, error, "no schema from the Schema Registry")
            try:
                return convert()
            except TransientError as exc:
                error = exc
        raise AssertionError("unreachable")

    def _back_off(self, attempt: int, error: Exception, what: str) -> None:
        """Wait before the next try (UPLOAD_BACKOFF_SECONDS, doubling up to 30 s); a stop request ends the wait
        and the task."""
        backoff = min(UPLOAD_BACKOFF_SECONDS * 2**attempt, 30.0)
        logger.warning("%s-%d: %s (retrying in %.1f s): %s", self.connector, self.task_id, what, backoff, error)
        if self._stopping.wait(backoff):
            raise TaskStopped from error

    def _tolerate(self, message: Message, failure: Failure) -> None:
        where = f"{message.topic()}[{message.partition()}]@{message.offset()}"
        if self.settings["errors.tolerance"] != "all":
            raise TaskFailure(
                f"Tolerance exceeded in error handler: {failure.stage} failed for {where}"
            ) from failure.error
        if self.settings["errors.log.enable"]:
            logger.warning(
                "%s-%d: %s failed for %s: %s", self.connector, self.task_id, failure.stage, where, failure.error
            )
        if self.dlq is not None:
            self.dlq.send(message, failure)
            self.metrics.dead_letters.labels(self.connector).inc()

    # -- storing and committing ------------------------------------------------------------------------

    def _store(self, batch: Batch) -> None:
        values = self.settings.values
        for file in batch.files:
            key = object_key(
                values["topics.dir"],
                batch.topic,
                file.encoded_partition,
                batch.partition,
                file.start_offset,
                self.format.extension,
                values["directory.delim"],
                values["file.delim"],
            )
            body = self.format.encode(file.records, batch.schema, key)
            self._upload(values["s3.bucket.name"], key, body)
            self.metrics.files.labels(self.connector).inc()
            self.metrics.bytes.labels(self.connector).inc(len(body))
        self.metrics.records.labels(self.connector).inc(batch.record_count)
        writer = self.writers.get((batch.topic, batch.partition))
        if writer is not None:
            self._commit(writer, batch.end_offset if not writer.files else writer.committable())

    def _upload(self, bucket: str, key: str, body: bytes) -> None:
        """Put one object, retrying until it is stored: an unreachable store stalls the task, never fails it.

        As in Confluent's connector, where S3 errors are retriable; nothing is committed meanwhile, and
        a stop request ends the wait (the next owner of the partition rewrites the same object).
        """
        for attempt in itertools.count():
            started = time.perf_counter()
            try:
                self.s3.put_object(Bucket=bucket, Key=key, Body=body)
            except (ClientError, BotoCoreError) as exc:
                self.metrics.upload_failures.labels(self.connector).inc()
                self._back_off(attempt, exc, f"upload of {key} failed")
                continue
            self.metrics.upload_seconds.labels(self.connector).observe(time.perf_counter() - started)
            return

    def _commit(self, writer: PartitionWriter, offset: int | None = None) -> None:
        offset = writer.committable() if offset is None else offset
        tp = (writer.topic, writer.partition)
        if offset is None or self.committed.get(tp) == offset:
            return
        if self.dlq is not None:
            self.dlq.flush()
        assert self.consumer is not None
        try:
            self.consumer.commit(offsets=[TopicPartition(writer.topic, writer.partition, offset)], asynchronous=False)
        except KafkaException as exc:
            # Retried with the next file or idle pass; a restart before that rewrites the same objects.
            logger.warning(
                "%s-%d: commit of %s[%d]@%d failed: %s", self.connector, self.task_id, *tp, offset, exc.args[0].str()
            )
            return
        self.committed[tp] = offset


def _now_ms() -> int:
    return time.time_ns() // 1_000_000
