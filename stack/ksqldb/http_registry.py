"""The engine's `SchemaRegistry` interface backed by a real Schema Registry over HTTP.

The AVRO format registers and looks up schemas as parsed JSON; confluent-kafka's client speaks the
Confluent REST API (and caches by id), so the same engine works against the embedded registry and
Confluent's.
"""

from __future__ import annotations

import json
from typing import Any

from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

SUBJECT_NOT_FOUND = 40401


class HttpSchemaRegistry:
    def __init__(self, url: str) -> None:
        self.client = SchemaRegistryClient({"url": url})

    def register(self, subject: str, schema: Any) -> int:
        return self.client.register_schema(subject, Schema(json.dumps(schema), "AVRO"))

    def schema_by_id(self, schema_id: int) -> Any:
        try:
            return json.loads(self.client.get_schema(schema_id).schema_str)
        except SchemaRegistryError as e:
            raise KeyError(f"Schema {schema_id} not found: {e.error_message}") from None

    def latest(self, subject: str) -> tuple[int, Any] | None:
        try:
            registered = self.client.get_latest_version(subject)
        except SchemaRegistryError as e:
            if e.error_code == SUBJECT_NOT_FOUND:
                return None
            raise
        return registered.schema_id, json.loads(registered.schema.schema_str)
