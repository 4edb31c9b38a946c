"""The dead-letter queue: records a converter could not read, with Connect's `__connect.errors.*` headers.

Connect's DeadLetterQueueReporter adds the failure's context as headers only when
errors.deadletterqueue.context.headers.enable is true; the same rule holds here.
"""

from __future__ import annotations

import logging
import traceback
from dataclasses import dataclass

from confluent_kafka import KafkaError, Message, Producer

from fraudstream.kafka import ensure_topic, producer_config

logger = logging.getLogger(__name__)

#: What Connect reports as the exception class of a converter failure.
DATA_EXCEPTION = "org.apache.kafka.connect.errors.DataException"


@dataclass(frozen=True)
class Failure:
    stage: str  # KEY_CONVERTER or VALUE_CONVERTER
    class_name: str  # the converter's class
    error: BaseException


def error_headers(message: Message, connector: str, task_id: int, failure: Failure) -> list[tuple[str, bytes]]:
    context = {
        "topic": message.topic(),
        "partition": str(message.partition()),
        "offset": str(message.offset()),
        "connector.name": connector,
        "task.id": str(task_id),
        "stage": failure.stage,
        "class.name": failure.class_name,
        "exception.class.name": DATA_EXCEPTION,
        "exception.message": str(failure.error),
        "exception.stacktrace": "".join(traceback.format_exception(failure.error)),
    }
    return [(f"__connect.errors.{name}", value.encode()) for name, value in context.items()]


class DeadLetterQueue:
    def __init__(self, bootstrap_servers: str, topic: str, connector: str, task_id: int, context_headers: bool) -> None:
        self.topic, self.connector, self.task_id, self.context_headers = topic, connector, task_id, context_headers
        self.bootstrap_servers = bootstrap_servers
        self.producer = Producer(producer_config(bootstrap_servers))
        self.failures: list[str] = []
        self._ensure_topic()

    def _ensure_topic(self) -> None:
        ensure_topic(self.bootstrap_servers, self.topic)

    def send(self, message: Message, failure: Failure) -> None:
        headers = list(message.headers() or [])
        if self.context_headers:
            headers += error_headers(message, self.connector, self.task_id, failure)
        self.producer.produce(
            self.topic, key=message.key(), value=message.value(), headers=headers, on_delivery=self._delivered
        )
        self.producer.poll(0)

    def _delivered(self, error: KafkaError | None, _message: object) -> None:
        if error is not None:
            self.failures.append(error.str())

    def flush(self, timeout: float = 30.0) -> None:
        """Wait for every dead letter to be acknowledged: offsets past them are committed only afterwards."""
        if self.producer.flush(timeout):
            raise RuntimeError(f"dead-letter records to {self.topic} not acknowledged within {timeout} s")
        if self.failures:
            raise RuntimeError(f"the broker refused a dead-letter record to {self.topic}: {self.failures[0]}")
