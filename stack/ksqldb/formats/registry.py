"""Schema Registry access for the AVRO format.

`SchemaRegistry` is the small interface the engine needs; `InMemorySchemaRegistry` holds schemas in a
dict (used by the conformance runner for a case's registered schemas, and by unit tests). A client of
the real registry REST API implements the same three methods.
"""

from __future__ import annotations

import json
from typing import Any, Protocol

from fraudstream.credentials import schema_registry_conf


class SchemaRegistry(Protocol):
    def register(self, subject: str, schema: Any) -> int: ...

    def schema_by_id(self, schema_id: int) -> Any: ...

    def latest(self, subject: str) -> tuple[int, Any] | None: ...


def _canonical(schema: Any) -> str:
    return json.dumps(schema, sort_keys=True, separators=(",", ":"))


class InMemorySchemaRegistry:
    def __init__(self) -> None:
        self._by_id: dict[int, Any] = {}
        self._subjects: dict[str, list[int]] = {}
        self._next = 1

    def register(self, subject: str, schema: Any, schema_id: int | None = None) -> int:
        text = _canonical(schema)
        for sid in self._subjects.get(subject, []):
            if _canonical(self._by_id[sid]) == text:
                return sid
        existing = next((sid for sid, s in self._by_id.items() if _canonical(s) == text), None)
        sid = schema_id if schema_id is not None else existing
        if sid is None:
            while self._next in self._by_id:
                self._next += 1
            sid = self._next
        self._by_id[sid] = schema
        self._subjects.setdefault(subject, []).append(sid)
        return sid

    def schema_by_id(self, schema_id: int) -> Any:
        if schema_id not in self._by_id:
            raise KeyError(f"Schema {schema_id} not found")
        return self._by_id[schema_id]

    def latest(self, subject: str) -> tuple[int, Any] | None:
        ids = self._subjects.get(subject)
        if not ids:
            return None
        return ids[-1], self._by_id[ids[-1]]

    def subjects(self) -> list[str]:
        return sorted(self._subjects)


#: Confluent's error code for an unknown subject: "no schema yet", as opposed to a registry that fails.
SUBJECT_NOT_FOUND = 40401


class HttpSchemaRegistry:
    """The same interface over a Confluent-compatible Schema Registry (REST), via confluent-kafka's client.

    Lookups by id are cached: a registered schema never changes, so the cache is always right.

    confluent-kafka's Schema Registry client is imported where it is used, not with this module: it takes
    about half a second to import, and engines with an in-memory registry (tests, conformance runs) never
    need it.
    """

    def __init__(self, url: str) -> None:
        from confluent_kafka.schema_registry import SchemaRegistryClient  # slow to import: see the class

        self._client = SchemaRegistryClient(schema_registry_conf(url))
        self._by_id: dict[int, Any] = {}

    def register(self, subject: str, schema: Any) -> int:
        from confluent_kafka.schema_registry import Schema  # slow to import: see the class

        schema_id = self._client.register_schema(subject, Schema(json.dumps(schema), "AVRO"))
        self._by_id[schema_id] = schema
        return schema_id

    def schema_by_id(self, schema_id: int) -> Any:
        if schema_id not in self._by_id:
            from confluent_kafka.schema_registry.error import SchemaRegistryError  # slow: see the class

            try:
                self._by_id[schema_id] = json.loads(self._client.get_schema(schema_id).schema_str)
            except SchemaRegistryError as e:
                raise KeyError(f"Schema {schema_id} not found: {e}") from None
        return self._by_id[schema_id]

    def latest(self, subject: str) -> tuple[int, Any] | None:
        from confluent_kafka.schema_registry.error import SchemaRegistryError  # slow: see the class

        try:
            registered = self._client.get_latest_version(subject)
        except SchemaRegistryError as e:
            if e.error_code == SUBJECT_NOT_FOUND:
                return None
            raise
        return registered.schema_id, json.loads(registered.schema.schema_str)
