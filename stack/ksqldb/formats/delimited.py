"""The DELIMITED format: one CSV record per message (RFC 4180 quoting, configurable delimiter)."""

from __future__ import annotations

import base64
import binascii
import csv
import io
from decimal import Decimal, InvalidOperation
from typing import Any

from .. import values as V
from ..errors import EvalError, KsqlStatementError, SerdeError
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
    DecimalType,
    SqlType,
)
from .base import Serde

NAMED_DELIMITERS = {"TAB": "\t", "SPACE": " "}


def validate(columns: list[tuple[str, SqlType]]) -> None:
    for name, t in columns:
        if t.name in ("ARRAY", "MAP", "STRUCT"):
            raise KsqlStatementError(f"The 'DELIMITED' format does not support type '{t.name}', column: `{name}`")


_BAD_DELIMITER = "Failed to prepare statement: Configuration VALUE_DELIMITER is invalid: "


def parse_delimiter(text: str) -> str:
    if text.upper() in NAMED_DELIMITERS:
        return NAMED_DELIMITERS[text.upper()]
    if not text.strip():
        raise KsqlStatementError(
            _BAD_DELIMITER + "Delimiter cannot be empty, if you meant to have a tab or space for delimiter, please "
            "use the special values 'TAB' or 'SPACE'\nExample valid value: ';'"
        )
    if len(text) != 1:
        raise KsqlStatementError(
            _BAD_DELIMITER + f"Invalid delimiter value: '{text}'. Delimiter must be a single character or TAB,SPACE"
            "\nExample valid value: ';'"
        )
    return text


def _int_parser(lo: int, hi: int):
    def parse(field: str) -> int:
        v = int(field)
        if not lo <= v <= hi:
            raise ValueError(f"out of range: {field}")
        return v

    return parse


def _parser_for(t: SqlType):
    """A parser for one column, chosen once per serde rather than per field."""
    if t == STRING:
        return None  # the field text as is
    if t == BOOLEAN:
        return lambda f: f.strip().lower() == "true"
    if t == INTEGER:
        return _int_parser(V.INT_MIN, V.INT_MAX)
    if t == BIGINT:
        return _int_parser(V.LONG_MIN, V.LONG_MAX)
    if t == DOUBLE:
        return float
    if isinstance(t, DecimalType):
        return lambda f: V.fit_decimal(Decimal(f.strip()), t)
    if t == BYTES:
        return base64.b64decode
    if t == DATE:
        return lambda f: V.days_to_date(int(f))
    if t == TIME:
        return lambda f: V.millis_to_time(int(f))
    if t == TIMESTAMP:
        return lambda f: V.millis_to_timestamp(int(f))
    raise KsqlStatementError(f"The 'DELIMITED' format does not support type '{t.name}'")


def _text(value: Any, t: SqlType) -> str:
    if value is None:
        return ""
    if t == DATE:
        return str(V.date_to_days(value))
    if t == TIME:
        return str(V.time_to_millis(value))
    if t == TIMESTAMP:
        return str(V.timestamp_to_millis(value))
    return V.to_text(value, t)


def _quote(field: str, delimiter: str, first: bool) -> str:
    """Apache Commons CSV's MINIMAL quoting, which ksqlDB's DELIMITED serializer uses."""
    if field == "":
        return '""' if first else field
    c = field[0]
    needs = (
        (first and not c.isascii() or first and not c.isalnum())
        or c <= "#"
        or field[-1] <= " "
        or any(ch in field for ch in (delimiter, '"', "\n", "\r"))
    )
    return '"' + field.replace('"', '""') + '"' if needs else field


class DelimitedSerde(Serde):
    def __init__(self, columns: list[tuple[str, SqlType]], delimiter: str) -> None:
        super().__init__(columns)
        self.delimiter = delimiter
        self._parsers = [_parser_for(t) for _, t in columns]
        self._n = len(columns)

    def parse_field(self, index: int, field: str) -> Any:
        """One non-empty field of column `index`, as `deserialize` reads it (the vectorized path's fallback)."""
        parser = self._parsers[index]
        return field if parser is None else parser(field)

    def deserialize(self, data: bytes | None) -> list[Any] | None:
        if data is None:
            return None
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise SerdeError(f"Invalid UTF-8 in DELIMITED record: {e}") from None
        if '"' in text or "\n" in text or "\r" in text:
            try:
                rows = list(csv.reader(io.StringIO(text), delimiter=self.delimiter, quotechar='"', strict=True))
            except csv.Error as e:
                raise SerdeError(f"Failed to parse DELIMITED record: {e}") from None
            if len(rows) > 1:
                raise SerdeError("Failed to parse DELIMITED record: more than one record")
            fields = rows[0] if rows else [""]
        else:
            fields = text.split(self.delimiter)
        if len(fields) != self._n:
            raise SerdeError(f"Unexpected field count, csvFields:{len(fields)} schemaFields:{self._n}")
        try:
            return [None if f == "" else (f if p is None else p(f)) for f, p in zip(fields, self._parsers)]
        except (ValueError, InvalidOperation, EvalError, ArithmeticError, binascii.Error) as e:
            raise SerdeError(f"Failed to deserialise DELIMITED record '{text}': {e}") from None

    def serialize(self, values: list[Any] | None) -> bytes | None:
        if values is None:
            return None
        if len(self.columns) == 1 and values[0] is None:
            return None
        parts = [
            _quote(_text(v, t), self.delimiter, i == 0) if v is not None else ""
            for i, (v, (_, t)) in enumerate(zip(values, self.columns))
        ]
        return self.delimiter.join(parts).encode("utf-8")
