"""The S3 sink's output formats: Avro container files (fastavro), Parquet (pyarrow), JSON lines.

Encoding is deterministic (the Avro sync marker is derived from the object name), so a task that
crashes and retries writes the very same bytes to the very same object: the lake stays exactly once.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import hashlib
import io
import json
import uuid
from collections.abc import Sequence
from typing import Any, Protocol

import fastavro
import pyarrow as pa
import pyarrow.parquet as pq

from stack.connect import definitions as d
from stack.connect.s3sink.arrow_schema import avro_to_arrow, is_record


class FormatError(ValueError):
    """Records the configured format cannot write (for instance schemaless JSON into Avro)."""


class RecordFormat(Protocol):
    extension: str

    def encode(self, records: Sequence[Any], schema: Any, object_key: str) -> bytes: ...


class AvroFormat:
    extension = "avro"

    def __init__(self, codec: str = "null") -> None:
        self.codec = codec

    def encode(self, records: Sequence[Any], schema: Any, object_key: str) -> bytes:
        if schema is None:
            raise FormatError(
                "AvroFormat needs records with a schema (use the AvroConverter, or JsonConverter with schemas.enable=true)"
            )
        out = io.BytesIO()
        marker = hashlib.sha256(object_key.encode()).digest()[:16]
        fastavro.writer(out, schema, records, codec=self.codec, sync_marker=marker)
        return out.getvalue()


class ParquetFormat:
    extension = "parquet"

    def __init__(self, codec: str = "snappy") -> None:
        self.codec = codec

    def encode(self, records: Sequence[Any], schema: Any, object_key: str) -> bytes:
        if schema is None:
            raise FormatError(
                "ParquetFormat needs records with a schema (use the AvroConverter, or JsonConverter with schemas.enable=true)"
            )
        arrow_schema = avro_to_arrow(schema)
        rows = list(records) if is_record(schema) else [{"value": record} for record in records]
        table = pa.Table.from_pylist(rows, schema=arrow_schema)
        out = io.BytesIO()
        pq.write_table(table, out, compression=self.codec)
        return out.getvalue()


class JsonFormat:
    """One JSON document per line, as Confluent's JsonFormat writes them."""

    extension = "json"

    def encode(self, records: Sequence[Any], schema: Any, object_key: str) -> bytes:
        lines = (json.dumps(record, default=_json_default, separators=(",", ":")) for record in records)
        return "".join(line + "\n" for line in lines).encode()


def _json_default(value: Any) -> Any:
    """Connect's JSON for Avro's logical types: epoch millis, epoch days, numbers; bytes in base64."""
    if isinstance(value, dt.datetime):
        return int(value.timestamp() * 1000)
    if isinstance(value, dt.date):
        return (value - dt.date(1970, 1, 1)).days
    if isinstance(value, dt.time):
        return (value.hour * 3600 + value.minute * 60 + value.second) * 1000 + value.microsecond // 1000
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(value).decode()
    if isinstance(value, uuid.UUID):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def make_format(format_class: str, avro_codec: str = "null", parquet_codec: str = "snappy") -> RecordFormat:
    if format_class == d.AVRO_FORMAT:
        return AvroFormat(avro_codec)
    if format_class == d.PARQUET_FORMAT:
        return ParquetFormat(parquet_codec)
    if format_class == d.JSON_FORMAT:
        return JsonFormat()
    raise FormatError(f"unsupported format.class {format_class}")
