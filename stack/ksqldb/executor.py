"""Run persistent queries over batches of records.

A `PersistentQuery` is source -> deserialize -> filter -> project -> serialize -> sink over a list of
`Record`s; it knows nothing about where records come from, so the same object is fed by the in-memory
runtime here (conformance runs, unit tests) and by a Kafka consumer in the server.
"""

from __future__ import annotations

import base64
import logging
import operator
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from . import values as V
from .errors import EvalError, SerdeError
from .expressions import Compiled
from .formats import Serde
from .metastore import DataSource, LogicalSchema
from .planner import ProjectionPlan

log = logging.getLogger(__name__)


@dataclass
class Record:
    topic: str
    key: bytes | None
    value: bytes | None
    timestamp: int = 0
    partition: int = 0
    offset: int = 0
    headers: list[tuple[str, bytes | None]] = field(default_factory=list)


class ProcessingLog:
    """ksqlDB's processing log: records that failed, with the reason. In-memory list for now."""

    def __init__(self) -> None:
        self.entries: list[dict[str, Any]] = []

    def deserialization_error(self, query_id: str, record: Record, target: str, error: str) -> None:
        raw = record.key if target == "key" else record.value
        self.entries.append(
            {
                "type": 0,
                "query": query_id,
                "topic": record.topic,
                "partition": record.partition,
                "offset": record.offset,
                "target": target,
                "errorMessage": error,
                "recordB64": base64.b64encode(raw).decode() if raw is not None else None,
                "time": int(time.time() * 1000),
            }
        )
        log.debug("query %s: cannot deserialise %s of %s@%s: %s", query_id, target, record.topic, record.offset, error)

    def expression_error(self, query_id: str, record: Record, expression: str, error: str) -> None:
        self.entries.append(
            {
                "type": 2,
                "query": query_id,
                "topic": record.topic,
                "offset": record.offset,
                "errorMessage": f"Error computing expression {expression}: {error}",
                "time": int(time.time() * 1000),
            }
        )

    def serialization_error(self, query_id: str, topic: str, error: str) -> None:
        self.entries.append(
            {"type": 3, "query": query_id, "topic": topic, "errorMessage": error, "time": int(time.time() * 1000)}
        )


def _safe(c: Compiled, text: str, on_error: Callable[[str, str], None]) -> Callable:
    fn = c.fn

    def run(row):
        try:
            return fn(row)
        except (EvalError, ArithmeticError, ValueError, TypeError, OverflowError) as e:
            on_error(text, str(e))
            return None

    return run


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
            c.fn if c.column_index is not None else _safe(c, t, self._expr_error)
            for c, t in zip(plan.value_exprs, plan.value_texts)
        ]
        # a projection of bare columns (the common case) is one C-level itemgetter call per row
        indices = [c.column_index for c in plan.value_exprs]
        self._project: Callable[[tuple], list] | None = None
        if indices and all(i is not None for i in indices):
            getter = operator.itemgetter(*indices)
            self._project = (lambda row: [getter(row)]) if len(indices) == 1 else (lambda row: list(getter(row)))
        self._ts_extract = _timestamp_extractor(plan.source)
        self._header_fns = [_header_reader(c.header) for c in plan.source.schema.headers]

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


class PersistentQuery(Pipeline):
    """A pipeline whose rows are serialised into a sink source's topic."""

    def __init__(
        self,
        query_id: str,
        plan: ProjectionPlan,
        sink: DataSource,
        key_in: Serde,
        value_in: Serde,
        key_out: Serde,
        value_out: Serde,
        plog: ProcessingLog,
        sql: str = "",
    ) -> None:
        super().__init__(query_id, plan, key_in, value_in, plog)
        self.sink = sink
        self.key_out, self.value_out = key_out, value_out
        self.sql = sql
        names = [c.name for c in sink.schema.value]
        self._sink_ts_index = names.index(sink.timestamp_column) if sink.timestamp_column in names else None
        from .vectorized import compile_query  # here: the vectorized path builds on this module

        self.vectorized = compile_query(self)

    def process(self, records: list[Record]) -> list[Record]:
        """Transform one batch of source records into sink records (failures go to the processing log)."""
        if self.vectorized is not None:
            return self.vectorized.process_records(records)
        return self.process_rows(records)

    def process_rows(self, records: list[Record]) -> list[Record]:
        """`process`, one record at a time (all queries can; the vectorized path hands records back to it)."""
        out: list[Record] = []
        for rec, key_vals, value_vals, ts in self.transform(records):
            if value_vals is not None and self._sink_ts_index is not None:
                v = value_vals[self._sink_ts_index]
                if v is None:
                    continue
                ts = v if isinstance(v, int) else V.timestamp_to_millis(v)
            try:
                null_key = (
                    not key_vals
                    or (not self.plan.partitioned and rec.key is None)
                    or (self.plan.partitioned and all(v is None for v in key_vals) and len(key_vals) == 1)
                )
                key = None if null_key else self.key_out.serialize(key_vals)
                value = self.value_out.serialize(value_vals)
            except SerdeError as e:
                self.plog.serialization_error(self.id, self.sink.topic, str(e))
                continue
            out.append(Record(self.sink.topic, key, value, ts, rec.partition))
        return out


