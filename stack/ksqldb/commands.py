"""The command topic: every successful DDL/DML statement, in order, so a restart rebuilds the server.

As in ksqlDB, `_confluent-ksql-default__command_topic` has one partition; each record holds the
statement text, the properties it ran with and the query id it created. On start the server reads it
from the beginning to its true end and re-executes each command; persistent queries then resume from
their consumer groups' committed offsets.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from fraudstream.kafka import client_config, end_offsets, producer_config

from .kafka_runtime import KafkaRuntime

logger = logging.getLogger(__name__)


def command_topic(service_id: str) -> str:
    """`_confluent-ksql-default__command_topic` for ksqlDB's default service id `default_`."""
    return f"_confluent-ksql-{service_id}_command_topic"


@dataclass
class Command:
    statement: str
    properties: dict[str, Any] = field(default_factory=dict)
    query_id: str | None = None
    offset: int = -1

    def to_json(self) -> bytes:
        return json.dumps(
            {"statement": self.statement, "streamsProperties": self.properties, "queryId": self.query_id}
        ).encode()

    @classmethod
    def from_json(cls, data: bytes, offset: int) -> Command:
        raw = json.loads(data)
        return cls(raw["statement"], raw.get("streamsProperties") or {}, raw.get("queryId"), offset)


class CommandLog:
    def __init__(self, bootstrap: str, runtime: KafkaRuntime) -> None:
        self.bootstrap = bootstrap
        self.topic = topic = command_topic(runtime.service_id)
        runtime.create_topic(topic, 1)
        self.producer = Producer(producer_config(bootstrap))
        self.next_offset = 0

    def read_all(self, timeout: float = 30.0) -> list[Command]:
        """Every command from the start to the true end of the topic."""
        end = end_offsets(self.bootstrap, self.topic).get(0, 0)
        commands: list[Command] = []
        if end > 0:
            consumer = Consumer(
                client_config(self.bootstrap, **{"group.id": "_ksql-command-replay", "enable.auto.commit": False})
            )
            try:
                consumer.assign([TopicPartition(self.topic, 0, 0)])
                while len(commands) < end:
                    message = consumer.poll(timeout)
                    if message is None:
                        raise TimeoutError(
                            f"command topic: no record within {timeout} s ({len(commands)} of {end} read)"
                        )
                    if message.error() is not None:
                        if message.error().code() == KafkaError._PARTITION_EOF:
                            continue
                        raise KafkaException(message.error())
                    commands.append(Command.from_json(message.value(), message.offset()))
                    if message.offset() + 1 >= end:
                        break
            finally:
                consumer.close()
        self.next_offset = end
        return commands

    def append(self, command: Command) -> int:
        """Append `command` and return its offset once the broker has acknowledged it."""
        result: dict[str, Any] = {}

        def delivered(err: KafkaError | None, message: Any) -> None:
            result["err"] = err
            result["offset"] = message.offset() if err is None else None

        self.producer.produce(self.topic, value=command.to_json(), partition=0, on_delivery=delivered)
        self.producer.flush(30)
        if result.get("err") is not None or result.get("offset") is None:
            # a fresh producer for the next statement: an idempotent producer's error can be fatal to it
            self.producer.purge()
            self.producer = Producer(producer_config(self.bootstrap))
            raise KafkaException(result.get("err") or KafkaError(KafkaError._MSG_TIMED_OUT))
        command.offset = result["offset"]
        self.next_offset = command.offset + 1
        return command.offset
