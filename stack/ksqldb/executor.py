"""Persistent and push queries that project one source (a stream, or a table's changelog as a stream).

A `PersistentQuery` is source -> deserialize -> filter -> project -> serialize -> sink over a list of
`Record`s; it knows nothing about where records come from, so the same object is fed by the in-memory
runtime (conformance runs, unit tests) and by a Kafka consumer in the server. A plain stream projection
also gets the vectorized path (vectorized.py), which runs whole batches column by column.
"""

from __future__ import annotations

from typing import Any

from . import values as V
from .errors import SerdeError
from .formats import Serde
from .metastore import DataSource
from .pipeline import Pipeline, ProjectionPlan
from .processing_log import ProcessingLog
from .push import PushRows, projected_columns
from .records import Record
from .vectorized import compile_query


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
        # only a plain stream projection: subclasses (tables.TableQuery) process their records their own way
        self.vectorized = compile_query(self) if type(self) is PersistentQuery else None

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
