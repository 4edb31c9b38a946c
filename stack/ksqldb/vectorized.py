"""A vectorized path for simple persistent queries, and the column-wise reader aggregations share.

Row by row, Python spends a few microseconds per record on a DELIMITED -> AVRO projection; the raw
broker moves a record in well under one. So a query made only of what this module can do column-wise
is run a batch at a time with pyarrow and numpy instead: the DELIMITED values are parsed by Arrow's CSV
reader, the filter and projections are evaluated column by column, and the Avro records are assembled
from the columns' bytes. It writes the same bytes as the row path, and stays exact by handing every
record it is unsure of back to the row path (`PersistentQuery.process_rows`): tombstones, quoted or
malformed lines, text Arrow would read differently from Python, NaNs, expression errors. Such records
are evaluated there, processing-log entries and all, and merged back in input order.

Eligible: a stream projection (no PARTITION BY, no windows, no header columns) from DELIMITED values of
STRING, INT, BIGINT and DOUBLE columns and a KAFKA STRING key (or none), to AVRO values of optional
primitive fields with the key passed through; an event time from a BIGINT column or a STRING column with
a numeric pattern; WHERE and SELECT expressions of any kind, evaluated by the engine's own compiled
expressions: bare columns and IS [NOT] NULL column-wise, deterministic expressions of one column once
per distinct value (functions registered as deterministic, functions/registry.py), anything else once per
row. Other queries run row by row (`compile_query` is None).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

from fraudstream import wire

from . import ast
from .errors import EvalError, KsqlError
from .formats import Serde
from .formats.avro import AvroSerde
from .formats.delimited import DelimitedSerde
from .formats.kafka import KafkaSerde
from .formatter import format_expr
from .functions import REGISTRY
from .functions.datetime import pattern_regex
from .metastore import PSEUDO_COLUMNS, DataSource
from .parser import parse
from .pipeline import ProjectionPlan
from .records import Columns, Output, Record
from .types import BIGINT, BOOLEAN, DOUBLE, INTEGER, STRING, SqlType

logger = logging.getLogger(__name__)

ARROW_TYPES: dict[SqlType, pa.DataType] = {
    STRING: pa.string(),
    INTEGER: pa.int32(),
    BIGINT: pa.int64(),
    DOUBLE: pa.float64(),
    BOOLEAN: pa.bool_(),
}
SOURCE_TYPES = (STRING, INTEGER, BIGINT, DOUBLE)

#: The errors the row path turns into processing-log entries (and the vectorized path hands back to it).
EXPRESSION_ERRORS = (EvalError, ArithmeticError, ValueError, TypeError, OverflowError)

_PSEUDO = len(PSEUDO_COLUMNS)  # ROWTIME, ROWPARTITION, ROWOFFSET come first in a row


# ---------------------------------------------------------------- compiling
class ProjectionQuery(Protocol):
    """What the vectorized path needs of the query it speeds up: a plain stream projection
    (`executor.PersistentQuery`, which compiles its own vectorized path), with the row path to hand
    records back to."""

    id: str
    sql: str
    plan: ProjectionPlan
    sink: DataSource
    key_in: Serde
    value_in: Serde
    key_out: Serde
    value_out: Serde
    processed: int

    def process_rows(self, records: list[Record]) -> list[Record]: ...


class _Ineligible(Exception):
    """The query needs something the vectorized path does not do."""


def compile_query(query: ProjectionQuery) -> VectorizedQuery | None:
    """The vectorized path for `query`, or None when it must run row by row."""
    try:
        return VectorizedQuery(query)
    except _Ineligible as e:
        logger.debug("query %s runs row by row: %s", query.id, e)
        return None


@dataclass(frozen=True)
class _Expr:
    """How one expression is evaluated: `kind` is column, is_null, constant, distinct (one column, once per
    distinct value) or rows (once per row); `slot` is the row position of the column it reads."""

    kind: str
    fn: Callable[[tuple], Any]
    type: SqlType
    slot: int | None = None
    negated: bool = False


def _select_items(query: ProjectionQuery) -> tuple[ast.Query, list[ast.Expr]]:
    """The query's AST and its value expressions, in the order of `plan.value_exprs`."""
    try:
        statements = parse(query.sql)
    except KsqlError as e:
        raise _Ineligible(f"cannot re-read the statement: {e}") from None
    q = getattr(statements[0], "query", None) if len(statements) == 1 else None
    if not isinstance(q, ast.Query):
        raise _Ineligible("not a SELECT")
    schema = query.plan.source.schema
    key_names = {c.name for c in schema.key}
    values: list[ast.Expr] = []
    for item in q.select:
        if item.is_star:
            values += [ast.ColumnRef(c.name) for c in schema.value + schema.headers]
        elif not (isinstance(item.expr, ast.ColumnRef) and item.expr.name in key_names):
            values.append(item.expr)
    return q, values


