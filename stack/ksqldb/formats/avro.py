"""The AVRO format: Confluent wire format (magic byte 0, 4-byte schema id) over fastavro.

Schemas are generated the way ksqlDB names them (record `KsqlDataSourceSchema` in namespace
`io.confluent.ksql.avro_schemas`, nested records suffixed with the field path, every field an optional
union with null) and registered under `<topic>-value` / `<topic>-key`.
"""

from __future__ import annotations

import datetime as dt
import io
import re
import struct
from typing import Any

import fastavro

from fraudstream import wire

from .. import values as V
from ..errors import KsqlStatementError, SerdeError
from ..types import (
    BIGINT,
    BOOLEAN,
    BYTES,
    DATE,
    DOUBLE,
    INTEGER,
    STRING,
    TIME,
    TIMESTAMP,
    ArrayType,
    DecimalType,
    MapType,
    SqlType,
    StructType,
    nested,
)
from .base import Serde
from .coerce import coercer, row_coercer
from .registry import SchemaRegistry

DEFAULT_NAME = "KsqlDataSourceSchema"
DEFAULT_NAMESPACE = "io.confluent.ksql.avro_schemas"
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def validate(columns: list[tuple[str, SqlType]]) -> None:
    for name, t in columns:
        _check_name(name)
        for inner in nested(t):
            if isinstance(inner, MapType) and inner.key != STRING:
                raise KsqlStatementError("Avro only supports MAPs with STRING keys")
            if isinstance(inner, StructType):
                for field_name, _ in inner.fields:
                    _check_name(field_name)


def _check_name(name: str) -> None:
    if not _NAME.match(name):
        bad = name[:1] if name and not (name[0].isalpha() or name[0] == "_") else name
        reason = f"Illegal initial character: {name}" if bad == name[:1] else f"Illegal character in: {name}"
        raise KsqlStatementError(f"Schema is not compatible with Avro: {reason}")


def avro_type(t: SqlType, name: str) -> Any:
    if t == BOOLEAN:
        return "boolean"
    if t == INTEGER:
        return "int"
    if t == BIGINT:
        return "long"
    if t == DOUBLE:
        return "double"
    if t == STRING:
        return "string"
    if t == BYTES:
        return "bytes"
    if isinstance(t, DecimalType):
        return {
            "type": "bytes",
            "logicalType": "decimal",
            "precision": t.precision,
            "scale": t.scale,
            "connect.version": 1,
            "connect.name": "org.apache.kafka.connect.data.Decimal",
            "connect.parameters": {"scale": str(t.scale), "connect.decimal.precision": str(t.precision)},
        }
    if t == DATE:
        return {"type": "int", "logicalType": "date"}
    if t == TIME:
        return {"type": "int", "logicalType": "time-millis"}
    if t == TIMESTAMP:
        return {"type": "long", "logicalType": "timestamp-millis"}
    if isinstance(t, ArrayType):
        return {"type": "array", "items": ["null", avro_type(t.item, name)]}
    if isinstance(t, MapType):
        return {"type": "map", "values": ["null", avro_type(t.value, name)]}
    if isinstance(t, StructType):
        return _record(t.fields, name)
    raise SerdeError(f"No Avro type for {t}")


def _record(fields: tuple[tuple[str, SqlType], ...] | list, full_name: str) -> dict:
    ns, _, short = full_name.rpartition(".")
    rec: dict[str, Any] = {"type": "record", "name": short}
    if ns:
        rec["namespace"] = ns
    rec["fields"] = [
        {"name": n, "type": ["null", avro_type(ft, f"{full_name}_{n}")], "default": None} for n, ft in fields
    ]
    return rec


def schema_for(columns: list[tuple[str, SqlType]], unwrapped: bool, full_name: str | None) -> Any:
    name = full_name or f"{DEFAULT_NAMESPACE}.{DEFAULT_NAME}"
    if unwrapped:
        return ["null", avro_type(columns[0][1], name)]
    return _record(columns, name)


def _to_avro(value: Any, t: SqlType) -> Any:
    if value is None:
        return None
    if isinstance(t, ArrayType):
        return [_to_avro(v, t.item) for v in value]
    if isinstance(t, MapType):
        return {k: _to_avro(v, t.value) for k, v in value.items()}
    if isinstance(t, StructType):
        return {n: _to_avro(value.get(n), ft) for n, ft in t.fields}
    if t == TIMESTAMP:
        return value.replace(tzinfo=dt.UTC)
    if isinstance(t, DecimalType) and value.as_tuple().exponent != -t.scale:
        return V.fit_decimal(value, t)  # Avro decimals carry exactly the schema's scale
    return value


def _plain_avro(t: SqlType) -> bool:
    """True when the engine's value is already what fastavro writes for this type."""
    return t != TIMESTAMP and not isinstance(t, (ArrayType, MapType, StructType, DecimalType))


