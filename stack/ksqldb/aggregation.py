"""Running GROUP BY aggregations, windowed or not, over streams and tables (aggregate_planner.py plans them
into an `AggregatePlan`).

An `AggregateQuery` has three stages:
1. a `Pipeline` (pipeline.py) deserialises source records and computes, per row, the WHERE result
   (tables), the grouping values and the aggregate arguments (for DELIMITED input whose grouping values
   and arguments are bare columns, `ColumnarInput` takes them from the columns the vectorized path's
   reader parses a batch into);
2. an `Aggregator` keeps one state per group (per group and window when windowed) in a state store
   and emits the changed result rows; over a table it also keeps each source row's last grouping and
   arguments so that an update is first taken out of its old group (undo), as Kafka Streams' table
   aggregation does;
3. HAVING and the projection turn each result row into the changelog record of the sink table (HAVING
   that stops passing emits a tombstone; a row that never passed emits nothing).

Every update is emitted unless `coalesce` is on (ksqlDB's record cache: the Kafka runtime turns it on),
which keeps each key's last change of a batch; with EMIT FINAL a window's last result is held until the
window closes (end + grace, plus the gap for sessions) and tombstones are dropped.
"""

from __future__ import annotations

import dataclasses
import heapq
import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import ast
from . import values as V
from .errors import EvalError, SerdeError
from .expressions import Compiled, ErrorSink
from .formats import Serde
from .formatter import quote_ident
from .functions.aggregates import Aggregate
from .metastore import DataSource, LogicalSchema
from .pipeline import Pipeline, ProjectionPlan
from .processing_log import ProcessingLog
from .push import PushRows
from .records import Output, Record
from .state import InMemoryStateStores, StateStores
from .types import SqlType, is_complex
from .vectorized import ColumnReader
from .windows import WindowSpec


class _RecordFailed(Exception):
    """An aggregate function failed on a record (reported to the processing log already)."""


# ---------------------------------------------------------------- the plan
@dataclass
class AggregateCall:
    expr: ast.FunctionCall  # as written (unqualified), for messages
    function: Aggregate
    arg_index: int  # position of its argument in the pre-aggregation values


@dataclass
class AggregatePlan:
    source: DataSource
    schema: LogicalSchema  # the sink's: grouping key columns, then value columns
    pre: ProjectionPlan  # source row -> [where?, grouping values..., aggregate arguments...]
    where_index: int | None  # table sources: the WHERE result's position in the pre values
    group_types: list[SqlType]
    aggregates: list[AggregateCall]
    having: Compiled | None
    value_exprs: list[Compiled]  # over the aggregate row: grouping values, results, window bounds
    value_texts: list[str]
    window: WindowSpec | None
    emit_final: bool
    limit: int | None
    errors: ErrorSink
    result_kind: str = "TABLE"
    query_sql: str = ""  # the query as ksqlDB prints it in statement errors (qualified, every column named)
    #: a push query's columns in projection order (grouping expressions need not be projected, window
    #: bounds only come out when selected), each as its index in a change's grouping values + value columns
    push_columns: list[tuple[str, SqlType, int]] = dataclasses.field(default_factory=list)

    def statement_sql(self, name: str, properties: tuple[tuple[str, Any], ...]) -> str:
        """`CREATE TABLE name [WITH (...)] AS <query>` as ksqlDB prints it after an error's message."""
        props = ", ".join(f"{k}={_sql_literal(v)}" for k, v in properties)
        return f"CREATE TABLE {quote_ident(name)}{f' WITH ({props})' if props else ''} AS {self.query_sql}"

    @property
    def group_slice(self) -> slice:
        start = 0 if self.where_index is None else 1
        return slice(start, start + len(self.group_types))

    def build(
        self,
        query_id: str,
        sink: DataSource,
        key_in: Serde,
        value_in: Serde,
        key_out: Serde,
        value_out: Serde,
        plog: ProcessingLog,
        sql: str = "",
        stores: StateStores | None = None,
    ) -> AggregateQuery:
        return AggregateQuery(query_id, self, sink, key_in, value_in, key_out, value_out, plog, sql, stores)