def _column_refs(e: ast.Expr) -> set[str] | None:
    """Names of the columns an expression reads; None when it has a lambda or calls a function that is not
    deterministic (its value may differ between rows with the same columns)."""
    names: set[str] = set()
    for node in e.walk():
        if isinstance(node, ast.ColumnRef):
            names.add(node.name)
        elif isinstance(node, ast.Lambda) or (isinstance(node, ast.FunctionCall) and not _deterministic(node.name)):
            return None
    return names


def _deterministic(name: str) -> bool:
    function = REGISTRY.get(name.upper())
    return function is not None and function.deterministic


class VectorizedQuery:
    """A persistent query evaluated a batch at a time, column by column (see the module docstring)."""

    def __init__(self, query: ProjectionQuery) -> None:
        plan = query.plan
        if type(plan) is not ProjectionPlan:
            raise _Ineligible("not a plain stream projection")
        source, sink = plan.source, query.sink
        schema = source.schema
        if (
            plan.partitioned
            or plan.limit is not None
            or schema.headers
            or getattr(schema, "windowed", False)
            or source.kind != "STREAM"
            or sink.kind != "STREAM"
            or sink.timestamp_column is not None
        ):
            raise _Ineligible("PARTITION BY, headers, windows, tables or a sink TIMESTAMP")
        if not isinstance(query.value_in, DelimitedSerde) or any(c.type not in SOURCE_TYPES for c in schema.value):
            raise _Ineligible("source values are not DELIMITED of STRING, INT, BIGINT and DOUBLE")
        if schema.key and not (
            len(schema.key) == 1 and schema.key[0].type == STRING and isinstance(query.key_in, KafkaSerde)
        ):
            raise _Ineligible("the source key is not one KAFKA STRING")
        if plan.key_exprs and not (
            len(plan.key_exprs) == 1
            and plan.key_exprs[0].column_index == _PSEUDO
            and isinstance(query.key_out, KafkaSerde)
            and plan.schema.key[0].type == STRING
        ):
            raise _Ineligible("the key is not passed through")
        if not (isinstance(query.value_out, AvroSerde) and query.value_out.plain_record):
            raise _Ineligible("sink values are not AVRO records of primitive fields")
        out_types = [c.type for c in plan.schema.value]
        if any(t not in ARROW_TYPES for t in out_types) or [t for _, t in query.value_out.columns] != out_types:
            raise _Ineligible("sink value types")
        self.query = query
        self.plan = plan
        self.handed_back = 0  # records the row path did instead (counted for tests and curious operators)
        self.n_keys = len(schema.key)
        self.value_types = [c.type for c in schema.value]
        self.slots = [t for _, t in schema.row_columns()]  # the row layout the compiled expressions read
        self.names = [n for n, _ in schema.row_columns()]
        self.timestamps = _timestamp_reader(source, self.n_keys)
        self.delimiter = query.value_in.delimiter
        self._dummy = (self.delimiter * (len(self.value_types) - 1)).encode()

        select, value_asts = _select_items(query)
        if len(value_asts) != len(plan.value_exprs) or [format_expr(e) for e in value_asts] != list(plan.value_texts):
            raise _Ineligible("the projection could not be matched to its plan")
        self.values = [self._strategy(e, c.fn, c.type, c.column_index) for e, c in zip(value_asts, plan.value_exprs)]
        self.where = None
        if plan.where is not None:
            if select.where is None:
                raise _Ineligible("the filter could not be matched to its plan")
            self.where = self._strategy(select.where, plan.where.fn, BOOLEAN, None)

    def _strategy(self, e: ast.Expr, fn: Callable, t: SqlType, column_index: int | None) -> _Expr:
        if column_index is not None:
            return _Expr("column", fn, t, column_index)
        if isinstance(e, ast.IsNull) and isinstance(e.value, ast.ColumnRef):
            slot = self._slot(e.value)
            if slot is not None:
                return _Expr("is_null", fn, t, slot, e.negated)
        if t not in ARROW_TYPES:
            raise _Ineligible(f"an expression of type {t}")
        refs = _column_refs(e)
        if refs is None or len(refs) > 1:
            return _Expr("rows", fn, t)
        if not refs:
            return _Expr("constant", fn, t)
        slot = self._slot(ast.ColumnRef(next(iter(refs))))
        if slot is None:  # e.g. a struct field name, not a column: play safe
            return _Expr("rows", fn, t)
        return _Expr("distinct", fn, t, slot)

    def _slot(self, ref: ast.ColumnRef) -> int | None:
        return self.names.index(ref.name) if ref.name in self.names else None

    # ---------------------------------------------------------------- running
    def process_records(self, records: list[Record]) -> list[Record]:
        return self.process(Columns.from_records(records)).records(self.query.sink.topic)

    def process(self, batch: Columns) -> Output:
        """The query's output for a batch, in input order (records it cannot do exactly go row by row)."""
        n = len(batch)
        if n == 0:
            return Output()
        bad = np.zeros(n, dtype=bool)
        reported: list[str] = []
        errors = self.plan.errors
        saved = errors.handler if errors is not None else None
        if errors is not None:  # a function failure is reported, not raised: the record goes row by row
            errors.handler = lambda where, message: reported.append(message)
        try:
            slots = _Slots(self, batch, bad)
            alive = np.flatnonzero(~bad)
            if self.where is not None and len(alive):
                passed = self._eval(self.where, slots, alive, bad, reported)
                passed = np.asarray(pc.fill_null(pc.equal(passed, True), False))
                kept = alive[passed & ~bad[alive]]
            else:
                kept = alive
            columns = [self._eval(e, slots, kept, bad, reported) for e in self.values]
            for arr, e in zip(columns, self.values):  # NaN bits are Python's business
                if e.type == DOUBLE and e.kind != "column" and pc.any(pc.is_nan(arr)).as_py():
                    bad[kept[np.asarray(pc.fill_null(pc.is_nan(arr), False))]] = True
            final = ~bad[kept]
            if not final.all():
                mask = pa.array(final)
                columns = [arr.filter(mask) for arr in columns]
                kept = kept[final]
        finally:
            if errors is not None:
                errors.handler = saved
        value_out: AvroSerde = self.query.value_out  # type: ignore[assignment]
        values = _avro_records(value_out.writer_id(), columns, [e.type for e in self.values], len(kept))
        keys = _take(batch.keys, kept) if self.plan.key_exprs else [None] * len(kept)
        timestamps = slots.rowtime[kept].tolist()
        partitions = _take(batch.partitions, kept)
        self.query.processed += int((~bad).sum())
        fallback = np.flatnonzero(bad)
        self.handed_back += len(fallback)
        if not len(fallback):
            return Output(keys, values, timestamps, partitions)
        return self._merge(batch, kept, Output(keys, values, timestamps, partitions), fallback)

    def _merge(self, batch: Columns, kept: np.ndarray, fast: Output, fallback: np.ndarray) -> Output:
        """The fast rows and the rows done row by row, back in input order."""
        rows: list[tuple[int, bytes | None, bytes | None, int, int]] = list(
            zip(kept.tolist(), fast.keys, fast.values, fast.timestamps, fast.partitions)
        )
        for i in fallback.tolist():
            for rec in self.query.process_rows([batch.record(i)]):
                rows.append((i, rec.key, rec.value, rec.timestamp, rec.partition))
        rows.sort(key=lambda r: r[0])
        return Output([r[1] for r in rows], [r[2] for r in rows], [r[3] for r in rows], [r[4] for r in rows])

    def _eval(self, e: _Expr, slots: _Slots, rows: np.ndarray, bad: np.ndarray, reported: list[str]) -> pa.Array:
        """`e` over the batch rows `rows` (an Arrow array of e's type); rows it fails on are marked bad."""
        if e.kind == "column":
            return slots.array(e.slot).take(rows)
        if e.kind == "is_null":
            valid = pc.is_valid(slots.array(e.slot).take(rows))
            return valid if e.negated else pc.invert(valid)
        width = len(self.slots)
        if e.kind == "constant":
            value, failed = _call(e.fn, (None,) * width, reported)
            if failed:
                bad[rows] = True
            return pa.array([value] * len(rows), ARROW_TYPES[e.type])
        if e.kind == "distinct":
            return self._eval_distinct(e, slots.array(e.slot).take(rows), rows, bad, reported)
        results = []
        failed_rows = []
        for i, row in enumerate(slots.rows(rows)):
            value, failed = _call(e.fn, row, reported)
            results.append(value)
            if failed:
                failed_rows.append(i)
        if failed_rows:
            bad[rows[failed_rows]] = True
        return pa.array(results, ARROW_TYPES[e.type])

    def _eval_distinct(
        self, e: _Expr, column: pa.Array, rows: np.ndarray, bad: np.ndarray, reported: list[str]
    ) -> pa.Array:
        """A deterministic expression of one column: evaluated once per distinct value of that column."""
        encoded = pc.dictionary_encode(column)
        template = [None] * len(self.slots)
        results, failed = [], []
        for k, value in enumerate(encoded.dictionary.to_pylist()):
            template[e.slot] = value
            result, error = _call(e.fn, tuple(template), reported)
            results.append(result)
            if error:
                failed.append(k)
        out = pa.array(results, ARROW_TYPES[e.type]).take(encoded.indices)
        if failed:
            bad[
                rows[np.asarray(pc.fill_null(pc.is_in(encoded.indices, pa.array(failed, encoded.indices.type)), False))]
            ] = True
        if column.null_count:
            template[e.slot] = None
            result, error = _call(e.fn, tuple(template), reported)
            if error:
                bad[rows[np.asarray(column.is_null())]] = True
            elif result is not None:
                out = pc.fill_null(out, pa.scalar(result, ARROW_TYPES[e.type]))
        return out


