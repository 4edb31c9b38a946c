"""The KAFKA format: a single bare scalar in Kafka's own serializer encodings."""

from __future__ import annotations

import struct
from typing import Any

from ..errors import KsqlStatementError, SerdeError
from ..types import BIGINT, BYTES, DOUBLE, INTEGER, STRING, SqlType
from .base import Serde

SUPPORTED = (INTEGER, BIGINT, DOUBLE, STRING, BYTES)


def validate(columns: list[tuple[str, SqlType]], is_key: bool = False) -> None:
    if len(columns) > 1:
        cols = ", ".join(f"`{n}` {t}{' KEY' if is_key else ''}" for n, t in columns)
        raise KsqlStatementError(f"The 'KAFKA' format only supports a single field. Got: [{cols}]")
    for _name, t in columns:
        if t not in SUPPORTED:
            # unlike DELIMITED, ksqlDB's KAFKA format does not name the column
            raise KsqlStatementError(f"The 'KAFKA' format does not support type '{t.name}'")


def encode_scalar(value: Any, t: SqlType) -> bytes:
    if t == INTEGER:
        return struct.pack(">i", value)
    if t == BIGINT:
        return struct.pack(">q", value)
    if t == DOUBLE:
        return struct.pack(">d", value)
    if t == STRING:
        return value.encode("utf-8")
    return bytes(value)


def decode_scalar(data: bytes, t: SqlType) -> Any:
    if t == INTEGER:
        if len(data) != 4:
            raise SerdeError("Size of data received by IntegerDeserializer is not 4")
        return struct.unpack(">i", data)[0]
    if t == BIGINT:
        if len(data) != 8:
            raise SerdeError("Size of data received by LongDeserializer is not 8")
        return struct.unpack(">q", data)[0]
    if t == DOUBLE:
        if len(data) != 8:
            raise SerdeError("Size of data received by DoubleDeserializer is not 8")
        return struct.unpack(">d", data)[0]
    if t == STRING:
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise SerdeError(f"Error deserializing STRING: {e}") from None
    return bytes(data)


class KafkaSerde(Serde):
    def __init__(self, columns: list[tuple[str, SqlType]]) -> None:
        super().__init__(columns)
        t = columns[0][1] if columns else None
        # STRING is by far the most common key type: bind its codec directly
        self._is_string = t == STRING

    def deserialize(self, data: bytes | None) -> list[Any] | None:
        if data is None:
            return None
        if not self.columns:
            return []
        if self._is_string:
            try:
                return [data.decode("utf-8")]
            except UnicodeDecodeError as e:
                raise SerdeError(f"Error deserializing STRING: {e}") from None
        return [decode_scalar(data, self.columns[0][1])]

    def serialize(self, values: list[Any] | None) -> bytes | None:
        if values is None or not self.columns or values[0] is None:
            return None
        if self._is_string:
            return values[0].encode("utf-8")
        return encode_scalar(values[0], self.columns[0][1])


class NoneSerde(Serde):
    """The NONE format: the bytes are ignored (keyless sources)."""

    def deserialize(self, data: bytes | None) -> list[Any] | None:
        return []

    def serialize(self, values: list[Any] | None) -> bytes | None:
        return None
