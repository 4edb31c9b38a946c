"""The row path's first stage, shared by every query over one source: a `ProjectionPlan` says what to compute
per row, and a `Pipeline` deserialises a batch of records, takes each row's event time, filters and
projects it, sending the records it cannot process to the processing log."""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import values as V
from .errors import EvalError, SerdeError
from .expressions import Compiled, ErrorSink
from .formats import Serde
from .functions.datetime import parse_java
from .metastore import DataSource, LogicalSchema
from .processing_log import ProcessingLog
from .records import Headers, Record
from .types import BIGINT, STRING, TIMESTAMP


@dataclass
class ProjectionPlan:
    """A planned projection of one source: WHERE, then the key and value expressions over the source row
    (ROWTIME, ROWPARTITION, ROWOFFSET, key columns, value columns, header columns)."""

    source: DataSource
    schema: LogicalSchema  # output schema
    where: Compiled | None
    key_exprs: list[Compiled]
    value_exprs: list[Compiled]
    value_texts: list[str]
    limit: int | None = None
    errors: ErrorSink | None = None
    partitioned: bool = False
    key_uses_value: list[bool] = field(default_factory=list)  # key expression reads value columns
    result_kind: str = "STREAM"  # TABLE when projecting a table (its changelog)
    projection_order: list[int] = field(default_factory=list)  # per SELECT item, its index in key + value columns


def safe(c: Compiled, text: str, on_error: Callable[[str, str], None]) -> Callable:
    """`c`'s function, reporting an evaluation error as (text, message) to `on_error` and giving NULL instead
    of raising: as in ksqlDB, a column that fails is NULL and the row still comes out."""
    fn = c.fn

    def run(row):
        try:
            return fn(row)
        except (EvalError, ArithmeticError, ValueError, TypeError, OverflowError) as e:
            on_error(text, str(e))
            return None

    return run


def header_reader(header: str | None) -> Callable[[Headers], Any]:
    """What a header column reads from a record's headers. HEADERS: every header as a KEY/VALUE struct;
    HEADER('k'): the last value of header k."""
    if header == "*":
        return lambda headers: [{"KEY": k, "VALUE": v} for k, v in headers]

    def last(headers):
        found = None
        for k, v in headers:
            if k == header:
                found = v
        return found

    return last


def timestamp_extractor(source: DataSource) -> Callable | None:
    """A source's event time (its TIMESTAMP column, in millis) from a record's key and value columns, or None
    when the record's own timestamp is the event time. A STRING column is parsed with TIMESTAMP_FORMAT, else
    as an ISO timestamp."""
    col = source.timestamp_column
    if col is None:
        return None
    schema = source.schema
    key_names = [c.name for c in schema.key]
    value_names = [c.name for c in schema.value]
    fmt = source.timestamp_format
    c = schema.find(col)
    assert c is not None
    in_key = col in key_names
    idx = key_names.index(col) if in_key else value_names.index(col)

    if c.type == BIGINT:
        convert: Callable[[Any], int] = lambda v: v  # noqa: E731
    elif c.type == TIMESTAMP:
        convert = V.timestamp_to_millis
    elif c.type == STRING:
        convert = (
            (lambda v: V.timestamp_to_millis(V.parse_timestamp(v)))
            if fmt is None
            else (lambda v: V.timestamp_to_millis(parse_java(v, fmt)))
        )
    else:
        raise EvalError(f"Unsupported timestamp column type {c.type}")

    def extract(keys, values):
        v = keys[idx] if in_key else values[idx]
        return None if v is None else convert(v)

    return extract


class Pipeline:
    """deserialize -> (timestamp) -> filter -> project, over a batch; shared by persistent and push queries."""

    def __init__(
        self, query_id: str, plan: ProjectionPlan, key_in: Serde, value_in: Serde, plog: ProcessingLog
    ) -> None:
        self.id = query_id
        self.plan = plan
        self.source = plan.source
        self.key_in, self.value_in = key_in, value_in
        self.plog = plog
        self.state = "RUNNING"
        self.processed = 0
        self._current: Record | None = None
        if plan.errors is not None:
            plan.errors.handler = self._expr_error
        self._where = plan.where.fn if plan.where is not None else None
        self._key_fns = [c.fn for c in plan.key_exprs]
        self._value_fns = [
            c.fn if c.column_index is not None else safe(c, t, self._expr_error)
            for c, t in zip(plan.value_exprs, plan.value_texts)
        ]
        # a projection of bare columns (the common case) is one C-level itemgetter call per row
        indices = [c.column_index for c in plan.value_exprs]
        self._project: Callable[[tuple], list] | None = None
        if indices and all(i is not None for i in indices):
            getter = operator.itemgetter(*indices)
            self._project = (lambda row: [getter(row)]) if len(indices) == 1 else (lambda row: list(getter(row)))
        self._ts_extract = timestamp_extractor(plan.source)
        self._header_fns = [header_reader(c.header) for c in plan.source.schema.headers]

    @property
    def source_topics(self) -> list[str]:
        """The topics the runtime delivers to `process` (one here; a join reads several)."""
        return [self.source.topic]

    def _expr_error(self, text: str, error: str) -> None:
        if self._current is not None:
            self.plog.expression_error(self.id, self._current, text, error)

    def transform(self, records: list[Record]) -> list[tuple[Record, list, list | None, int]]:
        """(source record, key values, value values or None for a tombstone, timestamp) per surviving row."""
        out: list[tuple[Record, list, list | None, int]] = []
        n_keys = len(self.source.schema.key)
        n_values = len(self.source.schema.value)
        for rec in records:
            self._current = rec
            try:
                keys = self.key_in.deserialize(rec.key) if n_keys else []
            except SerdeError as e:
                self.plog.deserialization_error(self.id, rec, "key", str(e))
                continue
            if keys is None:
                keys = [None] * n_keys
            try:
                values = self.value_in.deserialize(rec.value)
            except SerdeError as e:
                self.plog.deserialization_error(self.id, rec, "value", str(e))
                continue
            self.processed += 1
            if values is None:
                if self._where is None:
                    row = (
                        rec.timestamp,
                        rec.partition,
                        rec.offset,
                        *keys,
                        *([None] * n_values),
                        *(f(rec.headers) for f in self._header_fns),
                    )
                    key_vals = [
                        None if uses_value else f(row) for f, uses_value in zip(self._key_fns, self.plan.key_uses_value)
                    ]
                    out.append((rec, key_vals, None, rec.timestamp))
                continue
            ts = rec.timestamp
            if self._ts_extract is not None:
                try:
                    ts = self._ts_extract(keys, values)
                except (EvalError, ValueError, TypeError, OverflowError) as e:
                    self.plog.deserialization_error(self.id, rec, "timestamp", str(e))
                    continue
                if ts is None or ts < 0:
                    self.plog.deserialization_error(
                        self.id,
                        rec,
                        "timestamp",
                        f"Invalid timestamp extracted from {self.source.timestamp_column}: {ts}",
                    )
                    continue
            row = (ts, rec.partition, rec.offset, *keys, *values, *(f(rec.headers) for f in self._header_fns))
            if self._where is not None:
                try:
                    if self._where(row) is not True:
                        continue
                except (EvalError, ArithmeticError, ValueError, TypeError) as e:
                    self.plog.expression_error(self.id, rec, "WHERE", str(e))
                    continue
            values_out = self._project(row) if self._project is not None else [f(row) for f in self._value_fns]
            out.append((rec, [f(row) for f in self._key_fns], values_out, ts))
        self._current = None
        return out
