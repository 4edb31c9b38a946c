"""Arrow types for Avro schemas, so that Parquet files carry the same columns and logical types."""

from __future__ import annotations

from typing import Any

import pyarrow as pa

_PRIMITIVES: dict[str, pa.DataType] = {
    "null": pa.null(),
    "boolean": pa.bool_(),
    "int": pa.int32(),
    "long": pa.int64(),
    "float": pa.float32(),
    "double": pa.float64(),
    "bytes": pa.binary(),
    "string": pa.string(),
}

_LOGICAL: dict[str, pa.DataType] = {
    "timestamp-millis": pa.timestamp("ms", tz="UTC"),
    "timestamp-micros": pa.timestamp("us", tz="UTC"),
    "local-timestamp-millis": pa.timestamp("ms"),
    "local-timestamp-micros": pa.timestamp("us"),
    "date": pa.date32(),
    "time-millis": pa.time32("ms"),
    "time-micros": pa.time64("us"),
    "uuid": pa.string(),
}


def is_record(schema: Any) -> bool:
    return isinstance(schema, dict) and schema.get("type") == "record"


def avro_to_arrow(schema: Any) -> pa.Schema:
    """The Arrow schema of a parsed Avro schema; a non-record value becomes one column named `value`."""
    if is_record(schema):
        return pa.schema([pa.field(f["name"], *_type(f["type"])) for f in schema["fields"]])
    return pa.schema([pa.field("value", *_type(schema))])


def _type(schema: Any) -> tuple[pa.DataType, bool]:
    """(Arrow type, nullable) of an Avro type."""
    if isinstance(schema, list):
        branches = [branch for branch in schema if branch != "null"]
        nullable = len(branches) < len(schema)
        if len(branches) != 1:
            raise ValueError(f"unions of several non-null types are not supported in Parquet: {schema}")
        return _type(branches[0])[0], nullable
    if isinstance(schema, str):
        if schema not in _PRIMITIVES:
            raise ValueError(f"named type {schema} is not supported in Parquet")
        return _PRIMITIVES[schema], schema == "null"
    logical = schema.get("logicalType")
    if logical == "decimal":
        return pa.decimal128(schema["precision"], schema.get("scale", 0)), False
    if logical in _LOGICAL:
        return _LOGICAL[logical], False
    kind = schema["type"]
    if kind == "record":
        return pa.struct([pa.field(f["name"], *_type(f["type"])) for f in schema["fields"]]), False
    if kind == "array":
        return pa.list_(_type(schema["items"])[0]), False
    if kind == "map":
        return pa.map_(pa.string(), _type(schema["values"])[0]), False
    if kind == "enum":
        return pa.string(), False
    if kind == "fixed":
        return pa.binary(schema["size"]), False
    return _type(kind)
