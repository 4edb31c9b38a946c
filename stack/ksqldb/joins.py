"""Running joins with ksqlDB's semantics (which are Kafka Streams' join operators); join_planner.py plans
them into a `JoinPlan`.

Why it is built this way:

- A join query reads several topics. `JoinFlow` turns records of any of them into joined rows; `JoinQuery`
  filters, projects and serialises those rows into the sink. A query is a left-deep chain of binary joins
  (`A JOIN B ... JOIN C ...`): step k joins the result of steps < k with source k + 1.
- Every row travels as one flat list laid out for the whole query: the result's own pseudo columns and
  join key, then each source's columns (pseudo, key, value, header columns) at a fixed offset. Missing
  sides (outer joins) are NULLs. All expressions (ON, WHERE, SELECT, PARTITION BY) are compiled once
  against that layout by the planner.
- An implicit repartition (joining a stream on something other than its key) is a re-key: the join key is
  the ON expression's value, so it is simply evaluated for every record. Records are processed one at a
  time, in arrival order, exactly as a topology test driver pipes them through a repartition topic.
- State lives in `state.StateStores` stores: windowed buffers per side for stream-stream joins (kept for
  before + after + grace), the latest row per key for table sides (tombstones delete), and, for left/outer
  stream-stream joins with a GRACE PERIOD, the records still waiting for a partner.
- GROUP BY over a join reuses aggregation.py unchanged: `JoinAggregateQuery` feeds the joined rows to the
  aggregator of a plan made over a virtual source laid out like the joined row.

Stream-stream semantics (Kafka Streams' KStreamKStreamJoin): a record joins every record of the other
side with the same key whose timestamp lies in [ts - before, ts + after] (seen from the left) and that is
still retained (newer than the other buffer's stream time minus the retention). Results carry the larger
timestamp. Without GRACE PERIOD (the legacy window, 24 hours of grace) a left/outer record that finds no
partner is emitted at once padded with NULLs; with GRACE PERIOD it is held back and emitted only when its
window has closed without a match (or at once when it arrives after its window closed).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import values as V
from .aggregation import AggregateQuery, AggregateTransientQuery
from .errors import EvalError, KsqlStatementError, SerdeError
from .expressions import Compiled, ErrorSink
from .metastore import DataSource, LogicalSchema
from .pipeline import header_reader, safe, timestamp_extractor
from .push import PushRows, projected_columns
from .records import Record
from .state import InMemoryStateStores, StateStores

#: The joined row's layout: the result's ROWTIME, ROWPARTITION, ROWOFFSET and join key (at KEY_SLOT), then
#: each source's columns, the first at SOURCES_START.
KEY_SLOT = 3
SOURCES_START = 4
_ROWTIME = 0


# ---------------------------------------------------------------- plan
@dataclass
class JoinInput:
    """One source of the join and where its columns sit in the joined row."""

    source: DataSource
    alias: str  # the name columns are qualified with (the alias, else the source name)
    offset: int
    width: int

    @property
    def is_table(self) -> bool:
        return self.source.kind == "TABLE"


@dataclass(frozen=True)
class JoinWindow:
    """WITHIN: how far before and after a left record right records may lie (ms), and the grace period."""

    before: int
    after: int
    grace: int
    spurious_fix: bool  # GRACE PERIOD given: unmatched outer records wait for their window to close

    @property
    def retention(self) -> int:
        return self.before + self.after + self.grace


@dataclass
class JoinStep:
    """One binary join: the result so far (left) with `right`."""

    kind: str  # INNER / LEFT / RIGHT / FULL
    right: JoinInput
    left_key: Compiled  # the ON expression of each side, over the joined row
    right_key: Compiled
    left_keyed: bool  # the left is already keyed by its ON expression (no repartition)
    right_keyed: bool
    window: JoinWindow | None  # stream-stream joins only
    result_kind: str  # STREAM / TABLE
    op: str  # stream-stream / stream-table / table-table / foreign-key (table-table on the left's ON expression)


@dataclass
class JoinPlan:
    """A planned join query: its sources, the chain of binary joins, and what becomes of the joined rows
    (a projection into the sink, or an aggregation)."""

    inputs: list[JoinInput]
    steps: list[JoinStep]
    width: int
    schema: LogicalSchema  # the result's schema
    where: Compiled | None
    key_exprs: list[Compiled]
    value_exprs: list[Compiled]
    value_texts: list[str]
    partitioned: bool
    result_kind: str
    errors: ErrorSink
    limit: int | None = None
    #: (left name, left topic, right name, right topic) pairs that must have equal partition counts
    copartitioned: list[tuple[str, str, str, str]] = field(default_factory=list)
    #: GROUP BY over the join: the joined rows are the rows of this aggregation's (virtual) source
    aggregate: Any = None
    #: per SELECT item, its index in key + value columns (push queries send rows in projection order)
    projection_order: list[int] = field(default_factory=list)

    @property
    def window(self) -> Any:
        """The WINDOW of an aggregation over the join (the engine makes the sink windowed by it)."""
        return self.aggregate.window if self.aggregate is not None else None

    @property
    def source(self) -> DataSource:
        """The left-most source: the sink inherits its formats, as in ksqlDB."""
        return self.inputs[0].source

    @property
    def sources(self) -> list[DataSource]:
        return [i.source for i in self.inputs]

    def check_copartitioning(self, partitions_of: Callable[[str], int | None]) -> None:
        """Sides joined on their keys without a repartition must have as many partitions (the topics'
        counts, looked up through the runtime)."""
        for left, left_topic, right, right_topic in self.copartitioned:
            lp, rp = partitions_of(left_topic), partitions_of(right_topic)
            if lp is not None and rp is not None and lp != rp:
                raise KsqlStatementError(
                    f"Can't join `{left}` with `{right}` since the number of partitions don't match. `{left}` "
                    f"partitions = {lp}; `{right}` partitions = {rp}. Please repartition either one so that the "
                    "number of partitions match."
                )

    def build(
        self,
        query_id: str,
        sink: DataSource,
        serdes: Callable[[DataSource], tuple[Any, Any]],
        key_out: Any,
        value_out: Any,
        plog: Any,
        sql: str = "",
        stores: StateStores | None = None,
    ) -> Any:
        side_serdes = [serdes(i.source) for i in self.inputs]
        if self.aggregate is not None:
            return JoinAggregateQuery(query_id, self, sink, side_serdes, key_out, value_out, plog, sql, stores)
        return JoinQuery(query_id, self, sink, side_serdes, key_out, value_out, plog, sql, stores)

    def transient(self, query_id: str, serdes: Callable[[DataSource], tuple[Any, Any]], plog: Any) -> Any:
        """A push query over the join: its rows (or an aggregation's changes), its state in memory."""
        sink = DataSource(query_id, self.result_kind, self.schema, "", self.source.key_format, self.source.value_format)
        query = self.build(query_id, sink, serdes, _Values(), _Values(), plog)
        if self.aggregate is not None:
            return AggregateTransientQuery(query_id, self.aggregate, None, None, plog, query)
        return JoinTransientQuery(query_id, self, query)


# ---------------------------------------------------------------- running
Event = tuple  # (join key, joined row, deleted (a table row went away), timestamp)


class _SideReader:
    """Deserialises one source's records into joined rows: its own columns filled in, the others NULL."""

    def __init__(self, flow: JoinFlow, inp: JoinInput, key_in: Any, value_in: Any) -> None:
        self.flow, self.inp = flow, inp
        self.key_in, self.value_in = key_in, value_in
        schema = inp.source.schema
        self.n_keys, self.n_values = len(schema.key), len(schema.value)
        self.ts_extract = timestamp_extractor(inp.source)
        self.header_fns = [header_reader(c.header) for c in schema.headers]

    def read(self, rec: Any) -> tuple[list, bool, int] | None:
        """(row, deleted, timestamp); None when the record is skipped (bad bytes go to the processing log;
        streams skip records without a value, tables take them as deletes)."""
        plog, qid, table = self.flow.plog, self.flow.id, self.inp.is_table
        try:
            keys = self.key_in.deserialize(rec.key) if self.n_keys else []
        except SerdeError as e:
            plog.deserialization_error(qid, rec, "key", str(e))
            return None
        if keys is None:
            keys = [None] * self.n_keys
        if table and (not keys or any(k is None for k in keys)):
            return None  # a table row needs its primary key
        try:
            values = self.value_in.deserialize(rec.value)
        except SerdeError as e:
            plog.deserialization_error(qid, rec, "value", str(e))
            return None
        ts = rec.timestamp
        if values is None:
            if not table:
                return None
            values = [None] * self.n_values
        elif self.ts_extract is not None:
            try:
                ts = self.ts_extract(keys, values)
            except (EvalError, ValueError, TypeError, OverflowError) as e:
                plog.deserialization_error(qid, rec, "timestamp", str(e))
                return None
            if ts is None or ts < 0:
                plog.deserialization_error(qid, rec, "timestamp", f"Invalid timestamp extracted: {ts}")
                return None
        row: list = [None] * self.flow.width
        start = self.inp.offset
        row[start : start + self.inp.width] = [
            ts,
            rec.partition,
            rec.offset,
            *keys,
            *values,
            *(f(rec.headers) for f in self.header_fns),
        ]
        return row, rec.value is None, ts


class _Step:
    """Shared by the join operators: rows are merged into the joined layout, the result key and time set."""

    def __init__(self, step: JoinStep, width: int) -> None:
        self.step = step
        self.width = width
        self.rs, self.re = step.right.offset, step.right.offset + step.right.width
        self.left_outer = step.kind in ("LEFT", "FULL")
        self.right_outer = step.kind in ("RIGHT", "FULL")

    def merge(self, left: list | None, right: list | None, key: Any, ts: int) -> list:
        """`left`: a joined row; `right`: the right source's columns only."""
        row = list(left) if left is not None else [None] * self.width
        if right is not None:
            row[self.rs : self.re] = right
        row[KEY_SLOT], row[_ROWTIME] = key, ts
        return row

    def tombstone(self, key: Any, ts: int) -> Event:
        row: list = [None] * self.width
        row[KEY_SLOT], row[_ROWTIME] = key, ts
        return (key, row, True, ts)


class _StreamStream(_Step):
    """KStreamKStreamJoin: windowed buffers per side, NULL-padded results for unmatched outer records."""

    def __init__(self, step: JoinStep, width: int, stores: StateStores, name: str) -> None:
        super().__init__(step, width)
        assert step.window is not None
        self.w = step.window
        self.buffers = {True: stores.window(f"{name}-left"), False: stores.window(f"{name}-right")}
        self.times = stores.key_value(f"{name}-stream-time")
        self.unmatched = (
            stores.key_value(f"{name}-unmatched")
            if self.w.spurious_fix and (self.left_outer or self.right_outer)
            else None
        )
        self._expired_to = {True: -1, False: -1}
        self._times: dict[str, int] = {}  # stream times, read through from `times`

    def _time(self, which: str) -> int:
        t = self._times.get(which)
        if t is None:
            stored = self.times.get((which,))
            t = self._times[which] = -1 if stored is None else stored
        return t

    def _advance(self, which: str, ts: int) -> int:
        """Stream time `which` (shared, left, right) moved up to `ts`, written through to the store."""
        t = self._time(which)
        if ts > t:
            t = self._times[which] = ts
            self.times.put((which,), ts)
        return t

    def left(self, key: Any, row: list, deleted: bool, ts: int) -> list[Event]:
        return self._process(True, key, row, ts)

    def right(self, key: Any, row: list, deleted: bool, ts: int) -> list[Event]:
        return self._process(False, key, row[self.rs : self.re], ts)

    def _padded(self, is_left: bool, data: list, key: Any, ts: int) -> Event:
        return (key, self.merge(data, None, key, ts) if is_left else self.merge(None, data, key, ts), False, ts)

    def _process(self, is_left: bool, key: Any, data: list, ts: int) -> list[Event]:
        w = self.w
        outer = self.left_outer if is_left else self.right_outer
        if key is None:  # KIP-962: a left/outer record without a key joins nothing but is kept
            return [self._padded(is_left, data, key, ts)] if outer else []
        out: list[Event] = []
        stream_time = self._advance("shared", ts)
        lo, hi = (ts - w.before, ts + w.after) if is_left else (ts - w.after, ts + w.before)
        lo, hi = max(lo, 0), max(hi, 0)
        if self.unmatched is not None and ts == stream_time:
            out += self._emit_closed(stream_time)
        other = not is_left
        visible_from = max(lo, self._time("left" if other else "right") - w.retention + 1)
        matched = False
        for start, _, rows in self.buffers[other].windows((key,)):
            if start < visible_from:
                continue
            if start > hi:
                break
            for other_data in rows:
                matched = True
                if self.unmatched is not None:
                    self.unmatched.delete((start, other, key))
                left, right = (data, other_data) if is_left else (other_data, data)
                joined_ts = max(ts, start)
                out.append((key, self.merge(left, right, key, joined_ts), False, joined_ts))
        if not matched and outer:
            if self.unmatched is None or hi < stream_time:
                out.append(self._padded(is_left, data, key, ts))
            else:
                self.unmatched.put((ts, is_left, key), data)
        self._buffer(is_left, key, data, ts)
        return out

    def _buffer(self, is_left: bool, key: Any, data: list, ts: int) -> None:
        own_time = self._advance("left" if is_left else "right", ts)
        retained_from = own_time - self.w.retention + 1
        if ts < retained_from:
            return  # already out of the window store's retention: Kafka Streams drops it too
        buffer = self.buffers[is_left]
        rows = buffer.get((key,), ts, ts)
        buffer.put((key,), ts, ts, (rows or []) + [data])
        if retained_from - self._expired_to[is_left] > self.w.retention // 2 + 1:
            buffer.expire(retained_from)
            self._expired_to[is_left] = retained_from

    def _emit_closed(self, stream_time: int) -> list[Event]:
        """Unmatched outer records whose window (plus grace) has closed, oldest first, right side first on
        equal timestamps (the order of Kafka Streams' outer-join store)."""
        assert self.unmatched is not None
        w = self.w
        out = []
        for (ts, is_left, key), data in sorted(self.unmatched.items(), key=lambda kv: (kv[0][0], kv[0][1])):
            if ts + (w.after if is_left else w.before) + w.grace < stream_time:
                out.append(self._padded(is_left, data, key, ts))
                self.unmatched.delete((ts, is_left, key))
        return out


class _StreamTable(_Step):
    """KStreamKTableJoin: a stream record looks the key up in the table; table updates emit nothing."""

    def __init__(self, step: JoinStep, width: int, stores: StateStores, name: str) -> None:
        super().__init__(step, width)
        self.table = stores.key_value(f"{name}-table")

    def left(self, key: Any, row: list, deleted: bool, ts: int) -> list[Event]:
        found = self.table.get((key,)) if key is not None else None
        if found is None:
            return [(key, self.merge(row, None, key, ts), False, ts)] if self.left_outer else []
        return [(key, self.merge(row, found[1], key, ts), False, ts)]

    def right(self, key: Any, row: list, deleted: bool, ts: int) -> list[Event]:
        if deleted:
            self.table.delete((key,))
        else:
            self.table.put((key,), [ts, row[self.rs : self.re]])
        return []


class _TableTable(_Step):
    """KTableKTableJoin on primary keys: an update of either side emits the new joined row, or a delete.
    As in Kafka Streams: an inner join emits only when the other side has the key; a preserved (outer) side
    emits itself padded with NULLs when the other side has not, and a full outer join stays silent when a
    key that neither side had is deleted. The result carries the later of the two rows' timestamps."""

    def __init__(self, step: JoinStep, width: int, stores: StateStores, name: str) -> None:
        super().__init__(step, width)
        self.tables = {True: stores.key_value(f"{name}-left"), False: stores.key_value(f"{name}-right")}

    def left(self, key: Any, row: list, deleted: bool, ts: int) -> list[Event]:
        return self._update(True, key, None if deleted else row, ts)

    def right(self, key: Any, row: list, deleted: bool, ts: int) -> list[Event]:
        return self._update(False, key, None if deleted else row[self.rs : self.re], ts)

    def _update(self, is_left: bool, key: Any, data: list | None, ts: int) -> list[Event]:
        if key is None:
            return []
        table = self.tables[is_left]
        old = table.get((key,))
        if data is None:
            table.delete((key,))
        else:
            table.put((key,), [ts, data])
        other = self.tables[not is_left].get((key,))
        this_outer, other_outer = (
            (self.left_outer, self.right_outer) if is_left else (self.right_outer, self.left_outer)
        )
        if other is None:
            if not this_outer or (data is None and old is None and self.step.kind == "FULL"):
                return []
            if data is None:
                return [self.tombstone(key, ts)]
            return [(key, self.merge(data, None, key, ts) if is_left else self.merge(None, data, key, ts), False, ts)]
        other_ts, other_data = other
        ts = max(ts, other_ts)
        if data is None and not other_outer:
            return [self.tombstone(key, ts)]
        left, right = (data, other_data) if is_left else (other_data, data)
        return [(key, self.merge(left, right, key, ts), False, ts)]


class _ForeignKey(_Step):
    """KTable-KTable foreign-key join (INNER or LEFT): each left row joins the right row whose primary key
    is the left row's ON expression; the result is keyed by the left row's key. A right update re-joins
    every left row pointing at it. As in Kafka Streams, an inner join deletes a row whose foreign key
    moved to a missing right row, and a left row with a NULL foreign key joins nothing (KIP-962: a left
    join keeps it padded with NULLs)."""

    def __init__(
        self, step: JoinStep, width: int, stores: StateStores, name: str, foreign_key: Callable[[list], Any]
    ) -> None:
        super().__init__(step, width)
        self.lefts = stores.key_value(f"{name}-left")  # left key -> [ts, row, foreign key]
        self.rights = stores.key_value(f"{name}-right")  # right key -> [ts, right columns]
        self.subscribers = stores.key_value(f"{name}-subscribers")  # right key -> [left keys]
        self.foreign_key = foreign_key

    def _subscribe(self, fk: Any, key: Any, add: bool) -> None:
        keys = [k for k in self.subscribers.get((fk,)) or [] if k != key]
        if add:
            keys.append(key)
        if keys:
            self.subscribers.put((fk,), keys)
        else:
            self.subscribers.delete((fk,))

    def left(self, key: Any, row: list, deleted: bool, ts: int) -> list[Event]:
        if key is None:
            return []
        old = self.lefts.get((key,))
        old_fk = old[2] if old is not None else None
        if deleted:
            if old is None:
                return []
            self.lefts.delete((key,))
            if old_fk is not None:
                self._subscribe(old_fk, key, False)
            return [self.tombstone(key, ts)]
        fk = self.foreign_key(row)
        self.lefts.put((key,), [ts, row, fk])
        moved = old is not None and old_fk != fk
        if moved and old_fk is not None:
            self._subscribe(old_fk, key, False)
        if fk is not None and (old is None or moved):
            self._subscribe(fk, key, True)
        right = self.rights.get((fk,)) if fk is not None else None
        if right is not None:
            joined_ts = max(ts, right[0])
            return [(key, self.merge(row, right[1], key, joined_ts), False, joined_ts)]
        if self.left_outer:
            return [(key, self.merge(row, None, key, ts), False, ts)]
        return [self.tombstone(key, ts)] if moved else []

    def right(self, key: Any, row: list, deleted: bool, ts: int) -> list[Event]:
        if key is None:
            return []
        data = None if deleted else row[self.rs : self.re]
        if data is None:
            if self.rights.get((key,)) is None:
                return []
            self.rights.delete((key,))
        else:
            self.rights.put((key,), [ts, data])
        out: list[Event] = []
        for left_key in self.subscribers.get((key,)) or []:
            left_ts, left_row, _ = self.lefts.get((left_key,))
            joined_ts = max(ts, left_ts)
            if data is None and not self.left_outer:
                out.append(self.tombstone(left_key, joined_ts))
            else:
                out.append((left_key, self.merge(left_row, data, left_key, joined_ts), False, joined_ts))
        return out


_OPERATORS = {
    "stream-stream": _StreamStream,
    "stream-table": _StreamTable,
    "table-table": _TableTable,
    "foreign-key": _ForeignKey,
}


class JoinFlow:
    """Records of any joined source in, joined rows out, through the chain of join operators."""

    def __init__(
        self, query_id: str, plan: JoinPlan, serdes: list[tuple[Any, Any]], plog: Any, stores: StateStores
    ) -> None:
        self.id, self.plan, self.plog = query_id, plan, plog
        self.width = plan.width
        self.processed = 0
        self.current: Any = None
        self.readers = {
            inp.source.topic: (i, _SideReader(self, inp, *serde))
            for i, (inp, serde) in enumerate(zip(plan.inputs, serdes))
        }
        self.stores = stores
        self.reload_state()
        first = plan.inputs[0]
        self._first_key = first.offset + 3 if len(first.source.schema.key) == 1 else None
        self._located: dict[tuple[str, int, int], tuple[Any, Any]] = {}  # read ahead by `locate`, for `feed`
        plan.errors.handler = self.expression_error

    def reload_state(self) -> None:
        """(Re)build the join operators from the stores: after a runtime rolls a failed batch back, the stream
        times they cache must be those of the committed state again."""
        plan, stores = self.plan, self.stores
        self.ops = [
            _OPERATORS[s.op](s, plan.width, stores, f"join{j}")
            if s.op != "foreign-key"
            else _ForeignKey(s, plan.width, stores, f"join{j}", lambda row, c=s.left_key: self._key(c, row))
            for j, s in enumerate(plan.steps)
        ]

    def expression_error(self, text: str, error: str) -> None:
        if self.current is not None:
            self.plog.expression_error(self.id, self.current, text, error)

    def _key(self, c: Compiled, row: list) -> Any:
        try:
            return c.fn(row)
        except (EvalError, ArithmeticError, ValueError, TypeError) as e:
            self.expression_error("JOIN ON", str(e))
            return None

    def table_lookup(self) -> tuple[str, str] | None:
        """(stream topic, table topic) when the first join looks each stream record up in a table, which
        must then be current at the record's time (see stream_time.TableGate)."""
        steps = self.plan.steps
        if not steps or steps[0].op != "stream-table" or len(steps[0].right.source.schema.key) != 1:
            return None
        return self.plan.inputs[0].source.topic, steps[0].right.source.topic

    def locate(self, rec: Any) -> tuple[int, bytes | None] | None:
        """A stream record's event time and its join key as the table's topic keys it (None when the record
        is skipped, or has no key to look up). Kept for `feed`, so that the record is read once."""
        self.current = rec
        got = self.readers[rec.topic][1].read(rec)
        key = None
        if got is not None:
            row = got[0]
            own_key = row[self._first_key] if self._first_key is not None else None
            key = self._left_key(self.plan.steps[0], own_key, row)
        self.current = None
        self._located[(rec.topic, rec.partition, rec.offset)] = (got, key)
        if got is None:
            return None
        if key is None:
            return got[2], None
        table_key = self.readers[self.plan.steps[0].right.source.topic][1].key_in
        try:
            return got[2], table_key.serialize([key])
        except Exception:  # noqa: BLE001 - a key the table could not hold: wait for every partition instead
            return got[2], None

    def feed(self, rec: Any) -> list[Event]:
        entry = self.readers.get(rec.topic)
        if entry is None:
            return []
        index, reader = entry
        self.current = rec
        located = self._located.pop((rec.topic, rec.partition, rec.offset), None)
        got = reader.read(rec) if located is None else located[0]
        if got is None:
            return []
        self.processed += 1
        row, deleted, ts = got
        steps = self.plan.steps
        if index == 0:
            if located is not None:
                key = located[1]
            else:
                own_key = row[self._first_key] if self._first_key is not None else None
                key = self._left_key(steps[0], own_key, row)
            events = self.ops[0].left(key, row, deleted, ts)
        else:
            events = self.ops[index - 1].right(self._key(steps[index - 1].right_key, row), row, deleted, ts)
        for j in range(max(index, 1), len(self.ops)):
            step, op, nxt = steps[j], self.ops[j], []
            for key, row, deleted, ts in events:
                nxt += op.left(self._left_key(step, key, row), row, deleted, ts)
            events = nxt
        return events

    def _left_key(self, step: JoinStep, own_key: Any, row: list) -> Any:
        """What a step's left side is keyed by: its own key when it needs no re-keying (and for a
        foreign-key join, which looks the foreign key up itself), else the ON expression's value (which
        for windowed sources carries the window too)."""
        if step.op == "foreign-key" or (step.left_keyed and step.right.source.window is None):
            return own_key
        return self._key(step.left_key, row)


class JoinQuery:
    """A persistent join query: joined rows -> WHERE -> key and projection -> the sink topic. A table
    result is a changelog: a deleted row, or one that stops matching WHERE, becomes a tombstone."""

    def __init__(
        self,
        query_id: str,
        plan: JoinPlan,
        sink: DataSource,
        serdes: list[tuple[Any, Any]],
        key_out: Any,
        value_out: Any,
        plog: Any,
        sql: str = "",
        stores: StateStores | None = None,
    ) -> None:
        self.id, self.plan, self.sink, self.sql = query_id, plan, sink, sql
        self.source = plan.source
        self.source_topics = [i.source.topic for i in plan.inputs]
        self.state = "RUNNING"
        self.stores = stores if stores is not None else InMemoryStateStores()
        self.flow = JoinFlow(query_id, plan, serdes, plog, self.stores)
        self.key_out, self.value_out, self.plog = key_out, value_out, plog
        handler = self.flow.expression_error
        self._where = plan.where.fn if plan.where is not None else None
        self._key_fns = [safe(c, "KEY", handler) for c in plan.key_exprs]
        self._value_fns = [safe(c, t, handler) for c, t in zip(plan.value_exprs, plan.value_texts)]
        # a table result filtered by WHERE forwards a delete only for a key whose previous row passed
        self._live = (
            self.stores.key_value("result-keys") if plan.result_kind == "TABLE" and plan.where is not None else None
        )
        names = [c.name for c in sink.schema.value]
        self._sink_ts_index = names.index(sink.timestamp_column) if sink.timestamp_column in names else None

    @property
    def processed(self) -> int:
        return self.flow.processed

    def reload_state(self) -> None:
        self.flow.reload_state()

    def process(self, records: list[Any]) -> list[Any]:
        """Join a batch of records of any source topic (in arrival order) into sink records."""
        out = []
        for rec in records:
            for _, row, deleted, ts in self.flow.feed(rec):
                produced = self._emit(rec, row, deleted, ts)
                if produced is not None:
                    out.append(produced)
        self.flow.current = None
        return out

    def _emit(self, rec: Any, row: list, deleted: bool, ts: int) -> Any:
        if not deleted and self._where is not None:
            try:
                passed = self._where(row) is True
            except (EvalError, ArithmeticError, ValueError, TypeError) as e:
                self.plog.expression_error(self.id, rec, "WHERE", str(e))
                passed = False
            if not passed:
                if self.plan.result_kind != "TABLE":
                    return None
                deleted = True
        key_vals = [f(row) for f in self._key_fns]
        if self._live is not None:
            live_key = tuple(key_vals)
            if deleted:
                if self._live.get(live_key) is None:
                    return None  # nothing to delete downstream
                self._live.delete(live_key)
            else:
                self._live.put(live_key, True)
        value_vals = None if deleted else [f(row) for f in self._value_fns]
        if value_vals is not None and self._sink_ts_index is not None:
            v = value_vals[self._sink_ts_index]
            if v is None:
                return None
            ts = v if isinstance(v, int) else V.timestamp_to_millis(v)
        try:
            key = None if not key_vals or all(v is None for v in key_vals) else self.key_out.serialize(key_vals)
            value = self.value_out.serialize(value_vals)
        except SerdeError as e:
            self.plog.serialization_error(self.id, self.sink.topic, str(e))
            return None
        return Record(self.sink.topic, key, value, ts, rec.partition)


class JoinAggregateQuery(AggregateQuery):
    """GROUP BY over a join: joined rows (not one source's records) are pre-aggregated and aggregated."""

    def __init__(
        self,
        query_id: str,
        plan: JoinPlan,
        sink: DataSource,
        serdes: list[tuple[Any, Any]],
        key_out: Any,
        value_out: Any,
        plog: Any,
        sql: str = "",
        stores: StateStores | None = None,
    ) -> None:
        aggregate = plan.aggregate
        super().__init__(query_id, aggregate, sink, None, None, key_out, value_out, plog, sql, stores)
        self.source = plan.source
        self.source_topics = [i.source.topic for i in plan.inputs]
        self.flow = JoinFlow(query_id, plan, serdes, plog, self.stores)
        pre = aggregate.pre
        pre.errors.handler = self._expr_error
        self._where = pre.where.fn if pre.where is not None else None
        self._keys = [c.fn for c in pre.key_exprs]
        self._pre = [safe(c, t, self._expr_error) for c, t in zip(pre.value_exprs, pre.value_texts)]

    @property
    def processed(self) -> int:
        return self.flow.processed

    def reload_state(self) -> None:
        super().reload_state()
        self.flow.reload_state()

    def changes(self, records: list[Any]) -> list[tuple[Any, Any]]:
        out = []
        for rec in records:
            self._record = rec
            for _, row, deleted, ts in self.flow.feed(rec):
                if self._where is not None:  # (a table's WHERE is one of the pre-aggregated values)
                    if deleted:
                        continue
                    try:
                        if self._where(row) is not True:
                            continue
                    except (EvalError, ArithmeticError, ValueError, TypeError) as e:
                        self._expr_error("WHERE", str(e))
                        continue
                values = None if deleted else [f(row) for f in self._pre]
                for change in self.aggregator.apply([f(row) for f in self._keys], values, ts):
                    out.append((rec, change))
        self._record = None
        self.flow.current = None
        self.aggregator.checkpoint()
        return out


class _Values:
    """A push query's 'serde': its key and value columns stay values."""

    def serialize(self, values: list[Any] | None) -> list[Any] | None:
        return values


class JoinTransientQuery(PushRows):
    """A push query over a join (SELECT ... FROM a JOIN b ... EMIT CHANGES): the joined rows of the source
    topics' records, up to LIMIT. A table-table join's deleted row is a tombstone (key columns, null values)."""

    def __init__(self, query_id: str, plan: JoinPlan, query: JoinQuery) -> None:
        super().__init__(projected_columns(plan.schema, plan.projection_order), plan.projection_order, plan.limit)
        self.id, self.plan, self.query = query_id, plan, query
        self.source_topics = query.source_topics

    def changelog(self, records: list[Any]) -> list[tuple[list[Any], bool]]:
        """(row, tombstone) per joined row, in projection order."""
        out: list[tuple[list[Any], bool]] = []
        n_keys, n_values = len(self.plan.schema.key), len(self.plan.schema.value)
        for rec in self.query.process(records):
            if self.done:
                break
            keys = rec.key if rec.key is not None else [None] * n_keys
            values = rec.value if rec.value is not None else [None] * n_values
            self.emit(out, list(keys) + list(values), rec.value is None)
        return out