def _sql_literal(v: Any) -> str:
    if isinstance(v, str):
        return "'" + v.replace("'", "''") + "'"
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


# ---------------------------------------------------------------- running
@dataclass(slots=True)
class Change:
    """One changelog entry of the aggregate table: values None is a tombstone, unless `states` holds the
    aggregate states its values are still to be computed from (`Aggregator.lazy`)."""

    keys: list[Any]
    window: tuple[int, int] | None
    values: list[Any] | None
    timestamp: int
    states: list[Any] | None = None


class Aggregator:
    """The stateful part of an aggregation: group states in a store, changes out."""

    RETENTION_EVERY = 1000  # records between retention sweeps of window stores

    def __init__(self, plan: AggregatePlan, stores: StateStores, on_error: Callable[[str, str], None]) -> None:
        self.plan = plan
        self.aggs = [a.function for a in plan.aggregates]
        self.arg_index = [a.arg_index for a in plan.aggregates]
        self.group_slice = plan.group_slice
        self.window = plan.window
        self.table_source = plan.source.kind == "TABLE"
        self.on_error = on_error
        self.windowed = stores.window("aggregates") if self.window is not None else None
        self.groups = stores.key_value("aggregates") if self.window is None else None
        self.source_rows = stores.key_value("source-rows") if self.table_source else None
        self.meta = stores.key_value("meta")
        self.buffer = stores.key_value("emit-final") if plan.emit_final else None
        self.stream_time = self.meta.get(("stream_time",)) or -1
        self.seq = self.meta.get(("sequence",)) or 0
        self._since_sweep = 0
        self._having = plan.having.fn if plan.having is not None else None
        self._values = [c.fn for c in plan.value_exprs]
        self._texts = plan.value_texts
        # a projection of bare columns (aggregate results, grouping values) is one itemgetter call
        indices = [c.column_index for c in plan.value_exprs]
        self._project: Callable[[list], list] | None = None
        if indices and all(i is not None for i in indices):
            getter = operator.itemgetter(*indices)
            self._project = (lambda row: [getter(row)]) if len(indices) == 1 else (lambda row: list(getter(row)))
        #: Changes carry their states, their values computed only for those a record cache lets out
        #: (`values`); only where computing them can neither fail nor decide anything (no HAVING, a projection
        #: of bare columns, no EMIT FINAL buffer).
        self.lazy = False
        self.can_defer = self._having is None and self._project is not None and self.buffer is None
        self._pending: list[tuple[int, int, Any]] = []  # EMIT FINAL: (window end, order, buffer key) heap
        self._order = 0
        if self.buffer is not None:
            for key, entry in self.buffer.items():
                heapq.heappush(self._pending, (key[-1], entry[2], key))
                self._order = max(self._order, entry[2] + 1)

    # ------------------------------------------------------------ entry point
    def apply(self, key_vals: list[Any], values: list[Any] | None, ts: int) -> list[Change]:
        """The changes one pre-aggregated source row causes: none when an aggregate function fails on it
        (ksqlDB's query would stop there; this one logs the record and goes on, emitting no row for it)."""
        try:
            return self._apply(key_vals, values, ts)
        except _RecordFailed:
            return []

    def _apply(self, key_vals: list[Any], values: list[Any] | None, ts: int) -> list[Change]:
        if self.table_source:
            changes = self._table_row(key_vals, values, ts)
        else:
            if values is None:
                return []  # a stream's tombstone carries nothing to aggregate
            group = self._group(values)
            if group is None:
                return []
            self.seq += 1
            args = [values[i] for i in self.arg_index]
            if self.window is None:
                changes = self._update(group, lambda states: self._add(states, args), ts)
            elif self.window.is_session:
                changes = self._session(group, args, ts)
            else:
                changes = self._time_windows(group, args, ts)
        if self.buffer is not None:
            return self._suppress(changes)
        return changes

    def checkpoint(self) -> None:
        """Record stream time and the sequence counter, and sweep expired windows now and then."""
        self.meta.put(("stream_time",), self.stream_time)
        self.meta.put(("sequence",), self.seq)
        if self.windowed is not None and self._since_sweep >= self.RETENTION_EVERY:
            self._since_sweep = 0
            self.windowed.expire(self.stream_time - self.window.retention_ms)

    # ------------------------------------------------------------ helpers
    def _group(self, values: list[Any]) -> tuple | None:
        group = tuple(values[self.group_slice])
        for i, v in enumerate(group):
            if v is None:
                self.on_error(
                    "GROUP BY",
                    f"Group-by column with index {i} resolved to null. The source row will be excluded from the table.",
                )
                return None
        return group

    def _add(self, states: list, args: list) -> list:
        seq = self.seq
        try:
            return [a.add(s, v, seq) for a, s, v in zip(self.aggs, states, args)]
        except EvalError as e:  # e.g. a DECIMAL sum that overflows: the record does not count
            self.on_error("aggregate", str(e))
            raise _RecordFailed() from None

    def _undo(self, states: list, args: list) -> list:
        try:
            return [a.undo(s, v) for a, s, v in zip(self.aggs, states, args)]  # type: ignore[misc]
        except EvalError as e:
            self.on_error("aggregate", str(e))
            raise _RecordFailed() from None

    def _init(self) -> list:
        return [a.init() for a in self.aggs]

    def _output(self, group: tuple, window: tuple[int, int] | None, states: list) -> tuple[list | None, bool]:
        """(value columns, passed HAVING) for a group's states."""
        row = list(group) + [a.result(s) for a, s in zip(self.aggs, states)]
        if window is not None:
            row += list(window)
        if self._having is not None:
            try:
                if self._having(row) is not True:
                    return None, False
            except (EvalError, ArithmeticError, ValueError, TypeError) as e:
                self.on_error("HAVING", str(e))
                return None, False
        if self._project is not None:
            return self._project(row), True
        out = []
        for fn, text in zip(self._values, self._texts):
            try:
                out.append(fn(row))
            except (EvalError, ArithmeticError, ValueError, TypeError) as e:
                self.on_error(text, str(e))
                out.append(None)
        return out, True

    def values(self, change: Change) -> list[Any]:
        """The value columns of a lazy change."""
        assert self._project is not None and change.states is not None
        row = change.keys + [a.result(s) for a, s in zip(self.aggs, change.states)]
        return self._project(row + list(change.window) if change.window is not None else row)

    def _changed(
        self, group: tuple, window: tuple[int, int] | None, states: list, ts: int, passed_before: bool
    ) -> tuple[list[Change], bool]:
        if self.lazy:  # (no HAVING: every row passes)
            return [Change(list(group), window, None, ts, states)], True
        values, passed = self._output(group, window, states)
        if passed:
            return [Change(list(group), window, values, ts)], True
        if passed_before:
            return [Change(list(group), window, None, ts)], False
        return [], False

    # ------------------------------------------------------------ plain GROUP BY
    def _update(self, group: tuple, step: Callable[[list], list], ts: int) -> list[Change]:
        assert self.groups is not None
        entry = self.groups.get(group)
        if entry is None:
            states, new_ts, passed = self._init(), ts, False
        else:
            states, new_ts, passed = entry[1], max(ts, entry[0]), entry[2]
        states = step(states)
        changes, passed = self._changed(group, None, states, new_ts, passed)
        self.groups.put(group, [new_ts, states, passed])
        return changes

    def _table_row(self, key_vals: list[Any], values: list[Any] | None, ts: int) -> list[Change]:
        """A table's changelog record: undo the row's old contribution, add its new one."""
        assert self.source_rows is not None
        key = tuple(key_vals)
        if not key or any(v is None for v in key):
            return []
        new = None
        if values is not None and (self.plan.where_index is None or values[self.plan.where_index] is True):
            group = self._group(values)
            if group is not None:
                new = [list(group), [values[i] for i in self.arg_index]]
        old = self.source_rows.get(key)
        if new is None:
            if old is None:
                return []
            self.source_rows.delete(key)
        else:
            self.source_rows.put(key, new)
        self.seq += 1
        if old is not None and new is not None and old[0] == new[0]:
            return self._update(tuple(new[0]), lambda s: self._add(self._undo(s, old[1]), new[1]), ts)
        changes: list[Change] = []
        if old is not None:
            changes += self._update(tuple(old[0]), lambda s: self._undo(s, old[1]), ts)
        if new is not None:
            changes += self._update(tuple(new[0]), lambda s: self._add(s, new[1]), ts)
        return changes

    # ------------------------------------------------------------ windows
    def _advance(self, ts: int) -> None:
        if ts > self.stream_time:
            self.stream_time = ts
        self._since_sweep += 1

    def _time_windows(self, group: tuple, args: list, ts: int) -> list[Change]:
        assert self.windowed is not None and self.window is not None
        self._advance(ts)
        close = self.stream_time - self.window.grace_ms
        changes: list[Change] = []
        if self.lazy:  # as below, without values (see `lazy`): the hot path of hopping windows
            keys, get, put, add = list(group), self.windowed.get, self.windowed.put, self._add
            for start, end in self.window.windows_for(ts):
                if end <= close:
                    continue
                entry = get(group, start, end)
                if entry is None:
                    states, new_ts = add(self._init(), args), ts
                else:
                    states, new_ts = add(entry[1], args), (entry[0] if entry[0] > ts else ts)
                put(group, start, end, [new_ts, states, True])
                changes.append(Change(keys, (start, end), None, new_ts, states))
            return changes
        for start, end in self.window.windows_for(ts):
            if end <= close:
                continue  # the window has closed: a late record
            entry = self.windowed.get(group, start, end)
            if entry is None:
                states, new_ts, passed = self._init(), ts, False
            else:
                states, new_ts, passed = entry[1], max(ts, entry[0]), entry[2]
            states = self._add(states, args)
            out, passed = self._changed(group, (start, end), states, new_ts, passed)
            self.windowed.put(group, start, end, [new_ts, states, passed])
            changes += out
        return changes

    def _session(self, group: tuple, args: list, ts: int) -> list[Change]:
        assert self.windowed is not None and self.window is not None
        self._advance(ts)
        gap = self.window.size
        found = [(s, e, v) for s, e, v in self.windowed.windows(group) if e >= ts - gap and s <= ts + gap]
        start = min([ts] + [s for s, _, _ in found])
        end = max([ts] + [e for _, e, _ in found])
        if end < self.stream_time - self.window.close_after:
            return []  # the session has closed: a late record
        states = self._init()
        for _, _, entry in found:
            states = [a.merge(x, y) for a, x, y in zip(self.aggs, states, entry[1])]
        changes: list[Change] = []
        if (start, end) != (ts, ts):
            # merged sessions are replaced by the merged one (a tombstone each, as Kafka Streams sends)
            for s, e, entry in found:
                self.windowed.delete(group, s, e)
                if entry[2]:
                    changes.append(Change(list(group), (s, e), None, e))
        states = self._add(states, args)
        # Kafka Streams sends a session's update without its old value: failing HAVING emits nothing
        out, passed = self._changed(group, (start, end), states, end, False)
        self.windowed.put(group, start, end, [end, states, passed])
        return changes + out

    # ------------------------------------------------------------ EMIT FINAL
    def _suppress(self, changes: list[Change]) -> list[Change]:
        assert self.buffer is not None and self.window is not None
        for c in changes:
            assert c.window is not None
            key = (tuple(c.keys), c.window[0], c.window[1])
            entry = self.buffer.get(key)
            if entry is None:
                entry = [c.timestamp, c.values, self._order]
                heapq.heappush(self._pending, (c.window[1], self._order, key))
                self._order += 1
            self.buffer.put(key, [c.timestamp, c.values, entry[2]])
        out: list[Change] = []
        limit = self.stream_time - self.window.close_after
        while self._pending and self._pending[0][0] <= limit:
            _, _, key = heapq.heappop(self._pending)
            entry = self.buffer.get(key)
            if entry is None:
                continue
            self.buffer.delete(key)
            if entry[1] is not None:  # final results drop tombstones
                out.append(Change(list(key[0]), (key[1], key[2]), entry[1], entry[0]))
        return out


