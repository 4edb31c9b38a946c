"""The S3 sink's encoders: Avro container files (fastavro), Parquet (pyarrow), JSON lines.

Which format classes exist and which extension each writes come from the table in
:mod:`connectors.formats`, which the lake readers read with too; this module adds only how to encode.
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
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import fastavro
import pyarrow as pa
import pyarrow.parquet as pq

from connectors.formats import AVRO_FORMAT, FORMAT_CLASSES, JSON_FORMAT, PARQUET_FORMAT, format_of_class
from stack.connect.s3sink.arrow_schema import avro_to_arrow, is_record


class FormatError(ValueError):
    """Records the configured format cannot write (for instance schemaless JSON into Avro)."""


class RecordFormat(Protocol):
    extension: str

    def encode(self, records: Sequence[Any], schema: Any, object_key: str) -> bytes: ...


class AvroFormat:
    extension = format_of_class(AVRO_FORMAT).extension

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
    extension = format_of_class(PARQUET_FORMAT).extension

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

    extension = format_of_class(JSON_FORMAT).extension

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


#: How the sink encodes each format class of the table, given the connector's avro.codec and parquet.codec.
ENCODERS: dict[str, Callable[[str, str], RecordFormat]] = {
    AVRO_FORMAT: lambda avro_codec, parquet_codec: AvroFormat(avro_codec),
    PARQUET_FORMAT: lambda avro_codec, parquet_codec: ParquetFormat(parquet_codec),
    JSON_FORMAT: lambda avro_codec, parquet_codec: JsonFormat(),
}


def make_format(format_class: str, avro_codec: str = "null", parquet_codec: str = "snappy") -> RecordFormat:
    """The encoder of a connector's ``format.class``."""
    encoder = ENCODERS.get(format_class)
    if encoder is None:
        raise FormatError(f"unsupported format.class {format_class}; supported: {', '.join(FORMAT_CLASSES)}")
    return encoder(avro_codec, parquet_codec)