class PushRows:
    """What every push query shares: rows in projection order, LIMIT, and `rows` without the tombstones.

    A subclass builds each result row in its own stored order (key columns, then values) and hands it to
    `emit`; `order[j]` is the stored index of the j-th SELECT item, as the plan worked it out.
    """

    changelog: Callable[[list[Record]], list[tuple[list[Any], bool]]]

    def __init__(self, columns: list[tuple[str, Any]], order: list[int], limit: int | None) -> None:
        self.columns = columns  # in projection order
        self.order = order
        self.limit = limit
        self.emitted = 0

    @property
    def done(self) -> bool:
        return self.limit is not None and self.emitted >= self.limit

    def emit(self, out: list[tuple[list[Any], bool]], stored: list[Any], tombstone: bool) -> None:
        out.append(([stored[i] for i in self.order], tombstone))
        self.emitted += 1

    def rows(self, records: list[Record]) -> list[list[Any]]:
        """The rows of `changelog` that are not tombstones."""
        return [row for row, tombstone in self.changelog(records) if not tombstone]


def projected_columns(schema: LogicalSchema, order: list[int]) -> list[tuple[str, Any]]:
    """A result schema's (name, type) pairs in projection order."""
    stored = [(c.name, c.type) for c in schema.key + schema.value]
    return [stored[i] for i in order]


class TransientQuery(Pipeline, PushRows):
    """A push query (SELECT ... EMIT CHANGES): rows are handed to the caller, up to LIMIT."""

    def __init__(
        self, query_id: str, plan: ProjectionPlan, key_in: Serde, value_in: Serde, plog: ProcessingLog
    ) -> None:
        Pipeline.__init__(self, query_id, plan, key_in, value_in, plog)
        PushRows.__init__(
            self, projected_columns(plan.schema, plan.projection_order), plan.projection_order, plan.limit
        )

    def changelog(self, records: list[Record]) -> list[tuple[list[Any], bool]]:
        """(row, tombstone) per result row of a batch, in projection order as ksqlDB sends them, honouring
        LIMIT. Over a table, a deleted row is a tombstone: its key columns and null values, as ksqlDB's push
        queries send it; a stream's records without a value are skipped."""
        out: list[tuple[list[Any], bool]] = []
        table = self.plan.result_kind == "TABLE"
        n_values = len(self.plan.schema.value)
        for _, key_vals, value_vals, _ in self.transform(records):
            if self.done:
                break
            if value_vals is None:
                if table:
                    self.emit(out, list(key_vals) + [None] * n_values, True)
            else:
                self.emit(out, list(key_vals) + list(value_vals), False)
        return out


def _header_reader(header: str | None) -> Callable[[list], Any]:
    """HEADERS: every header as a KEY/VALUE struct; HEADER('k'): the last value of header k."""
    if header == "*":
        return lambda headers: [{"KEY": k, "VALUE": v} for k, v in headers]

    def last(headers):
        found = None
        for k, v in headers:
            if k == header:
                found = v
        return found

    return last


def _timestamp_extractor(source: DataSource) -> Callable | None:
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
    from .functions.datetime import parse_java
    from .types import BIGINT, STRING, TIMESTAMP

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