class AggregateQuery:
    """A persistent aggregation: `process(records) -> records` like `PersistentQuery`, with its state in
    `stores` (in memory unless the runtime hands in durable ones)."""

    def __init__(
        self,
        query_id: str,
        plan: AggregatePlan,
        sink: DataSource,
        key_in: Serde,
        value_in: Serde,
        key_out: Serde,
        value_out: Serde,
        plog: ProcessingLog,
        sql: str = "",
        stores: StateStores | None = None,
    ) -> None:
        self.id = query_id
        self.plan = plan
        self.source = plan.source
        self.sink = sink
        self.sql = sql
        self.state = "RUNNING"
        self.plog = plog
        self.stores = stores if stores is not None else InMemoryStateStores()
        self.pipeline = Pipeline(query_id, plan.pre, key_in, value_in, plog)
        self._record: Record | None = None
        plan.errors.handler = self._expr_error
        self.aggregator = Aggregator(plan, self.stores, self._expr_error)
        self.key_out = key_out  # windowed sinks: a WindowedKeySerde taking the key values, start and end
        self.value_out = value_out
        names = [c.name for c in sink.schema.value]
        self._sink_ts_index = names.index(sink.timestamp_column) if sink.timestamp_column in names else None
        self._hashable_keys = not any(is_complex(t) for t in plan.group_types)  # (ARRAY, MAP, STRUCT are not)
        self.coalesce = False
        #: what the Kafka runtime runs batches through when the input can be read column-wise (`runtime.evaluate`)
        self.vectorized = ColumnarInput.compile(self) if value_in is not None else None

    @property
    def coalesce(self) -> bool:
        """Emit only each key's last change of a `process` batch, as ksqlDB's record cache does between commits
        (off: every update comes out, as with ksqlDB's cache size 0 and the QTT runner). On, the values of
        the changes the cache drops are not even computed where that changes nothing (`Aggregator.lazy`)."""
        return self._coalesce

    @coalesce.setter
    def coalesce(self, on: bool) -> None:
        self._coalesce = on
        self.aggregator.lazy = on and self.aggregator.can_defer and self._sink_ts_index is None

    @property
    def processed(self) -> int:
        return self.pipeline.processed

    def reload_state(self) -> None:
        """Rebuild the aggregator from the stores: after a runtime rolls a failed batch back, the stream time,
        sequence counter and EMIT FINAL queue it caches must be those of the committed state again."""
        self.aggregator = Aggregator(self.plan, self.stores, self._expr_error)
        self.coalesce = self._coalesce

    def _expr_error(self, text: str, error: str) -> None:
        if self._record is not None:
            self.plog.expression_error(self.id, self._record, text, error)

    def changes(self, records: list[Record]) -> list[tuple[Record, Change]]:
        return self._aggregate(self.pipeline.transform(records))

    def _aggregate(self, rows: list[tuple[Record, list, list | None, int]]) -> list[tuple[Record, Change]]:
        """The changes pre-aggregated rows (source record, key values, values, time) cause; with the record
        cache on, only each key's last one (kept as they come: a batch's superseded changes are never
        held, which spares the memory and the garbage collector's passes over them)."""
        apply = self.aggregator.apply
        if self.coalesce and self._sink_ts_index is None and self._hashable_keys:
            latest: dict[tuple, tuple[Record, Change]] = {}
            pop = latest.pop
            for rec, key_vals, values, ts in rows:
                self._record = rec
                for change in apply(key_vals, values, ts):
                    k = (*change.keys, change.window)
                    pop(k, None)
                    latest[k] = (rec, change)
            out = list(latest.values())
        else:
            out = []
            for rec, key_vals, values, ts in rows:
                self._record = rec
                for change in apply(key_vals, values, ts):
                    out.append((rec, change))
        self._record = None
        self.aggregator.checkpoint()
        return out

    def process(self, records: list[Record]) -> list[Record]:
        return self._emit(self.changes(records))

    def _emit(self, changes: list[tuple[Record, Change]]) -> list[Record]:
        """A batch's changes as sink records: all of them, or what the record cache lets out: each key's last
        change, serialised (a key changed again moves to the end, as in Kafka Streams' cache)."""
        if not self.coalesce or len(changes) < 2:
            return self._records(changes)
        last = None
        if self._sink_ts_index is None and self._hashable_keys:  # (else a change may be dropped for its time)
            last = _last_per_key(changes)
        # by bytes too: values that are equal keys in no dict (NaN) still make one record key
        return _last_per_record_key(self._records(last if last is not None else changes))

    def _records(self, changes: list[tuple[Record, Change]]) -> list[Record]:
        """The sink records of `changes`; one that cannot be serialised goes to the processing log."""
        out: list[Record] = []
        key_out, value_out, topic = self.key_out.serialize, self.value_out.serialize, self.sink.topic
        for rec, c in changes:
            ts = c.timestamp
            if c.values is not None and self._sink_ts_index is not None:
                v = c.values[self._sink_ts_index]
                if v is None:
                    continue
                ts = v if isinstance(v, int) else V.timestamp_to_millis(v)
            try:
                key = key_out(c.keys + list(c.window) if c.window is not None else c.keys)
                value = value_out(c.values if c.states is None else self.aggregator.values(c))
            except SerdeError as e:
                self.plog.serialization_error(self.id, self.sink.topic, str(e))
                continue
            out.append(Record(topic, key, value, ts, rec.partition))
        return out


