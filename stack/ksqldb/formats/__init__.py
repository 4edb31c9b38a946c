"""Key and value formats (serdes): KAFKA, DELIMITED, JSON and AVRO.

`make_serde` builds a `Serde` for a list of columns; `validate` checks a schema against a format with
ksqlDB's error messages. A Serde turns Kafka bytes into a list of column values and back; a failure
raises SerdeError, which the query sends to the processing log.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import KsqlStatementError, UnsupportedError
from ..types import SqlType, contains_map
from . import avro, delimited, json_format, kafka
from .base import Serde
from .registry import HttpSchemaRegistry, InMemorySchemaRegistry, SchemaRegistry

KNOWN_FORMATS = {"KAFKA", "DELIMITED", "JSON", "AVRO", "JSON_SR", "PROTOBUF", "PROTOBUF_NOSR", "NONE"}
IMPLEMENTED = {"KAFKA", "DELIMITED", "JSON", "AVRO", "NONE"}


@dataclass(frozen=True)
class FormatInfo:
    """A format plus its per-source options."""

    name: str
    delimiter: str | None = None
    wrap_single: bool | None = None  # None: the format's default
    full_schema_name: str | None = None
    schema_id: int | None = None

    def __str__(self) -> str:
        return self.name


def check_format_name(name: str) -> str:
    upper = name.upper()
    if upper not in KNOWN_FORMATS:
        raise KsqlStatementError(f"Unknown format: {upper}")
    if upper not in IMPLEMENTED:
        raise UnsupportedError(f"format {upper}")
    return upper


def validate(fmt: FormatInfo, columns: list[tuple[str, SqlType]], is_key: bool) -> None:
    if is_key:
        for name, t in columns:
            if contains_map(t):
                raise KsqlStatementError(
                    "Map keys, including types that contain maps, are not supported as they may lead to "
                    f"unexpected behavior due to inconsistent serialization. Key column name: `{name}`. "
                    f"Column type: {t}. See https://github.com/confluentinc/ksql/issues/6621 for more."
                )
    if fmt.name == "NONE":
        if columns:
            raise KsqlStatementError(
                f"The 'NONE' format can only be used when no columns are defined. Got: "
                f"[{', '.join(f'`{n}` {t}' for n, t in columns)}]"
            )
        return
    if fmt.full_schema_name is not None and fmt.name != "AVRO":
        raise KsqlStatementError(f"{fmt.name} does not support the following configs: [fullSchemaName]")
    if fmt.delimiter is not None and fmt.name != "DELIMITED":
        raise KsqlStatementError(f"{fmt.name} does not support the following configs: [delimiter]")
    if not is_key and fmt.wrap_single is True and fmt.name in ("KAFKA", "DELIMITED"):
        raise KsqlStatementError(f"Format '{fmt.name}' does not support 'WRAP_SINGLE_VALUE' set to 'true'.")
    if not is_key and fmt.wrap_single is not None and len(columns) != 1:  # either way, as SerdeFeaturesFactory
        raise KsqlStatementError("'WRAP_SINGLE_VALUE' is only valid for single-field value schemas")
    try:
        if fmt.name == "KAFKA":
            kafka.validate(columns, is_key)
        elif fmt.name == "DELIMITED":
            delimited.validate(columns)
        elif fmt.name == "AVRO":
            avro.validate(columns)
        elif fmt.name == "JSON":
            json_format.validate(columns)
    except KsqlStatementError as e:
        cols = ", ".join(f"`{n}` {t}{' KEY' if is_key else ''}" for n, t in columns)
        raise KsqlStatementError(
            f"{'Key' if is_key else 'Value'} format does not support schema.\nformat: {fmt.name}\n"
            f"schema: Persistence{{columns=[{cols}], features=[]}}\nreason: {e.message}"
        ) from None


def make_serde(
    fmt: FormatInfo,
    columns: list[tuple[str, SqlType]],
    *,
    is_key: bool,
    topic: str,
    registry: SchemaRegistry | None = None,
) -> Serde:
    unwrapped = is_key or fmt.wrap_single is False or fmt.name == "KAFKA"
    if fmt.name == "NONE":
        return kafka.NoneSerde(columns)
    if fmt.name == "KAFKA":
        return kafka.KafkaSerde(columns)
    if fmt.name == "DELIMITED":
        return delimited.DelimitedSerde(columns, fmt.delimiter or ",")
    if fmt.name == "JSON":
        return json_format.JsonSerde(columns, unwrapped=unwrapped and len(columns) == 1)
    if fmt.name == "AVRO":
        if registry is None:
            raise KsqlStatementError("AVRO format requires a Schema Registry")
        return avro.AvroSerde(
            columns,
            unwrapped=unwrapped and len(columns) == 1,
            registry=registry,
            subject=f"{topic}-{'key' if is_key else 'value'}",
            is_key=is_key,
            full_name=fmt.full_schema_name,
            schema_id=fmt.schema_id,
        )
    raise UnsupportedError(f"format {fmt.name}")


__all__ = [
    "FormatInfo",
    "HttpSchemaRegistry",
    "InMemorySchemaRegistry",
    "SchemaRegistry",
    "Serde",
    "check_format_name",
    "make_serde",
    "validate",
]