def _call(fn: Callable[[tuple], Any], row: tuple, reported: list[str]) -> tuple[Any, bool]:
    """fn(row), and whether it failed (raised, or reported an error through the plan's error sink)."""
    before = len(reported)
    try:
        value = fn(row)
    except EXPRESSION_ERRORS:
        return None, True
    return value, len(reported) > before


def _take(items: list, rows: np.ndarray) -> list:
    return [items[i] for i in rows.tolist()]


# ---------------------------------------------------------------- a batch's columns
class _Slots:
    """A batch's columns in the row layout the compiled expressions read (built when first needed), with
    the records the vectorized path cannot read exactly marked in `bad`."""

    def __init__(self, q: VectorizedQuery, batch: Columns, bad: np.ndarray) -> None:
        self.q = q
        self.batch = batch
        self.bad = bad
        self._arrays: dict[int, pa.Array] = {}
        self._rows: dict[int, tuple] = {}
        if q.n_keys:
            _check_keys(batch.keys, bad)
        values = _parse_delimited(batch.values, q.value_types, q.delimiter, q._dummy, q.query.value_in, bad)
        for j, arr in enumerate(values):
            self._arrays[_PSEUDO + q.n_keys + j] = arr
        self.rowtime = q.timestamps(batch, values, bad)

    def array(self, slot: int) -> pa.Array:
        if slot not in self._arrays:
            n_keys = self.q.n_keys
            if slot == 0:
                arr = pa.array(self.rowtime, pa.int64())
            elif slot == 1:
                arr = pa.array(self.batch.partitions, pa.int32())
            elif slot == 2:
                arr = pa.array(self.batch.offsets, pa.int64())
            elif slot < _PSEUDO + n_keys:
                keys = [k if ok else None for k, ok in zip(self.batch.keys, (~self.bad).tolist())]
                arr = pa.array(keys, pa.binary()).cast(pa.string())  # checked UTF-8 (bad ones left out)
            else:
                raise KeyError(slot)
            self._arrays[slot] = arr
        return self._arrays[slot]

    def rows(self, rows: np.ndarray) -> list[tuple]:
        """Full row tuples (as the row path builds them) for batch rows `rows`."""
        missing = [i for i in rows.tolist() if i not in self._rows]
        if missing:
            index = np.asarray(missing)
            columns = [self.array(s).take(index).to_pylist() for s in range(len(self.q.slots))]
            self._rows.update(zip(missing, zip(*columns)))
        return [self._rows[i] for i in rows.tolist()]