class ColumnarInput:
    """The vectorized path's reader feeding a stream aggregation: a batch of DELIMITED records is read column
    by column by Arrow's CSV reader (vectorized.py), and the grouping values and aggregate arguments are
    taken from its columns instead of each record's deserialised row. Eligible: grouping values and
    arguments that are bare columns of the value or ROWTIME, no WHERE, values and key (one KAFKA STRING, or
    none) that reader can do. The records it cannot read exactly (see vectorized.py) go through the
    query's row path (`Pipeline.transform`), in input order, processing-log entries and all; the rows are
    the same either way, so is everything after them."""

    def __init__(self, query: AggregateQuery, reader: Any, slots: list[int]) -> None:
        self.query = query
        self.reader = reader
        self.slots = slots  # per pre-aggregation value: the row slot it reads
        self.handed_back = 0  # records read row by row instead (counted for tests and curious operators)

    @staticmethod
    def compile(query: AggregateQuery) -> ColumnarInput | None:
        plan = query.plan.pre
        source = plan.source
        slots = [c.column_index for c in plan.value_exprs]
        n_keys = len(source.schema.key)
        if source.kind != "STREAM" or plan.where is not None or any(i is None or (0 < i < 3 + n_keys) for i in slots):
            return None  # a table, a WHERE, an expression, or ROWPARTITION, ROWOFFSET or a key column
        reader = ColumnReader.of(source, query.pipeline.key_in, query.pipeline.value_in)
        return ColumnarInput(query, reader, slots) if reader is not None else None

    def transform(self, batch: Any) -> list[tuple[Record, list, Any, int]]:
        """`Pipeline.transform` of the batch's records."""
        values, rowtime, bad = self.reader.read(batch)
        first_value = 3 + self.reader.n_keys
        columns = [rowtime.tolist() if slot == 0 else values[slot - first_value].to_pylist() for slot in self.slots]
        times = rowtime.tolist()
        topic, keys, raw, stamps, partitions, offsets = (
            batch.topic,
            batch.keys,
            batch.values,
            batch.timestamps,
            batch.partitions,
            batch.offsets,
        )
        pipeline = self.query.pipeline
        out: list[tuple[Record, list, Any, int]] = []
        for i, (row, ts, is_bad) in enumerate(zip(zip(*columns), times, bad.tolist())):
            if is_bad:
                out += pipeline.transform([batch.record(i)])
            else:
                out.append((Record(topic, keys[i], raw[i], stamps[i], partitions[i], offsets[i]), [], row, ts))
        handed_back = int(bad.sum())
        self.handed_back += handed_back
        pipeline.processed += len(times) - handed_back
        return out

    def process(self, batch: Any) -> Any:
        """The query's output for a batch (`runtime.evaluate` calls this)."""
        return Output.from_records(self.query._emit(self.query._aggregate(self.transform(batch))))


