"""The worker's durable state in Kafka, in the three compacted topics Connect keeps it in.

- `connect-configs`: `connector-<name>` -> {"properties": {...}} (a tombstone deletes it) and
  `target-state-<name>` -> {"state": "STARTED" | "PAUSED"}, as Connect writes them.
- `connect-status`: `status-connector-<name>` and `status-task-<name>-<id>` -> {"state", "trace", "worker_id", "generation"}.
- `connect-offsets`: source connectors' offsets. A sink's offsets live where Connect keeps them too,
  in its consumer group `connect-<name>`, committed only after the objects are stored.

The configs topic is read to its true end at start-up (`stack.kafka.end_offsets`), and a change is
applied in memory only after the broker acknowledged it, so memory never runs ahead of the log.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import NewTopic

from stack.kafka import admin_client, consumer_config, end_offsets, producer_config

logger = logging.getLogger(__name__)

CONFIG_TOPIC = "connect-configs"
STATUS_TOPIC = "connect-status"
OFFSET_TOPIC = "connect-offsets"


class StorageError(RuntimeError):
    """The broker did not take or give back the worker's state."""


@dataclass
class StoredConnectors:
    configs: dict[str, dict[str, str]] = field(default_factory=dict)
    target_states: dict[str, str] = field(default_factory=dict)


class ConnectStorage:
    def __init__(self, bootstrap_servers: str, timeout: float = 30.0, config_topic: str = CONFIG_TOPIC,
                 status_topic: str = STATUS_TOPIC, offset_topic: str = OFFSET_TOPIC) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.timeout = timeout
        self.config_topic, self.status_topic, self.offset_topic = config_topic, status_topic, offset_topic
        self._producer: Producer | None = None

    def ensure_topics(self) -> None:
        """Create the three topics (compacted, one partition so that order is total) unless they exist."""
        admin = admin_client(self.bootstrap_servers)
        topics = [NewTopic(name, num_partitions=1, replication_factor=1, config={"cleanup.policy": "compact"})
                  for name in (self.config_topic, self.status_topic, self.offset_topic)]
        for name, future in admin.create_topics(topics, operation_timeout=self.timeout).items():
            try:
                future.result(timeout=self.timeout)
                logger.info("created topic %s", name)
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise StorageError(f"cannot create topic {name}: {exc.args[0].str()}") from exc

    def load(self) -> StoredConnectors:
        """The connector configs and target states, replayed from the configs topic."""
        stored = StoredConnectors()
        for key, value in self._replay(self.config_topic):
            if key.startswith("connector-"):
                name = key.removeprefix("connector-")
                if value is None:
                    stored.configs.pop(name, None)
                    stored.target_states.pop(name, None)
                else:
                    stored.configs[name] = value["properties"]
            elif key.startswith("target-state-"):
                name = key.removeprefix("target-state-")
                if value is None:
                    stored.target_states.pop(name, None)
                else:
                    stored.target_states[name] = value.get("state.v2") or value["state"]
        return stored

    def put_config(self, name: str, config: dict[str, str]) -> None:
        self._write(self.config_topic, [(f"connector-{name}", {"properties": config})])

    def put_target_state(self, name: str, state: str) -> None:
        self._write(self.config_topic, [(f"target-state-{name}", {"state": state, "state.v2": state})])

    def delete(self, name: str) -> None:
        self._write(self.config_topic, [(f"connector-{name}", None), (f"target-state-{name}", None)])

    def put_status(self, key: str, status: dict[str, Any] | None) -> None:
        """Best effort, as in Connect: a lost status write is repaired by the next one."""
        try:
            self._write(self.status_topic, [(key, status)], timeout=5.0)
        except StorageError as exc:
            logger.warning("status %s not written: %s", key, exc)

    def close(self) -> None:
        if self._producer is not None:
            self._producer.flush(self.timeout)
            self._producer = None

    def _write(self, topic: str, records: list[tuple[str, Any]], timeout: float | None = None) -> None:
        if self._producer is None:
            self._producer = Producer(producer_config(self.bootstrap_servers))
        failures: list[str] = []

        def delivered(error: KafkaError | None, _message: object) -> None:
            if error is not None:
                failures.append(error.str())

        for key, value in records:
            body = None if value is None else json.dumps(value).encode()
            self._producer.produce(topic, key=key.encode(), value=body, on_delivery=delivered)
        if self._producer.flush(timeout or self.timeout):
            raise StorageError(f"records to {topic} not acknowledged in time")
        if failures:
            raise StorageError(f"the broker refused a write to {topic}: {failures[0]}")

    def _replay(self, topic: str) -> Iterator[tuple[str, Any]]:
        end = end_offsets(self.bootstrap_servers, topic, timeout=self.timeout).get(0, 0)
        if end == 0:
            return
        consumer = Consumer(consumer_config(self.bootstrap_servers, f"fraudstream-connect-{topic}", enable_auto_commit=False))
        try:
            consumer.assign([TopicPartition(topic, 0, 0)])
            position = 0
            while position < end:
                message = consumer.poll(self.timeout)
                if message is None:
                    raise StorageError(f"no records from {topic} within {self.timeout} s (at {position} of {end})")
                if message.error() is not None:
                    raise StorageError(f"reading {topic}: {message.error().str()}")
                position = message.offset() + 1
                value = message.value()
                yield message.key().decode(), (None if value is None else json.loads(value))
        finally:
            consumer.close()