class Runtime(Protocol):
    """What the engine needs from where topics live: in memory here, Kafka in the server.

    Every query handed to `add_query` has `id`, `source` (topic read), `sink` (topic written), `state`,
    `processed` and `process(records) -> records`. Stateful ones (tables, aggregations: `AggregateQuery`)
    also have `stores`, their `state.StateStores`:
    - a runtime may define `state_stores(query_id) -> StateStores`; the engine then builds the query's
      stores with it (durable ones, restored before the first record), else they live in memory;
    - `process` keeps stream time for windows (grace, EMIT FINAL) in the stores, so EMIT FINAL needs no
      timer: closed windows come out of the `process` call whose records advance stream time;
    - before committing input offsets, a runtime calls `stores.flush()`, so that restored state
      and the resumed offsets agree;
    - aggregations emit every update; a runtime that processes batches between commits may set
      `q.coalesce = True` (attribute of `AggregateQuery`) to emit only each key's last change per batch,
      as ksqlDB's record cache does (QTT and ksqlDB with cache size 0 see every update).

    Join queries (`joins.JoinQuery`) read several topics; a runtime that runs them sets `runs_joins = True`
    (the engine refuses join queries otherwise) and:
    - delivers the records of every topic in `q.source_topics` to the same `q.process`, one query instance
      for all of them (a batch may mix topics); within a topic-partition in offset order, and across topics
      in timestamp order as far as it can (Kafka Streams picks the buffered record with the lowest
      timestamp), because a join's output depends on which side arrived first;
    - co-locates partitions: records of partition p of every source topic go to the same query instance
      (the sides are co-partitioned: the engine checks partition counts, through `partitions`, when no side
      is re-keyed). A re-keyed side (an implicit repartition) is re-keyed inside `process` by the join
      expression, which is only right when that side's topic has one partition or when the runtime first
      routes the records through a repartition topic keyed by the join expression; until then a runtime
      with multi-partition sources must keep such queries to one instance reading every partition;
    - keeps the join state (window buffers per side, the latest row per key of a table side) in
      `q.stores`, built with `state_stores(query_id)` when it defines that method: a table side is the
      whole table, so without durable stores a restarted query must re-read table topics from the start.
    """

    topics: dict[str, Any]  # topic name -> anything (SHOW TOPICS lists the names)
    partitions: dict[str, int]

    def create_topic(self, name: str, partitions: int = 1) -> None: ...

    def delete_topic(self, name: str) -> None: ...

    def add_query(self, q: PersistentQuery, replay: bool = True) -> None: ...

    def remove_query(self, query_id: str) -> None: ...

    def produce(self, rec: Record) -> None: ...


class InMemoryRuntime:
    """Topics as lists of records, with queries run synchronously as records arrive (like a topology
    test driver): producing to a topic runs every query reading it, depth first, in creation order."""

    runs_joins = True

    def __init__(self) -> None:
        self.topics: dict[str, list[Record]] = {}
        self.partitions: dict[str, int] = {}
        self.queries: list[PersistentQuery] = []

    def create_topic(self, name: str, partitions: int = 1) -> None:
        self.topics.setdefault(name, [])
        self.partitions.setdefault(name, partitions)

    def delete_topic(self, name: str) -> None:
        self.topics.pop(name, None)
        self.partitions.pop(name, None)

    def add_query(self, q: PersistentQuery, replay: bool = True) -> None:
        self.queries.append(q)
        if replay:
            for rec in _by_timestamp([list(self.topics.get(t, [])) for t in _source_topics(q)]):
                self._run(q, rec)

    def remove_query(self, query_id: str) -> None:
        self.queries = [q for q in self.queries if q.id != query_id]

    def produce(self, rec: Record) -> None:
        records = self.topics.setdefault(rec.topic, [])
        rec.offset = len(records)
        records.append(rec)
        for q in list(self.queries):
            if q.state == "RUNNING" and rec.topic in _source_topics(q):
                self._run(q, rec)

    def _run(self, q: PersistentQuery, rec: Record) -> None:
        for out in q.process([rec]):
            self.produce(out)


def _source_topics(q: Any) -> list[str]:
    return getattr(q, "source_topics", None) or [q.source.topic]


def _by_timestamp(topics: list[list[Record]]) -> list[Record]:
    """Records of several topics merged as Kafka Streams replays them: each topic in offset order, the
    next record being the head with the lowest timestamp (ties go to the topic listed first)."""
    import heapq

    heads = [(t[0].timestamp, i, 0) for i, t in enumerate(topics) if t]
    heapq.heapify(heads)
    out = []
    while heads:
        _, i, j = heapq.heappop(heads)
        out.append(topics[i][j])
        if j + 1 < len(topics[i]):
            heapq.heappush(heads, (topics[i][j + 1].timestamp, i, j + 1))
    return out