def _last_per_record_key(records: list[Record]) -> list[Record]:
    """Each record key's last record, a key seen again moving to the end (Kafka Streams' record cache)."""
    latest: dict[bytes | None, Record] = {}
    for r in records:
        latest.pop(r.key, None)
        latest[r.key] = r
    return list(latest.values())


def _last_per_key(changes: list[tuple[Record, Change]]) -> list[tuple[Record, Change]]:
    """Each key's (grouping values and window) last change, a key changed again moving to the end."""
    latest: dict[tuple, tuple[Record, Change]] = {}
    pop = latest.pop
    for item in changes:
        c = item[1]
        k = (*c.keys, c.window)
        pop(k, None)
        latest[k] = item
    return list(latest.values())


class AggregateTransientQuery(PushRows):
    """A push query over an aggregation (SELECT ... GROUP BY ... EMIT CHANGES): the changelog of the result
    table, every update (as ksqlDB with no record cache), in projection order, up to LIMIT. Its state lives
    in memory, for as long as the query. `query`: an aggregation built elsewhere (GROUP BY over a join)."""

    def __init__(
        self,
        query_id: str,
        plan: AggregatePlan,
        key_in: Serde | None,
        value_in: Serde | None,
        plog: ProcessingLog,
        query: AggregateQuery | None = None,
    ) -> None:
        super().__init__(
            [(name, t) for name, t, _ in plan.push_columns], [i for _, _, i in plan.push_columns], plan.limit
        )
        self.id = query_id
        self.plan = plan
        self.key_in, self.value_in = key_in, value_in
        if query is None:
            sink = DataSource(query_id, "TABLE", plan.schema, "", plan.source.key_format, plan.source.value_format)
            query = AggregateQuery(query_id, plan, sink, key_in, value_in, key_in, value_in, plog)
        self.query = query
        self.source_topics: list[str] = getattr(query, "source_topics", None) or [plan.source.topic]
        # value columns that are the window bounds (a tombstone keeps them: they are part of its key)
        first_bound = len(plan.group_types) + len(plan.aggregates)
        self._bounds = {
            j: c.column_index - first_bound
            for j, c in enumerate(plan.value_exprs)
            if plan.window is not None and c.column_index in (first_bound, first_bound + 1)
        }

    def changelog(self, records: list[Record]) -> list[tuple[list[Any], bool]]:
        """(row, tombstone) per change a batch causes: a row that stops passing HAVING is a tombstone, its
        grouping values and window bounds kept, its other columns null (as ksqlDB's push queries send it)."""
        out: list[tuple[list[Any], bool]] = []
        n_groups = len(self.plan.group_types)
        width = len(self.plan.schema.value)
        for _, c in self.query.changes(records):
            if self.done:
                break
            values = c.values
            if values is None:  # a tombstone keeps what its key tells: grouping values, window bounds
                values = [None] * width
                for j, bound in self._bounds.items():
                    values[j] = c.window[bound]  # type: ignore[index]
            self.emit(out, list(c.keys[:n_groups]) + list(values), c.values is None)
        return out