def _zigzag(n: int) -> bytes:
    n = (n << 1) ^ (n >> 63)
    out = bytearray()
    while n & ~0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


_PACK_DOUBLE = struct.Struct("<d").pack


def _field_encoder(t: SqlType, nested: bool = False):
    """Binary Avro for one ["null", <primitive>] field (with `nested`, also ["null", array] and ["null",
    record] of such fields: a history of a hundred structs is written without fastavro's per-datum union
    resolution), or None when fastavro must do it."""
    if t == DOUBLE:
        return lambda v: b"\x02" + _PACK_DOUBLE(v)
    if t in (INTEGER, BIGINT):
        return lambda v: b"\x02" + _zigzag(v)
    if t == STRING:

        def enc_string(v):
            b = v.encode("utf-8")
            return b"\x02" + _zigzag(len(b)) + b

        return enc_string
    if t == BOOLEAN:
        return lambda v: b"\x02\x01" if v else b"\x02\x00"
    if t == BYTES:
        return lambda v: b"\x02" + _zigzag(len(v)) + v
    if nested and isinstance(t, ArrayType):
        item = _field_encoder(t.item, nested)
        if item is None:
            return None

        def enc_array(v):
            if not v:
                return b"\x02\x00"
            return b"\x02" + _zigzag(len(v)) + b"".join(b"\x00" if x is None else item(x) for x in v) + b"\x00"

        return enc_array
    if nested and isinstance(t, StructType):
        fields = [(n, _field_encoder(ft, nested)) for n, ft in t.fields]
        if not fields or any(e is None for _, e in fields):
            return None

        def enc_struct(v):
            return b"\x02" + b"".join(b"\x00" if (x := v.get(n)) is None else e(x) for n, e in fields)

        return enc_struct
    return None


def record_encoder(columns: list[tuple[str, SqlType]], nested: bool = False):
    """A compiled encoder for a record of optional primitive fields (ksqlDB's usual value schema; with
    `nested`, also arrays and structs of them), writing the same bytes as fastavro for the schema
    `schema_for` generates; None when a field needs fastavro."""
    encoders = [_field_encoder(t, nested) for _, t in columns]
    if not encoders or any(e is None for e in encoders):
        return None

    def encode_values(values: list) -> bytes:
        return b"".join(b"\x00" if v is None else e(v) for e, v in zip(encoders, values))

    return encode_values


_NO_DEFAULT = object()


def _field_names(schema: Any) -> dict | None:
    """For a record schema: upper-cased field name -> (its spelling, nested renames, default)."""
    if isinstance(schema, list):
        branches = [_field_names(s) for s in schema if s != "null"]
        return next((b for b in branches if b), None)
    if isinstance(schema, dict) and schema.get("type") == "record":
        return {
            f["name"].upper(): (f["name"], _field_names(f["type"]), f.get("default", _NO_DEFAULT))
            for f in schema["fields"]
        }
    if isinstance(schema, dict) and isinstance(schema.get("type"), (dict, list)):
        return _field_names(schema["type"])
    return None


def _rename(datum: Any, names: dict) -> Any:
    """Fit a record to a registered schema: its spelling of field names, and its defaults for fields the
    query does not produce."""
    if not isinstance(datum, dict):
        return datum
    out = {}
    for k, v in datum.items():
        spelled, nested, default = names.get(k.upper(), (k, None, _NO_DEFAULT))
        if v is None and default is not _NO_DEFAULT:
            v = default
        out[spelled] = _rename(v, nested) if nested else v
    for spelled, _, default in names.values():
        if spelled not in out and default is not _NO_DEFAULT:
            out[spelled] = default
    return out


def encode(schema_id: int, parsed: Any, datum: Any) -> bytes:
    buf = io.BytesIO()
    buf.write(wire.header(schema_id))
    fastavro.schemaless_writer(buf, parsed, datum)
    return buf.getvalue()


def decode(data: bytes, registry: SchemaRegistry, cache: dict) -> Any:
    try:
        schema_id = wire.schema_id(data)
    except wire.WireFormatError as error:
        raise SerdeError(str(error)) from None
    parsed = cache.get(schema_id)
    if parsed is None:
        try:
            raw = registry.schema_by_id(schema_id)
        except KeyError:
            raise SerdeError(f"Schema not found; error code: 40403 (id {schema_id})") from None
        parsed = fastavro.parse_schema(raw)
        cache[schema_id] = parsed
    try:
        return fastavro.schemaless_reader(io.BytesIO(data[5:]), parsed, None)
    except Exception as e:  # fastavro raises assorted errors on corrupt input
        raise SerdeError(f"Error deserializing Avro message for id {schema_id}: {e}") from None


