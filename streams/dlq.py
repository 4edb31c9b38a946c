"""Dead letters: a record that cannot be decoded, validated or scored goes here, never stops the agent.

The original key and value are kept byte for byte; the headers say why, where it came from and which
worker refused it, and `fraudstream_dead_letters_total{reason}` counts it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from streams import metrics
from streams.records import RecordError

logger = logging.getLogger(__name__)

REASON_HEADER = "error.reason"
MESSAGE_HEADER = "error.message"
TOPIC_HEADER = "source.topic"
PARTITION_HEADER = "source.partition"
OFFSET_HEADER = "source.offset"
WORKER_HEADER = "worker"


class DeadLetters:
    def __init__(self, producer: Any, topic: str, worker: str) -> None:
        self.producer = producer
        self.topic = topic
        self.worker = worker

    async def send(self, record: Any, error: RecordError) -> asyncio.Future:
        """Queue one dead letter; the returned future resolves when the broker acknowledged it."""
        headers = [
            (REASON_HEADER, error.reason.encode()),
            (MESSAGE_HEADER, str(error)[:1000].encode()),
            (TOPIC_HEADER, record.topic.encode()),
            (PARTITION_HEADER, str(record.partition).encode()),
            (OFFSET_HEADER, str(record.offset).encode()),
            (WORKER_HEADER, self.worker.encode()),
        ]
        metrics.DEAD_LETTERS.labels(error.reason).inc()
        logger.warning(
            "dead letter %s[%d]@%d (%s): %s", record.topic, record.partition, record.offset, error.reason, error
        )
        value = record.value if record.value is not None or record.key is not None else b""  # Kafka needs one
        return await self.producer.send(self.topic, key=record.key, value=value, headers=headers)
