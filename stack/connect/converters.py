"""Connect's converters: Kafka bytes to a value and the Avro schema that describes it.

Every converter yields a `Converted` (value plus Avro schema, or no schema for schemaless JSON),
because the S3 sink's formats need a schema to write Avro and Parquet. A converter raises
`ConversionError` for bytes it cannot read; the task dead-letters or fails on it, as Connect does.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from typing import Any, NamedTuple, Protocol

import fastavro
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from fraudstream import wire
from fraudstream.credentials import schema_registry_conf
from stack.connect import definitions as d


class ConversionError(ValueError):
    """Bytes that the configured converter cannot read."""


class TransientError(RuntimeError):
    """The Schema Registry could not answer now (unreachable, 5xx): the same record is tried again later."""


class Converted(NamedTuple):  # a tuple: one is made per record, and tuples are cheap to make
    value: Any
    schema: Any  # a parsed Avro schema, or None for schemaless data
    schema_key: Any  # equal for records that share a schema: a file rotates when it changes


NULL = Converted(None, None, None)


class Converter(Protocol):
    def convert(self, topic: str, data: bytes | None) -> Converted: ...


class StringConverter:
    SCHEMA = fastavro.parse_schema("string")

    def convert(self, topic: str, data: bytes | None) -> Converted:
        if data is None:
            return NULL
        try:
            return Converted(data.decode("utf-8"), self.SCHEMA, "string")
        except UnicodeDecodeError as exc:
            raise ConversionError(f"Failed to deserialize string: {exc}") from exc


class ByteArrayConverter:
    SCHEMA = fastavro.parse_schema("bytes")

    def convert(self, topic: str, data: bytes | None) -> Converted:
        return NULL if data is None else Converted(bytes(data), self.SCHEMA, "bytes")


class JsonConverter:
    """JSON, with Connect's {"schema": ..., "payload": ...} envelope when schemas.enable is true (its default)."""

    def __init__(self, settings: Mapping[str, str]) -> None:
        self.schemas_enable = str(settings.get("schemas.enable", "true")).lower() == "true"
        self._schemas: dict[str, Any] = {}

    def convert(self, topic: str, data: bytes | None) -> Converted:
        if data is None:
            return NULL
        try:
            document = json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ConversionError(
                f"Converting byte[] to Kafka Connect data failed due to serialization error: {exc}"
            ) from exc
        if not self.schemas_enable:
            return Converted(document, None, None)
        if not isinstance(document, dict) or set(document) != {"schema", "payload"}:
            raise ConversionError(
                'JsonConverter with schemas.enable requires "schema" and "payload" fields and may not contain additional fields. '
                "If you are trying to deserialize plain JSON data, set schemas.enable=false in your converter configuration."
            )
        if document["payload"] is None:
            return NULL
        key = json.dumps(document["schema"], sort_keys=True)
        if key not in self._schemas:
            try:
                self._schemas[key] = fastavro.parse_schema(connect_to_avro(document["schema"]))
            except (KeyError, TypeError, ValueError, fastavro.schema.SchemaParseException) as exc:
                raise ConversionError(f"Unsupported Connect schema: {exc}") from exc
        return Converted(document["payload"], self._schemas[key], key)


_CONNECT_PRIMITIVES = {
    "int8": "int",
    "int16": "int",
    "int32": "int",
    "int64": "long",
    "float32": "float",
    "float64": "double",
    "boolean": "boolean",
    "string": "string",
    "bytes": "bytes",
}


def connect_to_avro(schema: Mapping[str, Any], name: str = "ConnectDefault") -> Any:
    """The Avro schema of a Connect JSON schema (struct, array, map, primitives; optional as a union with null)."""
    kind = schema["type"]
    if kind == "struct":
        fields = [
            {"name": field["field"], "type": connect_to_avro(field, f"{name}_{field['field']}")}
            | ({"default": None} if field.get("optional") else {})
            for field in schema["fields"]
        ]
        avro: Any = {"type": "record", "name": schema.get("name", name).replace(".", "_"), "fields": fields}
    elif kind == "array":
        avro = {"type": "array", "items": connect_to_avro(schema["items"], f"{name}_item")}
    elif kind == "map":
        avro = {"type": "map", "values": connect_to_avro(schema["values"], f"{name}_value")}
    else:
        avro = _CONNECT_PRIMITIVES[kind]
    return ["null", avro] if schema.get("optional") else avro


class AvroConverter:
    """Confluent's wire format (magic byte 0, 4-byte schema id, Avro binary), schemas from the Schema Registry."""

    def __init__(self, settings: Mapping[str, str]) -> None:
        """`schema.registry.url`, and credentials as Confluent's converter takes them (`basic.auth.user.info`
        with `basic.auth.credentials.source=USER_INFO`), else the worker's own (fraudstream.credentials)."""
        conf = schema_registry_conf(settings["schema.registry.url"])
        if settings.get("basic.auth.credentials.source", "USER_INFO") == "USER_INFO" and settings.get(
            "basic.auth.user.info"
        ):
            conf["basic.auth.user.info"] = settings["basic.auth.user.info"]
        self.client = SchemaRegistryClient(conf)
        self._schemas: dict[int, Any] = {}

    def schema(self, schema_id: int) -> Any:
        if schema_id not in self._schemas:
            try:
                registered = self.client.get_schema(schema_id)
            except SchemaRegistryError as exc:
                if exc.http_status_code >= 500:
                    raise TransientError(f"Schema Registry error for schema id {schema_id}: {exc}") from exc
                raise ConversionError(f"Error retrieving Avro value schema for id {schema_id}: {exc}") from exc
            except Exception as exc:  # transport errors: the registry is down or restarting
                raise TransientError(f"Schema Registry unreachable for schema id {schema_id}: {exc!r}") from exc
            if registered.schema_type not in (None, "AVRO"):
                raise ConversionError(f"Schema id {schema_id} is {registered.schema_type}, not AVRO")
            self._schemas[schema_id] = fastavro.parse_schema(json.loads(registered.schema_str))
        return self._schemas[schema_id]

    def convert(self, topic: str, data: bytes | None) -> Converted:
        if data is None:
            return NULL
        try:
            schema_id = wire.schema_id(data)
        except wire.WireFormatError as error:
            raise ConversionError(f"Error deserializing Avro message from topic {topic}: {error}") from None
        schema = self.schema(schema_id)
        try:
            value = fastavro.schemaless_reader(io.BytesIO(data[wire.HEADER_SIZE :]), schema, None)
        except Exception as exc:  # fastavro raises EOFError, ValueError, IndexError... on bad bytes
            raise ConversionError(f"Error deserializing Avro message for id {schema_id}: {exc!r}") from exc
        return Converted(value, schema, schema_id)


def make_converter(class_name: str, settings: Mapping[str, str]) -> Converter:
    if class_name == d.AVRO_CONVERTER:
        return AvroConverter(settings)
    if class_name == d.JSON_CONVERTER:
        return JsonConverter(settings)
    if class_name == d.BYTES_CONVERTER:
        return ByteArrayConverter()
    return StringConverter()