def _check_keys(keys: list[bytes | None], bad: np.ndarray) -> None:
    """Keys that are not UTF-8 are the row path's (a deserialization error)."""
    try:
        b"\n".join([k or b"" for k in keys]).decode("utf-8")  # a newline cuts any broken sequence apart
    except UnicodeDecodeError:
        for i, k in enumerate(keys):
            if k is not None:
                try:
                    k.decode("utf-8")
                except UnicodeDecodeError:
                    bad[i] = True


def _parse_delimited(
    values: list[bytes | None],
    types: list[SqlType],
    delimiter: str,
    dummy: bytes,
    serde: DelimitedSerde,
    bad: np.ndarray,
) -> list[pa.Array]:
    """The value columns of a batch of DELIMITED records. Records Arrow could read differently from the
    row path (tombstones, empty, quoted or multi-line records, invalid UTF-8, wrong field counts) are
    marked bad and read as all-null lines instead."""
    n = len(values)
    lines = values
    if None in lines or b"" in lines:
        lines = _replace(lines, [not v for v in lines], dummy, bad)
    joined = b"\n".join(lines)
    if b'"' in joined or b"\r" in joined:
        lines = _replace(lines, [b'"' in v or b"\r" in v for v in lines], dummy, bad)
        joined = b"\n".join(lines)
    if not joined.isascii() and not _utf8(joined):
        lines = _replace(lines, [not _utf8(v) for v in lines], dummy, bad)
        joined = b"\n".join(lines)
    table, invalid = _read_csv(joined, len(types), delimiter)
    if invalid or table.num_rows != n:
        sep, want = delimiter.encode(), len(types) - 1
        lines = _replace(lines, [v.count(sep) != want or b"\n" in v for v in lines], dummy, bad)
        table, invalid = _read_csv(b"\n".join(lines), len(types), delimiter)
        if invalid or table.num_rows != n:
            raise EvalError(f"cannot align a DELIMITED batch: {table.num_rows} rows for {n} records")
    columns = []
    for j, t in enumerate(types):
        chunked = table.column(j)
        text = chunked.chunk(0) if chunked.num_chunks == 1 else chunked.combine_chunks()
        columns.append(_convert(text, t, j, serde, bad))
    return columns


