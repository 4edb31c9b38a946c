"""A compacted, single-partition topic used as a service's durable state (as Schema Registry's
`_schemas`, Connect's config topics and ksqlDB's command topic are).

Its one writer reads the topic to its true end on start (found with `fraudstream.kafka.end_offsets`, as the
embedded broker's "latest" offset is wrong), and afterwards applies a change to memory only once the
broker has acknowledged it with acks=all, so memory never runs ahead of the log. Calls block; async
callers run them in a thread. Appends from several threads (Connect's tasks writing their statuses) take
turns.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from fraudstream.kafka import consumer_config, end_offsets, ensure_topic, producer_config

logger = logging.getLogger(__name__)

#: A key and a value (None for a tombstone), as bytes.
Record = tuple[bytes, bytes | None]


class TopicLogError(Exception):
    """The broker did not take or give back the records."""


class TopicLog:
    """Append to and replay one compacted, single-partition topic."""

    def __init__(self, bootstrap_servers: str, topic: str, timeout: float = 30.0) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.topic = topic
        self.timeout = timeout
        self._producer: Producer | None = None
        self._appending = threading.Lock()  # one write at a time: a failed write replaces the producer

    def ensure_topic(self) -> None:
        """Create the topic (compacted, one partition so that order is total) unless it exists."""
        try:
            ensure_topic(self.bootstrap_servers, self.topic, 1, {"cleanup.policy": "compact"}, timeout=self.timeout)
        except KafkaException as exc:
            raise TopicLogError(f"cannot create topic {self.topic}: {exc.args[0].str()}") from exc

    def replay(self) -> Iterator[Record]:
        """Every record from the start of the topic to its true end, in offset order."""
        end = end_offsets(self.bootstrap_servers, self.topic, timeout=self.timeout).get(0, 0)
        if end == 0:
            return
        consumer = Consumer(
            consumer_config(
                self.bootstrap_servers,
                f"fraudstream-topiclog-{self.topic}",
                enable_auto_commit=False,
                enable_partition_eof=True,
            )
        )
        try:
            consumer.assign([TopicPartition(self.topic, 0, 0)])
            position = 0
            while position < end:
                message = consumer.poll(self.timeout)
                if message is None:
                    raise TopicLogError(
                        f"no records from {self.topic} within {self.timeout} s (at {position} of {end})"
                    )
                if message.error() is not None:
                    if message.error().code() == KafkaError._PARTITION_EOF:
                        position = max(position, message.offset())
                        if position < end:
                            raise TopicLogError(f"{self.topic} ended at offset {position}, before its end {end}")
                        continue
                    raise TopicLogError(f"reading {self.topic}: {message.error().str()}")
                position = message.offset() + 1
                yield message.key(), message.value()
        finally:
            consumer.close()

    def append(self, records: Sequence[Record]) -> None:
        """Produce records with acks=all and return once the broker acknowledged every one of them."""
        with self._appending:
            self._append(records)

    def _append(self, records: Sequence[Record]) -> None:
        if self._producer is None:
            self._producer = Producer(producer_config(self.bootstrap_servers))
        failures: list[str] = []

        def delivered(error: KafkaError | None, _message: object) -> None:
            if error is not None:
                failures.append(error.str())

        for key, value in records:
            self._producer.produce(self.topic, key=key, value=value, on_delivery=delivered)
        remaining = self._producer.flush(self.timeout)
        if remaining or failures:
            # Start over with a new producer, so that nothing of this write is delivered later behind
            # the back of the state the caller is about to rebuild from the topic.
            self._producer.purge()
            self._producer.flush(0)
            self._producer = None
        if remaining:
            raise TopicLogError(f"{remaining} record(s) not acknowledged by the broker within {self.timeout} s")
        if failures:
            raise TopicLogError(f"the broker refused a write: {failures[0]}")

    def close(self) -> None:
        with self._appending:
            if self._producer is not None:
                self._producer.flush(self.timeout)
                self._producer = None