class AvroSerde(Serde):
    def __init__(
        self,
        columns: list[tuple[str, SqlType]],
        *,
        unwrapped: bool,
        registry: SchemaRegistry,
        subject: str,
        is_key: bool,
        full_name: str | None = None,
        schema_id: int | None = None,
    ) -> None:
        super().__init__(columns)
        self.unwrapped = unwrapped
        self.registry = registry
        self.subject = subject
        self.struct = StructType(tuple(columns))
        self.schema = schema_for(columns, unwrapped, full_name)
        self._parsed = fastavro.parse_schema(self.schema)
        self._fixed_id = schema_id
        self._id: int | None = None
        self._cache: dict = {}
        self._renames: dict | None = None
        self._names = [n for n, _ in columns]
        # per-column converters, only where a value needs one (timestamps, containers)
        self._converters = [None if _plain_avro(t) else (lambda v, _t=t: _to_avro(v, _t)) for _, t in columns]
        self._all_plain = all(c is None for c in self._converters)
        own_schema = not unwrapped and full_name is None and schema_id is None
        self._fast = record_encoder(columns, nested=True) if own_schema else None
        self._plain = own_schema and record_encoder(columns) is not None
        self._row = row_coercer(columns)
        self._first = coercer(columns[0][1]) if columns else None

    def deserialize(self, data: bytes | None) -> list[Any] | None:
        if data is None:
            return None
        datum = decode(data, self.registry, self._cache)
        if datum is None and not self.unwrapped:
            return None
        if self.unwrapped:
            return [self._first(datum)]
        if not isinstance(datum, dict):
            if len(self.columns) == 1:
                return [self._first(datum)]
            raise SerdeError(f"Expected an Avro record, got {type(datum).__name__}")
        return self._row(datum)

    @property
    def plain_record(self) -> bool:
        """True when records are written by the compiled encoder of optional primitive fields (what the
        vectorized path reproduces column-wise)."""
        return self._plain

    def writer_id(self) -> int:
        """The schema id written in front of every record (the schema is registered on first use)."""
        if self._id is None:
            if self._fixed_id is not None:
                self._id = self._fixed_id
                fixed = self.registry.schema_by_id(self._fixed_id)
                self._parsed = fastavro.parse_schema(fixed)
                self._renames = _field_names(fixed)
            else:
                self._id = self.registry.register(self.subject, self.schema)
        return self._id

    def serialize(self, values: list[Any] | None) -> bytes | None:
        if values is None:
            return None
        self.writer_id()
        if self._fast is not None:
            try:
                return wire.header(self._id) + self._fast(values)
            except (TypeError, struct.error, OverflowError, AttributeError) as e:
                raise SerdeError(f"Error serializing Avro message: {e}") from None
        if self.unwrapped:
            if values[0] is None:
                return None
            datum = _to_avro(values[0], self.columns[0][1])
        else:
            if self._all_plain:
                datum = dict(zip(self._names, values))
            else:
                datum = {
                    n: (v if c is None or v is None else c(v)) for n, v, c in zip(self._names, values, self._converters)
                }
        if self._renames:  # a registered schema (VALUE_SCHEMA_ID) may spell field names differently
            datum = _rename(datum, self._renames)
        try:
            return encode(self._id, self._parsed, datum)
        except Exception as e:
            raise SerdeError(f"Error serializing Avro message: {e}") from None


def sql_type_of(avro: Any) -> SqlType:
    """Infer a SQL type from an Avro schema (used for schema inference on CREATE without columns)."""
    if isinstance(avro, list):
        non_null = [a for a in avro if a != "null"]
        if len(non_null) != 1:
            raise KsqlStatementError(f"Unsupported Avro union: {avro}")
        return sql_type_of(non_null[0])
    if isinstance(avro, str):
        simple = {
            "boolean": BOOLEAN,
            "int": INTEGER,
            "long": BIGINT,
            "double": DOUBLE,
            "float": DOUBLE,
            "string": STRING,
            "bytes": BYTES,
        }
        if avro in simple:
            return simple[avro]
        raise KsqlStatementError(f"Unsupported Avro type: {avro}")
    logical = avro.get("logicalType")
    if logical == "decimal":
        return DecimalType(int(avro["precision"]), int(avro.get("scale", 0)))
    if logical == "date":
        return DATE
    if logical == "time-millis":
        return TIME
    if logical == "timestamp-millis":
        return TIMESTAMP
    kind = avro.get("type")
    if kind == "array":
        return ArrayType(sql_type_of(avro["items"]))
    if kind == "map":
        return MapType(STRING, sql_type_of(avro["values"]))
    if kind == "record":
        return StructType(tuple((f["name"].upper(), sql_type_of(f["type"])) for f in avro["fields"]))
    if kind == "enum":
        return STRING
    if kind == "fixed":
        return BYTES
    return sql_type_of(kind)