def _replace(lines: list, flags: list[bool], dummy: bytes, bad: np.ndarray) -> list:
    bad |= np.asarray(flags, dtype=bool)
    return [dummy if f else v for v, f in zip(lines, flags)]


def _utf8(v: bytes) -> bool:
    try:
        v.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


def _read_csv(data: bytes, n_columns: int, delimiter: str) -> tuple[pa.Table, list]:
    """Split lines at the delimiter only: no quoting, no escapes, every field as text, "" as null."""
    invalid: list = []

    def skip(row: Any) -> str:
        invalid.append(row)
        return "skip"

    names = [f"c{j}" for j in range(n_columns)]
    table = pcsv.read_csv(
        pa.py_buffer(data),
        read_options=pcsv.ReadOptions(column_names=names, use_threads=False, block_size=max(len(data) + 1, 1 << 20)),
        parse_options=pcsv.ParseOptions(
            delimiter=delimiter,
            quote_char=False,
            double_quote=False,
            escape_char=False,
            newlines_in_values=False,
            ignore_empty_lines=False,
            invalid_row_handler=skip,
        ),
        convert_options=pcsv.ConvertOptions(
            column_types={c: pa.string() for c in names},
            null_values=[""],
            strings_can_be_null=True,
            quoted_strings_can_be_null=True,
            check_utf8=False,
        ),
    )
    return table, invalid


_INTEGER_TEXT = r"^-?[0-9]{1,18}$"  # what Arrow and Python's int() read alike (Arrow also reads hex, no '+')


def _convert(text: pa.Array, t: SqlType, index: int, serde: DelimitedSerde, bad: np.ndarray) -> pa.Array:
    """Field texts to a column of type `t`, as the row path's parsers read them."""
    if t == STRING:
        return text
    try:
        if t == DOUBLE:  # Arrow reads a subset of float()'s syntax, correctly rounded alike, but for NaNs
            column = pc.cast(text, pa.float64())
            if pc.any(pc.is_nan(column)).as_py():
                nan = np.asarray(pc.fill_null(pc.is_nan(column), False))
                bad |= nan
                column = pc.if_else(pa.array(nan), pa.scalar(None, pa.float64()), column)
            return column
        if pc.all(pc.match_substring_regex(text, _INTEGER_TEXT)).as_py() is not False:
            column = pc.cast(text, pa.int64())
            if t == BIGINT:
                return column
            if (
                pc.all(pc.and_(pc.greater_equal(column, -(2**31)), pc.less_equal(column, 2**31 - 1))).as_py()
                is not False
            ):
                return column.cast(pa.int32())
    except pa.ArrowInvalid:
        pass
    # something Arrow would not read (or not read alike): the row path's own parser, field by field
    out = []
    for i, field_text in enumerate(text.to_pylist()):
        value = None
        if field_text is not None and not bad[i]:
            try:
                value = serde.parse_field(index, field_text)
            except (ValueError, ArithmeticError, EvalError):
                bad[i] = True
        out.append(value)
    return pa.array(out, ARROW_TYPES[t])


