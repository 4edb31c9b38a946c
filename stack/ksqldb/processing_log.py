"""ksqlDB's processing log: the records a query could not process, with the reason, as ksqlDB's entries."""

from __future__ import annotations

import base64
import logging
import time
from typing import Any

from .records import Record

logger = logging.getLogger(__name__)


class ProcessingLog:
    """Entries are kept in `entries` (DESCRIBE EXTENDED counts them); the Kafka runtime's subclass ships them
    to the processing log topic as they come."""

    def __init__(self) -> None:
        self.entries: list[dict[str, Any]] = []

    def deserialization_error(self, query_id: str, record: Record, target: str, error: str) -> None:
        raw = record.key if target == "key" else record.value
        self.entries.append(
            {
                "type": 0,
                "query": query_id,
                "topic": record.topic,
                "partition": record.partition,
                "offset": record.offset,
                "target": target,
                "errorMessage": error,
                "recordB64": base64.b64encode(raw).decode() if raw is not None else None,
                "time": int(time.time() * 1000),
            }
        )
        logger.debug(
            "query %s: cannot deserialise %s of %s@%s: %s", query_id, target, record.topic, record.offset, error
        )

    def expression_error(self, query_id: str, record: Record, expression: str, error: str) -> None:
        self.entries.append(
            {
                "type": 2,
                "query": query_id,
                "topic": record.topic,
                "offset": record.offset,
                "errorMessage": f"Error computing expression {expression}: {error}",
                "time": int(time.time() * 1000),
            }
        )

    def serialization_error(self, query_id: str, topic: str, error: str) -> None:
        self.entries.append(
            {"type": 3, "query": query_id, "topic": topic, "errorMessage": error, "time": int(time.time() * 1000)}
        )