# ---------------------------------------------------------------- event time
def _timestamp_reader(source: Any, n_keys: int) -> Callable[[Columns, list[pa.Array], np.ndarray], np.ndarray]:
    """Each record's event time (ROWTIME) as int64 millis; records without a valid one are marked bad."""
    column = source.timestamp_column
    if column is None:
        return lambda batch, values, bad: np.asarray(batch.timestamps, dtype=np.int64)
    names = [c.name for c in source.schema.value]
    if column not in names:
        raise _Ineligible("the event time is a key column")
    index = names.index(column)
    t = source.schema.value[index].type
    if t == BIGINT:

        def from_bigint(batch: Columns, values: list[pa.Array], bad: np.ndarray) -> np.ndarray:
            arr = values[index]
            ts = np.asarray(pc.fill_null(arr, -1), dtype=np.int64)
            bad |= ts < 0
            return ts

        return from_bigint
    if t == STRING and source.timestamp_format is not None:
        parse = _JavaTimestamps(source.timestamp_format)

        def from_text(batch: Columns, values: list[pa.Array], bad: np.ndarray) -> np.ndarray:
            encoded = pc.dictionary_encode(values[index])  # events share their second: parse each text once
            distinct_bad = np.zeros(len(encoded.dictionary) + 1, dtype=bool)
            distinct_bad[-1] = True  # the last slot stands for a null text
            millis = np.append(parse(encoded.dictionary, distinct_bad[:-1]), 0)
            indices = np.asarray(pc.fill_null(encoded.indices, -1), dtype=np.int64)
            bad |= distinct_bad[indices]
            return millis[indices]

        return from_text
    raise _Ineligible(f"an event time of type {t} without a pattern")


_DAYS_IN_MONTH = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], dtype=np.int64)


class _JavaTimestamps:
    """parse_java (functions/datetime.py) column-wise, for numeric patterns: the same regex (run by RE2 on
    ASCII text, where it matches what Python's does) and the same calendar arithmetic."""

    GROUPS = {"Y", "y", "M", "d", "H", "m", "s", "S", "z"}

    def __init__(self, pattern: str) -> None:
        try:
            regex = pattern_regex(pattern)
        except (EvalError, re.error) as e:
            raise _Ineligible(f"timestamp pattern: {e}") from None
        self.groups = set(regex.groupindex)
        if not self.groups <= self.GROUPS:
            raise _Ineligible(f"timestamp pattern letters {sorted(self.groups - self.GROUPS)}")
        self.regex = f"^(?:{regex.pattern})"
        try:
            pc.extract_regex(pa.array(["x"]), self.regex)
        except pa.ArrowInvalid as e:
            raise _Ineligible(f"timestamp pattern for RE2: {e}") from None

    def __call__(self, text: pa.Array, bad: np.ndarray) -> np.ndarray:
        ok = np.asarray(pc.fill_null(pc.string_is_ascii(text), False))
        if not self.groups:
            parts = None
        else:
            parts = pc.extract_regex(text, self.regex)
            ok &= np.asarray(parts.is_valid())

        def number(name: str, default: int) -> np.ndarray:
            if name not in self.groups:
                return np.full(len(text), default, dtype=np.int64)
            digits = pc.struct_field(parts, name)
            digits = pc.if_else(
                pc.equal(digits, ""), pa.scalar(None, pa.string()), digits
            )  # an optional field left out
            if name == "Y":  # a signed year is outside what the row path handles here anyway
                signed = np.asarray(pc.fill_null(pc.match_substring_regex(digits, "^[+-]"), False))
                ok[signed] = False
                digits = pc.if_else(pa.array(signed), pa.scalar(None, pa.string()), digits)
            if name == "S":  # a fraction: its first six digits are the microseconds
                digits = pc.utf8_slice_codeunits(pc.binary_join_element_wise(digits, "000000", ""), 0, 6)
            return np.asarray(pc.fill_null(pc.cast(digits, pa.int64()), default), dtype=np.int64)

        year = 2000 + number("y", 0) if "y" in self.groups and "Y" not in self.groups else number("Y", 1970)
        month, day = number("M", 1), number("d", 1)
        hour, minute, second, micros = number("H", 0), number("m", 0), number("s", 0), number("S", 0)
        month_ok = (month >= 1) & (month <= 12)
        leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
        days_in = _DAYS_IN_MONTH[np.where(month_ok, month, 1)] + ((month == 2) & leap)
        ok &= (year >= 2) & (year <= 9998) & month_ok & (day >= 1) & (day <= days_in)
        ok &= (hour <= 23) & (minute <= 59) & (second <= 59)
        offset = np.zeros(len(text), dtype=np.int64)
        if "z" in self.groups:
            zone = pc.fill_null(pc.struct_field(parts, "z"), "")
            utc = pc.or_(pc.equal(zone, "Z"), pc.equal(zone, ""))  # "" : an optional zone left out (UTC)
            zone = pc.replace_substring(pc.if_else(utc, "+00", zone), ":", "")
            hours = pc.cast(pc.if_else(ok, pc.utf8_slice_codeunits(zone, 1, 3), "0"), pa.int64())
            minutes_text = pc.utf8_slice_codeunits(zone, 3, 5)
            minutes = pc.cast(pc.if_else(pc.and_(ok, pc.not_equal(minutes_text, "")), minutes_text, "0"), pa.int64())
            total = np.asarray(pc.fill_null(hours, 0)) * 60 + np.asarray(pc.fill_null(minutes, 0))
            ok &= total < 24 * 60
            negative = np.asarray(pc.fill_null(pc.starts_with(zone, "-"), False))
            offset = np.where(negative, -total, total)
        millis = (
            _days_from_civil(year, month, day) * 86_400_000
            + ((hour * 60 + minute) * 60 + second) * 1000
            + micros // 1000
            - offset * 60_000
        )
        ok &= millis >= 0
        bad |= ~ok
        return np.where(ok, millis, 0)


def _days_from_civil(y: np.ndarray, m: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Days since 1970-01-01 of proleptic Gregorian dates (H. Hinnant's algorithm), for years >= 1."""
    y = y - (m <= 2)
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m + np.where(m > 2, -3, 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146_097 + doe - 719_468


# ---------------------------------------------------------------- Avro
def _avro_records(schema_id: int, columns: list[pa.Array], types: list[SqlType], n: int) -> list[bytes]:
    """Confluent-framed Avro records of optional primitive fields, byte for byte what
    `formats.avro.record_encoder` writes: per field 0x00 for null, else 0x02 and the value."""
    header = wire.header(schema_id)
    if n == 0:
        return []
    # consecutive fields of the same width on every row make one fixed-width block; the others are Arrow arrays
    pieces: list[list[np.ndarray] | pa.Array] = []
    doubles: list[np.ndarray] = []  # a run of DOUBLE fields without nulls, encoded together
    for arr, t in zip(columns, types):
        if t == DOUBLE and arr.null_count == 0:
            doubles.append(arr.to_numpy())
            continue
        if doubles:
            _add_fixed(pieces, _double_block(doubles, n))
            doubles = []
        piece = _avro_field(arr, t, n)
        if not isinstance(piece, np.ndarray):
            pieces.append(piece)
        else:
            _add_fixed(pieces, piece)
    if doubles:
        _add_fixed(pieces, _double_block(doubles, n))
    arrays = [pa.scalar(header, pa.binary())]
    for piece in pieces:
        if isinstance(piece, list):
            block = np.ascontiguousarray(np.hstack(piece) if len(piece) > 1 else piece[0])
            fixed = pa.FixedSizeBinaryArray.from_buffers(pa.binary(block.shape[1]), n, [None, pa.py_buffer(block)])
            arrays.append(fixed.cast(pa.binary()))
        else:
            arrays.append(piece)
    if len(arrays) == 1:
        return [header] * n
    return pc.binary_join_element_wise(*arrays, b"").to_pylist()


def _add_fixed(pieces: list, block: np.ndarray) -> None:
    if pieces and isinstance(pieces[-1], list):
        pieces[-1].append(block)
    else:
        pieces.append([block])


def _double_block(columns: list[np.ndarray], n: int) -> np.ndarray:
    """(n, 9 * k) bytes of k DOUBLE fields without nulls: 0x02 and the little-endian double, per field."""
    block = np.empty((n, len(columns), 9), dtype=np.uint8)
    block[:, :, 0] = 2
    block[:, :, 1:] = np.stack(columns, axis=1).astype("<f8", copy=False).view(np.uint8).reshape(n, len(columns), 8)
    return block.reshape(n, 9 * len(columns))


def _avro_field(arr: pa.Array, t: SqlType, n: int) -> np.ndarray | pa.Array:
    """One optional field's bytes per row."""
    valid = np.ones(n, dtype=bool) if arr.null_count == 0 else np.asarray(arr.is_valid())
    if t == DOUBLE:
        data = np.asarray(pc.fill_null(arr, 0.0), dtype="<f8")
        block = np.empty((n, 9), dtype=np.uint8)
        block[:, 0] = 2
        block[:, 1:] = data.view(np.uint8).reshape(n, 8)
        return block if valid.all() else _variable(block, np.where(valid, 9, 1), valid)
    if t == BOOLEAN:
        block = np.empty((n, 2), dtype=np.uint8)
        block[:, 0] = 2
        block[:, 1] = np.asarray(pc.fill_null(arr, False), dtype=np.uint8)
        return block if valid.all() else _variable(block, np.where(valid, 2, 1), valid)
    if t in (INTEGER, BIGINT):
        block, lengths = _zigzag_varints(np.asarray(pc.fill_null(arr, 0), dtype=np.int64))
        if valid.all() and (lengths == lengths[0]).all():
            return block[:, : lengths[0]]
        return _variable(block, np.where(valid, lengths, 1), valid)
    # STRING: 0x02, the UTF-8 length as a varint, the UTF-8 bytes
    utf8 = arr.cast(pa.binary())
    block, lengths = _zigzag_varints(np.asarray(pc.fill_null(pc.binary_length(utf8), 0), dtype=np.int64))
    prefix = _variable(block, np.where(valid, lengths, 1), valid)
    return pc.fill_null(pc.binary_join_element_wise(prefix, utf8, b""), b"\x00")


def _zigzag_varints(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(n, 11) blocks of 0x02 + the zigzag varint of each value, and how many bytes of each are used."""
    z = ((values << 1) ^ (values >> 63)).view(np.uint64)
    n = len(values)
    block = np.zeros((n, 11), dtype=np.uint8)
    block[:, 0] = 2
    lengths = np.ones(n, dtype=np.int64)
    for k in range(1, 10):
        lengths += z >= np.uint64(1 << (7 * k))
    for k in range(10):
        byte = ((z >> np.uint64(7 * k)) & np.uint64(0x7F)).astype(np.uint8)
        more = lengths > k + 1
        block[:, k + 1] = byte | (more.astype(np.uint8) << 7)
    return block, lengths + 1


def _variable(block: np.ndarray, lengths: np.ndarray, valid: np.ndarray) -> pa.Array:
    """Rows of `block`, each cut to its length; a null row is the single byte 0x00."""
    block = block.copy()
    block[~valid, 0] = 0
    used = np.arange(block.shape[1]) < lengths[:, None]
    data = block[used]
    offsets = np.zeros(len(lengths) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    return pa.BinaryArray.from_buffers(pa.binary(), len(lengths), [None, pa.py_buffer(offsets), pa.py_buffer(data)])


# ---------------------------------------------------------------- for other column-wise consumers
class ColumnReader:
    """A batch of DELIMITED records read as this module reads them for projections: the value columns (Arrow
    arrays), each record's event time, and which records it cannot read exactly (they are the row path's).
    Aggregations read their input with it (`aggregation.ColumnarInput`)."""

    def __init__(self, source: Any, key_in: Any, value_in: Any) -> None:
        schema = source.schema
        if source.kind != "STREAM" or schema.headers or getattr(source, "window", None) is not None:
            raise _Ineligible("a table, headers or windows")
        if not isinstance(value_in, DelimitedSerde) or any(c.type not in SOURCE_TYPES for c in schema.value):
            raise _Ineligible("source values are not DELIMITED of STRING, INT, BIGINT and DOUBLE")
        if schema.key and not (
            len(schema.key) == 1 and schema.key[0].type == STRING and isinstance(key_in, KafkaSerde)
        ):
            raise _Ineligible("the source key is not one KAFKA STRING")
        self.n_keys = len(schema.key)
        self.value_types = [c.type for c in schema.value]
        self.serde = value_in
        self._dummy = (value_in.delimiter * (len(self.value_types) - 1)).encode()
        self.timestamps = _timestamp_reader(source, self.n_keys)

    @classmethod
    def of(cls, source: Any, key_in: Any, value_in: Any) -> ColumnReader | None:
        """A reader for `source`, or None when its records must be read row by row."""
        try:
            return cls(source, key_in, value_in)
        except _Ineligible as e:
            logger.debug("%s is read row by row: %s", source.name, e)
            return None

    def read(self, batch: Columns) -> tuple[list[pa.Array], np.ndarray, np.ndarray]:
        """(value columns, event times as int64 millis, bad: the records to read row by row instead)."""
        bad = np.zeros(len(batch), dtype=bool)
        if self.n_keys:
            _check_keys(batch.keys, bad)
        values = _parse_delimited(batch.values, self.value_types, self.serde.delimiter, self._dummy, self.serde, bad)
        return values, self.timestamps(batch, values, bad), bad
